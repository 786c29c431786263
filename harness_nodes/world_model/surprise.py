"""Surprise: after a chunk executes, how far what memory reports is from what the world model
predicted ("recognition, not reconstruction"). Pure: numpy.

`SurpriseTracker.predicted(chunk_id, ...)` remembers the predicted object positions of evaluated
candidates (a bounded LRU); `executed(chunk_id, t)` marks a chunk as finished at time t; the next
`observed(objects, t_obs)` with t_obs >= t compares and returns one `Surprise` per finished chunk.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Surprise:
    chunk_id: str
    subjects: list[str]
    distance: list[float]            # m, per subject
    normalized: list[float]          # distance / (uncertainty + floor)
    missing: list[str]               # predicted but no longer remembered
    overall: float
    overall_normalized: float
    surprising: bool


class SurpriseTracker:
    def __init__(self, floor: float = 0.01, threshold: float = 3.0, capacity: int = 1024):
        self.floor, self.threshold, self.capacity = floor, threshold, capacity
        self.predictions: OrderedDict[str, tuple[dict[str, np.ndarray], float]] = OrderedDict()
        self.pending: dict[str, float] = {}

    def predicted(self, chunk_id: str, positions: dict[str, np.ndarray], uncertainty: float) -> None:
        self.predictions[chunk_id] = ({k: np.asarray(v, dtype=float) for k, v in positions.items()},
                                      float(uncertainty))
        self.predictions.move_to_end(chunk_id)
        while len(self.predictions) > self.capacity:
            self.predictions.popitem(last=False)

    def executed(self, chunk_id: str, t: float) -> bool:
        """True when the chunk was predicted (so a comparison will follow)."""
        if chunk_id not in self.predictions:
            return False
        self.pending[chunk_id] = float(t)
        return True

    def observed(self, objects: dict[str, np.ndarray], t: float) -> list[Surprise]:
        out = []
        for chunk_id, t_done in list(self.pending.items()):
            if t < t_done:
                continue
            del self.pending[chunk_id]
            predicted, unc = self.predictions.pop(chunk_id)
            subjects, dist, missing = [], [], []
            for subject, pos in predicted.items():
                if subject not in objects:
                    missing.append(subject)
                    continue
                subjects.append(subject)
                dist.append(float(np.linalg.norm(np.asarray(objects[subject], dtype=float) - pos)))
            norm = [d / (unc + self.floor) for d in dist]
            overall = max(dist, default=0.0)
            overall_n = max(norm, default=0.0)
            out.append(Surprise(chunk_id, subjects, dist, norm, missing, overall, overall_n,
                                overall_n > self.threshold or bool(missing)))
        return out
