"""Statistics of benchmark episodes, per (scenario, ablation) cell.

Input: episode results as harness_nodes.episodes returns them (read by attribute: `spec.scenario`,
`spec.ablation`, `spec.seed`, `spec.robot`, `success`, `sim_time_s`, the counters and
`decision_latency_ms`).

* Success rate with the Wilson score interval (95 %): unlike the normal approximation it stays in
  [0, 1] and is not degenerate at 0 or n successes.
* pass^k: the probability that all k trials of a seed succeed, averaged over seeds. With n trials
  of a seed and c successes, C(c, k) / C(n, k) is the unbiased estimate of p_seed^k (the chance
  that k trials drawn without replacement from the n are all successes); seeds with fewer than k
  trials do not count, and a cell without any seed of k trials has no pass^k (None). pass^1 is
  the mean success rate over seeds.
* Decision latency percentiles pool every decision of the cell's episodes.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

Z95 = statistics.NormalDist().inv_cdf(0.975)
PASS_K = (1, 4, 8)
COUNTERS = ("stale_fact_uses", "re_observations", "vetoes", "false_vetoes", "retries", "escalations")
RUN_ERRORS = ("error", "timeout")      # outcomes of an episode the run itself could not finish


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) without trials."""
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_hat_k(trials_per_seed: Iterable[tuple[int, int]], k: int) -> float | None:
    """pass^k from (n trials, c successes) per seed: mean over seeds with n >= k of C(c,k)/C(n,k)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    estimates = [math.comb(c, k) / math.comb(n, k) for n, c in trials_per_seed if n >= k]
    return float(np.mean(estimates)) if estimates else None


@dataclass
class CellStats:
    scenario: str
    ablation: str
    episodes: int
    successes: int
    success_rate: float
    success_ci95: tuple[float, float]
    pass_k: dict[int, float | None]
    seeds: int
    trials_per_seed: int                 # the fewest trials any seed of the cell has
    errors: int                          # episodes that ended in an error or timeout of the run itself
    time_to_success_s: float | None      # median sim time of the successful episodes
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    decisions: int
    means: dict[str, float]              # mean per episode of each COUNTERS entry

    def as_dict(self) -> dict:
        d = asdict(self)
        d["success_ci95"] = list(self.success_ci95)
        d["pass_k"] = {f"pass^{k}": v for k, v in self.pass_k.items()}
        return d


def cell_key(result, several_robots: bool) -> tuple[str, str]:
    scenario = result.spec.scenario
    if several_robots:
        scenario = f"{scenario}@{result.spec.robot}"
    return scenario, result.spec.ablation


def cell_stats(scenario: str, ablation: str, results: Sequence) -> CellStats:
    n = len(results)
    successes = sum(bool(r.success) for r in results)
    per_seed: dict[int, list[bool]] = {}
    for r in results:
        per_seed.setdefault(r.spec.seed, []).append(bool(r.success))
    trials = [(len(v), sum(v)) for v in per_seed.values()]
    latencies = np.concatenate([np.asarray(r.decision_latency_ms, dtype=float) for r in results]) \
        if results else np.array([])
    latencies = latencies[np.isfinite(latencies)]
    success_times = [r.sim_time_s for r in results if r.success]
    return CellStats(
        scenario=scenario, ablation=ablation, episodes=n, successes=successes,
        success_rate=successes / n if n else 0.0, success_ci95=wilson_interval(successes, n),
        pass_k={k: pass_hat_k(trials, k) for k in PASS_K}, seeds=len(per_seed),
        trials_per_seed=min((t for t, _ in trials), default=0),
        errors=sum(1 for r in results if r.outcome in RUN_ERRORS),   # a failed task's reason is not one
        time_to_success_s=float(np.median(success_times)) if success_times else None,
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
        latency_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else None,
        decisions=int(latencies.size),
        means={c: float(np.mean([getattr(r, c) for r in results])) if n else 0.0 for c in COUNTERS})


def table_stats(results: Sequence, scenario_order: Sequence[str] = (),
                ablation_order: Sequence[str] = ()) -> list[CellStats]:
    """One CellStats per (scenario, ablation) present, scenarios then ablations in the given
    orders (names not listed come after, in the order first seen)."""
    several_robots = len({r.spec.robot for r in results}) > 1
    cells: dict[tuple[str, str], list] = {}
    for r in results:
        cells.setdefault(cell_key(r, several_robots), []).append(r)

    def rank(order: Sequence[str], name: str, seen: list[str]) -> tuple[int, int]:
        base = name.split("@")[0]
        return (order.index(base), 0) if base in order else (len(order), seen.index(name))

    seen_s = list(dict.fromkeys(k[0] for k in cells))
    seen_a = list(dict.fromkeys(k[1] for k in cells))
    keys = sorted(cells, key=lambda k: (rank(scenario_order, k[0], seen_s), k[0],
                                        rank(ablation_order, k[1], seen_a)))
    return [cell_stats(s, a, cells[(s, a)]) for s, a in keys]
