"""Data generation command: records simulated pick-and-place episodes in parallel worker processes
(or as tasks on Ray, `--ray [ADDRESS]`, through harness_nodes.scale) and writes one LeRobot v3
dataset per (robot, split).

    python -m harness_nodes.dataset.generate --out data/latent --panda-episodes 80 --xarm6-episodes 24
    python -m harness_nodes.dataset.generate --ray                  # a local Ray instance for the run
    python -m harness_nodes.dataset.generate --ray HEAD_IP:6379    # an existing Ray cluster

Each episode's seed is `base_seed + n` of its split (train and held-out seeds never overlap); its
spec (camera jitter, distractor motion, action noise, failed grasp) is drawn from that seed, so a
run is reproducible whatever the number of workers or the backend. An episode that fails (exception,
crash, timeout) stops the split with its seed and error before anything is written. Actions and phase labels are recorded on every
episode; the latent-action model trains on frames only, the decoders on a small labelled subset,
and evaluation uses the labels of held-out episodes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from harness_nodes.dataset.lerobot import Episode, LeRobotWriter
from harness_nodes.dataset.sim_episodes import (ACTION_NAMES, CONTROL_RATE, PHASES, STATE_NAMES, EpisodeRecord,
                                                EpisodeSpec, run_expert_episode)
from harness_nodes.scale import RunSettings, ScaleOutError, run_jobs

EPISODE_TIMEOUT = 300.0     # s one episode may take before its process is stopped

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


class GenerationError(RuntimeError):
    """Episodes that failed; nothing of their split was written."""


def generate(out: Path, robot: str, split: str, episodes: int, workers: int, progress: bool = True,
             perturb: bool = True, backend: str = "local", ray_address: str | None = None,
             timeout: float | None = EPISODE_TIMEOUT) -> dict:
    """Record `episodes` episodes of one robot and split into out/<robot>_<split>; returns a summary."""
    seeds = [SPLIT_SEEDS[split] + n for n in range(episodes)]
    specs = [spec_for(s, robot, split, perturb) for s in seeds]
    start = time.monotonic()
    jobs = run_jobs(run_expert_episode, specs, RunSettings(backend=backend, workers=workers, timeout=timeout,
                                                           ray_address=ray_address, progress=progress,
                                                           label=f"{robot}/{split}"))
    failed = [j for j in jobs if not j.ok]
    if failed:
        first = failed[0]
        raise GenerationError(f"{len(failed)} of {len(jobs)} {robot}/{split} episodes failed (seeds "
                              f"{[j.spec.seed for j in failed]}); first, seed {first.spec.seed}, {first.status}:\n"
                              f"{first.error}")
    records: list[EpisodeRecord] = [j.value for j in jobs]
    names = {"observation.state": list(STATE_NAMES), "action": list(ACTION_NAMES),
             "observation.target_position": ["x", "y", "z"]}
    root = out / f"{robot}_{split}"
    LeRobotWriter(root, CONTROL_RATE, robot, names).write([to_episode(r, robot) for r in records])
    summary = {"dataset": str(root), "episodes": len(records), "frames": int(sum(len(r) for r in records)),
               "success_rate": float(np.mean([r.success for r in records])),
               "seconds": round(time.monotonic() - start, 1), "phases": list(PHASES)}
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/latent"), help="directory of the datasets")
    ap.add_argument("--panda-episodes", type=int, default=80)
    ap.add_argument("--xarm6-episodes", type=int, default=24)
    ap.add_argument("--heldout-episodes", type=int, default=8, help="per held-out split (Panda)")
    ap.add_argument("--workers", type=int, default=None,
                    help="episodes at once (default 2 here; on a Ray cluster all its CPUs)")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="run the episodes on Ray: a cluster address (host:port, ray://host:port, auto) or, "
                         "without one, a local Ray instance started for the run")
    ap.add_argument("--episode-timeout", type=float, default=EPISODE_TIMEOUT, help="s per episode")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    jobs = [("panda", "train", args.panda_episodes), ("xarm6", "train", args.xarm6_episodes),
            ("panda", "heldout", args.heldout_episodes), ("panda", "heldout_jitter", args.heldout_episodes)]
    backend = "ray" if args.ray else "local"
    address = None if args.ray == "local" else args.ray
    workers = args.workers if args.workers is not None else (None if address else 2)   # None: the cluster's CPUs
    try:
        from harness_nodes.scale.ray_backend import ray_session

        # one Ray session for all splits (each split would otherwise start or join Ray again)
        with ray_session(address, workers) if args.ray else nullcontext():
            summaries = [generate(args.out, robot, split, n, workers, not args.quiet, backend=backend,
                                  ray_address=address, timeout=args.episode_timeout)
                         for robot, split, n in jobs if n > 0]
    except (ScaleOutError, GenerationError) as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
