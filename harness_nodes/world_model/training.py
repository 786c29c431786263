"""Train the world-model ensemble: generate labelled rollouts in the PyBullet world (or reuse the
cached ones), fit the ensemble with a fixed seed, calibrate the veto threshold by conformal
prediction on successful calibration rollouts, save safetensors + metadata.

    scripts/env.sh python -m harness_nodes.world_model.training            # the default model
    scripts/env.sh python -m harness_nodes.world_model.training --episodes 4 --iterations 50 --out /some/dir

Data: `--episodes` training episodes (seed `--seed`) and `--calibration-episodes` (seed + 1),
cached as .npz under `--cache` (artifacts/world_model by default, not tracked).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from harness_nodes.world_model.configuration_world_model import WorldModelConfig
from harness_nodes.world_model.modeling_ensemble import FAILURE_FLAGS, EnsembleShape, WorldModelEnsemble
from harness_nodes.world_model.progress import Progress
from harness_nodes.world_model.weights import DEFAULT_MODEL_DIR, TRAIN_COMMAND, save_model

REPO = Path(__file__).resolve().parents[2]
CALIBRATION_HORIZON = 8      # steps per calibration window (a typical chunk)
DEFAULT_ALPHA = 0.05         # target false-veto rate


def rollout_data(episodes: int, seed: int, workers: int, cache: Path | None) -> dict[str, np.ndarray]:
    """Labelled rollouts, from the cache when the same (episodes, seed) was generated before."""
    path = cache / f"rollouts_e{episodes}_s{seed}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    from harness_nodes.expert.rollouts import generate   # the simulator only when generating
    data = generate(episodes, seed, workers, label=f"rollouts (seed {seed})")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **data)
    return data


def windows(data: dict, horizon: int, stride: int = 2) -> list[tuple[int, int]]:
    """(start, length) of open-loop windows inside single episodes; shorter at episode ends."""
    out = []
    ep = data["episode"]
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    ends = np.r_[starts[1:], len(ep)]
    for a, b in zip(starts, ends):
        for s in range(a, b, stride):
            out.append((s, min(horizon, b - s)))
    return out


def fit_normalisation(model: WorldModelEnsemble, data: dict) -> None:
    s = torch.as_tensor(data["states"], dtype=torch.float32)
    a = torch.as_tensor(data["actions"], dtype=torch.float32)
    d = torch.as_tensor(data["next_states"] - data["states"], dtype=torch.float32)
    model.feature_mean.zero_()
    model.feature_std.fill_(1.0)
    f = model.encode(s, a)
    std = f.std(0)
    model.feature_mean.copy_(f.mean(0))
    # A feature constant in the data (e.g. one scenario never moves an object) must not turn a
    # small change at run time into a huge input: it keeps its scale.
    model.feature_std.copy_(torch.where(std < 1e-3, torch.ones_like(std), std))
    model.delta_mean.copy_(d.mean(0))
    model.delta_std.copy_(d.std(0).clamp_min(1e-4))


def train(data: dict, shape: EnsembleShape, seed: int = 0, iterations: int = 3000, batch: int = 256,
          lr: float = 2e-3, show_progress: bool = True, unroll: int = 1) -> tuple[WorldModelEnsemble, dict]:
    """Fit every member on its own bootstrap batches: state deltas and failure flags, with the
    state loss over `unroll` steps of the member's own predictions (open-loop error compounds;
    training on it reduces it). Data without episode indices trains one step at a time."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = WorldModelEnsemble(shape)
    fit_normalisation(model, data)
    s = torch.as_tensor(data["states"], dtype=torch.float32).clone()
    # Training rollouts know every object for sure; memory's confidence varies: train on random
    # confidences so the model does not read anything into them.
    conf, present = model.layout.field_index(7), model.layout.field_index(9)
    s[:, conf] = torch.as_tensor(rng.uniform(0.2, 1.0, (len(s), len(conf))), dtype=torch.float32) * s[:, present]
    a = torch.as_tensor(data["actions"], dtype=torch.float32)
    nxt_true = torch.as_tensor(data["next_states"], dtype=torch.float32)
    flags = torch.as_tensor(data["flags"], dtype=torch.float32)
    rate = flags.mean(0).clamp(1e-3, 0.5)
    pos_weight = ((1 - rate) / rate).sqrt()          # rare failures weigh more, not fully rebalanced
    n = len(s)
    if "episode" not in data:
        unroll = 1
    ep = np.asarray(data.get("episode", np.zeros(n)))
    starts = np.flatnonzero([i + unroll <= n and ep[i + unroll - 1] == ep[i] for i in range(n)])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    bar = Progress(iterations, "training") if show_progress else None
    losses = []
    for it in range(iterations):
        idx = torch.as_tensor(starts[rng.integers(0, len(starts), size=(shape.members, batch))])
        state = s[idx]
        state_loss = flag_loss = 0.0
        for k in range(unroll):
            delta, logits = model(model.encode(state, a[idx + k]))
            pred = torch.where(model.kept, state, state + delta * model.delta_std + model.delta_mean)
            err = ((pred - nxt_true[idx + k]) / model.delta_std)[..., ~model.kept]   # kept: copied, not predicted
            state_loss = state_loss + (err ** 2).mean() / unroll
            flag_loss = flag_loss + torch.nn.functional.binary_cross_entropy_with_logits(
                logits, flags[idx + k], pos_weight=pos_weight) / unroll
            state = pred
        loss = state_loss + flag_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append((state_loss.item(), flag_loss.item()))
        if bar:
            bar.update(1, f"loss {loss.item():.4f}")
    model.eval()
    last = np.mean(losses[-100:], axis=0)
    return model, {"final_state_loss": round(float(last[0]), 5), "final_flag_loss": round(float(last[1]), 5)}


@torch.no_grad()
def window_scores(model: WorldModelEnsemble, data: dict, horizon: int = CALIBRATION_HORIZON,
                  stride: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Failure score of the model for every open-loop window, and whether it really failed."""
    wins = windows(data, horizon, stride)
    acts = np.zeros((len(wins), horizon, data["actions"].shape[1]))
    steps = np.zeros(len(wins), dtype=int)
    failed = np.zeros(len(wins), dtype=bool)
    starts = np.array([s for s, _ in wins])
    for i, (s0, n) in enumerate(wins):
        acts[i, :n] = data["actions"][s0:s0 + n]
        steps[i] = n
        failed[i] = data["flags"][s0:s0 + n].any()
    scores = np.zeros(len(wins))
    for chunk in np.array_split(np.arange(len(wins)), max(1, len(wins) // 256)):
        states = torch.as_tensor(data["states"][starts[chunk]], dtype=torch.float32)
        out = batched_rollout(model, states, torch.as_tensor(acts[chunk], dtype=torch.float32),
                              torch.as_tensor(steps[chunk]))
        scores[chunk] = failure_score(out).numpy()
    return scores, failed


def batched_rollout(model: WorldModelEnsemble, states: torch.Tensor, actions: torch.Tensor,
                    steps: torch.Tensor) -> dict:
    """Like `model.rollout` but every candidate starts from its own state (evaluation only)."""
    e = model.shape.members
    n, h, _ = actions.shape
    s = states.unsqueeze(0).expand(e, n, -1).clone()
    flag_p = torch.zeros(e, n, len(FAILURE_FLAGS))
    for t in range(h):
        nxt, logits = model.next(s, actions[:, t])
        active = (t < steps).view(1, n, 1)
        s = torch.where(active, nxt, s)
        flag_p = torch.maximum(flag_p, torch.sigmoid(logits) * active)
    fail = flag_p.amax(-1)
    return {"member_states": s, "failure_probability": fail.mean(0), "failure_std": fail.std(0)}


def failure_score(out: dict) -> torch.Tensor:
    """The veto score: the members' mean failure probability (on held-out calibration rollouts it
    ranked failures better than adding the members' disagreement to it)."""
    return out["failure_probability"]


def conformal_threshold(success_scores: np.ndarray, alpha: float = DEFAULT_ALPHA) -> float:
    """Split-conformal quantile: a new successful rollout scores above it with probability <= alpha."""
    s = np.sort(np.asarray(success_scores, dtype=float))
    n = len(s)
    if n == 0:
        return 1.0
    k = int(math.ceil((n + 1) * (1 - alpha)))
    return float(s[min(k, n) - 1]) if k <= n else 1.0


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic; ties count half)."""
    labels = np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    r = np.arange(1, len(order) + 1, dtype=float)
    while i < len(allv):   # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        r[i:j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the world-model ensemble (generates data if needed).")
    ap.add_argument("--out", default=str(DEFAULT_MODEL_DIR))
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--calibration-episodes", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--unroll", type=int, default=3, help="steps of open-loop state loss")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    ap.add_argument("--cache", default=str(REPO / "artifacts" / "world_model"), help="'' = no cache")
    args = ap.parse_args(argv)
    if args.members < 5:
        print("note: fewer than 5 members (tests only)", file=sys.stderr)
    torch.set_num_threads(1)   # tiny matmuls: more threads only contend (10x slower on a loaded 2-core box)
    config = WorldModelConfig()
    from harness_nodes.common.robot_description import load_robot_description
    n_joints = len(load_robot_description(config.robot).arm.joint_names)
    cache = Path(args.cache) if args.cache else None
    t0 = time.monotonic()
    data = rollout_data(args.episodes, args.seed, args.workers, cache)
    calib = rollout_data(args.calibration_episodes, args.seed + 1, args.workers, cache)
    t_data = time.monotonic() - t0
    shape = EnsembleShape(n_joints=n_joints, n_slots=len(config.subjects), members=args.members,
                          hidden=args.hidden, tray_slot=config.subjects.index(config.tray_subject))
    model, fit = train(data, shape, args.seed, args.iterations, unroll=args.unroll)
    scores, failed = window_scores(model, calib)
    threshold = conformal_threshold(scores[~failed], args.alpha)
    metrics = dict(fit, calibration_windows=int(len(scores)), calibration_failures=int(failed.sum()),
                   calibration_auroc=round(auroc(scores, failed), 4),
                   calibration_false_veto_rate=round(float((scores[~failed] > threshold).mean()), 4),
                   data_seconds=round(t_data, 1), total_seconds=round(time.monotonic() - t0, 1))
    command = f"{TRAIN_COMMAND} " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"robot": config.robot, "subjects": list(config.subjects), "step_time": config.step_time,
            "physics_rate": config.physics_rate, "seed": args.seed, "command": command.strip(),
            "data": {"train_episodes": args.episodes, "train_seed": args.seed, "train_steps": int(len(data["states"])),
                     "calibration_episodes": args.calibration_episodes, "calibration_seed": args.seed + 1,
                     "failure_rates": dict(zip(FAILURE_FLAGS, np.round(data["flags"].mean(0), 4).tolist())),
                     "generator": "harness_nodes.expert.rollouts (expert, perturbed expert, random; "
                                  "nominal and obstacle scenarios)"},
            "unroll": args.unroll, "veto_threshold": round(threshold, 6), "veto_alpha": args.alpha,
            "calibration_horizon": CALIBRATION_HORIZON, "metrics": metrics}
    save_model(model, Path(args.out), meta)
    print(json.dumps({"out": args.out, **metrics, "veto_threshold": meta["veto_threshold"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
