"""Training command of the default latent-action models (fixed seed, progress bars, CPU):

    python -m harness_nodes.latent_policy.train --data data/latent --out models/latent_policy

Reads the datasets `python -m harness_nodes.dataset.generate` writes (panda_train, xarm6_train),
trains the latent action model on the frames of both arms (plus the tool motion of a
`--label-fraction` of the Panda episodes), the latent policy on the codes of the successful Panda
demonstrations, the Panda decoder on that labelled fraction and the xArm6 decoder on at most
`--xarm6-demos` xArm6 episodes (each on the latents the policy emits for those frames); writes
safetensors and metadata.json (data, seed, command, metrics, checksums) into --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from harness_nodes.dataset.lerobot import LeRobotDataset
from harness_nodes.latent_policy.configuration_latent_action import DecoderConfig, LatentActionConfig, PolicyConfig
from harness_nodes.latent_policy.training import (FramePairs, code_statistics, infer_latents, lapa_check, load_pairs,
                                                  policy_latents, train_decoder, train_latent_action_model,
                                                  train_policy)
from harness_nodes.latent_policy.weights import TRAIN_COMMAND, save_models

DEFAULT_OUT = Path("models/latent_policy")


def labelled_episodes(pairs: FramePairs, fraction: float | None, max_episodes: int | None, seed: int) -> np.ndarray:
    """Mask of the pairs whose episode is in the labelled subset (drawn from the seed)."""
    episodes = np.unique(pairs.episode)
    n = len(episodes)
    if fraction is not None:
        n = max(1, int(round(fraction * len(episodes))))
    if max_episodes is not None:
        n = min(n, max_episodes)
    chosen = np.random.default_rng(seed).permutation(episodes)[:n]
    return np.isin(pairs.episode, chosen)


def train_all(data: Path, out: Path | None, seed: int = 0, lam_steps: int = 2000, policy_steps: int = 2500,
              decoder_steps: int = 2000, label_fraction: float = 0.25, xarm6_demos: int = 50,
              config: LatentActionConfig | None = None, progress: bool = True, command: str = "",
              batch: int = 32) -> dict:
    """Train everything; returns {"models": {...}, "metrics": {...}} and writes them when `out` is set."""
    # one thread: on a shared, loaded machine two OpenMP threads spin-wait and run ~10x slower
    torch.set_num_threads(1)
    start = time.monotonic()
    config = config or LatentActionConfig()
    k = config.frame_interval
    panda = load_pairs(LeRobotDataset(data / "panda_train"), k, config.cameras)
    xarm = load_pairs(LeRobotDataset(data / "xarm6_train"), k, config.cameras) if (data / "xarm6_train").exists() else None
    frames_only = FramePairs.concat([panda, xarm]) if xarm is not None else panda
    mask = labelled_episodes(panda, label_fraction, None, seed)
    lam, history = train_latent_action_model(frames_only, config, lam_steps, seed, batch=batch, progress=progress,
                                             labelled=panda.subset(mask))
    _, codes_panda = infer_latents(lam, panda)
    usage, perplexity = code_statistics(codes_panda, config.codebook_size)
    metrics = {"train_code_usage": usage, "train_perplexity": perplexity, "dead_code_restarts": history["restarts"],
               **{f"train_{key}": v for key, v in lapa_check(lam, panda).items()}}
    models = {"latent_action_model": lam}
    # clone successful demonstrations; a dataset without any (tiny test sets) clones them all
    good = panda.success if panda.success.any() else np.ones(len(panda), dtype=bool)
    metrics["policy_trained_on"] = "successful episodes" if panda.success.any() else "all episodes (none succeeded)"
    pol_cfg = PolicyConfig(in_channels=config.in_channels, image_size=config.image_size, width=config.width,
                           codebook_size=config.codebook_size, num_tokens=config.num_tokens)
    policy = models["policy"] = train_policy(panda.subset(good), codes_panda[good], pol_cfg, policy_steps, seed,
                                             batch=batch, progress=progress)
    # Each decoder learns on the latent actions the policy emits for the labelled frames (its
    # prediction of the inverse-dynamics code): what it decodes at run time. Decoders trained on the
    # inverse-dynamics codes themselves fail in closed loop wherever the policy picks another code.
    dec_cfg = DecoderConfig(embodiment="panda", latent_dim=config.latent_dim, chunk=k)
    labelled = panda.subset(mask)
    models["decoder_panda"] = train_decoder(policy_latents(lam, policy, labelled), labelled, dec_cfg, decoder_steps,
                                            seed, progress=progress)
    metrics["panda_labelled_episodes"] = int(len(np.unique(panda.episode[mask])))
    if xarm is not None:
        xlabelled = xarm.subset(labelled_episodes(xarm, None, xarm6_demos, seed))
        models["decoder_xarm6"] = train_decoder(policy_latents(lam, policy, xlabelled), xlabelled,
                                                DecoderConfig(embodiment="xarm6", latent_dim=config.latent_dim, chunk=k),
                                                decoder_steps, seed, progress=progress)
        metrics["xarm6_labelled_episodes"] = int(len(np.unique(xlabelled.episode)))
    metrics["train_seconds"] = round(time.monotonic() - start, 1)
    metadata = {"command": command or TRAIN_COMMAND, "seed": seed, "data": {
        "panda_train": {"episodes": int(len(np.unique(panda.episode))), "pairs": len(panda)},
        "xarm6_train": {"episodes": int(len(np.unique(xarm.episode))) if xarm is not None else 0,
                        "pairs": len(xarm) if xarm is not None else 0},
        "generator": "python -m harness_nodes.dataset.generate"},
        "steps": {"latent_action_model": lam_steps, "policy": policy_steps, "decoders": decoder_steps},
        "batch": batch, "configuration": config.model_dump(mode="json"),
        "label_fraction": label_fraction, "metrics": metrics,
        "code_usage_history": {"step": history["step"], "usage": history["usage"],
                               "perplexity": history["perplexity"]}}
    if out is not None:
        save_models(out, models, metadata)
    return {"models": models, "metadata": metadata}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/latent"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lam-steps", type=int, default=2000)
    ap.add_argument("--policy-steps", type=int, default=2500)
    ap.add_argument("--decoder-steps", type=int, default=2000)
    ap.add_argument("--label-fraction", type=float, default=0.25)
    ap.add_argument("--xarm6-demos", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--codebook-size", type=int, default=LatentActionConfig().codebook_size)
    ap.add_argument("--num-tokens", type=int, default=LatentActionConfig().num_tokens)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    command = "python -m harness_nodes.latent_policy.train " + " ".join(argv if argv is not None else sys.argv[1:])
    result = train_all(args.data, args.out, args.seed, args.lam_steps, args.policy_steps, args.decoder_steps,
                       args.label_fraction, args.xarm6_demos, progress=not args.quiet, command=command.strip(),
                       batch=args.batch, config=LatentActionConfig(codebook_size=args.codebook_size,
                                                                   num_tokens=args.num_tokens))
    print(json.dumps(result["metadata"]["metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
