"""Planner fallback: end-effector chunks for each motion subgoal, built from memory's beliefs
(where the object is, where the destination is) with the expert's pick-and-place geometry
(harness_nodes/expert/plan.py), plus the checks that verify a subgoal from beliefs.

Used when the latent-action policy is switched off or does not answer. Positions are metres in the
world (= robot base) frame, quaternions x, y, z, w.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from harness_nodes.common.geometry import quat_multiply, yaw_quat
from harness_nodes.expert.plan import (GRIPPER_CLOSE, GRIPPER_NONE, GRIPPER_OPEN, PickPlaceConfig,
                                       top_down_quaternion, yaw_of)
from harness_nodes.supervisor.recovery import Subgoal
from harness_nodes.supervisor.task import Task, TaskKind

STATE_VALID, STATE_STALE, STATE_INVALID, STATE_CONTRADICTED = 0, 1, 2, 3   # robot_harness/MemoryFact


@dataclass(frozen=True)
class Belief:
    """What memory believes about one subject (a visual fact), as plain data."""
    subject: str
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    confidence: float = 1.0
    state: int = STATE_VALID
    value: str = ""
    source: str = ""
    last_verified: float = 0.0
    gripped: bool | None = None       # measured: fingers closed on something (None = not measured)

    @property
    def held(self) -> bool:
        """In the gripper: measured finger width when known (memory's grasp note in the fact's value
        is replaced by the next observation of the carried object), else memory's note."""
        if self.gripped is not None:
            return self.gripped
        try:
            return bool(json.loads(self.value).get("held", False)) if self.value else False
        except (ValueError, AttributeError):
            return False

    def trustworthy(self, min_confidence: float) -> bool:
        return self.state == STATE_VALID and self.confidence >= min_confidence and all(
            math.isfinite(v) for v in self.position)


@dataclass(frozen=True)
class Candidate:
    """One action chunk to try: planner-built (positions) or proposed by the policy (payload)."""
    name: str
    positions: tuple = ()                 # waypoints, m
    quaternion: tuple = (1.0, 0.0, 0.0, 0.0)
    gripper: int = GRIPPER_NONE
    delta: bool = False                   # positions are offsets from the tool pose (SPACE_END_EFFECTOR_DELTA)
    source: str = "planner"
    payload: object = field(default=None, compare=False)   # a policy's ActionChunk, sent as it is
    score: float = 0.0


@dataclass(frozen=True)
class PlannerConfig:
    pick: PickPlaceConfig = PickPlaceConfig()
    object_size: float = 0.05             # m, cube edge: stacking height
    stack_clearance: float = 0.01         # m above the lower object's top where the upper is released
    tray_half_width: float = 0.10         # m, |xy - tray centre| that counts as in the tray
    tray_in_height: float = 0.06          # m above the tray base
    stack_tolerance: float = 0.03         # m of xy offset on the lower object that counts as stacked
    back_off_height: float = 0.08         # m the tool goes up when backing off


class Planner:
    def __init__(self, config: PlannerConfig = PlannerConfig()):
        self.config = config

    def release_point(self, task: Task, dest: Belief) -> np.ndarray:
        d = np.asarray(dest.position, dtype=float)
        if task.kind is TaskKind.STACK:
            return d + np.array([0.0, 0.0, self.config.object_size + self.config.stack_clearance])
        return d + np.array([0.0, 0.0, self.config.pick.place_height])

    def chunk(self, subgoal: Subgoal, task: Task, obj: Belief, dest: Belief, yaw_offset: float = 0.0,
              carry_raise: float = 0.0, grasp_turn: float = 0.0) -> Candidate:
        """The planner's chunk for a motion subgoal (not LOOK). `carry_raise` (m) lifts the held object
        that much higher and carries it across at that height before coming down above the destination
        (after a contact while carrying). The grasp yaw is folded to the quarter turn nearest the
        wrist's home (a cube looks the same); `grasp_turn` (rad) turns it after that fold, so pi/2
        takes the other pair of faces (after a contact while grasping)."""
        c = self.config.pick
        grasp = np.asarray(obj.position, dtype=float) + np.array([0.0, 0.0, c.grasp_height_offset])
        above_obj = grasp + np.array([0.0, 0.0, c.approach_height])
        release = self.release_point(task, dest)
        above_dest = release + np.array([0.0, 0.0, c.approach_height])
        raised = np.array([0.0, 0.0, max(0.0, float(carry_raise))])
        carry = [above_dest + raised, above_dest] if raised[2] > 0 else [above_dest]
        pick_q = quat_multiply(yaw_quat(grasp_turn), top_down_quaternion(yaw_of(obj.orientation) + yaw_offset))
        place_q = top_down_quaternion(0.0 if task.kind is TaskKind.PICK_PLACE else yaw_of(dest.orientation))
        table = {
            Subgoal.APPROACH: ([above_obj], pick_q, GRIPPER_OPEN),
            Subgoal.GRASP: ([grasp], pick_q, GRIPPER_CLOSE),
            Subgoal.LIFT: ([above_obj + raised], pick_q, GRIPPER_NONE),
            Subgoal.MOVE: (carry, place_q, GRIPPER_NONE),
            Subgoal.PLACE: ([release], place_q, GRIPPER_NONE),
            Subgoal.RELEASE: ([release], place_q, GRIPPER_OPEN),
            Subgoal.VERIFY: ([above_dest], place_q, GRIPPER_NONE),
        }
        if subgoal not in table:
            raise ValueError(f"subgoal '{subgoal.value}' has no motion")
        points, q, grip = table[subgoal]
        return Candidate(name=subgoal.value, positions=tuple(tuple(float(v) for v in p) for p in points),
                         quaternion=tuple(float(v) for v in q), gripper=grip)

    def candidates(self, subgoal: Subgoal, task: Task, obj: Belief, dest: Belief, count: int,
                   yaw_offset: float = 0.0, yaw_step: float = 0.15, carry_raise: float = 0.0,
                   grasp_turn: float = 0.0) -> list[Candidate]:
        """`count` variants of the subgoal's chunk (wrist yaw around the nominal one) for the world
        model to rank; the nominal chunk first."""
        offsets = [0.0] + [s * yaw_step * (k // 2 + 1) for k, s in zip(range(max(0, count - 1)),
                                                                        [1, -1] * count)]
        return [self.chunk(subgoal, task, obj, dest, yaw_offset + o, carry_raise, grasp_turn)
                for o in offsets[:max(1, count)]]

    def back_off(self, open_gripper: bool) -> Candidate:
        return Candidate(name="back_off", positions=((0.0, 0.0, self.config.back_off_height),),
                         quaternion=(0.0, 0.0, 0.0, 1.0), gripper=GRIPPER_OPEN if open_gripper else GRIPPER_NONE,
                         delta=True)

    def moved(self, planned: Belief, now: Belief, tolerance: float) -> bool:
        return float(np.linalg.norm(np.subtract(planned.position, now.position))) > tolerance

    def placed(self, task: Task, obj: Belief, dest: Belief) -> bool:
        """Is the object where the task wants it, by the beliefs?"""
        o, d = np.asarray(obj.position, dtype=float), np.asarray(dest.position, dtype=float)
        if not (np.all(np.isfinite(o)) and np.all(np.isfinite(d))) or obj.held:
            return False
        if task.kind is TaskKind.PICK_PLACE:
            return bool(np.all(np.abs(o[:2] - d[:2]) <= self.config.tray_half_width)
                        and o[2] <= d[2] + self.config.tray_in_height)
        return bool(np.linalg.norm(o[:2] - d[:2]) <= self.config.stack_tolerance
                    and o[2] > d[2] + 0.5 * self.config.object_size)


def waypoint_times(start, positions, config: PickPlaceConfig) -> list[float]:
    from harness_nodes.expert.plan import waypoint_times as times
    return times(np.asarray(start, dtype=float), [np.asarray(p, dtype=float) for p in positions], config)
