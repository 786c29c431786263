"""Proprioception the latent-action models take, from a joint state (pure: Pinocchio FK):
[x, y, z, yaw, gripper_width] of the tool, yaw folded to [-pi/4, pi/4] as the expert's plan does."""
from __future__ import annotations

import math

import numpy as np

from harness_nodes.common.kinematics import ArmKinematics

MAX_JOINTS = 64


class StateError(ValueError):
    pass


class ToolState:
    def __init__(self, description):
        self.description = description
        self.kinematics = ArmKinematics.from_description(description)
        self.arm_joints = list(description.arm.joint_names)
        self.finger_joints = list(description.gripper.joint_names)
        # open vs closed from the measured width: holding a 5 cm cube reads as closed
        self.open_threshold = 0.85 * description.gripper.max_width

    def from_joint_state(self, names, positions) -> np.ndarray:
        if len(names) > MAX_JOINTS or len(positions) > MAX_JOINTS:
            raise StateError(f"joint state has {max(len(names), len(positions))} entries (at most {MAX_JOINTS})")
        if len(names) != len(positions):
            raise StateError(f"joint state has {len(names)} names but {len(positions)} positions")
        values = dict(zip(names, positions))
        missing = [n for n in self.arm_joints + self.finger_joints if n not in values]
        if missing:
            raise StateError(f"joint state lacks {missing[:8]} (names must include {self.arm_joints + self.finger_joints})")
        q = np.array([values[n] for n in self.arm_joints], dtype=float)
        fingers = np.array([values[n] for n in self.finger_joints], dtype=float)
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(fingers))):
            raise StateError("joint state has NaN or infinite positions")
        arm = self.description.arm
        lo, hi = np.asarray(arm.position_lower) - 0.1, np.asarray(arm.position_upper) + 0.1
        if np.any(q < lo) or np.any(q > hi):
            bad = [n for n, v, a, b in zip(self.arm_joints, q, lo, hi) if not a <= v <= b]
            raise StateError(f"joint positions outside the robot's limits: {bad}")
        pose = self.kinematics.fk(q)
        r = pose.rotation
        yaw = math.atan2(r[1, 0], r[0, 0])
        yaw = (yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4
        width = float(self.description.gripper.width_from_joints(list(fingers)))
        return np.array([*pose.translation, yaw, width], dtype=np.float32)
