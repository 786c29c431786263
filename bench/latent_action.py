"""Latent-action policy evaluation (issue #11) on held-out seeds:

* codebook health on held-out Panda episodes: `code_usage` (fraction of codes used), `perplexity`;
  the LAPA check (predicted later frame closer to o_t+k than to o_t);
* `probe_r2`: a linear probe latent -> true tool displacement of the chunk (fit on the training
  episodes' labels, scored on held-out nominal episodes); `probe_r2_camera_jitter`: the same probe
  on held-out episodes with camera jitter and a moving distractor;
* `decoded_r2`: the Panda decoder's action chunk, from the latent the policy emits, vs the recorded
  one on held-out episodes (and
  `decoded_r2_without_latent`: the same decoder with the latent replaced by other pairs' latents,
  i.e. what the belief and proprioception alone explain);
* `label_efficiency`: success in the world with a decoder trained on 2.5 % of the training
  episodes' labels divided by success with one trained on all of them (latent model and policy
  unchanged; `--label-seeds` held-out seeds each), beside the two decoders' R2;
* `phase_probe_accuracy` (linear classifier latent -> expert phase, a diagnostic) and
  `progress_correlation` (linear probe latent -> episode progress, Pearson r);
* `panda_success`, `xarm6_success`, `xarm6_success_ratio`: the policy alone in the world
  (top candidate each chunk, the same delta executor the data was recorded with, the target's
  true position standing in for memory's belief) on held-out seeds;
* `policy_step_ms_cache_hit` / `_miss`: one ProposeActions worth of inference in the core.

    make bench-latent-action   # = scripts/env.sh python bench/latent_action.py [--seeds 50]

Needs the datasets (`python -m harness_nodes.dataset.generate`) and the weights
(`python -m harness_nodes.latent_policy.train`). Plots (PNG) go to artifacts/latent_action/.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from harness_nodes.dataset.lerobot import LeRobotDataset  # noqa: E402
from harness_nodes.latent_policy.configuration_latent_action import DecoderConfig  # noqa: E402
from harness_nodes.latent_policy.core import LatentPolicyCore  # noqa: E402
from harness_nodes.latent_policy.train import labelled_episodes  # noqa: E402
from harness_nodes.latent_policy.training import (apply_linear_probe, belief_vectors, code_statistics,  # noqa: E402
                                                  fit_linear_probe, infer_latents, lapa_check, load_pairs,
                                                  policy_latents, r2_score, train_decoder)
from harness_nodes.latent_policy.weights import save_models  # noqa: E402

SUCCESS_SEEDS = 200_000      # held-out rollout seeds: never used by the generator's splits


def decoded(decoder, latents, pairs) -> np.ndarray:
    with torch.no_grad():
        motion, _ = decoder(torch.as_tensor(latents), torch.as_tensor(pairs.states),
                            torch.as_tensor(belief_vectors(pairs.targets)))
    return motion.numpy()


def with_decoder(core, decoder, directory: Path) -> Path:
    """A model directory holding the core's latent model and policy and another Panda decoder."""
    save_models(directory, {"latent_action_model": core.lam, "policy": core.policy, "decoder_panda": decoder},
                {k: v for k, v in core.metadata.items() if k != "files"})
    return directory


def _rollout(args):
    model_dir, robot, seed, max_chunks = args
    torch.set_num_threads(1)
    from harness_nodes.latent_policy.rollout import run_policy_episode
    core = LatentPolicyCore(model_dir, robot)
    return run_policy_episode(core, robot, seed, max_chunks)


def success_sweep(model_dir: Path, robot: str, seeds: int, workers: int, max_chunks: int) -> list[dict]:
    jobs = [(model_dir, robot, SUCCESS_SEEDS + i, max_chunks) for i in range(seeds)]
    if workers <= 1:
        return [_rollout(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_rollout, jobs))


def step_times(core, repeats: int = 30) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    frames = {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in core.config.cameras}
    state = [0.45, 0.0, 0.3, 0.0, 0.08]
    goal = "put red_cube in tray"
    core.propose(frames, state, goal, [0.45, 0.05, 0.025], 4)   # warm-up (and the cached entry)
    hit, miss = [], []
    for i in range(repeats):
        t = time.perf_counter()
        p = core.propose(frames, state, goal, [0.45, 0.05, 0.025], 4)
        hit.append(time.perf_counter() - t)
        assert p.cache_hit
        changed = {c: f.copy() for c, f in frames.items()}
        changed["scene"][i % 64, 0, 0] ^= 0xFF
        t = time.perf_counter()
        p = core.propose(changed, state, goal, [0.45, 0.05, 0.025], 4)
        miss.append(time.perf_counter() - t)
        assert not p.cache_hit
    return float(np.median(hit) * 1000), float(np.median(miss) * 1000)


def plots(out: Path, history: dict, probe_true: np.ndarray, probe_pred: np.ndarray, per_seed: dict) -> list[str]:
    """Three small PNGs drawn with OpenCV (no plotting library in the environment)."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def canvas():
        img = np.full((300, 420, 3), 255, np.uint8)
        cv2.rectangle(img, (40, 20), (400, 260), (0, 0, 0), 1)
        return img

    def to_px(x, y, xr, yr):
        px = 40 + (np.asarray(x) - xr[0]) / max(xr[1] - xr[0], 1e-9) * 360
        py = 260 - (np.asarray(y) - yr[0]) / max(yr[1] - yr[0], 1e-9) * 240
        return px.astype(int), py.astype(int)

    if history.get("step"):
        img = canvas()
        xs, ys = to_px(history["step"], history["usage"], (0, max(history["step"])), (0, 1.05))
        for i in range(1, len(xs)):
            cv2.line(img, (xs[i - 1], ys[i - 1]), (xs[i], ys[i]), (200, 60, 0), 2)
        cv2.putText(img, "code usage vs training step", (50, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        cv2.imwrite(str(out / "code_usage.png"), img)
        written.append("code_usage.png")
    img = canvas()
    lim = float(np.abs(probe_true).max() or 1.0)
    xs, ys = to_px(probe_true.reshape(-1), probe_pred.reshape(-1), (-lim, lim), (-lim, lim))
    for x, y in zip(xs, ys):
        cv2.circle(img, (int(x), int(np.clip(y, 20, 260))), 2, (0, 0, 200), -1)
    cv2.line(img, tuple(int(v) for v in to_px(-lim, -lim, (-lim, lim), (-lim, lim))),
             tuple(int(v) for v in to_px(lim, lim, (-lim, lim), (-lim, lim))), (0, 150, 0), 1)
    cv2.putText(img, "probe: true (x) vs predicted (y) displacement", (45, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(out / "probe_scatter.png"), img)
    written.append("probe_scatter.png")
    img = canvas()
    colours = {"panda": (200, 60, 0), "xarm6": (0, 120, 220)}
    for row, (robot, results) in enumerate(per_seed.items()):
        for i, r in enumerate(results):
            x = 45 + int(i * 350 / max(len(results), 1))
            cv2.rectangle(img, (x, 60 + 100 * row), (x + 4, 60 + 100 * row + (60 if r["success"] else 6)),
                          colours.get(robot, (0, 0, 0)), -1)
        cv2.putText(img, robot, (45, 55 + 100 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "success per held-out seed (tall = success)", (45, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(out / "success_per_seed.png"), img)
    written.append("success_per_seed.png")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="latent-action policy evaluation")
    ap.add_argument("--data", type=Path, default=REPO / "data/latent")
    ap.add_argument("--models", type=Path, default=REPO / "models/latent_policy")
    ap.add_argument("--seeds", type=int, default=50, help="held-out rollout seeds for panda_success")
    ap.add_argument("--xarm6-seeds", type=int, default=20)
    ap.add_argument("--label-seeds", type=int, default=20, help="held-out seeds per decoder for label_efficiency")
    ap.add_argument("--max-chunks", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plots", type=Path, default=REPO / "artifacts/latent_action")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    command = "scripts/env.sh python bench/latent_action.py " + " ".join(argv if argv is not None else sys.argv[1:])
    core = LatentPolicyCore(args.models, "panda")
    lam, cfg = core.lam, core.lam.config
    k = cfg.frame_interval
    train = load_pairs(LeRobotDataset(args.data / "panda_train"), k, cfg.cameras)
    held = load_pairs(LeRobotDataset(args.data / "panda_heldout"), k, cfg.cameras)
    jitter = load_pairs(LeRobotDataset(args.data / "panda_heldout_jitter"), k, cfg.cameras)
    lat_train, _ = infer_latents(lam, train)
    lat_held, codes_held = infer_latents(lam, held)
    lat_jit, _ = infer_latents(lam, jitter)
    usage, perplexity = code_statistics(codes_held, cfg.codebook_size)
    lapa = lapa_check(lam, held)
    print(f"codebook on held-out: usage {usage:.2f}, perplexity {perplexity:.2f} of {cfg.codebook_size} per token; "
          f"LAPA: prediction closer to o_t+k for {lapa['lapa_closer_fraction']:.1%} of pairs")

    def disp(p):   # chunk displacement (x, y, z) summed over the k steps
        return p.actions[..., :3].sum(axis=1)

    w = fit_linear_probe(lat_train, disp(train))
    probe_held = apply_linear_probe(w, lat_held)
    probe_r2 = r2_score(probe_held, disp(held))
    probe_r2_jitter = r2_score(apply_linear_probe(w, lat_jit), disp(jitter))
    onehot = np.eye(7)[train.phases]
    wp = fit_linear_probe(lat_train, onehot)
    phase_acc = float((apply_linear_probe(wp, lat_held).argmax(1) == held.phases).mean())
    wg = fit_linear_probe(lat_train, train.progress)
    progress_corr = float(np.corrcoef(apply_linear_probe(wg, lat_held).reshape(-1), held.progress)[0, 1])
    print(f"linear probe latent -> displacement R2: {probe_r2:.3f} nominal, {probe_r2_jitter:.3f} with camera jitter "
          f"+ moving distractor; phase probe accuracy {phase_acc:.3f}; progress r {progress_corr:.3f}")

    # decoders act on the latents the policy emits (what they decode at run time)
    truth = held.actions[..., :4]
    pol_held = policy_latents(lam, core.policy, held)
    decoded_r2 = r2_score(decoded(core.decoder, pol_held, held), truth)
    shuffled = pol_held[np.random.default_rng(0).permutation(len(pol_held))]
    decoded_r2_without_latent = r2_score(decoded(core.decoder, shuffled, held), truth)
    dec_cfg = DecoderConfig(**core.decoder.config.model_dump())
    effs, decoders = {}, {}
    for name, frac in (("all", 1.0), ("2.5%", 0.025)):
        subset = train.subset(labelled_episodes(train, frac, None, 0))
        decoders[name] = train_decoder(policy_latents(lam, core.policy, subset), subset, dec_cfg, 2000, 0)
        effs[name] = (r2_score(decoded(decoders[name], pol_held, held), truth), int(len(np.unique(subset.episode))))
    print(f"decoded R2 (default decoder, {core.metadata['metrics'].get('panda_labelled_episodes')} labelled episodes): "
          f"{decoded_r2:.3f} ({decoded_r2_without_latent:.3f} with the latents shuffled); decoder on 2.5% labels "
          f"({effs['2.5%'][1]} episode(s)): {effs['2.5%'][0]:.3f}, on all ({effs['all'][1]}): {effs['all'][0]:.3f}")

    hit_ms, miss_ms = step_times(core)
    print(f"policy step: {hit_ms:.2f} ms with the encoding cached, {miss_ms:.2f} ms encoding ({miss_ms / hit_ms:.1f}x)")

    t0 = time.monotonic()
    panda = success_sweep(args.models, "panda", args.seeds, args.workers, args.max_chunks)
    xarm = success_sweep(args.models, "xarm6", args.xarm6_seeds, args.workers, args.max_chunks) if args.xarm6_seeds else []
    panda_success = float(np.mean([r["success"] for r in panda])) if panda else float("nan")
    xarm_success = float(np.mean([r["success"] for r in xarm])) if xarm else float("nan")
    ratio = xarm_success / panda_success if panda_success > 0 else float("nan")
    print(f"policy alone in the world: panda {panda_success:.2f} over {len(panda)} held-out seeds, xarm6 "
          f"{xarm_success:.2f} over {len(xarm)} ({time.monotonic() - t0:.0f} s)")
    label_success = {}
    if args.label_seeds:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            for name, dec in decoders.items():
                runs = success_sweep(with_decoder(core, dec, Path(tmp) / name.replace("%", "pct")), "panda",
                                     args.label_seeds, args.workers, args.max_chunks)
                label_success[name] = float(np.mean([r["success"] for r in runs]))
    label_eff = label_success["2.5%"] / label_success["all"] if label_success.get("all") else float("nan")
    if label_success:
        print(f"success with the decoder on 2.5% labels: {label_success['2.5%']:.2f}, on all labels: "
              f"{label_success['all']:.2f} over {args.label_seeds} held-out seeds each")
    written = plots(args.plots, core.metadata.get("code_usage_history", {}), disp(held), probe_held,
                    {"panda": panda, "xarm6": xarm})
    print(f"plots: {', '.join(written)} in {args.plots.relative_to(REPO) if args.plots.is_relative_to(REPO) else args.plots}")
    print(f"reproduce: {command.strip()}")
    result = {
        "code_usage": round(usage, 3), "perplexity": round(perplexity, 3), "codebook_size": cfg.codebook_size,
        "num_tokens": cfg.num_tokens, "lapa_closer_fraction": round(lapa["lapa_closer_fraction"], 3),
        "probe_r2": round(probe_r2, 3), "probe_r2_camera_jitter": round(probe_r2_jitter, 3),
        "decoded_r2": round(decoded_r2, 3), "decoded_r2_without_latent": round(decoded_r2_without_latent, 3),
        "decoded_r2_2p5pct_labels": round(effs["2.5%"][0], 3), "decoded_r2_all_labels": round(effs["all"][0], 3),
        "success_2p5pct_labels": label_success.get("2.5%"), "success_all_labels": label_success.get("all"),
        "label_efficiency": round(label_eff, 3),
        "phase_probe_accuracy": round(phase_acc, 3), "progress_correlation": round(progress_corr, 3),
        "panda_success": panda_success, "panda_seeds": len(panda), "xarm6_success": xarm_success,
        "xarm6_seeds": len(xarm), "xarm6_success_ratio": ratio,
        "xarm6_decoder_demos": core.metadata["metrics"].get("xarm6_labelled_episodes"),
        "policy_step_ms_cache_hit": round(hit_ms, 3), "policy_step_ms_cache_miss": round(miss_ms, 3),
        "cache_speedup": round(miss_ms / hit_ms, 2),
        "heldout_pairs": len(held), "command": command.strip()}
    # NaN (e.g. a ratio over a zero) is not JSON: report it as null
    print(json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
