"""Arm motion no chunk accounts for (`MeasuredMotion`): the tool's measured path (FK of
/joint_states) cut into segments that sweep facts as an executed chunk's path does. Pure."""
from __future__ import annotations

import math

import numpy as np


class MeasuredMotion:
    """The tool's measured motion (FK of /joint_states) that no chunk accounts for: whatever moved
    the arm (another publisher, a teleop stream, a person) sweeps facts as a chunk does.

    A segment opens when the tool leaves its rest position by `min_step`, records a point every
    `min_step`, and closes after `settle` s without motion (or at `max_points`); `update`/`poll`
    return a closed segment's path. While a chunk runs, its own path records the motion: `take`
    hands over what was recorded so far and `rest` re-anchors after it."""

    def __init__(self, min_step: float, settle: float, max_points: int = 2000):
        self.min_step, self.settle, self.max_points = float(min_step), float(settle), int(max_points)
        self.rest_position: np.ndarray | None = None
        self.path: list[np.ndarray] = []
        self.last_move = -math.inf
        self.segments = 0

    def update(self, position, now: float) -> np.ndarray | None:
        pos = np.asarray(position, dtype=float)
        if self.rest_position is None:
            self.rest_position = pos
            return None
        ref = self.path[-1] if self.path else self.rest_position
        if np.linalg.norm(pos - ref) >= self.min_step:
            if not self.path:
                self.path = [self.rest_position]
            self.path.append(pos)
            self.last_move = now
            return self._close(pos) if len(self.path) >= self.max_points else None
        return self.poll(now)

    def poll(self, now: float) -> np.ndarray | None:
        if self.path and now - self.last_move >= self.settle:
            return self._close(self.path[-1])
        return None

    def take(self) -> list[np.ndarray]:
        """The open segment's points (a chunk that just started accounts for them); none stays open."""
        path, self.path = self.path, []
        return path

    def rest(self, position) -> None:
        self.path = []
        self.rest_position = None if position is None else np.asarray(position, dtype=float)

    def _close(self, position) -> np.ndarray:
        path = np.array(self.path)
        self.path = []
        self.rest_position = np.asarray(position, dtype=float)
        self.segments += 1
        return path
