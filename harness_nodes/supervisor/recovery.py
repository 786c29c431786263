"""Typed failures, the recovery each one gets, and the retry budget that caps them.

Recoveries (after Nav2's context-specific recoveries, with an escalation when the budget is spent):
    LOOK_AGAIN       ask for a re-check of the object and re-plan from the fresh belief
    BACK_OFF         move the tool up, away from what it touched, then approach again
    REGRASP          open, back off, and grasp again with a different wrist yaw
    REPLAN_FRESH     re-check, re-plan from fresh perception, propose new candidates
Retries are capped per subgoal and per task; when either is spent the supervisor escalates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Subgoal(str, Enum):
    LOOK = "look"
    APPROACH = "approach"
    GRASP = "grasp"
    LIFT = "lift"
    MOVE = "move"
    PLACE = "place"
    RELEASE = "release"
    VERIFY = "verify"


SUBGOALS = list(Subgoal)


class FailureType(str, Enum):
    GRASP_MISSED = "grasp_missed"     # closed on nothing (router grasp check, memory not holding)
    OBJECT_MOVED = "object_moved"     # the belief changed or went stale under the plan; not where expected
    SLIP = "slip"                     # held, then no longer held before the release
    CONTACT = "contact"               # unexpected contact or predicted collision
    UNREACHABLE = "unreachable"       # no IK, outside limits, clamped
    VETO_ALL = "veto_all"             # the world model vetoed every candidate
    TIMEOUT = "timeout"               # the chunk or the router did not finish in time, or was held
    NODE_LOST = "node_lost"           # a node stopped answering within its bound


class Recovery(str, Enum):
    LOOK_AGAIN = "look_again"
    BACK_OFF = "back_off_and_reapproach"
    REGRASP = "regrasp_with_new_yaw"
    REPLAN_FRESH = "replan_from_fresh_perception"


RECOVERY_FOR: dict[FailureType, Recovery] = {
    FailureType.GRASP_MISSED: Recovery.REGRASP,
    FailureType.OBJECT_MOVED: Recovery.LOOK_AGAIN,
    FailureType.SLIP: Recovery.REPLAN_FRESH,
    FailureType.CONTACT: Recovery.BACK_OFF,
    FailureType.UNREACHABLE: Recovery.REPLAN_FRESH,
    FailureType.VETO_ALL: Recovery.REPLAN_FRESH,
    FailureType.TIMEOUT: Recovery.BACK_OFF,
    FailureType.NODE_LOST: Recovery.REPLAN_FRESH,
}


@dataclass(frozen=True)
class Failure:
    type: FailureType
    subgoal: Subgoal
    detail: str

    def __str__(self) -> str:
        return f"{self.type.value} at {self.subgoal.value}: {self.detail}"


@dataclass(frozen=True)
class Decision:
    recovery: Recovery | None         # None: escalate (or fail when escalation is off)
    restart: Subgoal | None           # where the task continues after the recovery
    reason: str


@dataclass
class RetryBudget:
    """Retries left per subgoal and for the whole task."""
    per_subgoal: int
    per_task: int
    used_task: int = 0
    used: dict[Subgoal, int] = field(default_factory=dict)

    def left(self, subgoal: Subgoal) -> tuple[int, int]:
        return self.per_subgoal - self.used.get(subgoal, 0), self.per_task - self.used_task

    def spend(self, subgoal: Subgoal) -> bool:
        """Take one retry for `subgoal`; False when either budget is spent (nothing taken then)."""
        sub_left, task_left = self.left(subgoal)
        if sub_left <= 0 or task_left <= 0:
            return False
        self.used[subgoal] = self.used.get(subgoal, 0) + 1
        self.used_task += 1
        return True

    def grant(self, retries: int | None = None) -> None:
        """A human said "retry": a fresh budget (the task's count of attempts keeps growing)."""
        self.used.clear()
        self.per_task = self.used_task + (retries if retries is not None else self.per_task)

    @property
    def retries_left(self) -> int:
        return max(0, self.per_task - self.used_task)


def restart_point(recovery: Recovery, failed_at: Subgoal, holding: bool) -> Subgoal:
    """Where to continue. Never through APPROACH/GRASP while the object is still in the gripper
    (approach opens the fingers): then the carry is redone from LIFT."""
    if holding and SUBGOALS.index(failed_at) >= SUBGOALS.index(Subgoal.LIFT):
        return Subgoal.LIFT if failed_at in (Subgoal.LIFT, Subgoal.MOVE) else failed_at
    if recovery is Recovery.BACK_OFF:
        return Subgoal.APPROACH
    return Subgoal.LOOK


def decide(failure: Failure, budget: RetryBudget, holding: bool, recovery_enabled: bool = True) -> Decision:
    """The recovery for `failure`, or escalation when recovery is off or a budget is spent.
    Spends one retry when it recovers."""
    if not recovery_enabled:
        return Decision(None, None, f"{failure}; recovery is switched off")
    sub_left, task_left = budget.left(failure.subgoal)
    if not budget.spend(failure.subgoal):
        which = (f"{budget.per_subgoal} retries of '{failure.subgoal.value}'" if sub_left <= 0
                 else f"the task's {budget.per_task} retries")
        return Decision(None, None, f"{failure}; {which} spent")
    recovery = RECOVERY_FOR[failure.type]
    return Decision(recovery, restart_point(recovery, failure.subgoal, holding),
                    f"{failure}; recovering: {recovery.value} ({min(sub_left, task_left) - 1} retries left)")
