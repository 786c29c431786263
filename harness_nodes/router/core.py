"""RouterCore: the router's state (description, parameters, kinematics, limits, collision checker,
counters, the executing chunk and recently finished ones) and the measured-state readings both of
its halves use; the halves are `ChunkPlanner` (planner.py: validation, IK, time scaling) and
`ExecutionMonitor` (execution.py); the parameters are `RouterParameters` (configuration.py).

Pure: no rclpy. The node converts messages into `ChunkInput` and joint-state dicts, calls
`submit()` and, on a `Plan`, `start()`; then it calls `update()` at its monitor rate and acts on
the returned events (publish the gripper trajectory, publish the final feedback).

Time is whatever clock the caller uses (the node's clock: sim or wall), in seconds.

Outcomes say what was executed: a chunk whose executed final target differs from the asked one by
more than `tracking_tolerance` (a joint step clamped to `max_joint_step`) finishes FAILED with
Failure.CLAMPED and both targets in `Finished`. A chunk_id is an identity: reusing one (executing or
recently finished) with different content is rejected, with the same content it is a Duplicate.
Contact (joint effort at the limit) fails a chunk, except on joints the chunk moves away from a
contact that was already there when it started (so "go home" still works after pressing on the
table); `stream_contact` applies the same rule to a command stream.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from harness_nodes.common.kinematics import ArmKinematics
from harness_nodes.common.robot_description import RobotDescription
from harness_nodes.router.configuration import RouterParameters
from harness_nodes.router.execution import ExecutionMonitor, Finished, _Execution
from harness_nodes.router.planner import ChunkPlanner
from harness_nodes.router.trajectory import TimingLimits
from harness_nodes.router.validation import Failure, Rejection, ValidationLimits


@dataclass
class Counters:
    accepted: int = 0
    rejected: int = 0
    clamps: int = 0
    succeeded: int = 0
    failed: int = 0
    duplicates: int = 0
    busy: int = 0
    collisions: int = 0
    step_clamps: int = 0
    singularity_slowdowns: int = 0
    collision_slowdowns: int = 0
    holds: int = 0
    contacts: int = 0
    tracking_failures: int = 0
    grasp_failures: int = 0


class RouterCore(ChunkPlanner, ExecutionMonitor):
    def __init__(self, description: RobotDescription, params: RouterParameters,
                 kinematics: ArmKinematics | None = None):
        self.description = description
        self.params = params
        arm = description.arm
        self.arm_joints = list(arm.joint_names)
        self.finger_joints = list(description.gripper.joint_names)
        self.kinematics = kinematics or ArmKinematics.from_description(description)
        self.singularity_threshold = (description.singularity_threshold if params.singularity_threshold < 0
                                      else params.singularity_threshold)
        self.limits = ValidationLimits(
            joint_names=self.arm_joints, position_lower=arm.position_lower, position_upper=arm.position_upper,
            joint_limit_margin=params.joint_limit_margin, max_chunk_duration=params.max_chunk_duration,
            max_points=params.max_chunk_points, workspace_min=params.workspace_min,
            workspace_max=params.workspace_max, gripper_min_width=description.gripper.min_width,
            gripper_max_width=description.gripper.max_width,
            accepted_frames=["", "world", description.base_frame])
        self.timing = TimingLimits(np.asarray(arm.velocity_limit), np.asarray(arm.acceleration_limit),
                                   params.velocity_scale, params.acceleration_scale, params.min_segment_time)
        self.counters = Counters()
        g = description.gripper
        self.open_fingers = {n: g.open_q for n in g.joint_names}
        self.open_fingers.update({n: g.open_q * m for n, m in g.mimic_joints.items()})
        closed_fingers = {n: g.closed_q for n in g.joint_names}
        closed_fingers.update({n: g.closed_q * m for n, m in g.mimic_joints.items()})
        self.collisions = None
        if params.collision_check:
            from harness_nodes.router.safety import CollisionChecker
            self.collisions = CollisionChecker(self.kinematics, arm.home, self.open_fingers, params.table_height,
                                               description.collision_ignore,
                                               [*g.joint_names, *g.mimic_joints],
                                               proximity_distance=params.collision_slowdown_distance,
                                               closed_fingers=closed_fingers)
        self.execution: _Execution | None = None
        self.finished: dict[str, Finished] = {}
        self._finished_order: deque = deque()

    # ------------------------------------------------------------------ measured state
    def _reject(self, failure: Failure, reason: str) -> Rejection:
        self.counters.rejected += 1
        return Rejection(failure, reason)

    def arm_state(self, joint_positions: dict[str, float] | None) -> np.ndarray | str:
        """Measured arm positions in description order, or the reason there are none."""
        if not joint_positions:
            return "no state: no joint state received yet"
        missing = [n for n in self.arm_joints if n not in joint_positions]
        if missing:
            return f"no state: joint state lacks {missing}"
        q = np.array([joint_positions[n] for n in self.arm_joints], dtype=float)
        if not np.all(np.isfinite(q)):
            return "no state: measured joint positions are not finite"
        return q

    def finger_width(self, joint_positions: dict[str, float] | None) -> float | None:
        if not joint_positions or not all(n in joint_positions for n in self.finger_joints):
            return None
        w = float(self.description.gripper.width_from_joints([joint_positions[n] for n in self.finger_joints]))
        return w if math.isfinite(w) else None

    def others(self, joint_positions: dict[str, float] | None) -> dict[str, float]:
        """Measured non-arm joints (gripper and its mimic joints) for FK and collision checks."""
        out = dict(self.open_fingers)
        for n in out:
            if joint_positions and n in joint_positions and math.isfinite(joint_positions[n]):
                out[n] = joint_positions[n]
        return out
