"""Episode benchmark (issue #12): success of the full harness vs the same stack with only the policy
(and the planner it falls back to) on the "moved" scenario, judged from simulator ground truth,
over held-out seeds (>= 1000: the seeds the policy and the world model never trained on).

    scripts/env.sh python bench/episodes.py [--seeds 1000-1049] [--ablations full,policy_only]
                                            [--scenario moved] [--domain 81] [--parallel 1]

Each episode is `harness_nodes.episodes.run_episode`: the whole `harness` stack as processes on its
own ROS domain, one task, the scenario's perturbation, the stack stopped. Episodes alternate between
the ablations seed by seed, so machine load drifts over both alike. `--parallel N` runs N episodes
at once on domains domain..domain+N-1 (each a stack of 8 nodes: on 2 cores keep 1). One line per
episode, then per ablation: success rate (with a 95 % Wilson interval), attempts, retries,
escalations, re-observations, stale-belief uses, median decision latency, wall time; the last line
is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import sys
import time

from harness_nodes.episodes import ABLATIONS, SCENARIOS, EpisodeSpec, run_episode


def parse_seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)


def _run(spec: EpisodeSpec) -> dict:
    result = run_episode(spec)
    return result.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1000-1049")
    parser.add_argument("--ablations", default="full,policy_only")
    parser.add_argument("--scenario", default="moved", choices=sorted(SCENARIOS))
    parser.add_argument("--domain", type=int, default=81, help="ROS domain of the first parallel slot")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--policy-steps", type=int, default=0,
                        help="the supervisor's policy_steps (policy chunks in closed loop per motion subgoal)")
    parser.add_argument("--timeout", type=float, default=240.0, help="wall s per episode")
    parser.add_argument("--budget", type=float, default=0.0,
                        help="wall s for the whole run: no new batch starts after it (0 = every seed)")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    ablations = [a.strip() for a in args.ablations.split(",") if a.strip()]
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        parser.error(f"unknown ablations {unknown}; known: {list(ABLATIONS)}")
    t_start = time.perf_counter()
    jobs = [EpisodeSpec(scenario=args.scenario, ablation=a, seed=s, timeout=args.timeout,
                        policy_steps=args.policy_steps)
            for s in seeds for a in ablations]
    rows: list[dict] = []
    slots = max(1, args.parallel)
    with multiprocessing.get_context("spawn").Pool(slots) if slots > 1 else _Serial() as pool:
        for k in range(0, len(jobs), slots):
            if args.budget and time.perf_counter() - t_start > args.budget:
                print(f"budget of {args.budget:.0f} s spent: {len(rows)} of {len(jobs)} episodes run", flush=True)
                break
            batch = [EpisodeSpec(**{**spec.__dict__, "domain_id": args.domain + i})
                     for i, spec in enumerate(jobs[k:k + slots])]
            for row in pool.map(_run, batch):
                rows.append(row)
                print(f"episode {row['ablation']:>15} seed {row['seed']:>5}: success {row['success']!s:5} "
                      f"outcome {row['outcome']:<9} attempts {row['attempts']} wall {row['wall_time_s']:6.1f} s"
                      + (f"  ({row['error'][:120]})" if row['error'] and not row['success'] else ""), flush=True)
    per = {}
    for a in ablations:
        mine = [r for r in rows if r["ablation"] == a]
        n, ok = len(mine), sum(r["success"] for r in mine)
        lat = sorted(r["decision_latency_ms_median"] for r in mine if r["decision_latency_ms_median"] is not None)

        def mean(key):
            return round(sum(r[key] for r in mine) / n, 2) if n else None
        per[a] = {"episodes": n, "successes": ok, "success_rate": round(ok / n, 3) if n else None,
                  "success_ci95": wilson(ok, n), "mean_attempts": mean("attempts"), "mean_retries": mean("retries"),
                  "mean_escalations": mean("escalations"), "mean_re_observations": mean("re_observations"),
                  "mean_stale_fact_uses": mean("stale_fact_uses"), "mean_vetoes": mean("vetoes"),
                  "mean_false_vetoes": mean("false_vetoes"), "policy_chunks": sum(r["policy_chunks"] for r in mine),
                  "planner_chunks": sum(r["planner_chunks"] for r in mine),
                  "median_decision_latency_ms": lat[len(lat) // 2] if lat else None,
                  "mean_wall_time_s": mean("wall_time_s"),
                  "errors": sum(r["outcome"] in ("error", "timeout") for r in mine)}
        print(f"{a:>15}: success {ok}/{n} = {per[a]['success_rate']} (95 % CI {per[a]['success_ci95']}), "
              f"attempts {per[a]['mean_attempts']}, retries {per[a]['mean_retries']}, escalations "
              f"{per[a]['mean_escalations']}, re-observations {per[a]['mean_re_observations']}, stale-belief uses "
              f"{per[a]['mean_stale_fact_uses']}, decision latency {per[a]['median_decision_latency_ms']} ms, "
              f"wall {per[a]['mean_wall_time_s']} s, errors {per[a]['errors']}")
    done = sorted({r["seed"] for r in rows})
    result = {"benchmark": "episodes", "scenario": args.scenario, "seeds": args.seeds, "seeds_run": len(done),
              "ablations": per,
              "episodes": rows, "machine": platform.machine(), "python": platform.python_version(),
              "wall_s": round(time.perf_counter() - t_start, 1),
              "command": f"scripts/env.sh python bench/episodes.py --seeds {args.seeds} --ablations "
                         f"{','.join(ablations)} --scenario {args.scenario} --parallel {slots}"
                         + (f" --policy-steps {args.policy_steps}" if args.policy_steps else "")
                         + (f" --budget {args.budget:.0f}" if args.budget else "")}
    print(json.dumps(result))
    return 0


class _Serial:
    """`Pool`'s map and context manager, in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return [fn(x) for x in items]


if __name__ == "__main__":
    sys.exit(main())
