"""Arm kinematics shared by the router, memory, perception and the state publisher: Pinocchio model from the URDF, forward kinematics of the
end-effector frame and a joint-limit-aware damped-least-squares IK for 6-D pose targets.

Pure: no rclpy. Only the arm joints (the description's `arm.joint_names`, in that order) are IK
variables; every other joint of the model (the fingers) is held at the value given by the caller.
Vectors passed in and out of this module are always in the description's arm joint order, never
in Pinocchio's q order.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pinocchio as pin

from harness_nodes.common.geometry import quat_to_matrix


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray               # arm joint positions, description order (best found, even on failure)
    success: bool
    iterations: int             # total over all starts
    position_error: float       # m
    orientation_error: float    # rad
    starts: int = 1             # how many initial configurations were tried
    solve_time: float = 0.0     # s

    @property
    def error(self) -> float:
        return max(self.position_error, self.orientation_error)


def pose_to_se3(position: Sequence[float], quat_xyzw: Sequence[float]) -> pin.SE3:
    return pin.SE3(quat_to_matrix(quat_xyzw), np.asarray(position, dtype=float).reshape(3))


def add_tool_frame(model: pin.Model, tool) -> None:
    """Add a fixed operational frame (description `tool_frame`: name, parent_link, xyz, rpy)."""
    if model.existFrame(tool.name):
        return
    if not model.existFrame(tool.parent_link):
        raise ValueError(f"tool frame parent link '{tool.parent_link}' not in the URDF")
    parent = model.getFrameId(tool.parent_link)
    frame = model.frames[parent]
    placement = frame.placement * pin.SE3(pin.rpy.rpyToMatrix(*tool.rpy), np.asarray(tool.xyz, dtype=float))
    model.addFrame(pin.Frame(tool.name, frame.parentJoint, parent, placement, pin.FrameType.OP_FRAME))


def manipulability(jacobian: np.ndarray) -> float:
    """Yoshikawa's measure sqrt(det(J J^T)) of the 6 x n Jacobian (0 at a singularity)."""
    return float(np.sqrt(max(np.linalg.det(jacobian @ jacobian.T), 0.0)))


class ArmKinematics:
    """Kinematic model of one arm. Not thread-safe (shares one pinocchio.Data)."""

    def __init__(self, urdf_path: str | Path, arm_joint_names: Sequence[str], end_effector_frame: str,
                 position_lower: Sequence[float] | None = None,
                 position_upper: Sequence[float] | None = None,
                 home: Sequence[float] | None = None, tool_frame=None):
        self.urdf_path = str(urdf_path)
        self.model = pin.buildModelFromUrdf(str(urdf_path))
        if tool_frame is not None:
            add_tool_frame(self.model, tool_frame)
        self.data = self.model.createData()
        self.joint_names = list(arm_joint_names)
        if not self.model.existFrame(end_effector_frame):
            raise ValueError(f"end-effector frame '{end_effector_frame}' not in URDF {urdf_path}")
        self.frame_id = self.model.getFrameId(end_effector_frame)
        self.end_effector_frame = end_effector_frame
        self.q_index = np.zeros(len(self.joint_names), dtype=int)
        self.v_index = np.zeros(len(self.joint_names), dtype=int)
        for i, name in enumerate(self.joint_names):
            if not self.model.existJointName(name):
                raise ValueError(f"arm joint '{name}' not in URDF {urdf_path}")
            joint = self.model.joints[self.model.getJointId(name)]
            if joint.nq != 1 or joint.nv != 1:
                raise ValueError(f"arm joint '{name}' is not a 1-DoF joint (nq={joint.nq})")
            self.q_index[i] = joint.idx_q
            self.v_index[i] = joint.idx_v
        urdf_lo = self.model.lowerPositionLimit[self.q_index]
        urdf_hi = self.model.upperPositionLimit[self.q_index]
        # The tighter of the URDF's and the description's limits.
        self.lower = urdf_lo.copy() if position_lower is None else np.maximum(urdf_lo, position_lower)
        self.upper = urdf_hi.copy() if position_upper is None else np.minimum(urdf_hi, position_upper)
        self.home = (0.5 * (self.lower + self.upper) if home is None
                     else np.asarray(home, dtype=float).copy())
        self.q_neutral = pin.neutral(self.model)
        # Other joints (fingers): name -> q index, held at the value the caller gives.
        self.other_joints = {self.model.names[j]: self.model.joints[j].idx_q
                             for j in range(1, self.model.njoints)
                             if self.model.names[j] not in self.joint_names
                             and self.model.joints[j].nq == 1}

    # -- configuration mapping

    @classmethod
    def from_description(cls, description) -> "ArmKinematics":
        """The arm of a `RobotDescription`: its URDF, joints, limits, home and tool frame."""
        arm = description.arm
        return cls(description.urdf_path, arm.joint_names, description.end_effector_frame,
                   arm.position_lower, arm.position_upper, arm.home, tool_frame=description.tool_frame)
    def full_q(self, arm_q: Sequence[float], others: dict[str, float] | None = None) -> np.ndarray:
        q = self.q_neutral.copy()
        for name, value in (others or {}).items():
            idx = self.other_joints.get(name)
            if idx is not None:
                q[idx] = value
        q[self.q_index] = np.asarray(arm_q, dtype=float)
        return q

    # -- forward kinematics
    def fk(self, arm_q: Sequence[float], others: dict[str, float] | None = None) -> pin.SE3:
        """Pose of the end-effector frame in the model root (the robot base frame)."""
        q = self.full_q(arm_q, others)
        pin.framesForwardKinematics(self.model, self.data, q)
        return self.data.oMf[self.frame_id].copy()

    def manipulability(self, arm_q: Sequence[float], others: dict[str, float] | None = None) -> float:
        q = self.full_q(arm_q, others)
        jac = pin.computeFrameJacobian(self.model, self.data, q, self.frame_id,
                                       pin.LOCAL_WORLD_ALIGNED)[:, self.v_index]
        return manipulability(jac)

    @staticmethod
    def pose_error(current: pin.SE3, target: pin.SE3) -> tuple[float, float]:
        dp = float(np.linalg.norm(target.translation - current.translation))
        dr = float(np.linalg.norm(pin.log3(current.rotation.T @ target.rotation)))
        return dp, dr

    # -- inverse kinematics
    def _solve_from(self, target: pin.SE3, seed: np.ndarray, others: dict[str, float] | None,
                    max_iterations: int, tolerance: float, margin: float,
                    damping: float, max_step: float) -> tuple[np.ndarray, bool, int, float, float]:
        lo = self.lower + margin
        hi = self.upper - margin
        arm_q = np.clip(np.asarray(seed, dtype=float), lo, hi)
        q = self.full_q(arm_q, others)
        best = (arm_q.copy(), np.inf, np.inf)
        for it in range(1, max_iterations + 1):
            pin.framesForwardKinematics(self.model, self.data, q)
            current = self.data.oMf[self.frame_id]
            # Error in the world-aligned frame at the tool: translation and rotation decoupled.
            e_pos = target.translation - current.translation
            e_rot = current.rotation @ pin.log3(current.rotation.T @ target.rotation)
            dp, dr = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
            if dp + dr < best[1] + best[2]:
                best = (q[self.q_index].copy(), dp, dr)
            if dp <= tolerance and dr <= tolerance:
                return q[self.q_index].copy(), True, it, dp, dr
            err = np.concatenate([e_pos, e_rot])
            jac = pin.computeFrameJacobian(self.model, self.data, q, self.frame_id,
                                           pin.LOCAL_WORLD_ALIGNED)[:, self.v_index]
            # Damping grows with the error so large steps stay well-conditioned.
            lam2 = damping ** 2 * (1.0 + float(err @ err))
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), err)
            # Active set: joints at a bound that the step pushes further out are frozen and the
            # step is recomputed with the remaining joints (avoids stalling against a limit).
            cur = q[self.q_index]
            blocked = ((cur <= lo + 1e-9) & (dq < 0)) | ((cur >= hi - 1e-9) & (dq > 0))
            if blocked.any() and not blocked.all():
                jac = jac.copy()
                jac[:, blocked] = 0.0
                dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), err)
            step = float(np.max(np.abs(dq)))
            if step > max_step:
                dq *= max_step / step
            arm_q = np.clip(q[self.q_index] + dq, lo, hi)
            q[self.q_index] = arm_q
        pin.framesForwardKinematics(self.model, self.data, q)
        dp, dr = self.pose_error(self.data.oMf[self.frame_id], target)
        if dp + dr < best[1] + best[2]:
            best = (q[self.q_index].copy(), dp, dr)
        ok = best[1] <= tolerance and best[2] <= tolerance
        return best[0], ok, max_iterations, best[1], best[2]

    def ik(self, target: pin.SE3, seed: Sequence[float], *, others: dict[str, float] | None = None,
           max_iterations: int = 200, tolerance: float = 1e-3, margin: float = 0.0,
           damping: float = 0.02, max_step: float = 0.5, extra_starts: int = 6,
           rng_seed: int = 0) -> IKResult:
        """Solve for arm joints putting the end-effector frame at `target` (base frame).

        Warm-started from `seed`; if that fails, retried from home and from `extra_starts`
        deterministic random configurations. `success` is False unless both the position error
        (m) and the orientation error (rad) are within `tolerance`; `q` is then the best found,
        never to be executed. Every returned q is inside [lower + margin, upper - margin].
        """
        t0 = time.perf_counter()
        seeds = [np.asarray(seed, dtype=float), self.home]
        rng = np.random.default_rng(rng_seed)
        for _ in range(extra_starts):
            seeds.append(rng.uniform(self.lower + margin, self.upper - margin))
        total = 0
        best: tuple[np.ndarray, bool, float, float] | None = None
        for n, s in enumerate(seeds, start=1):
            q, ok, iters, dp, dr = self._solve_from(target, s, others, max_iterations, tolerance,
                                                    margin, damping, max_step)
            total += iters
            if best is None or ok or dp + dr < best[2] + best[3]:
                best = (q, ok, dp, dr)
            if ok:
                return IKResult(q, True, total, dp, dr, n, time.perf_counter() - t0)
        q, ok, dp, dr = best
        return IKResult(q, False, total, dp, dr, len(seeds), time.perf_counter() - t0)
