"""Statistics and report of the benchmark suite (harness_nodes/benchmark) on synthetic episode
results: Wilson intervals against published values, pass^k against hand computation, the table,
plots and the JSON line."""
from __future__ import annotations

import json
import math

import pytest

from harness_nodes.benchmark.report import goals, json_line, markdown_table, write_report
from harness_nodes.benchmark.stats import cell_stats, pass_hat_k, table_stats, wilson_interval
from harness_nodes.episodes.spec import EpisodeResult, EpisodeSpec


def episode(success: bool, scenario="nominal", ablation="full", seed=1000, robot="panda", latency=(10.0,),
            stale=0, sim_time=10.0, error="", outcome=None) -> EpisodeResult:
    return EpisodeResult(EpisodeSpec(scenario, ablation, seed, robot), success,
                             outcome or ("succeeded" if success else "failed"), 1.0, sim_time, 1, 1, 0, 2, 1, stale, 3,
                             list(latency), [], error)


@pytest.mark.parametrize("successes, n, low, high", [
    (8, 10, 0.4902, 0.9433),     # textbook values (Wilson 1927 score interval, z = 1.96)
    (50, 100, 0.4038, 0.5962),
    (0, 20, 0.0, 0.1611),
    (20, 20, 0.8389, 1.0),
])
def test_wilson_interval_matches_known_values(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_pass_k_is_the_combinatorial_estimate_averaged_over_seeds():
    # seed A: 7 of 8; seed B: 8 of 8; seed C: 1 of 2 (too few trials for k = 4 and 8)
    trials = [(8, 7), (8, 8), (2, 1)]
    assert pass_hat_k(trials, 1) == pytest.approx((7 / 8 + 1 + 1 / 2) / 3)
    assert pass_hat_k(trials, 4) == pytest.approx((35 / 70 + 1) / 2)    # C(7,4)/C(8,4) = 35/70
    assert pass_hat_k(trials, 8) == pytest.approx((0 + 1) / 2)          # one failure of 8: never all 8
    assert pass_hat_k([(3, 3)], 4) is None
    assert pass_hat_k([(5, 2)], 2) == pytest.approx(math.comb(2, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_hat_k(trials, 0)


def test_cell_statistics_from_episodes():
    results = [episode(True, seed=1000, latency=(5.0, 7.0), sim_time=8.0),
               episode(True, seed=1000, latency=(9.0,), sim_time=12.0),
               episode(False, seed=1001, latency=(100.0,), stale=2, error="no result within 240 s",
                       outcome="timeout"),
               episode(True, seed=1001, latency=(11.0, float("nan")), sim_time=30.0),
               episode(False, seed=1002, error="grasp_missed at grasp: closed on nothing")]   # a failed task
    results, extra = results[:4], results[4]
    assert cell_stats("nominal", "full", [extra]).errors == 0
    c = cell_stats("nominal", "full", results)
    assert (c.episodes, c.successes, c.success_rate, c.seeds, c.trials_per_seed) == (4, 3, 0.75, 2, 2)
    assert c.success_ci95 == pytest.approx(wilson_interval(3, 4))
    assert c.pass_k[1] == pytest.approx((1 + 0.5) / 2) and c.pass_k[4] is None
    assert c.time_to_success_s == 12.0                      # median of the successes' sim times
    assert c.decisions == 5                                 # NaN latency dropped
    assert c.latency_p50_ms == 9.0
    assert c.latency_p99_ms == pytest.approx(11.0 + 0.96 * (100.0 - 11.0))   # numpy's linear percentile
    assert c.means["stale_fact_uses"] == 0.5 and c.means["vetoes"] == 2.0 and c.errors == 1


def test_cells_ordered_and_robots_split_when_several():
    results = [episode(True, "obstacle", "policy_only"), episode(True, "nominal", "full"),
               episode(False, "nominal", "policy_only"), episode(True, "obstacle", "full")]
    cells = table_stats(results, ["nominal", "obstacle"], ["policy_only", "full"])
    assert [(c.scenario, c.ablation) for c in cells] == [("nominal", "policy_only"), ("nominal", "full"),
                                                         ("obstacle", "policy_only"), ("obstacle", "full")]
    cells = table_stats(results + [episode(True, "nominal", "full", robot="xarm6")], ["nominal", "obstacle"])
    assert ("nominal@xarm6", "full") in {(c.scenario, c.ablation) for c in cells}


def test_goals_table_plots_and_json_line(tmp_path):
    results = []
    for seed in (1000, 1001):
        for trial in range(8):
            results.append(episode(True, "nominal", "full", seed, latency=(20.0, 30.0)))
            results.append(episode(trial < 4, "moved", "full", seed, latency=(25.0,)))
            results.append(episode(trial < 1, "moved", "policy_only", seed, stale=3, latency=(5.0,)))
            results.append(episode(trial < 2, "moved", "memory_validity", seed, stale=0, latency=(70.0,)))
    cells = table_stats(results, ["nominal", "moved"], ["policy_only", "memory_validity", "full"])
    g = goals(cells)
    assert g["full_minus_policy_only"] == {"moved": pytest.approx(0.5 - 0.125)}
    assert g["full_minus_policy_only_met"] is True
    assert g["stale_fact_uses_with_memory_validity"] == 0.0
    assert g["pass8_nominal_full"] == 1.0 and g["pass8_nominal_full_met"] is True
    assert g["latency_p99_ms_worst"] == 70.0 and g["latency_p99_met"] is False
    table = markdown_table(cells)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 4 and lines[0].startswith("| scenario | ablation | n | success (95% CI)")
    assert "| moved | policy_only | 16 | 0.12 [" in table
    summary = write_report(cells, tmp_path, {"wall_time_s": 1.0})
    for name in ("table.md", "success_rate.png", "decision_latency.png", "results.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "success_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = json_line(summary)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["goals"]["pass8_nominal_full"] == 1.0 and len(parsed["cells"]) == 4
    assert parsed["cells"][0]["pass_k"]["pass^8"] == 1.0
