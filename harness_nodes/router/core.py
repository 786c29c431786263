"""RouterCore: validation, IK, time scaling and the execution monitor, without ROS.

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

import hashlib
import math
from collections import deque
from typing import ClassVar
import dataclasses
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness_nodes.common.robot_description import RobotDescription
from harness_nodes.common.geometry import matrix_to_quat, quat_to_matrix
from harness_nodes.common.kinematics import ArmKinematics, pose_to_se3
from harness_nodes.router.safety import (check_path_collisions, limit_steps, proximity_scale, slow_near_collisions,
                                         slow_near_singularities)
from harness_nodes.router.trajectory import (GripperTrajectory, JointTrajectory, TimingLimits,
                                             build_arm_trajectory, build_gripper_trajectory)
from harness_nodes.router.validation import (ChunkInput, Failure, GripperCommand, Rejection, Space, ValidChunk,
                                             ValidationLimits, outside_workspace, validate_chunk)


class RouterParameters(BaseModel):
    """The controller router's ROS parameters (config/router.yaml); extra fields have defaults."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Changeable at run time (`ros2 param set`), applied by the node; every other field is read-only.
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({
        "velocity_scale", "acceleration_scale", "min_segment_time", "ik_max_iterations", "ik_tolerance",
        "tracking_tolerance", "settle_time", "gripper_settle_time", "state_timeout", "gripper_tolerance",
        "path_check_samples", "max_joint_step", "singularity_min_scale", "collision_min_scale", "path_tolerance",
        "contact_effort_ratio", "contact_time", "grasp_min_width", "grip_effort_ratio", "command_timeout",
        "max_stream_step", "heartbeat_timeout"})

    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml")
    command_topic: str = Field("harness/command", min_length=1)
    feedback_topic: str = Field("harness/execution", min_length=1)
    joint_limit_margin: float = Field(0.02, ge=0.0, le=0.2, description="rad kept inside every position limit")
    velocity_scale: float = Field(0.5, gt=0.0, le=1.0, description="fraction of each velocity limit")
    min_segment_time: float = Field(0.2, gt=0.0, le=10.0, description="s between two waypoints, at least")
    max_chunk_duration: float = Field(30.0, gt=0.0, le=600.0, description="s, longer chunks are rejected")
    ik_max_iterations: int = Field(200, ge=1, le=10000)
    ik_tolerance: float = Field(0.001, gt=0.0, le=0.05, description="m and rad")
    tracking_tolerance: float = Field(0.05, gt=0.0, le=0.5, description="rad after settling")
    settle_time: float = Field(0.5, ge=0.0, le=30.0, description="s allowed after the trajectory ends")
    gripper_settle_time: float = Field(1.0, ge=0.0, le=30.0, description="s allowed for the gripper")
    workspace_min: list[float] = Field([-0.9, -0.9, -0.02], min_length=3, max_length=3)
    workspace_max: list[float] = Field([0.9, 0.9, 1.2], min_length=3, max_length=3)
    # Not in the first router.yaml (defaults used before v2):
    acceleration_scale: float = Field(0.5, gt=0.0, le=1.0, description="fraction of each acceleration limit")
    state_timeout: float = Field(1.0, gt=0.0, le=60.0, description="s, older joint states count as no state")
    max_chunk_points: int = Field(200, ge=1, le=10000, description="waypoints per chunk, at most")
    gripper_tolerance: float = Field(0.002, gt=0.0, le=0.05, description="m of width counted as reached")
    path_check_samples: int = Field(8, ge=1, le=100, description="FK workspace checks per segment")
    # -- router v2: safety in the loop
    max_joint_step: float = Field(1.5, gt=0.0, le=6.3, description="rad a joint may move between two waypoints (clamped)")
    collision_check: bool = Field(True, description="self- and table-collision check of every planned path")
    table_height: float = Field(0.0, ge=-2.0, le=2.0, description="m, table top in the base frame")
    singularity_threshold: float = Field(-1.0, ge=-1.0, le=1.0, description="manipulability below which motion slows; -1 = the robot description's, 0 = off")
    singularity_min_scale: float = Field(0.2, gt=0.0, le=1.0, description="slowest velocity scale near a singularity")
    collision_slowdown_distance: float = Field(0.03, ge=0.0, le=0.5,
                                               description="m; motion closing in on the table or a self-collision "
                                                           "below this distance slows; 0 = off")
    collision_min_scale: float = Field(0.2, gt=0.0, le=1.0, description="slowest velocity scale near a collision")
    path_tolerance: float = Field(0.3, gt=0.0, le=3.0, description="rad, max joint error while moving (then hold)")
    contact_effort_ratio: float = Field(0.95, ge=0.0, le=1.0, description="|effort| / effort_limit counted as contact; 0 = off")
    contact_time: float = Field(0.15, ge=0.0, le=5.0, description="s the effort must stay that high to count as contact")
    grasp_min_width: float = Field(0.004, ge=0.0, le=0.1, description="m; a close ending narrower held nothing")
    grip_effort_ratio: float = Field(0.9, ge=0.0, le=1.0, description="finger |effort| / the gripper's effort held for the stall window while closing = gripping an object; 0 = off")
    # -- watchdog, e-stop, streaming, lifecycle, routing (node)
    stream_topic: str = Field("harness/command_stream", min_length=1, description="single-point ActionChunks, servo style")
    command_timeout: float = Field(0.1, gt=0.0, le=10.0, description="s without a stream command -> hold")
    max_stream_step: float = Field(0.1, gt=0.0, le=1.0, description="rad per stream command (clamped)")
    heartbeat_topic: str = Field("harness/heartbeat", min_length=1, description="std_msgs/Header from the supervisor")
    heartbeat_timeout: float = Field(0.0, ge=0.0, le=60.0, description="s; once a heartbeat was seen, silence -> hold; 0 = off")
    estop_topic: str = Field("harness/estop", min_length=1, description="std_msgs/Bool; true latches a hold")
    autostart: bool = Field(True, description="configure and activate on start (else wait for lifecycle calls)")
    controller: str = Field("", pattern="^(|joint_trajectory|forward_position|follow_joint_trajectory)$",
                            description="arm controller at start; empty = the robot description's")
    monitor_rate: float = Field(100.0, ge=10.0, le=1000.0, description="Hz of the router loop (monitor, watchdog, forward streaming)")
    realtime_priority: int = Field(0, ge=0, le=98, description="SCHED_FIFO priority of the router's threads; 0 = normal scheduling")

    @field_validator("workspace_min", "workspace_max", mode="before")
    @classmethod
    def _listify(cls, value):
        return list(value) if not isinstance(value, (list, str)) and hasattr(value, "__iter__") else value

    @model_validator(mode="after")
    def _box(self) -> "RouterParameters":
        for name in ("workspace_min", "workspace_max"):
            if not all(math.isfinite(v) for v in getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if not all(a < b for a, b in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be < workspace_max on every axis")
        return self


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


# -- monitor events
@dataclass(frozen=True)
class StartGripper:
    chunk_id: str
    trajectory: GripperTrajectory


@dataclass(frozen=True)
class Executing:
    chunk_id: str
    phase: str
    progress: float


@dataclass(frozen=True)
class Finished:
    chunk_id: str
    attempt: int
    succeeded: bool
    failure: Failure
    message: str
    tracking_error: float
    gripper_width: float
    progress: float
    clamps: int
    held: bool = False         # stopped by a hold (e-stop, watchdog, deactivation, switch)
    stop_arm: bool = False     # the arm must be stopped now (failure detected while moving)
    executed_target: tuple[float, ...] = ()    # final arm target sent to the controller (rad)
    requested_target: tuple[float, ...] = ()   # final arm target as asked (rad), () if unknown
    fingerprint: str = ""


@dataclass
class _Execution:
    plan: Plan
    start: float
    phase: str = "arm"                    # arm -> gripper -> done
    arm_end: float = 0.0
    tracking_error: float = math.nan
    gripper: GripperTrajectory | None = None
    gripper_start: float = 0.0
    gripper_start_width: float | None = None
    widths: deque = field(default_factory=lambda: deque(maxlen=200))  # (t, width)
    contact_since: float | None = None
    contact_exempt: dict = field(default_factory=dict)   # joint -> effort sign of a contact moved away from
    grip_since: float | None = None       # finger effort at the gripper's limit since (closing)


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


def fingerprint(chunk: ChunkInput) -> str:
    """Digest of everything a chunk asks for (not its attempt counter): equal digests = same request."""
    content = dataclasses.asdict(chunk)
    content.pop("attempt", None)
    return hashlib.sha1(repr(sorted(content.items())).encode()).hexdigest()


STALL_WINDOW = 0.2      # s over which an unchanged finger width counts as stopped
STALL_DELTA = 5e-4      # m
STALL_MIN_TIME = 0.3    # s after the gripper command before a stall may count


class RouterCore:
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

    # ------------------------------------------------------------------ submission
    @property
    def busy(self) -> bool:
        return self.execution is not None

    @property
    def active_chunk_id(self) -> str | None:
        return self.execution.plan.chunk_id if self.execution else None

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

    def others(self, joint_positions: dict[str, float] | None) -> dict[str, float]:
        """Measured non-arm joints (gripper and its mimic joints) for FK and collision checks."""
        out = dict(self.open_fingers)
        for n in out:
            if joint_positions and n in joint_positions and math.isfinite(joint_positions[n]):
                out[n] = joint_positions[n]
        return out

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

    # ------------------------------------------------------------------ execution monitor
    def start(self, plan: Plan, now: float, efforts: dict[str, float] | None = None) -> None:
        """Start monitoring `plan`. `efforts` at the start: a contact already present on a joint the
        plan moves away from (against the effort) does not fail the chunk while it lasts."""
        if self.execution is not None:
            raise RuntimeError(f"chunk '{self.execution.plan.chunk_id}' is still executing")
        self.execution = _Execution(plan, now, arm_end=now + plan.arm.duration)
        motion = plan.arm.final - plan.arm.positions[0]
        self.execution.contact_exempt = self._moving_away(efforts, motion)

    def _contact_joints(self, efforts: dict[str, float] | None) -> dict[str, float]:
        """Joints whose |effort| is at the contact threshold -> their effort."""
        ratio = self.params.contact_effort_ratio
        if not efforts or ratio <= 0.0:
            return {}
        out = {}
        for name, limit in zip(self.arm_joints, self.description.arm.effort_limit):
            e = efforts.get(name)
            if e is not None and math.isfinite(e) and abs(e) >= ratio * limit:
                out[name] = e
        return out

    def _moving_away(self, efforts: dict[str, float] | None, motion: np.ndarray) -> dict[str, float]:
        """Joints in contact that `motion` (arm joint deltas) moves against their effort: away from it."""
        out = {}
        for name, e in self._contact_joints(efforts).items():
            d = float(motion[self.arm_joints.index(name)])
            if d * e < 0.0:
                out[name] = math.copysign(1.0, e)
        return out

    def stream_contact(self, efforts: dict[str, float] | None, current: np.ndarray | None,
                       target: np.ndarray | None) -> str | None:
        """Contact while streaming: joints at the effort threshold, except those the stream's target
        moves away from (against the effort). None if there is none."""
        motion = (np.zeros(len(self.arm_joints)) if current is None or target is None
                  else np.asarray(target) - np.asarray(current))
        away = self._moving_away(efforts, motion)
        return self.contact(efforts, exempt=away)

    def progress(self, now: float) -> float:
        ex = self.execution
        if ex is None:
            return 0.0
        total = ex.plan.arm.duration + (ex.gripper.duration if ex.gripper else 0.0)
        return float(np.clip((now - ex.start) / total, 0.0, 1.0)) if total > 0 else 1.0

    def update(self, now: float, joint_positions: dict[str, float] | None,
               state_time: float | None, efforts: dict[str, float] | None = None) -> list:
        """Advance the monitor. `state_time` is when `joint_positions` was received (same clock);
        `efforts` (N m, from the same joint state) enable the unexpected-contact and grip checks."""
        ex = self.execution
        if ex is None:
            return []
        fresh = state_time is not None and now - state_time <= self.params.state_timeout
        events: list = []
        if ex.phase == "arm":
            if fresh:
                # a contact moved away from stays exempt while it lasts; once released it re-arms
                ex.contact_exempt = {n: s for n, s in ex.contact_exempt.items()
                                     if n in self._contact_joints(efforts)
                                     and math.copysign(1.0, self._contact_joints(efforts)[n]) == s}
                contact = self.contact(efforts, exempt=ex.contact_exempt)
                if contact is None:
                    ex.contact_since = None
                elif ex.contact_since is None:
                    ex.contact_since = now
                if contact and now - ex.contact_since >= self.params.contact_time:
                    self.counters.contacts += 1
                    return [self._finish(ex, now, False, Failure.CONTACT, contact, joint_positions, stop_arm=True)]
            if now < ex.arm_end:
                q = self.arm_state(joint_positions) if fresh else None
                if q is not None and not isinstance(q, str):
                    desired = ex.plan.arm.sample(now - ex.start)
                    err = np.abs(q - desired)
                    if float(np.max(err)) > self.params.path_tolerance:
                        j = int(np.argmax(err))
                        ex.tracking_error = float(err[j])
                        self.counters.tracking_failures += 1
                        return [self._finish(ex, now, False, Failure.TRACKING,
                                             f"tracking error {err[j]:.3f} rad on {self.arm_joints[j]} > "
                                             f"path_tolerance {self.params.path_tolerance} rad while moving",
                                             joint_positions, stop_arm=True)]
                return [Executing(ex.plan.chunk_id, "arm", self.progress(now))]
            q = self.arm_state(joint_positions) if fresh else "no state: joint states are stale"
            if not isinstance(q, str):
                ex.tracking_error = float(np.max(np.abs(q - ex.plan.arm.final)))
                if ex.tracking_error <= self.params.tracking_tolerance:
                    ex.phase = "gripper"
                    return self._start_gripper(ex, now, joint_positions)
            if now > ex.arm_end + self.params.settle_time:
                if isinstance(q, str):
                    return [self._finish(ex, now, False, Failure.TIMEOUT,
                                         f"arm did not report reaching the target within settle_time "
                                         f"{self.params.settle_time} s ({q})", joint_positions)]
                return [self._finish(ex, now, False, Failure.TRACKING,
                                     f"tracking error {ex.tracking_error:.4f} rad > tracking_tolerance "
                                     f"{self.params.tracking_tolerance} rad after settle_time", joint_positions)]
            return events
        if ex.phase == "gripper":
            width = self.finger_width(joint_positions) if fresh else None
            elapsed = now - ex.gripper_start
            target = ex.gripper.width
            if width is not None:
                ex.widths.append((now, width))
                if abs(width - target) <= self.params.gripper_tolerance:
                    if ex.plan.gripper_command == GripperCommand.CLOSE and width < self.params.grasp_min_width:
                        self.counters.grasp_failures += 1
                        return [self._finish(ex, now, False, Failure.GRASP,
                                             f"gripper closed to {width:.4f} m < grasp_min_width "
                                             f"{self.params.grasp_min_width} m: nothing held", joint_positions)]
                    return [self._finish(ex, now, True, Failure.NONE, "", joint_positions)]
                start_width = ex.gripper_start_width if ex.gripper_start_width is not None else ex.widths[0][1]
                moved = abs(width - start_width) >= STALL_DELTA
                # Fingers pressing at the gripper's effort limit hold something, even while the contact
                # still creeps (a squeezed object settling): the force says so before the width settles.
                gripping = ex.plan.gripper_command == GripperCommand.CLOSE and moved and self._gripping(efforts)
                ex.grip_since = (ex.grip_since if ex.grip_since is not None else now) if gripping else None
                if ex.grip_since is not None and now - ex.grip_since >= STALL_WINDOW \
                        and width >= self.params.grasp_min_width:
                    return [self._finish(ex, now, True, Failure.NONE,
                                         f"gripper holding at {width:.4f} m (finger effort at the gripper's "
                                         f"{self.description.gripper.effort} N m)", joint_positions)]
                # Fingers that moved and then stopped short of the target are blocked (by an object).
                if moved and elapsed >= STALL_MIN_TIME and self._stalled(ex, now):
                    return [self._finish(ex, now, True, Failure.NONE,
                                         f"gripper stopped at {width:.4f} m (target {target:.4f} m)",
                                         joint_positions)]
                # Fingers that never moved: already blocked when closing, else the gripper did not respond.
                if not moved and elapsed > ex.gripper.duration + self.params.gripper_settle_time \
                        and ex.plan.gripper_command == GripperCommand.CLOSE:
                    return [self._finish(ex, now, True, Failure.NONE,
                                         f"gripper did not move: already closed on something at {width:.4f} m",
                                         joint_positions)]
            elif elapsed >= ex.gripper.duration and not self._have_fingers(joint_positions):
                return [self._finish(ex, now, True, Failure.NONE,
                                     "gripper width not measured (no finger joint states)", joint_positions)]
            if elapsed > ex.gripper.duration + self.params.gripper_settle_time:
                return [self._finish(ex, now, False, Failure.TIMEOUT,
                                     f"gripper did not reach {target:.4f} m or stop within "
                                     f"{ex.gripper.duration + self.params.gripper_settle_time:.2f} s", joint_positions)]
            return [Executing(ex.plan.chunk_id, "gripper", self.progress(now))]
        return events

    def _gripping(self, efforts: dict[str, float] | None) -> bool:
        ratio = self.params.grip_effort_ratio
        if not efforts or ratio <= 0.0:
            return False
        values = [efforts.get(n) for n in self.finger_joints]
        limit = ratio * self.description.gripper.effort
        return all(e is not None and math.isfinite(e) and abs(e) >= limit for e in values)

    def _have_fingers(self, joint_positions) -> bool:
        return bool(joint_positions) and all(n in joint_positions for n in self.finger_joints)

    def _stalled(self, ex: _Execution, now: float) -> bool:
        window = [w for t, w in ex.widths if t >= now - STALL_WINDOW]
        old = [t for t, _ in ex.widths if t < now - STALL_WINDOW]
        return bool(old) and len(window) >= 2 and max(window) - min(window) < STALL_DELTA

    def _start_gripper(self, ex: _Execution, now: float, joint_positions) -> list:
        if ex.plan.gripper_command == GripperCommand.NONE:
            return [self._finish(ex, now, True, Failure.NONE, "", joint_positions)]
        g = self.description.gripper
        ex.gripper = build_gripper_trajectory(self.finger_joints, ex.plan.gripper_width,
                                              self.finger_width(joint_positions), g.min_width, g.max_width,
                                              g.max_speed, self.params.min_segment_time, g.position_for_width)
        ex.gripper_start = now
        ex.gripper_start_width = self.finger_width(joint_positions)
        return [StartGripper(ex.plan.chunk_id, ex.gripper)]

    def contact(self, efforts: dict[str, float] | None, exempt=()) -> str | None:
        """The first arm joint at the contact threshold (not in `exempt`), described; None if none."""
        ratio = self.params.contact_effort_ratio
        limits = dict(zip(self.arm_joints, self.description.arm.effort_limit))
        for name, e in self._contact_joints(efforts).items():
            if name not in exempt:
                return (f"unexpected contact: {name} effort {e:.1f} N m >= {ratio:.2f} x limit "
                        f"{limits[name]} N m")
        return None

    def hold(self, now: float, reason: str, joint_positions=None) -> Finished | None:
        """Stop the executing chunk because the router holds (e-stop, watchdog, inactive, switch)."""
        self.counters.holds += 1
        ex = self.execution
        if ex is None:
            return None
        return self._finish(ex, now, False, Failure.HELD, reason, joint_positions, held=True, stop_arm=True)

    def _finish(self, ex: _Execution, now: float, ok: bool, failure: Failure, message: str,
                joint_positions, held: bool = False, stop_arm: bool = False) -> Finished:
        width = self.finger_width(joint_positions)
        executed = ex.plan.arm.final
        requested = ex.plan.requested
        if ok and requested is not None:
            gap = np.abs(executed - requested)
            if float(np.max(gap)) > self.params.tracking_tolerance:
                j = int(np.argmax(gap))
                ok, failure = False, Failure.CLAMPED
                message = (f"executed a clamped target: {self.arm_joints[j]} asked {requested[j]:.4f} rad, "
                           f"executed {executed[j]:.4f} rad (executed_positions has every joint)"
                           + (f"; {message}" if message else ""))
        notes = "; ".join(ex.plan.notes)
        if notes:
            message = f"{message}; {notes}" if message else notes
        result = Finished(ex.plan.chunk_id, ex.plan.attempt, ok, failure, message,
                          ex.tracking_error, math.nan if width is None else width,
                          1.0 if ok or failure == Failure.CLAMPED else self.progress(now), ex.plan.clamps, held,
                          stop_arm, tuple(float(x) for x in executed),
                          () if requested is None else tuple(float(x) for x in requested), ex.plan.fingerprint)
        if ok:
            self.counters.succeeded += 1
        else:
            self.counters.failed += 1
        self.execution = None
        self.finished[result.chunk_id] = result
        self._finished_order.append(result.chunk_id)
        while len(self._finished_order) > 64:
            self.finished.pop(self._finished_order.popleft(), None)
        return result

    def fail(self, now: float, failure: Failure, reason: str, joint_positions=None) -> Finished | None:
        """Finish the executing chunk as FAILED now and stop the arm (e.g. joint states or the clock
        stopped: nothing can be monitored any more)."""
        ex = self.execution
        if ex is None:
            return None
        return self._finish(ex, now, False, failure, reason, joint_positions, stop_arm=True)

