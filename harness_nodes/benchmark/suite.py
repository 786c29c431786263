"""The benchmark suite: scenarios x ablations x seeds (x trials) of harness episodes, run through
the scale-out module (local worker processes or Ray), then statistics and the report.

    scripts/env.sh python bench/suite.py --smoke
    scripts/env.sh python bench/suite.py --scenarios nominal,moved --ablations policy_only,full --seeds 4 --trials 8
    scripts/env.sh python bench/suite.py --ray HEAD_IP:6379 --workers 32 ...

Episodes come from `harness_nodes.episodes.runner.run_episode` (imported in the job's process,
only when it runs). Seeds default to the first held-out seeds (harness_nodes.episodes.spec.HELDOUT_SEEDS);
tuning seeds are accepted when named explicitly and flagged in the output. One episode per
scenario (full harness, first seed, first trial) keeps a recording under <out>/recordings/.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from harness_nodes.benchmark.report import json_line, write_report
from harness_nodes.benchmark.stats import table_stats
from harness_nodes.episodes.spec import ABLATIONS, HELDOUT_SEEDS, SCENARIOS as EPISODE_SCENARIOS, TUNING_SEEDS
from harness_nodes.scale import BACKENDS, RunSettings, ScaleOutError, run_jobs, summary

# Scenarios and ablations are the episode runner's (harness_nodes/episodes/spec.py); ablations are
# cumulative in this order: policy only; + world model; + memory validity; + viewpoint selection;
# + recovery and escalation = the full harness.
SCENARIOS = tuple(EPISODE_SCENARIOS)
ROBOTS = ("panda", "xarm6")
SMOKE = {"scenarios": ("nominal",), "ablations": ("policy_only", "full"), "seeds": 1, "trials": 1}
DEFAULT_WORKERS = max(1, (os.cpu_count() or 2) // 2)   # a harness episode runs a whole stack of nodes
JOB_TIMEOUT_MARGIN = 60.0      # s a job may take beyond the episode's own timeout (process start, teardown)
MIN_FREE_BYTES = 500_000_000   # recordings of one episode per scenario, plots, tables


class SuiteError(ValueError):
    """Bad suite arguments (unknown names, bad seeds, unwritable output)."""


def run_suite_episode(spec):
    """The suite's job: one episode in the job's own process (and ROS domain)."""
    from harness_nodes.episodes.runner import run_episode

    return run_episode(spec)


def episode_types():
    """EpisodeSpec and EpisodeResult of the episode runner."""
    from harness_nodes.episodes import runner

    return runner.EpisodeSpec, runner.EpisodeResult


def parse_names(text: str | None, known: Sequence[str], what: str) -> tuple[str, ...]:
    if text is None:
        return tuple(known)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SuiteError(f"unknown {what} {unknown or [text]}; known: {list(known)}")
    return tuple(dict.fromkeys(names))


def parse_seeds(text: str) -> tuple[int, ...]:
    """"N" = the first N held-out seeds; "a-b" = a..b inclusive; "a,b,c" = those seeds."""
    text = text.strip()
    try:
        if "," in text:
            seeds = tuple(int(s) for s in text.split(",") if s.strip())
        elif "-" in text[1:]:
            lo, hi = (int(s) for s in text.split("-"))
            seeds = tuple(range(lo, hi + 1))
        else:
            count = int(text)
            if not 1 <= count <= len(HELDOUT_SEEDS):
                raise SuiteError(f"--seeds {text}: want 1..{len(HELDOUT_SEEDS)} held-out seeds")
            seeds = tuple(HELDOUT_SEEDS[:count])
    except ValueError:
        raise SuiteError(f"--seeds {text!r}: want a count N, a range a-b or a list a,b,c") from None
    if not seeds or any(s < 0 for s in seeds):
        raise SuiteError(f"--seeds {text!r}: want non-negative seeds")
    return seeds


def build_specs(spec_type, scenarios, ablations, seeds, trials: int, robots=("panda",), out: Path | None = None,
                timeout: float | None = None, record: bool = True) -> list:
    """Every (scenario, ablation, robot, seed, trial) as a spec, in that nesting order. One
    recording per scenario and robot: the full harness on the first seed's first trial."""
    specs = []
    for scenario in scenarios:
        for ablation in ablations:
            for robot in robots:
                for seed in seeds:
                    for trial in range(trials):
                        kwargs = {"scenario": scenario, "ablation": ablation, "seed": seed, "robot": robot}
                        if timeout is not None:
                            kwargs["timeout"] = timeout
                        if record and out is not None and ablation == ablations[-1] and seed == seeds[0] \
                                and trial == 0:
                            kwargs["record_dir"] = str(out / "recordings" / f"{scenario}_{robot}")
                        specs.append(spec_type(**kwargs))
    return specs


def failure_result(result_type, job) -> object:
    """An episode result for a job that gave none (exception, crash, timeout of its process)."""
    return result_type(spec=job.spec, success=False, outcome=job.status, wall_time_s=job.wall_time_s,
                       sim_time_s=0.0, attempts=0, retries=0, escalations=0, vetoes=0, false_vetoes=0,
                       stale_fact_uses=0, re_observations=0, decision_latency_ms=[], log=[],
                       error=job.error[-2000:])


def run_suite(specs: list, settings: RunSettings, job: Callable = run_suite_episode, result_type=None) -> tuple:
    """Runs the episodes; returns (episode results in the specs' order, job summary)."""
    jobs = run_jobs(job, specs, settings)
    if result_type is None and any(not j.ok for j in jobs):
        result_type = episode_types()[1]
    return [j.value if j.ok else failure_result(result_type, j) for j in jobs], summary(jobs)


def check_writable(out: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """The output folder must be creatable, writable and have room before any episode runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise SuiteError(f"output folder {out} is not writable: {exc}") from exc
    if free < min_free:
        raise SuiteError(f"output folder {out} has {free / 1e6:.0f} MB free; the suite needs at least "
                         f"{min_free / 1e6:.0f} MB (recordings, plots)")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Benchmark suite: scenarios x ablations x seeds of harness episodes")
    ap.add_argument("--scenarios", help=f"comma-separated, of {list(SCENARIOS)} (default: all)")
    ap.add_argument("--ablations", help=f"comma-separated, of {list(ABLATIONS)} (default: all)")
    ap.add_argument("--robots", default="panda", help=f"comma-separated, of {list(ROBOTS)}")
    ap.add_argument("--seeds", default="1", help="N first held-out seeds, a range a-b or a list a,b,c (default 1: "
                    "every scenario x ablation once, about 15 minutes on 2 cores)")
    ap.add_argument("--trials", type=int, default=1, help="trials per seed (pass^k needs k; default 1)")
    ap.add_argument("--smoke", action="store_true",
                    help="nominal x (policy_only, full) x 1 seed x 1 trial (overrides the four options above)")
    ap.add_argument("--workers", type=int, default=None,
                    help=f"episodes at once (default {DEFAULT_WORKERS} here; on a Ray cluster all its CPUs)")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="run on Ray: a cluster address (host:port, ray://host:port, auto) or, without one, "
                         "a local Ray instance started for the run")
    ap.add_argument("--timeout", type=float, default=None, help="per-episode timeout (s; default the runner's)")
    ap.add_argument("--domains", default=None, help="ROS domain ids to use, lo-hi (default $HARNESS_DOMAINS or 60-101)")
    ap.add_argument("--no-record", action="store_true", help="keep no recordings")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default results/suite-<UTC time>)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv=None, job: Callable = run_suite_episode, types=None) -> int:
    """The command; `job` and `types` (EpisodeSpec, EpisodeResult) are the runner's unless given."""
    from harness_nodes.scale.domains import parse_domain_range

    args = parse_args(argv)
    try:
        if args.smoke:
            scenarios, ablations = SMOKE["scenarios"], SMOKE["ablations"]
            seeds, trials = tuple(HELDOUT_SEEDS[:SMOKE["seeds"]]), SMOKE["trials"]
        else:
            scenarios = parse_names(args.scenarios, SCENARIOS, "scenario(s)")
            ablations = parse_names(args.ablations, ABLATIONS, "ablation(s)")
            seeds, trials = parse_seeds(args.seeds), args.trials
        robots = parse_names(args.robots, ROBOTS, "robot(s)")
        if trials < 1:
            raise SuiteError(f"--trials must be >= 1, got {trials}")
        if args.timeout is not None and not args.timeout > 0:
            raise SuiteError(f"--timeout must be > 0 s, got {args.timeout}")
        if args.workers is not None and args.workers < 1:
            raise SuiteError(f"--workers must be >= 1, got {args.workers}")
        domains = parse_domain_range(args.domains) if args.domains else None
        out = args.out or Path("results") / time.strftime("suite-%Y%m%d-%H%M%S", time.gmtime())
        check_writable(out)
    except (SuiteError, ValueError) as exc:
        print(f"suite: {exc}", file=sys.stderr)
        return 2
    try:
        spec_type, result_type = types or episode_types()
    except ImportError as exc:
        print(f"suite: the episode runner (harness_nodes.episodes.runner) cannot be imported: {exc}", file=sys.stderr)
        return 2
    specs = build_specs(spec_type, scenarios, ablations, seeds, trials, robots, out, args.timeout,
                        record=not args.no_record)
    episode_timeout = max(getattr(s, "timeout", 0.0) or 0.0 for s in specs)
    cluster = bool(args.ray) and args.ray != "local"
    workers = args.workers or (None if cluster else DEFAULT_WORKERS)   # None: the cluster's CPUs
    settings = RunSettings(backend="ray" if args.ray else "local", workers=workers,
                           timeout=episode_timeout + JOB_TIMEOUT_MARGIN if episode_timeout else None,
                           domains=domains, ray_address=None if args.ray == "local" else args.ray,
                           progress=not args.quiet, label="suite")
    start = time.monotonic()
    try:
        results, jobs = run_suite(specs, settings, job, result_type)
    except ScaleOutError as exc:
        print(f"suite: {exc}", file=sys.stderr)
        return 2
    cells = table_stats(results, scenarios, ablations)
    tuning = sorted(set(seeds) & set(TUNING_SEEDS))
    extra = {"suite": {"scenarios": list(scenarios), "ablations": list(ablations), "robots": list(robots),
                       "seeds": list(seeds), "trials": trials, "heldout": not tuning, "tuning_seeds_used": tuning,
                       "backend": settings.backend, "workers": settings.workers},
             "jobs": jobs, "wall_time_s": round(time.monotonic() - start, 1), "out": str(out)}
    report = write_report(cells, out, extra)
    print((out / "table.md").read_text())
    print(json_line(report))
    return 0

