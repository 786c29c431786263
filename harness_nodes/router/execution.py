"""The execution monitor, the router's second half: follows a started `Plan` from the joint states
(tracking error along the path and at the target, unexpected contact, settle timeout), then runs
the gripper phase (reached width, stall, grasp detected or missed) and finishes the chunk with its
outcome. Owns the monitor's events (`StartGripper`, `Executing`, `Finished`) and
`ExecutionMonitor`, the monitoring half of `RouterCore` (a mixin over the core's state). Pure: no
rclpy."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from harness_nodes.router.planner import Plan
from harness_nodes.router.trajectory import GripperTrajectory, build_gripper_trajectory
from harness_nodes.router.validation import Failure, GripperCommand


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


STALL_WINDOW = 0.2      # s over which an unchanged finger width counts as stopped
STALL_DELTA = 5e-4      # m
STALL_MIN_TIME = 0.3    # s after the gripper command before a stall may count


class ExecutionMonitor:
    """Monitoring methods of RouterCore (see core.py for the state they use)."""

    @property
    def busy(self) -> bool:
        return self.execution is not None

    @property
    def active_chunk_id(self) -> str | None:
        return self.execution.plan.chunk_id if self.execution else None

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
