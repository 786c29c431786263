"""Validation of an incoming action chunk, already converted from the ROS message to plain data.

Pure: no rclpy. `validate_chunk(chunk, limits)` returns either a `ValidChunk` (normalized
quaternions, joint targets clamped into the margin band, clamps counted) or a `Rejection` with the
failure class and a human-readable reason. Nothing that fails here may ever reach the arm.
Strings are capped (`MAX_ID_LENGTH`, `MAX_NAME_LENGTH`) so no caller can make the router echo
megabytes into feedback, diagnostics and logs; `short()` shortens any string before it is echoed.
`validate_viewpoint` checks a viewpoint request's camera pose the same way (fields named as in
robot_harness/ViewpointRequest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Space(IntEnum):            # mirrors ActionChunk.SPACE_*
    END_EFFECTOR = 0
    JOINT = 1
    END_EFFECTOR_DELTA = 2       # ee poses relative to the current tool pose (made absolute by the core)


class GripperCommand(IntEnum):   # mirrors ActionChunk.GRIPPER_*
    NONE = 0
    OPEN = 1
    CLOSE = 2
    WIDTH = 3


class Failure(IntEnum):          # mirrors ExecutionFeedback.FAILURE_*
    NONE = 0
    INVALID_INPUT = 1
    LIMIT_VIOLATION = 2
    IK = 3
    TRACKING = 4
    TIMEOUT = 5
    CONTACT = 6
    GRASP = 7
    BUSY = 8
    NO_STATE = 9
    INACTIVE = 10
    HELD = 11
    COLLISION = 12
    CLAMPED = 13                 # executed, but the executed target differs from the asked one
    STALE = 14                   # stream command too old (stamp or queueing) or stamped in the future


QUATERNION_NORM_TOLERANCE = 1e-3   # |norm - 1| accepted (then normalized); beyond: rejected
QUATERNION_ZERO = 1e-6             # a norm below this is "zero", named as such in the reason
LIMIT_EPSILON = 1e-9               # rad, float noise tolerated exactly at a limit
MAX_ID_LENGTH = 128                # characters of chunk_id / request_id
MAX_NAME_LENGTH = 64               # characters of source, frame_id, camera and each joint name
MAX_JOINT_NAMES = 32
ECHO_LENGTH = 80                   # characters of a caller's string echoed into feedback and logs


def short(text, limit: int = ECHO_LENGTH) -> str:
    """`text` as a string of at most `limit` characters (longer ones cut, with their length said)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def check_strings(chunk_id: str, source: str = "", frame_id: str = "", joint_names=(),
                  id_field: str = "chunk_id", source_field: str = "source") -> "Rejection | None":
    """Reject over-long strings (named, with their length) before anything else looks at them."""
    if len(chunk_id) > MAX_ID_LENGTH:
        return _reject(Failure.INVALID_INPUT, f"{id_field} has {len(chunk_id)} characters, more than {MAX_ID_LENGTH}")
    for name, value in ((source_field, source), ("header.frame_id", frame_id)):
        if len(value) > MAX_NAME_LENGTH:
            return _reject(Failure.INVALID_INPUT, f"{name} has {len(value)} characters, more than {MAX_NAME_LENGTH}")
    if len(joint_names) > MAX_JOINT_NAMES:
        return _reject(Failure.INVALID_INPUT, f"{len(joint_names)} joint_names, more than {MAX_JOINT_NAMES}")
    for i, name in enumerate(joint_names):
        if len(name) > MAX_NAME_LENGTH:
            return _reject(Failure.INVALID_INPUT, f"joint_names[{i}] has {len(name)} characters, "
                           f"more than {MAX_NAME_LENGTH}")
    return None


@dataclass(frozen=True)
class ChunkInput:
    """An ActionChunk as plain Python data (times in seconds, quaternions x, y, z, w)."""
    chunk_id: str
    space: int
    source: str = ""
    attempt: int = 0
    frame_id: str = ""
    ee_positions: Sequence[Sequence[float]] = ()      # N x 3, m
    ee_orientations: Sequence[Sequence[float]] = ()   # N x 4, x y z w
    ee_times: Sequence[float] = ()                    # N, s
    joint_names: Sequence[str] = ()
    joint_positions: Sequence[Sequence[float]] = ()   # N x len(joint_names), rad
    joint_velocities: Sequence[Sequence[float]] = ()  # N x (0 or len(joint_names)); informative only
    joint_accelerations: Sequence[Sequence[float]] = ()
    joint_times: Sequence[float] = ()                 # N, s
    gripper_command: int = 0
    gripper_width: float = 0.0


@dataclass(frozen=True)
class Rejection:
    failure: Failure
    reason: str

    def __bool__(self) -> bool:  # a rejection is never "truthy" as a result
        return False


@dataclass(frozen=True)
class ValidChunk:
    chunk_id: str
    source: str
    attempt: int
    space: Space
    times: np.ndarray                          # (N,), s, strictly increasing, > 0
    ee_positions: np.ndarray | None = None     # (N, 3) for END_EFFECTOR (offsets for END_EFFECTOR_DELTA)
    ee_quaternions: np.ndarray | None = None   # (N, 4) x y z w, unit norm
    joint_names: tuple[str, ...] = ()          # JOINT: subset of the arm joints, as sent
    joint_positions: np.ndarray | None = None  # (N, len(joint_names)) after clamping
    gripper_command: GripperCommand = GripperCommand.NONE
    gripper_width: float | None = None         # m target for OPEN/CLOSE/WIDTH, None for NONE
    clamps: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> float:
        return float(self.times[-1])


class ValidationLimits(BaseModel):
    """Everything validation checks against (from the robot description and the router params)."""
    model_config = ConfigDict(frozen=True)

    joint_names: list[str] = Field(min_length=1)
    position_lower: list[float]
    position_upper: list[float]
    joint_limit_margin: float = Field(0.02, ge=0.0, le=0.5)
    max_chunk_duration: float = Field(30.0, gt=0.0)
    max_points: int = Field(200, ge=1)
    workspace_min: list[float] = Field(min_length=3, max_length=3)
    workspace_max: list[float] = Field(min_length=3, max_length=3)
    gripper_min_width: float = Field(ge=0.0)
    gripper_max_width: float = Field(gt=0.0)
    accepted_frames: list[str] = ["", "world"]

    @model_validator(mode="after")
    def _consistent(self) -> "ValidationLimits":
        n = len(self.joint_names)
        if len(self.position_lower) != n or len(self.position_upper) != n:
            raise ValueError("position limits must have one entry per joint")
        for i in range(n):
            if not self.position_lower[i] + 2 * self.joint_limit_margin < self.position_upper[i]:
                raise ValueError(f"joint_limit_margin leaves no range for {self.joint_names[i]}")
        if not all(a < b for a, b in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be < workspace_max on every axis")
        if not self.gripper_min_width < self.gripper_max_width:
            raise ValueError("gripper_min_width must be < gripper_max_width")
        return self


def _reject(failure: Failure, reason: str) -> Rejection:
    return Rejection(failure, reason)


def _as_matrix(rows: Sequence[Sequence[float]], width: int | None, what: str) -> np.ndarray | Rejection:
    rows = list(rows)
    for i, row in enumerate(rows):
        if width is not None and len(row) != width:
            return _reject(Failure.INVALID_INPUT, f"{what}[{i}] has {len(row)} values, expected {width}")
    try:
        arr = np.asarray([list(r) for r in rows], dtype=float)
    except (TypeError, ValueError) as exc:
        return _reject(Failure.INVALID_INPUT, f"{what} is not numeric: {exc}")
    if arr.size and not np.all(np.isfinite(arr)):
        i = int(np.argwhere(~np.isfinite(arr))[0][0])
        return _reject(Failure.INVALID_INPUT, f"{what}[{i}] contains a non-finite value (NaN or inf)")
    return arr


def _check_times(times: Sequence[float], what: str, limits: ValidationLimits) -> np.ndarray | Rejection:
    try:
        t = np.asarray(list(times), dtype=float)
    except (TypeError, ValueError):
        return _reject(Failure.INVALID_INPUT, f"{what} is not numeric")
    if not np.all(np.isfinite(t)):
        return _reject(Failure.INVALID_INPUT, f"{what} contains a non-finite value")
    if t.size == 0:
        return _reject(Failure.INVALID_INPUT, f"{what} is empty")
    if t[0] <= 0.0:
        return _reject(Failure.INVALID_INPUT, f"{what}[0] = {t[0]:.3f} s must be > 0")
    steps = np.diff(t)
    if np.any(steps <= 0.0):
        i = int(np.argmax(steps <= 0.0)) + 1
        return _reject(Failure.INVALID_INPUT,
                       f"{what} not strictly increasing at index {i} ({t[i - 1]:.3f} s -> {t[i]:.3f} s)")
    if t[-1] > limits.max_chunk_duration:
        return _reject(Failure.LIMIT_VIOLATION,
                       f"chunk duration {t[-1]:.3f} s exceeds max_chunk_duration {limits.max_chunk_duration} s")
    return t


def _gripper_target(chunk: ChunkInput, limits: ValidationLimits) -> tuple[GripperCommand, float | None] | Rejection:
    try:
        command = GripperCommand(int(chunk.gripper_command))
    except ValueError:
        return _reject(Failure.INVALID_INPUT, f"gripper_command {chunk.gripper_command} is not one of "
                       f"NONE=0, OPEN=1, CLOSE=2, WIDTH=3")
    width = float(chunk.gripper_width)
    if not math.isfinite(width):
        return _reject(Failure.INVALID_INPUT, f"gripper_width {width} is not finite")
    if command == GripperCommand.NONE:
        return command, None
    if command == GripperCommand.OPEN:
        return command, limits.gripper_max_width
    if command == GripperCommand.CLOSE:
        return command, limits.gripper_min_width
    if not limits.gripper_min_width <= width <= limits.gripper_max_width:
        return _reject(Failure.LIMIT_VIOLATION, f"gripper_width {width:.4f} m outside "
                       f"[{limits.gripper_min_width}, {limits.gripper_max_width}] m")
    return command, width


def clamp_joint_targets(names: Sequence[str], positions: np.ndarray, limits: ValidationLimits
                        ) -> tuple[np.ndarray, int] | Rejection:
    """Reject targets beyond a position limit; clamp those within the margin band into it."""
    index = {n: i for i, n in enumerate(limits.joint_names)}
    lo = np.array([limits.position_lower[index[n]] for n in names])
    hi = np.array([limits.position_upper[index[n]] for n in names])
    m = limits.joint_limit_margin
    out = positions.copy()
    below = out < lo - LIMIT_EPSILON
    above = out > hi + LIMIT_EPSILON
    if below.any() or above.any():
        p, j = map(int, np.argwhere(below | above)[0])
        return _reject(Failure.LIMIT_VIOLATION,
                       f"joint {names[j]} target {out[p, j]:.4f} rad at point {p} beyond its position limit "
                       f"[{lo[j]:.4f}, {hi[j]:.4f}] rad")
    low_band = out < lo + m
    high_band = out > hi - m
    clamps = int(low_band.sum() + high_band.sum())
    out = np.clip(out, lo + m, hi - m)
    return out, clamps


def outside_workspace(positions: np.ndarray, limits: ValidationLimits) -> Rejection | None:
    wmin, wmax = np.asarray(limits.workspace_min), np.asarray(limits.workspace_max)
    outside = np.any((positions < wmin) | (positions > wmax), axis=1)
    if not outside.any():
        return None
    i = int(np.argmax(outside))
    return _reject(Failure.LIMIT_VIOLATION,
                   f"ee_poses[{i}].position {np.round(positions[i], 4).tolist()} m outside the workspace box "
                   f"{limits.workspace_min}..{limits.workspace_max}")


def unit_quaternions(quat: np.ndarray, what: str) -> np.ndarray | Rejection:
    """Rows of (x, y, z, w) normalized, or a Rejection naming the row (`what` formats with {i})
    whose norm is zero or not within QUATERNION_NORM_TOLERANCE of 1."""
    norms = np.linalg.norm(quat, axis=1)
    for i, nrm in enumerate(norms):
        if not math.isfinite(nrm):
            return _reject(Failure.INVALID_INPUT, f"{what.format(i=i)} contains a non-finite value")
        if nrm < QUATERNION_ZERO:
            return _reject(Failure.INVALID_INPUT, f"{what.format(i=i)} is a zero quaternion")
        if abs(nrm - 1.0) > QUATERNION_NORM_TOLERANCE:
            return _reject(Failure.INVALID_INPUT, f"{what.format(i=i)} has norm {nrm:.6f}, "
                           f"not within {QUATERNION_NORM_TOLERANCE} of 1")
    return quat / norms[:, None]


def validate_viewpoint(request_id: str, camera: str, position: Sequence[float], orientation: Sequence[float],
                       frame_id: str, limits: ValidationLimits, camera_name: str
                       ) -> tuple[np.ndarray, np.ndarray] | Rejection:
    """A viewpoint request's camera pose -> (position (3,), unit quaternion x y z w (4,)) or a
    Rejection naming the ViewpointRequest field at fault. The camera position must lie in the
    workspace box (a finite but absurd one, e.g. 1e308, is refused here, not deep in the planner)."""
    if not request_id.strip():
        return _reject(Failure.INVALID_INPUT, "request_id is empty")
    too_long = check_strings(request_id, camera, frame_id, id_field="request_id", source_field="camera")
    if too_long is not None:
        return too_long
    if camera != camera_name:
        return _reject(Failure.INVALID_INPUT, f"camera '{short(camera)}': only '{camera_name}' can be moved")
    if frame_id not in limits.accepted_frames:
        return _reject(Failure.INVALID_INPUT, f"header.frame_id '{short(frame_id)}' is not the robot base frame "
                       f"(accepted: {limits.accepted_frames})")
    pos = np.asarray(list(position), dtype=float)
    if not np.all(np.isfinite(pos)):
        return _reject(Failure.INVALID_INPUT, "camera_pose.position contains a non-finite value (NaN or inf)")
    wmin, wmax = np.asarray(limits.workspace_min), np.asarray(limits.workspace_max)
    if np.any((pos < wmin) | (pos > wmax)):
        return _reject(Failure.LIMIT_VIOLATION, f"camera_pose.position {np.round(pos, 4).tolist()} m outside the "
                       f"workspace box {limits.workspace_min}..{limits.workspace_max}")
    quat = unit_quaternions(np.asarray([list(orientation)], dtype=float), "camera_pose.orientation")
    if isinstance(quat, Rejection):
        return quat
    return pos, quat[0]


def validate_chunk(chunk: ChunkInput, limits: ValidationLimits) -> ValidChunk | Rejection:
    """Check everything about a chunk that does not need kinematics or the robot's state."""
    if not isinstance(chunk.chunk_id, str) or not chunk.chunk_id.strip():
        return _reject(Failure.INVALID_INPUT, "chunk_id is empty")
    too_long = check_strings(chunk.chunk_id, chunk.source, chunk.frame_id, chunk.joint_names)
    if too_long is not None:
        return too_long
    try:
        space = Space(int(chunk.space))
    except ValueError:
        return _reject(Failure.INVALID_INPUT, f"space {chunk.space} is not SPACE_END_EFFECTOR=0, SPACE_JOINT=1 "
                       "or SPACE_END_EFFECTOR_DELTA=2")
    if chunk.frame_id not in limits.accepted_frames:
        return _reject(Failure.INVALID_INPUT, f"header.frame_id '{short(chunk.frame_id)}' is not the robot base frame "
                       f"(accepted: {limits.accepted_frames})")
    gripper = _gripper_target(chunk, limits)
    if isinstance(gripper, Rejection):
        return gripper
    command, width = gripper
    common = dict(chunk_id=chunk.chunk_id, source=chunk.source, attempt=int(chunk.attempt), space=space,
                  gripper_command=command, gripper_width=width)

    if space in (Space.END_EFFECTOR, Space.END_EFFECTOR_DELTA):
        if len(chunk.joint_names) or len(chunk.joint_positions):
            return _reject(Failure.INVALID_INPUT, f"SPACE_{space.name} chunk must not carry joint_names/joint_points")
        n = len(chunk.ee_positions)
        if n == 0:
            return _reject(Failure.INVALID_INPUT, "ee_poses is empty")
        if n != len(chunk.ee_times) or n != len(chunk.ee_orientations):
            return _reject(Failure.INVALID_INPUT,
                           f"ee_poses ({n}) and ee_times ({len(chunk.ee_times)}) differ in length")
        if n > limits.max_points:
            return _reject(Failure.INVALID_INPUT, f"{n} ee_poses exceed the maximum of {limits.max_points}")
        pos = _as_matrix(chunk.ee_positions, 3, "ee_poses.position")
        if isinstance(pos, Rejection):
            return pos
        quat = _as_matrix(chunk.ee_orientations, 4, "ee_poses.orientation")
        if isinstance(quat, Rejection):
            return quat
        times = _check_times(chunk.ee_times, "ee_times", limits)
        if isinstance(times, Rejection):
            return times
        quat = unit_quaternions(quat, "ee_poses[{i}].orientation")
        if isinstance(quat, Rejection):
            return quat
        if space == Space.END_EFFECTOR:
            outside = outside_workspace(pos, limits)
            if outside is not None:
                return outside
        return ValidChunk(times=times, ee_positions=pos, ee_quaternions=quat, **common)

    # SPACE_JOINT
    if len(chunk.ee_positions) or len(chunk.ee_times):
        return _reject(Failure.INVALID_INPUT, "SPACE_JOINT chunk must not carry ee_poses/ee_times")
    names = list(chunk.joint_names)
    if not names:
        return _reject(Failure.INVALID_INPUT, "joint_names is empty")
    unknown = [n for n in names if n not in limits.joint_names]
    if unknown:
        return _reject(Failure.INVALID_INPUT, f"unknown joint name(s) {[short(n) for n in unknown]}; arm joints are {limits.joint_names}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        return _reject(Failure.INVALID_INPUT, f"duplicated joint name(s) {dup}")
    n = len(chunk.joint_positions)
    if n == 0:
        return _reject(Failure.INVALID_INPUT, "joint_points is empty")
    if n > limits.max_points:
        return _reject(Failure.INVALID_INPUT, f"{n} joint_points exceed the maximum of {limits.max_points}")
    if len(chunk.joint_times) != n:
        return _reject(Failure.INVALID_INPUT, f"{n} joint_points but {len(chunk.joint_times)} times")
    positions = _as_matrix(chunk.joint_positions, len(names), "joint_points.positions")
    if isinstance(positions, Rejection):
        return positions
    for what, rows in (("velocities", chunk.joint_velocities), ("accelerations", chunk.joint_accelerations)):
        for i, row in enumerate(rows):
            if len(row) not in (0, len(names)):
                return _reject(Failure.INVALID_INPUT,
                               f"joint_points[{i}].{what} has {len(row)} values, expected 0 or {len(names)}")
            if not all(math.isfinite(float(v)) for v in row):
                return _reject(Failure.INVALID_INPUT, f"joint_points[{i}].{what} contains a non-finite value")
    times = _check_times(chunk.joint_times, "joint_points.time_from_start", limits)
    if isinstance(times, Rejection):
        return times
    clamped = clamp_joint_targets(names, positions, limits)
    if isinstance(clamped, Rejection):
        return clamped
    positions, clamps = clamped
    notes = (f"{clamps} joint target(s) clamped into the {limits.joint_limit_margin} rad margin",) if clamps else ()
    return ValidChunk(times=times, joint_names=tuple(names), joint_positions=positions, clamps=clamps,
                      notes=notes, **common)
