"""Joint trajectories the router sends: time-scaled so every joint stays within its limits.

Pure: no rclpy. The arm trajectory starts at the measured joint positions (time 0), then one point
per target. Each segment's duration is the largest of: the time requested by the chunk,
`min_segment_time`, the velocity bound and the acceleration bound. The controller interpolates
between points with cubic splines (position + velocity, like joint_trajectory_controller), whose
rest-to-rest peak velocity is 1.5x and peak acceleration 6x/T^2 of a segment's mean; the bounds use
those factors so the interpolated motion, not just the mean, stays inside the scaled limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CUBIC_PEAK_VELOCITY = 1.5      # peak / mean velocity of a cubic segment with end velocities in [0, mean]
CUBIC_PEAK_ACCELERATION = 6.0  # peak acceleration = 6 * dq / T^2 for such a segment


@dataclass(frozen=True)
class TimingLimits:
    velocity_limit: np.ndarray       # rad/s per joint
    acceleration_limit: np.ndarray   # rad/s^2 per joint
    velocity_scale: float = 0.5
    acceleration_scale: float = 0.5
    min_segment_time: float = 0.2


@dataclass(frozen=True)
class JointTrajectory:
    joint_names: tuple[str, ...]
    times: np.ndarray        # (P,), s from start, times[0] == 0 (the measured start)
    positions: np.ndarray    # (P, n)
    velocities: np.ndarray   # (P, n), zero at both ends
    lengthened: int = 0      # segments made longer than requested to respect the limits

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    @property
    def final(self) -> np.ndarray:
        return self.positions[-1]

    def sample(self, t: float) -> np.ndarray:
        """Piecewise-linear position at time t (for path checks and progress)."""
        return np.array([np.interp(t, self.times, self.positions[:, j]) for j in range(self.positions.shape[1])])


@dataclass(frozen=True)
class GripperTrajectory:
    joint_names: tuple[str, ...]
    positions: np.ndarray    # (n_fingers,) each finger at width / 2
    duration: float          # s
    width: float             # m target


def segment_min_time(dq: np.ndarray, limits: TimingLimits) -> float:
    """Shortest duration of one segment moving every joint by |dq| within the scaled limits."""
    dq = np.abs(np.asarray(dq, dtype=float))
    vmax = limits.velocity_scale * np.asarray(limits.velocity_limit, dtype=float)
    amax = limits.acceleration_scale * np.asarray(limits.acceleration_limit, dtype=float)
    t_vel = CUBIC_PEAK_VELOCITY * dq / vmax
    t_acc = np.sqrt(CUBIC_PEAK_ACCELERATION * dq / amax)
    return float(max(limits.min_segment_time, np.max(t_vel), np.max(t_acc)))


def knot_velocities(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Finite-difference velocities at the points: zero at both ends and wherever a joint reverses;
    otherwise the smaller of the two adjacent segments' mean velocities (never faster than either)."""
    vel = np.zeros_like(positions)
    if len(times) < 3:
        return vel
    seg = np.diff(positions, axis=0) / np.diff(times)[:, None]     # (P-1, n) mean velocities
    left, right = seg[:-1], seg[1:]
    same = np.sign(left) * np.sign(right) > 0
    vel[1:-1] = np.where(same, np.sign(left) * np.minimum(np.abs(left), np.abs(right)), 0.0)
    return vel


def build_arm_trajectory(joint_names: Sequence[str], current: Sequence[float], targets: np.ndarray,
                         requested_times: Sequence[float], limits: TimingLimits) -> JointTrajectory:
    """Measured start at t=0 followed by `targets` (M, n) at (at least) `requested_times` (M,)."""
    current = np.asarray(current, dtype=float)
    targets = np.atleast_2d(np.asarray(targets, dtype=float))
    requested = np.asarray(requested_times, dtype=float)
    if targets.shape != (len(requested), len(current)):
        raise ValueError(f"targets {targets.shape} do not match {len(requested)} times x {len(current)} joints")
    positions = np.vstack([current, targets])
    times = [0.0]
    lengthened = 0
    prev_req = 0.0
    for i in range(len(requested)):
        want = float(requested[i] - prev_req)
        prev_req = float(requested[i])
        need = segment_min_time(positions[i + 1] - positions[i], limits)
        if need > want + 1e-12:
            lengthened += 1
        times.append(times[-1] + max(want, need))
    times = np.asarray(times)
    return JointTrajectory(tuple(joint_names), times, positions, knot_velocities(times, positions), lengthened)


def build_gripper_trajectory(finger_names: Sequence[str], target_width: float, current_width: float | None,
                             min_width: float, max_width: float, max_speed: float,
                             min_time: float = 0.2, position_for_width=None) -> GripperTrajectory:
    """One point with every commanded gripper joint at `position_for_width(width)` (default
    width / 2, a Panda finger), reached at max_speed (of the width)."""
    width = float(np.clip(target_width, min_width, max_width))
    travel = (max_width - min_width) if current_width is None or not np.isfinite(current_width) \
        else abs(width - current_width)
    duration = max(travel / max_speed, min_time)
    q = width / 2.0 if position_for_width is None else float(position_for_width(width))
    return GripperTrajectory(tuple(finger_names), np.full(len(finger_names), q), duration, width)

