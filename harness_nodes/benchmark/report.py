"""The suite's report from per-cell statistics: a Markdown table, PNG plots (success rate with its
Wilson interval per cell; decision latency p50 / p99 per cell), the issue's goals as measured, and
one JSON object for the last line of the output. Plots use matplotlib's Agg backend (no display)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from harness_nodes.benchmark.stats import PASS_K, CellStats

LATENCY_GOAL_MS = 60.0      # decision latency p99 goal
PASS8_GOAL = 0.9            # pass^8 goal on nominal
MARGIN_GOAL = 0.20          # full harness over policy only on the perturbed scenarios (success rate)
MEMORY_VALIDITY_ON = ("memory_validity", "viewpoint", "full")   # ablations that keep memory validity


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(cells: Sequence[CellStats]) -> str:
    head = ["scenario", "ablation", "n", "success (95% CI)", *[f"pass^{k}" for k in PASS_K], "stale uses",
            "re-obs", "vetoes", "false vetoes", "retries", "escalations", "t success (s)",
            "latency p50 / p99 (ms)", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for c in cells:
        lo, hi = c.success_ci95
        row = [c.scenario, c.ablation, str(c.episodes), f"{c.success_rate:.2f} [{lo:.2f}, {hi:.2f}]",
               *[_num(c.pass_k[k]) for k in PASS_K],
               *[_num(c.means[name]) for name in ("stale_fact_uses", "re_observations", "vetoes", "false_vetoes",
                                                   "retries", "escalations")],
               _num(c.time_to_success_s, 1), f"{_num(c.latency_p50_ms, 1)} / {_num(c.latency_p99_ms, 1)}",
               str(c.errors)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def goals(cells: Sequence[CellStats]) -> dict:
    """The issue's goals as measured (reported, never asserted): full - policy_only success points on
    each perturbed scenario, mean stale-fact uses with memory validity on, pass^8 of the full harness
    on nominal, the worst decision-latency p99."""
    by = {(c.scenario, c.ablation): c for c in cells}
    margins = {s: round(by[(s, "full")].success_rate - by[(s, "policy_only")].success_rate, 3)
               for s, a in by if a == "full" and (s, "policy_only") in by and s.split("@")[0] != "nominal"}
    validity = [c for c in cells if c.ablation in MEMORY_VALIDITY_ON]
    stale = float(np.mean([c.means["stale_fact_uses"] for c in validity])) if validity else None
    nominal_full = by.get(("nominal", "full"))
    pass8 = nominal_full.pass_k.get(8) if nominal_full else None
    p99s = [c.latency_p99_ms for c in cells if c.latency_p99_ms is not None]
    worst_p99 = max(p99s) if p99s else None
    return {
        "full_minus_policy_only": margins,
        "full_minus_policy_only_met": bool(margins) and all(m >= MARGIN_GOAL for m in margins.values()),
        "stale_fact_uses_with_memory_validity": stale,
        "pass8_nominal_full": pass8,
        "pass8_nominal_full_met": pass8 is not None and pass8 >= PASS8_GOAL,
        "latency_p99_ms_worst": worst_p99,
        "latency_p99_met": worst_p99 is not None and worst_p99 <= LATENCY_GOAL_MS,
    }


def _grouped(cells: Sequence[CellStats]):
    scenarios = list(dict.fromkeys(c.scenario for c in cells))
    ablations = list(dict.fromkeys(c.ablation for c in cells))
    return scenarios, ablations, {(c.scenario, c.ablation): c for c in cells}


def plot_success(cells: Sequence[CellStats], path: Path) -> Path:
    """Grouped bars: success rate per scenario and ablation, Wilson 95 % interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios, ablations, by = _grouped(cells)
    width = 0.8 / max(len(ablations), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(scenarios) + 2), 4.2))
    x = np.arange(len(scenarios))
    for j, ablation in enumerate(ablations):
        rates, low, high, xs = [], [], [], []
        for i, s in enumerate(scenarios):
            c = by.get((s, ablation))
            if c is None:
                continue
            lo, hi = c.success_ci95
            xs.append(x[i] + (j - (len(ablations) - 1) / 2) * width)
            rates.append(c.success_rate)
            low.append(c.success_rate - lo)
            high.append(hi - c.success_rate)
        ax.bar(xs, rates, width, yerr=[low, high], capsize=3, label=ablation)
    ax.set_xticks(x, scenarios, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (Wilson 95 % interval)")
    ax.legend(fontsize=8, ncol=min(len(ablations), 5), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(cells: Sequence[CellStats], path: Path) -> Path:
    """Decision latency per scenario and ablation: p50 bars, p99 markers, the goal as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios, ablations, by = _grouped(cells)
    width = 0.8 / max(len(ablations), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(scenarios) + 2), 4.2))
    x = np.arange(len(scenarios))
    p99_x, p99 = [], []
    for j, ablation in enumerate(ablations):
        xs, p50 = [], []
        for i, s in enumerate(scenarios):
            c = by.get((s, ablation))
            if c is None or c.latency_p50_ms is None:
                continue
            xs.append(x[i] + (j - (len(ablations) - 1) / 2) * width)
            p50.append(c.latency_p50_ms)
            p99_x.append(xs[-1])
            p99.append(c.latency_p99_ms)
        ax.bar(xs, p50, width, label=f"{ablation} p50")
    ax.scatter(p99_x, p99, marker="v", color="k", zorder=3, label="p99")
    ax.axhline(LATENCY_GOAL_MS, color="r", linestyle="--", linewidth=1, label=f"goal: p99 <= {LATENCY_GOAL_MS:.0f} ms")
    ax.set_xticks(x, scenarios, rotation=20)
    ax.set_ylabel("decision latency (ms)")
    ax.set_title("observation -> command, all decisions of a cell", fontsize=9)
    ax.legend(fontsize=8, ncol=min(len(ablations) + 2, 4), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(cells: Sequence[CellStats], out: Path, extra: dict | None = None) -> dict:
    """Writes out/table.md, out/success_rate.png, out/decision_latency.png, out/results.json; returns
    the summary object (also the JSON line the suite prints last)."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(cells)
    (out / "table.md").write_text(table)
    plots = [plot_success(cells, out / "success_rate.png"), plot_latency(cells, out / "decision_latency.png")]
    summary = {"cells": [c.as_dict() for c in cells], "goals": goals(cells),
               "table": str(out / "table.md"), "plots": [str(p) for p in plots], **(extra or {})}
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def json_line(summary: dict) -> str:
    return json.dumps(summary, separators=(",", ":"), allow_nan=False)
