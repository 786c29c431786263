"""Choosing among rolled-out candidates: best-of-N with a veto, and CEM refinement.

* value = expected progress - uncertainty_penalty * uncertainty (m of ensemble disagreement), where
  expected progress = predicted progress x (1 - failure probability): a risky candidate is worth
  less even below the veto threshold;
* veto when any violation is predicted or the failure score exceeds the threshold, which training
  calibrates by split-conformal prediction on successful rollouts (a successful candidate is
  vetoed with probability <= alpha);
* best index = the highest value among the candidates not vetoed, -1 when all are.

`cem_refine` improves the tool waypoints of the best candidates (cross-entropy method seeded by the
proposals) with any evaluator of (N, H, A) action arrays. Pure: numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Selection:
    best_index: int
    values: np.ndarray      # (N,)
    vetoed: np.ndarray      # (N,) bool
    reasons: list[str]      # per candidate: why vetoed ('' if not)


def select(progress: Sequence[float], uncertainty: Sequence[float], failure_score: Sequence[float],
           violations: Sequence[Sequence[str]], threshold: float, uncertainty_penalty: float,
           failure_probability: Sequence[float] | None = None) -> Selection:
    score = np.asarray(failure_score, dtype=float)
    p_fail = np.clip(np.asarray(score if failure_probability is None else failure_probability, dtype=float), 0, 1)
    progress = np.asarray(progress, dtype=float) * (1.0 - p_fail)
    values = progress - uncertainty_penalty * np.asarray(uncertainty, dtype=float)
    reasons = []
    for i in range(len(progress)):
        if violations[i]:
            reasons.append(f"violation: {violations[i][0]}")
        elif not np.isfinite(score[i]) or score[i] > threshold:
            reasons.append(f"failure score {score[i]:.3f} above the veto threshold {threshold:.3f}")
        else:
            reasons.append("")
    vetoed = np.array([bool(r) for r in reasons], dtype=bool)
    values = np.where(np.isfinite(values), values, -np.inf)
    if vetoed.all() or len(values) == 0:
        return Selection(-1, values, vetoed, reasons)
    best = int(np.argmax(np.where(vetoed, -np.inf, values)))
    return Selection(best, values, vetoed, reasons)


def cem_refine(evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], proposals: np.ndarray,
               iterations: int = 3, samples: int = 64, elites: int = 8, noise: float = 0.03,
               seed: int = 0) -> tuple[np.ndarray, float]:
    """Cross-entropy refinement of the tool positions (action columns 0..2) of candidate action
    arrays. `evaluate(actions (N, H, A)) -> (values (N,), vetoed (N,))`. Starts from the proposals'
    elites; returns the best action array found and its value (-inf if everything was vetoed)."""
    rng = np.random.default_rng(seed)
    values, vetoed = evaluate(proposals)
    values = np.where(vetoed, -np.inf, values)
    order = np.argsort(-values)[:elites]
    best_i = int(order[0])
    best, best_value = proposals[best_i].copy(), float(values[best_i])
    elite = proposals[order]
    for _ in range(iterations):
        mean = elite[..., :3].mean(0)
        std = elite[..., :3].std(0) + noise
        base = elite[rng.integers(0, len(elite), samples)].copy()
        base[..., :3] = mean + std * rng.standard_normal((samples, *mean.shape))
        v, vet = evaluate(base)
        v = np.where(vet, -np.inf, v)
        order = np.argsort(-v)[:elites]
        if v[order[0]] > best_value:
            best, best_value = base[order[0]].copy(), float(v[order[0]])
        elite = base[order][np.isfinite(v[order])] if np.isfinite(v[order]).any() else elite
    return best, best_value
