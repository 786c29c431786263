"""Data generation command: records simulated pick-and-place episodes in parallel worker processes
and writes one LeRobot v3 dataset per (robot, split).

    python -m harness_nodes.dataset.generate --out data/latent --panda-episodes 80 --xarm6-episodes 24

Each episode's seed is `base_seed + n` of its split (train and held-out seeds never overlap); its
spec (camera jitter, distractor motion, action noise, failed grasp) is drawn from that seed, so a
run is reproducible whatever the number of workers. Actions and phase labels are recorded on every
episode; the latent-action model trains on frames only, the decoders on a small labelled subset,
and evaluation uses the labels of held-out episodes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from harness_nodes.dataset.lerobot import Episode, LeRobotWriter
from harness_nodes.dataset.sim_episodes import (ACTION_NAMES, CONTROL_RATE, PHASES, STATE_NAMES, EpisodeRecord,
                                                EpisodeSpec, run_expert_episode)

SPLIT_SEEDS = {"train": 10_000, "heldout": 90_000, "heldout_jitter": 95_000}


def spec_for(seed: int, robot: str, split: str, perturb: bool = True) -> EpisodeSpec:
    """The spec of one episode, drawn from its seed. Held-out `heldout` episodes are nominal
    (no jitter, no distractor); `heldout_jitter` ones all have camera jitter and distractor motion."""
    rng = np.random.default_rng(seed * 31 + 5)
    if split == "heldout":
        return EpisodeSpec(seed=seed, robot=robot)
    if split == "heldout_jitter":
        return EpisodeSpec(seed=seed, robot=robot, camera_jitter=True, distractor_motion=True)
    if not perturb:
        return EpisodeSpec(seed=seed, robot=robot)
    return EpisodeSpec(seed=seed, robot=robot,
                       camera_jitter=bool(rng.random() < 0.5),
                       distractor_motion=bool(rng.random() < 0.4),
                       action_noise=float(rng.choice([0.0, 0.0, 0.004, 0.008])),
                       failed_grasp=bool(rng.random() < 0.1))


def to_episode(rec: EpisodeRecord, robot: str) -> Episode:
    n = len(rec)
    cols = {
        "observation.state": np.stack(rec.states).astype(np.float32),
        "observation.joint_positions": np.stack(rec.joints).astype(np.float32),
        "observation.target_position": np.stack(rec.targets).astype(np.float32),
        "action": np.stack(rec.actions).astype(np.float32),
        "phase_index": np.asarray(rec.phases, dtype=np.int64),
        "next.done": np.arange(n) == n - 1,
        "next.success": np.full(n, rec.success),
    }
    spec = rec.spec
    extra = {"success": rec.success, "seed": spec.seed, "robot": robot, "target": rec.target,
             "camera_jitter": spec.camera_jitter, "distractor_motion": spec.distractor_motion,
             "action_noise": spec.action_noise, "failed_grasp": spec.failed_grasp}
    return Episode(task=rec.task, columns=cols, videos={k: np.stack(v) for k, v in rec.frames.items()}, extra=extra)


def _run(spec: EpisodeSpec) -> EpisodeRecord:
    return run_expert_episode(spec)


def generate(out: Path, robot: str, split: str, episodes: int, workers: int, progress: bool = True,
             perturb: bool = True) -> dict:
    """Record `episodes` episodes of one robot and split into out/<robot>_<split>; returns a summary."""
    seeds = [SPLIT_SEEDS[split] + n for n in range(episodes)]
    specs = [spec_for(s, robot, split, perturb) for s in seeds]
    records: list[EpisodeRecord] = [None] * len(specs)   # type: ignore[list-item]
    bar = _progress(len(specs), f"{robot}/{split}", progress)
    start = time.monotonic()
    if workers <= 1:
        for i, spec in enumerate(specs):
            records[i] = _run(spec)
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, rec in enumerate(pool.map(_run, specs, chunksize=1)):
                records[i] = rec
                bar.update(1)
    bar.close()
    names = {"observation.state": list(STATE_NAMES), "action": list(ACTION_NAMES),
             "observation.target_position": ["x", "y", "z"]}
    root = out / f"{robot}_{split}"
    LeRobotWriter(root, CONTROL_RATE, robot, names).write([to_episode(r, robot) for r in records])
    summary = {"dataset": str(root), "episodes": len(records), "frames": int(sum(len(r) for r in records)),
               "success_rate": float(np.mean([r.success for r in records])),
               "seconds": round(time.monotonic() - start, 1), "phases": list(PHASES)}
    return summary


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="ep", disable=not enabled, file=sys.stderr)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/latent"), help="directory of the datasets")
    ap.add_argument("--panda-episodes", type=int, default=80)
    ap.add_argument("--xarm6-episodes", type=int, default=24)
    ap.add_argument("--heldout-episodes", type=int, default=8, help="per held-out split (Panda)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    jobs = [("panda", "train", args.panda_episodes), ("xarm6", "train", args.xarm6_episodes),
            ("panda", "heldout", args.heldout_episodes), ("panda", "heldout_jitter", args.heldout_episodes)]
    summaries = [generate(args.out, robot, split, n, args.workers, not args.quiet)
                 for robot, split, n in jobs if n > 0]
    print(json.dumps(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
