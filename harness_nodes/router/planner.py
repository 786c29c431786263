"""Chunk planning, the router's first half: a validated chunk (or one stream command) against the
measured state -> IK for end-effector targets, joint-step clamps, a time-scaled arm trajectory
inside the workspace box, free of collisions, slowed near collisions and singularities. Owns `Plan`,
`Duplicate` (a chunk_id repeated with the same content), `fingerprint` (the content digest that
makes a chunk_id an identity) and `ChunkPlanner`, the planning half of `RouterCore` (a mixin over
the core's state: parameters, kinematics, limits, collision checker, counters). Pure: no rclpy."""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness_nodes.common.geometry import matrix_to_quat, quat_to_matrix
from harness_nodes.common.kinematics import pose_to_se3
from harness_nodes.router.safety import (check_path_collisions, limit_steps, proximity_scale, slow_near_collisions,
                                         slow_near_singularities)
from harness_nodes.router.trajectory import JointTrajectory, TimingLimits, build_arm_trajectory
from harness_nodes.router.validation import (ChunkInput, Failure, GripperCommand, Rejection, Space, ValidChunk,
                                             outside_workspace, validate_chunk)

if TYPE_CHECKING:
    from harness_nodes.router.execution import Finished


@dataclass(frozen=True)
class Plan:
    chunk_id: str
    attempt: int
    source: str
    arm: JointTrajectory
    gripper_command: GripperCommand
    gripper_width: float | None           # target, m
    clamps: int
    ik_iterations: int = 0
    ik_time: float = 0.0                  # s spent in IK
    notes: tuple[str, ...] = ()
    requested: np.ndarray | None = None   # final arm target as asked (joint space, before clamping)
    fingerprint: str = ""                 # content digest of the chunk (chunk_id reuse check)


@dataclass(frozen=True)
class Duplicate:
    """The chunk repeats the executing (or a recently finished) one; it is ignored."""
    chunk_id: str
    finished: "Finished | None" = None    # the earlier outcome, if that chunk already finished


def fingerprint(chunk: ChunkInput) -> str:
    """Digest of everything a chunk asks for (not its attempt counter): equal digests = same request."""
    content = dataclasses.asdict(chunk)
    content.pop("attempt", None)
    return hashlib.sha1(repr(sorted(content.items())).encode()).hexdigest()


class ChunkPlanner:
    """Planning methods of RouterCore (see core.py for the state they use)."""

    def submit(self, chunk: ChunkInput, joint_positions: dict[str, float] | None,
               state_age: float | None = None) -> Plan | Rejection | Duplicate:
        """Validate and plan a chunk against the measured state (received `state_age` s ago).
        Does not start it: on a Plan the caller publishes it and calls `start()`."""
        digest = fingerprint(chunk)
        earlier = (self.execution.plan.fingerprint if self.execution is not None
                   and chunk.chunk_id == self.execution.plan.chunk_id else
                   self.finished[chunk.chunk_id].fingerprint if chunk.chunk_id in self.finished else None)
        if earlier is not None and earlier != digest:
            return self._reject(Failure.INVALID_INPUT, "chunk_id reused with different content: an id names one "
                                "request (executing or recently finished); send new content under a new chunk_id")
        if self.execution is not None and chunk.chunk_id == self.execution.plan.chunk_id:
            self.counters.duplicates += 1
            return Duplicate(chunk.chunk_id)
        if chunk.chunk_id in self.finished:
            self.counters.duplicates += 1
            return Duplicate(chunk.chunk_id, self.finished[chunk.chunk_id])
        if self.execution is not None:
            self.counters.busy += 1
            return self._reject(Failure.BUSY, f"busy: chunk '{self.execution.plan.chunk_id}' is executing")
        valid = validate_chunk(chunk, self.limits)
        if isinstance(valid, Rejection):
            self.counters.rejected += 1
            return valid
        if joint_positions and state_age is not None and state_age > self.params.state_timeout:
            return self._reject(Failure.NO_STATE, f"no state: last joint state is {state_age:.2f} s old "
                                f"(state_timeout {self.params.state_timeout} s)")
        current = self.arm_state(joint_positions)
        if isinstance(current, str):
            return self._reject(Failure.NO_STATE, current)
        others = self.others(joint_positions)
        valid = self._absolute(valid, current, others)
        if isinstance(valid, Rejection):
            self.counters.rejected += 1
            return valid
        ik_iters, ik_time = 0, 0.0
        if valid.space == Space.END_EFFECTOR:
            targets = np.zeros((len(valid.times), len(self.arm_joints)))
            seed = current
            for i, (p, quat) in enumerate(zip(valid.ee_positions, valid.ee_quaternions)):
                result = self.kinematics.ik(pose_to_se3(p, quat), seed, others=others,
                                            max_iterations=self.params.ik_max_iterations,
                                            tolerance=self.params.ik_tolerance,
                                            margin=self.params.joint_limit_margin)
                ik_iters += result.iterations
                ik_time += result.solve_time
                if not result.success:
                    return self._reject(Failure.IK, f"IK failed for ee_poses[{i}] at {np.round(p, 4).tolist()}: "
                                        f"best error {result.position_error * 1000:.1f} mm / "
                                        f"{result.orientation_error:.3f} rad after {result.iterations} "
                                        f"iterations from {result.starts} starts")
                targets[i] = result.q
                seed = result.q
        else:
            targets = np.tile(current, (len(valid.times), 1))
            for k, name in enumerate(valid.joint_names):
                targets[:, self.arm_joints.index(name)] = valid.joint_positions[:, k]
        requested = targets[-1].copy()
        if valid.space == Space.JOINT:   # as asked, before the margin clamp
            for k, name in enumerate(valid.joint_names):
                requested[self.arm_joints.index(name)] = float(chunk.joint_positions[-1][k])
        targets, step_clamps = limit_steps(current, targets, self.params.max_joint_step)
        traj = build_arm_trajectory(self.arm_joints, current, targets, valid.times, self.timing)
        path_problem = self._path_outside_workspace(traj, others)
        if path_problem:
            return self._reject(Failure.LIMIT_VIOLATION, path_problem)
        if self.collisions is not None:
            hit = check_path_collisions(traj, self.collisions, others, self.params.path_check_samples)
            if hit:
                self.counters.collisions += 1
                return self._reject(Failure.COLLISION, hit)
        near_slowed, d_min, d_pair = 0, math.nan, ""
        if self.collisions is not None:
            traj, near_slowed, d_min, d_pair = slow_near_collisions(traj, self.collisions, others,
                                                                    self.params.collision_slowdown_distance,
                                                                    self.params.collision_min_scale, 4)
        traj, slowed, w_min = slow_near_singularities(traj, self.kinematics, others,
                                                      self.singularity_threshold,
                                                      self.params.singularity_min_scale, 4)
        clamps = valid.clamps + step_clamps
        self.counters.accepted += 1
        self.counters.clamps += clamps
        self.counters.step_clamps += step_clamps
        self.counters.singularity_slowdowns += slowed
        self.counters.collision_slowdowns += near_slowed
        notes = valid.notes + ((f"{traj.lengthened} segment(s) slowed to respect joint limits",)
                               if traj.lengthened else ())
        if step_clamps:
            notes += (f"{step_clamps} joint step(s) clamped to max_joint_step {self.params.max_joint_step} rad",)
        if near_slowed:
            notes += (f"{near_slowed} segment(s) slowed near a collision (distance {d_min * 1000:.1f} mm, "
                      f"{d_pair}; collision_slowdown_distance {self.params.collision_slowdown_distance} m)",)
        if slowed:
            notes += (f"{slowed} segment(s) slowed near a singularity (manipulability {w_min:.4f})",)
        return Plan(valid.chunk_id, valid.attempt, valid.source, traj, valid.gripper_command,
                    valid.gripper_width, clamps, ik_iters, ik_time, notes, requested, digest)

    def _absolute(self, valid: ValidChunk, arm_q: np.ndarray, others: dict[str, float]) -> ValidChunk | Rejection:
        """End-effector deltas -> absolute poses from the tool pose at `arm_q`: each position offset
        is added in the base frame, each rotation is applied in the base frame about the tool point.
        Every point is relative to that same start pose (not chained). Other spaces pass through."""
        if valid.space != Space.END_EFFECTOR_DELTA:
            return valid
        start = self.kinematics.fk(arm_q, others)
        positions = start.translation[None, :] + valid.ee_positions
        quats = np.array([matrix_to_quat(quat_to_matrix(dq) @ start.rotation) for dq in valid.ee_quaternions])
        outside = outside_workspace(positions, self.limits)
        if outside is not None:
            return outside
        return dataclasses.replace(valid, space=Space.END_EFFECTOR, ee_positions=positions, ee_quaternions=quats,
                                   notes=valid.notes + (f"end-effector deltas from the tool at "
                                                        f"{np.round(start.translation, 4).tolist()} m",))

    def plan_stream(self, chunk: ChunkInput, joint_positions: dict[str, float] | None, last_target,
                    state_age: float | None = None):
        """One servo-style stream command -> (arm target, seconds to reach it, clamps) or a Rejection.
        Checked like a chunk (validation, IK, workspace, collision); the target is clamped to
        `max_stream_step` from the previous stream target (or the measured state)."""
        valid = validate_chunk(chunk, self.limits)
        if isinstance(valid, Rejection):
            self.counters.rejected += 1
            return valid
        if len(valid.times) != 1:
            return self._reject(Failure.INVALID_INPUT, f"a stream command has exactly one point, got {len(valid.times)}")
        if joint_positions and state_age is not None and state_age > self.params.state_timeout:
            return self._reject(Failure.NO_STATE, f"no state: last joint state is {state_age:.2f} s old")
        current = self.arm_state(joint_positions)
        if isinstance(current, str):
            return self._reject(Failure.NO_STATE, current)
        base = current if last_target is None else np.asarray(last_target)
        others = self.others(joint_positions)
        valid = self._absolute(valid, base, others)    # stream deltas accumulate from the last target
        if isinstance(valid, Rejection):
            self.counters.rejected += 1
            return valid
        if valid.space == Space.END_EFFECTOR:
            result = self.kinematics.ik(pose_to_se3(valid.ee_positions[0], valid.ee_quaternions[0]), base,
                                        others=others, max_iterations=self.params.ik_max_iterations,
                                        tolerance=self.params.ik_tolerance, margin=self.params.joint_limit_margin,
                                        extra_starts=0)
            if not result.success:
                return self._reject(Failure.IK, f"IK failed for the stream pose "
                                    f"({result.position_error * 1000:.1f} mm)")
            target = result.q
        else:
            target = base.copy()
            for k, name in enumerate(valid.joint_names):
                target[self.arm_joints.index(name)] = valid.joint_positions[0, k]
        (target,), clamps = limit_steps(base, target[None, :], self.params.max_stream_step)
        if self.collisions is not None and self.collisions.hulls is not None:
            # Velocity scaling near collisions: a command closing in on an obstacle moves only
            # `scale` of its step (at the stream's fixed rate, `scale` of its velocity).
            d_target, pair = self.collisions.min_distance(target, others)
            if d_target < self.params.collision_slowdown_distance:
                d_base, _ = self.collisions.min_distance(base, others)
                scale = proximity_scale(d_target, d_base, self.params.collision_slowdown_distance,
                                        self.params.collision_min_scale)
                if scale < 1.0:
                    target = base + scale * (target - base)
                    self.counters.collision_slowdowns += 1
        traj = build_arm_trajectory(self.arm_joints, current, target[None, :], valid.times,
                                    TimingLimits(self.timing.velocity_limit, self.timing.acceleration_limit,
                                                 self.timing.velocity_scale, self.timing.acceleration_scale,
                                                 1e-3))
        problem = self._path_outside_workspace(traj, others)
        if problem:
            return self._reject(Failure.LIMIT_VIOLATION, problem)
        if self.collisions is not None:
            hit = self.collisions.check(target, others)
            if hit is not None:
                self.counters.collisions += 1
                return self._reject(Failure.COLLISION, f"collision {hit} at the stream target")
        clamps += valid.clamps
        self.counters.clamps += clamps
        self.counters.step_clamps += clamps
        return target, float(traj.duration), clamps

    def _path_outside_workspace(self, traj: JointTrajectory, others: dict[str, float]) -> str | None:
        """FK along the (linearly interpolated) joint path must stay in the workspace box. The first
        segment is exempt if the arm starts outside the box (so it can be brought back)."""
        lo, hi = np.asarray(self.params.workspace_min), np.asarray(self.params.workspace_max)
        start = self.kinematics.fk(traj.positions[0], others).translation
        start_outside = bool(np.any((start < lo) | (start > hi)))
        n = self.params.path_check_samples
        for s in range(len(traj.times) - 1):
            for k in range(1, n + 1):
                a = k / n
                if s == 0 and start_outside and a < 1.0:
                    continue
                q = (1 - a) * traj.positions[s] + a * traj.positions[s + 1]
                p = self.kinematics.fk(q, others).translation
                if np.any((p < lo) | (p > hi)):
                    return (f"path leaves the workspace box at segment {s} ({a:.2f}): end-effector at "
                            f"{np.round(p, 3).tolist()} m, box {self.params.workspace_min}..{self.params.workspace_max}")
        return None
