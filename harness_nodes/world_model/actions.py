"""Candidate action chunks as the world model steps them: validation with the router's own rules,
then a fixed-rate sequence of per-step actions.

Every router space (end-effector poses, end-effector deltas, joint targets; plus a gripper
command after the motion) becomes `steps` actions of `step_time` s each:

    [ target ee x y z | target ee R[:,0] R[:,1] | open | close | gripper target width ]

The arm part interpolates the chunk's waypoints in time from the current tool pose (positions
linearly, orientations by normalised quaternion interpolation; joint chunks are interpolated in
joint space and mapped through FK); the gripper command then takes `gripper_steps` steps holding
the last arm target. Joint chunks also keep their per-step joint targets so an executor needs no IK.
Pure: numpy only (FK is passed in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from harness_nodes.common.geometry import matrix_to_quat, quat_multiply, quat_to_matrix
from harness_nodes.router.validation import (ChunkInput, Failure, GripperCommand, Rejection, Space, ValidationLimits,
                                             validate_chunk)
from harness_nodes.world_model.configuration_world_model import WorldModelConfig

ACTION_DIM = 12
ACTION_NAMES = ["x", "y", "z", "r00", "r10", "r20", "r01", "r11", "r21", "open", "close", "width"]


@dataclass(frozen=True)
class StepPlan:
    """One candidate, stepped."""
    actions: np.ndarray                  # (H, ACTION_DIM)
    joint_targets: np.ndarray | None     # (H, n) for joint chunks, else None (executor solves IK)
    violations: tuple[str, ...] = ()     # predicted from the targets alone (workspace, table, reach)

    @property
    def steps(self) -> int:
        return len(self.actions)


def nlerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    if float(a @ b) < 0:
        b = -b
    q = (1 - s) * a + s * b
    return q / np.linalg.norm(q)


def rotation_columns(r: np.ndarray) -> np.ndarray:
    return np.asarray(r)[:, :2].T.reshape(-1)


def validation_limits(config: WorldModelConfig, description, max_points: int = 200) -> ValidationLimits:
    arm, grip = description.arm, description.gripper
    return ValidationLimits(joint_names=arm.joint_names, position_lower=arm.position_lower,
                            position_upper=arm.position_upper, joint_limit_margin=0.0,
                            max_chunk_duration=config.max_horizon * config.step_time, max_points=max_points,
                            workspace_min=config.workspace_min, workspace_max=config.workspace_max,
                            gripper_min_width=grip.min_width, gripper_max_width=grip.max_width,
                            accepted_frames=["", "world", description.base_frame])


class ChunkStepper:
    """Turns candidate chunks into `StepPlan`s for one robot; `fk(arm_q) -> (pos, R)`."""

    def __init__(self, config: WorldModelConfig, description, fk: Callable[[np.ndarray], tuple]):
        self.config = config
        self.description = description
        self.fk = fk
        self.limits = validation_limits(config, description)
        self.joint_names = list(description.arm.joint_names)

    def plan(self, chunk: ChunkInput, arm_q: np.ndarray) -> StepPlan | Rejection:
        """Validate a chunk (router rules, plus the horizon limit) and step it from `arm_q`."""
        valid = validate_chunk(chunk, self.limits)
        if isinstance(valid, Rejection):
            return valid
        cfg = self.config
        arm_steps = max(1, int(math.ceil(valid.duration / cfg.step_time - 1e-9)))
        grip_steps = cfg.gripper_steps if valid.gripper_command != GripperCommand.NONE else 0
        if arm_steps + grip_steps > cfg.max_horizon:
            return Rejection(Failure.INVALID_INPUT,
                             f"horizon of {arm_steps + grip_steps} steps ({valid.duration:.2f} s) exceeds "
                             f"max_horizon {cfg.max_horizon} steps of {cfg.step_time} s")
        start_pos, start_rot = self.fk(np.asarray(arm_q, dtype=float))
        start_q = matrix_to_quat(np.asarray(start_rot))
        times = np.concatenate([[0.0], valid.times])
        step_t = np.minimum((np.arange(arm_steps) + 1) * cfg.step_time, valid.duration)
        joints = None
        if valid.space == Space.JOINT:
            knots = np.tile(np.asarray(arm_q, dtype=float), (len(times), 1))
            for k, name in enumerate(valid.joint_names):
                knots[1:, self.joint_names.index(name)] = valid.joint_positions[:, k]
            joints = np.stack([np.interp(step_t, times, knots[:, j]) for j in range(knots.shape[1])], axis=1)
            poses = [self.fk(q) for q in joints]
            positions = np.array([p for p, _ in poses])
            rotations = [np.asarray(r) for _, r in poses]
        else:
            pos, quat = valid.ee_positions, valid.ee_quaternions
            if valid.space == Space.END_EFFECTOR_DELTA:
                pos = pos + start_pos
                quat = np.array([quat_multiply(q, start_q) for q in quat])
            knots_p = np.vstack([start_pos, pos])
            knots_q = np.vstack([start_q, quat])
            positions = np.stack([np.interp(step_t, times, knots_p[:, i]) for i in range(3)], axis=1)
            rotations = []
            for t in step_t:
                i = int(np.clip(np.searchsorted(times, t, side="left"), 1, len(times) - 1))
                s = (t - times[i - 1]) / max(times[i] - times[i - 1], 1e-9)
                rotations.append(quat_to_matrix(nlerp(knots_q[i - 1], knots_q[i], float(np.clip(s, 0, 1)))))
        n = arm_steps + grip_steps
        actions = np.zeros((n, 12))
        actions[:arm_steps, :3] = positions
        actions[:arm_steps, 3:9] = [rotation_columns(r) for r in rotations]
        actions[arm_steps:, :9] = actions[arm_steps - 1, :9]
        if grip_steps:
            grip = self.description.gripper
            width = valid.gripper_width if valid.gripper_width is not None else grip.max_width
            closing = valid.gripper_command == GripperCommand.CLOSE or (
                valid.gripper_command == GripperCommand.WIDTH and width < grip.max_width / 2)
            actions[arm_steps:, 9 if not closing else 10] = 1.0
            actions[arm_steps:, 11] = width
        if joints is not None and grip_steps:
            joints = np.vstack([joints, np.tile(joints[-1], (grip_steps, 1))])
        return StepPlan(actions, joints, self.violations(actions))

    def violations(self, actions: np.ndarray) -> tuple[str, ...]:
        cfg = self.config
        out = []
        p = actions[:, :3]
        if np.any(p[:, 2] < cfg.table_height - 0.005):
            out.append(f"table_collision: tool target {float(p[:, 2].min()):.3f} m below the table top")
        shoulder = np.array([0.0, 0.0, cfg.shoulder_height])
        far = float(np.max(np.linalg.norm(p - shoulder, axis=1)))
        if far > cfg.reach:
            out.append(f"unreachable: tool target {far:.3f} m from the shoulder (reach {cfg.reach} m)")
        lo, hi = np.asarray(cfg.workspace_min), np.asarray(cfg.workspace_max)
        if np.any((p < lo) | (p > hi)):
            out.append("workspace: tool target outside the workspace box")
        return tuple(out)
