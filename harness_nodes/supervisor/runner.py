"""The task loop: for each subgoal (look, approach, grasp, lift, move, place, release, verify)
ask memory what it believes (and for a re-check when the belief is stale), get candidates (policy,
or the planner fallback), let the world model rank and veto them, execute the chosen chunk, verify
from memory; on a typed failure recover within the retry budget, else escalate to a human.
Recoveries carry context: a re-grasp turns the wrist further each time; a contact while grasping
turns the grasp 90 degrees (the other pair of faces); a belief about a dropped object still in the
air (above `max_rest_height`, not held) is not used, perception is asked again; a contact while carrying
(lift, move) carries the object `carry_raise_step` higher on the next try (over whatever stood in
the way, up to `max_carry_raise`).

Pure: everything outside goes through `Ports` (the node implements it over ROS; unit tests with
in-process doubles). Every port call is bounded by the port; a port that gets no answer in time
raises `NodeLost`, and the runner then holds the arm and records a NODE_LOST failure.

Candidates: the policy's proposals are screened against the subgoal (a chunk that does not end
within `policy_reach_tolerance` of the subgoal's target, or commands the wrong gripper action, does
not achieve the subgoal); the admitted ones and the planner's variants go to the world model
together, so a weak policy is asked every time but only finishes a subgoal when it proposes
something that does the job. Before that, in approach, lift and move, the policy drives in closed
loop (`policy_steps` chunks at most): each step the tool is measured, the policy proposes, the
chunks that bring the tool at least `policy_min_progress` closer to the subgoal's target without a
gripper action that could drop or close early go to the world model (vetoes apply), the best runs
and is checked like any other chunk; when the policy proposes no progress, or the steps are spent,
the subgoal is finished as above (the planner's short remaining chunk when the policy's does not
reach). After the approach chunk, the world model's surprise about the task object (predicted vs
remembered position) above `surprise_threshold` is an OBJECT_MOVED failure (look again).

Metrics (`TaskMetrics`, in the Outcome and the action result) count what the supervisor itself
can know; see the class docstring for each definition.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from harness_nodes.supervisor.planner import (GRIPPER_NONE, GRIPPER_OPEN, STATE_CONTRADICTED, STATE_INVALID,
                                              Belief, Candidate, Planner)
from harness_nodes.supervisor.recovery import (SUBGOALS, Decision, Failure, FailureType, Recovery, RetryBudget,
                                               Subgoal, decide, restart_point)
from harness_nodes.supervisor.task import Task

KIND_APPROVE, KIND_REJECT, KIND_CORRECT, KIND_ABORT = 0, 1, 2, 3     # robot_harness/HumanFeedback
HELP_OPTIONS = ["retry", "skip", "abort", "object_is_at <x> <y> <z>"]
POSITION = re.compile(r"(-?\d+(?:\.\d+)?)[\s,]+(-?\d+(?:\.\d+)?)[\s,]+(-?\d+(?:\.\d+)?)")
HUMAN_POSITION_LIMIT = 2.0      # m from the base: a corrected position further away is not understood
ESSENTIAL_NODES = ("memory", "router")   # without these the task cannot go on: escalate at once
# Subgoals after which the world model's surprise about the task object is a failure cue: the
# object must not move while the arm approaches it. Later the object is carried and released, where
# the prediction of where it lands is coarser than the belief checks that verify those subgoals.
SURPRISE_CHECKED = (Subgoal.APPROACH,)
# Subgoals the policy may drive in closed loop before the subgoal is finished: the free-space
# motions. The descents to grasp and to place stay the planner's straight vertical moves: policy
# steps there left the fingers beside the cube and the planner's last chunk then swept into it
# (router: unexpected contact).
POLICY_STEPPED = (Subgoal.APPROACH, Subgoal.LIFT, Subgoal.MOVE)


class NodeLost(Exception):
    """A node did not answer within its bound."""

    def __init__(self, node: str, detail: str):
        super().__init__(f"{node} not answering: {detail}")
        self.node = node


class Cancelled(Exception):
    """The client cancelled the goal. `held`: the port already held the arm (cancel mid-chunk)."""

    def __init__(self, held: bool = False):
        super().__init__("cancelled")
        self.held = held


@dataclass
class ExecResult:
    ok: bool
    failure: FailureType | None = None
    message: str = ""
    cancelled: bool = False
    chunk_id: str = ""            # the id the router executed (surprise is reported per chunk id)


@dataclass
class Evaluation:
    best_index: int               # -1: every candidate vetoed
    message: str = ""
    vetoed: tuple[int, ...] = ()  # indices of the candidates the world model vetoed


@dataclass
class TaskMetrics:
    """What the supervisor counts for one task (ablation studies read these from the result).

    retries            recoveries started (retries spent from the budget) and human "retry" answers
    escalations        help requests sent
    vetoes             candidates the world model vetoed (each candidate of each evaluation)
    false_vetoes       vetoes the harness later saw to be wrong: a vetoed chunk (same source, end
                       point to 1 cm, orientation and gripper action) executed afterwards at the same
                       subgoal and succeeded; other vetoed chunks never run, so this is a lower bound
    stale_fact_uses    chunks sent for approach or grasp while memory's belief about the task object,
                       queried just before sending, was not trustworthy (stale, invalid, contradicted
                       or below min_confidence) or had moved more than moved_tolerance from the belief
                       the chunk was planned on; only possible with memory validity switched off or
                       when the belief changes between the check and the send
    re_observations    re-check requests sent to perception (viewpoints asked for)
    surprises          chunks after which the world model's surprise about the task object was
                       above surprise_threshold (each one a failure cue)
    policy_proposed, policy_admitted, policy_executed, planner_executed: where chunks came from
    policy_steps       policy chunks run in closed loop inside a subgoal (also in policy_executed)
    decision_latency_ms  per motion decision: from the memory query that starts it (observation)
                       to the chunk handed to the router (command), world-model check included
    """
    retries: int = 0
    escalations: int = 0
    vetoes: int = 0
    false_vetoes: int = 0
    stale_fact_uses: int = 0
    re_observations: int = 0
    surprises: int = 0
    policy_proposed: int = 0
    policy_admitted: int = 0
    policy_executed: int = 0
    planner_executed: int = 0
    policy_steps: int = 0
    decision_latency_ms: list[float] = field(default_factory=list)


@dataclass
class HelpQuestion:
    request_id: str
    question: str
    options: list[str]
    context: dict


@dataclass
class Answer:
    kind: int
    response: str
    note: str = ""


@dataclass
class RunState:
    task_id: str
    phase: str = "idle"            # perceive, propose, evaluate, execute, verify, recover, escalate, done
    subtask: str = ""
    attempt: int = 1
    retries_left: int = 0
    last_failure: str = ""
    waiting_for_human: bool = False
    progress: float = 0.0


@dataclass
class Outcome:
    success: bool
    outcome: str                  # succeeded, failed, escalated, aborted
    attempts: int
    message: str
    steps: list[str] = field(default_factory=list)
    metrics: TaskMetrics = field(default_factory=TaskMetrics)


class Ports(Protocol):
    def beliefs(self, subjects: list[str]) -> dict[str, Belief]: ...
    def request_recheck(self, subjects: list[str], reason: str) -> None: ...
    def propose(self, task: Task, subgoal: Subgoal, count: int) -> list[Candidate]: ...
    def evaluate(self, task: Task, candidates: list[Candidate]) -> Evaluation: ...
    def execute(self, candidate: Candidate, attempt: int, subgoal: Subgoal) -> ExecResult: ...
    def hold(self, reason: str) -> bool: ...
    def ask_human(self, question: HelpQuestion) -> Answer | None: ...
    def remember_text(self, subject: str, text: str) -> None: ...
    def remember_position(self, subject: str, position: tuple) -> None: ...
    def report(self, state: RunState) -> None: ...
    def log(self, line: str) -> None: ...
    def surprise(self, chunk_id: str, subject: str, timeout: float) -> float | None: ...
    def tool_position(self) -> tuple[float, float, float] | None: ...
    def cancelled(self) -> bool: ...
    def sleep(self, seconds: float) -> None: ...
    def now(self) -> float: ...


@dataclass(frozen=True)
class RunnerConfig:
    use_policy: bool = True
    use_world_model: bool = True
    use_memory_validity: bool = True   # off: beliefs are used whatever their state and confidence
    use_viewpoint: bool = True         # off: no re-check requests
    use_recovery: bool = True          # off: the first failure escalates (or fails)
    use_escalation: bool = True        # off: a spent budget fails the task
    num_candidates: int = 4
    min_confidence: float = 0.3
    look_timeout: float = 15.0         # s for a trustworthy belief to appear after a re-check request
    poll_period: float = 0.25          # s between memory queries while waiting for a belief
    recheck_period: float = 3.0        # s between repeated re-check requests
    moved_tolerance: float = 0.03      # m the belief may move under the plan before it counts as moved
    grasp_check_timeout: float = 3.0   # s for memory to report the object held after closing
    verify_timeout: float = 10.0       # s for the belief to show the object in place
    retries_per_subgoal: int = 2
    retries_per_task: int = 4
    regrasp_yaw_step: float = 0.2      # rad added (alternating sign, growing) per re-grasp
    max_rest_height: float = 0.15      # m: an object not held believed higher is still falling: look again
    carry_raise_step: float = 0.15     # m higher the object is carried after each contact while carrying
    max_carry_raise: float = 0.30      # m
    policy_reach_tolerance: float = 0.03   # m: a policy chunk must end this close to the subgoal's target
    #                                    (and command the same gripper action as the planner's chunk)
    policy_steps: int = 0              # policy chunks in closed loop per motion subgoal before it is finished
    policy_min_progress: float = 0.01  # m closer to the subgoal's target a policy step must bring the tool
    surprise_threshold: float = 0.05   # m the task object may be from the world model's prediction; 0 = off
    surprise_wait: float = 2.0         # s to wait for the world model's surprise after a chunk


def _signature(c: Candidate) -> tuple:
    """What a chunk does, coarsely: source, end point to 1 cm, orientation, gripper action (false-veto
    matching)."""
    end = tuple(round(v, 2) for v in c.positions[-1]) if c.positions else ()
    return c.source, end, tuple(round(v, 2) for v in c.quaternion), c.gripper


def parse_position(text: str) -> tuple[float, float, float] | None:
    m = POSITION.search(text or "")
    if not m:
        return None
    p = tuple(float(v) for v in m.groups())
    if not all(math.isfinite(v) and abs(v) <= HUMAN_POSITION_LIMIT for v in p):
        return None
    return p


class TaskRunner:
    def __init__(self, ports: Ports, task: Task, task_id: str, config: RunnerConfig,
                 planner: Planner | None = None, max_attempts: int = 0, timeout: float = 0.0):
        self.ports, self.task, self.config = ports, task, config
        self.planner = planner or Planner()
        per_task = config.retries_per_task if max_attempts <= 0 else max(0, max_attempts - 1)
        self.budget = RetryBudget(config.retries_per_subgoal, per_task)
        self.timeout = timeout
        self.state = RunState(task_id=task_id, retries_left=self.budget.retries_left)
        self.obj: Belief | None = None
        self.dest: Belief | None = None
        self.corrected: dict[str, Belief] = {}
        self.yaw_offset = 0.0
        self.carry_raise = 0.0
        self.grasp_turn = 0.0              # rad, pi/2 after a contact while grasping
        self.regrasps = 0
        self.lost: set[str] = set()
        self.failures: list[Failure] = []
        self.steps: list[str] = []
        self.help_requests = 0
        self.restarts = 0             # recoveries and human retries: attempt = 1 + restarts
        self.metrics = TaskMetrics()
        self.vetoed_signatures: dict[Subgoal, set] = {}
        self.last_chunk_id = ""
        self.unused_proposals: list[Candidate] | None = None

    # ------------------------------------------------------------------ bookkeeping
    @property
    def attempt(self) -> int:
        return 1 + self.restarts

    def _say(self, line: str) -> None:
        self.steps.append(line)
        self.ports.log(line)

    def _report(self, phase: str, subgoal: Subgoal | None = None, **changes) -> None:
        self.state.phase = phase
        if subgoal is not None:
            self.state.subtask = subgoal.value
            self.state.progress = SUBGOALS.index(subgoal) / len(SUBGOALS)
        self.state.attempt = self.attempt
        self.state.retries_left = self.budget.retries_left
        for k, v in changes.items():
            setattr(self.state, k, v)
        self.ports.report(self.state)

    def _finish(self, success: bool, outcome: str, message: str) -> Outcome:
        self._say(f"task {outcome}: {message}")
        self._report("done", progress=1.0 if success else self.state.progress)
        self.metrics.retries = self.restarts
        self.metrics.escalations = self.help_requests
        return Outcome(success, outcome, self.attempt, message, list(self.steps), self.metrics)

    def _check_cancel(self) -> None:
        if self.ports.cancelled():
            raise Cancelled()

    def _wait(self, seconds: float) -> None:
        self._check_cancel()
        self.ports.sleep(seconds)
        self._check_cancel()

    # ------------------------------------------------------------------ the loop
    def run(self) -> Outcome:
        start = self.ports.now()
        self._say(f"task '{self.task.canonical}' ({self.task.kind.value}): "
                  f"policy {'on' if self.config.use_policy else 'off'}, world model "
                  f"{'on' if self.config.use_world_model else 'off'}, recovery {'on' if self.config.use_recovery else 'off'}")
        i = 0
        try:
            while i < len(SUBGOALS):
                subgoal = SUBGOALS[i]
                self._check_cancel()
                if self.timeout > 0 and self.ports.now() - start > self.timeout:
                    self.ports.hold("task timeout")
                    return self._finish(False, "failed", f"task timeout ({self.timeout:.0f} s) at '{subgoal.value}'")
                try:
                    failure = self._step(subgoal)
                except NodeLost as lost:
                    self.lost.add(lost.node)
                    held = self.ports.hold(str(lost))
                    failure = Failure(FailureType.NODE_LOST, subgoal, f"{lost} (arm {'held' if held else 'NOT held'})")
                if failure is None:
                    i += 1
                    continue
                self.failures.append(failure)
                self._report("recover", subgoal, last_failure=str(failure))
                holding = self._holding()
                essential = failure.type is FailureType.NODE_LOST and self.lost & set(ESSENTIAL_NODES)
                decision = (Decision(None, None, f"{failure}; cannot go on without {sorted(self.lost & set(ESSENTIAL_NODES))}")
                            if essential else decide(failure, self.budget, holding, self.config.use_recovery))
                self._say(decision.reason)
                if decision.recovery is None:
                    result = self._escalate(subgoal, decision.reason, holding)
                    if isinstance(result, Outcome):
                        return result
                    i = SUBGOALS.index(result)
                    continue
                self.restarts += 1
                self._recover(decision.recovery, failure)
                i = SUBGOALS.index(decision.restart)
        except Cancelled as cancel:
            held = True if cancel.held else self.ports.hold("task cancelled")
            return self._finish(False, "aborted", f"cancelled by the client (arm {'held' if held else 'NOT held'})")
        return self._finish(True, "succeeded", f"'{self.task.object_id}' verified "
                            f"{'in' if self.task.kind.value == 'pick_place' else 'on'} '{self.task.destination}' "
                            f"after {self.attempt} attempt(s)")

    def _holding(self) -> bool:
        try:
            b = self.ports.beliefs([self.task.object_id]).get(self.task.object_id)
        except NodeLost:
            return False
        return bool(b and b.held)

    # ------------------------------------------------------------------ subgoals
    def _step(self, subgoal: Subgoal) -> Failure | None:
        if subgoal is Subgoal.LOOK:
            return self._look()
        observed = self.ports.now()
        if subgoal in (Subgoal.APPROACH, Subgoal.GRASP):
            moved = self._object_moved(subgoal)
            if moved:
                return moved
        self.unused_proposals = None
        if subgoal in POLICY_STEPPED and self._policy_on() and self.config.policy_steps > 0:
            stepped = self._policy_steps(subgoal)
            if isinstance(stepped, Failure):
                return stepped
            if stepped:
                self._report("verify", subgoal)
                return self._verify(subgoal)
            observed = self.ports.now()
        self._report("propose", subgoal)
        candidates = self._candidates(subgoal)
        chosen = self._choose(subgoal, candidates)
        if isinstance(chosen, Failure):
            return chosen
        failure = self._send(subgoal, chosen, observed)
        if failure is not None:
            return failure
        self._say(f"{subgoal.value}: '{chosen.name}' from {chosen.source} executed (attempt {self.attempt})")
        self._report("verify", subgoal)
        return self._verify(subgoal) or self._surprised(subgoal, self.last_chunk_id)

    def _send(self, subgoal: Subgoal, chosen: Candidate, observed: float) -> Failure | None:
        """Check the belief once more, execute `chosen`, count where it came from."""
        if subgoal in (Subgoal.APPROACH, Subgoal.GRASP):
            moved = self._object_moved(subgoal)     # again: memory may have learnt more while candidates were ranked
            if moved:
                return moved
            self._count_stale_use(subgoal)
        self._report("execute", subgoal)
        self.metrics.decision_latency_ms.append(round(1000.0 * (self.ports.now() - observed), 2))
        result = self.ports.execute(chosen, self.attempt, subgoal)
        self.last_chunk_id = result.chunk_id
        if result.cancelled:
            raise Cancelled(held=True)
        if not result.ok:
            return Failure(result.failure or FailureType.TIMEOUT, subgoal, result.message)
        if chosen.source == "policy":
            self.metrics.policy_executed += 1
        else:
            self.metrics.planner_executed += 1
        if _signature(chosen) in self.vetoed_signatures.get(subgoal, set()):
            self.metrics.false_vetoes += 1
            self._say(f"{subgoal.value}: a chunk the world model had vetoed ran and succeeded (false veto)")
        return None

    def _policy_on(self) -> bool:
        return self.config.use_policy and "policy" not in self.lost

    def _policy_steps(self, subgoal: Subgoal) -> Failure | bool:
        """The policy drives toward the subgoal's target in closed loop, `policy_steps` chunks at
        most, each one a measured step closer (see the module docstring). True: a step did the
        subgoal's job (ended at its target with its gripper action); False: the subgoal is to be
        finished; a Failure when a step failed."""
        target = self.planner.chunk(subgoal, self.task, self.obj, self.dest, self.yaw_offset, self.carry_raise,
                                    self.grasp_turn)
        goal = target.positions[-1]
        grips = (GRIPPER_NONE, GRIPPER_OPEN) if target.gripper == GRIPPER_OPEN else (GRIPPER_NONE,)
        for step in range(self.config.policy_steps):
            tool = self.ports.tool_position()
            if tool is None:
                return False
            gap = math.dist(tool, goal)
            if gap <= self.config.policy_reach_tolerance:
                return False
            observed = self.ports.now()
            self._report("propose", subgoal)
            proposed = self.ports.propose(self.task, subgoal, self.config.num_candidates)
            self.metrics.policy_proposed += len(proposed)
            progress = [c for c in proposed if c.positions and c.gripper in grips
                        and math.dist(c.positions[-1], goal) <= gap - self.config.policy_min_progress]
            if not progress:
                self.unused_proposals = proposed       # the finishing step screens these: nothing moved since
                self._say(f"{subgoal.value}: policy step {step + 1}: none of {len(proposed)} chunk(s) brings the "
                          f"tool {self.config.policy_min_progress * 100:.0f} cm closer ({gap:.3f} m from the target): "
                          f"the subgoal is finished from here")
                return False
            chosen = self._choose(subgoal, progress)
            if isinstance(chosen, Failure):           # every step vetoed: finish the subgoal another way
                self.unused_proposals = proposed
                self._say(f"{subgoal.value}: policy step {step + 1}: {chosen.detail}: the subgoal is finished "
                          f"from here")
                return False
            failure = self._send(subgoal, chosen, observed)
            if failure is not None:
                return failure
            self.metrics.policy_steps += 1
            after = self.ports.tool_position()
            left = f"{math.dist(after, goal):.3f}" if after is not None else "?"
            self._say(f"{subgoal.value}: policy step {step + 1}: '{chosen.name}' executed, tool {gap:.3f} -> "
                      f"{left} m from the target (attempt {self.attempt})")
            failure = self._surprised(subgoal, self.last_chunk_id)
            if failure is not None:
                return failure
            if math.dist(chosen.positions[-1], goal) <= self.config.policy_reach_tolerance \
                    and chosen.gripper == target.gripper:
                self.metrics.policy_admitted += 1
                self._say(f"{subgoal.value}: done by the policy (attempt {self.attempt})")
                return True
        return False

    def _count_stale_use(self, subgoal: Subgoal) -> None:
        """Is the chunk about to be sent based on a belief that is not trustworthy right now?"""
        now = self.ports.beliefs([self.task.object_id]).get(self.task.object_id)
        if now is None or now.held or self.obj is None:
            return
        why = ""
        if not now.trustworthy(self.config.min_confidence):
            why = f"belief state {now.state}, confidence {now.confidence:.2f}"
        elif self.planner.moved(self.obj, now, self.config.moved_tolerance):
            why = f"belief moved to {[round(v, 3) for v in now.position]}"
        if why:
            self.metrics.stale_fact_uses += 1
            self._say(f"{subgoal.value}: acting on a belief about '{now.subject}' that is not current ({why})")

    def _surprised(self, subgoal: Subgoal, chunk_id: str) -> Failure | None:
        """The world model's surprise about the task object after the chunk, as a failure cue."""
        if not (subgoal in SURPRISE_CHECKED and self._world_model_on() and self.config.surprise_threshold > 0
                and chunk_id):
            return None
        if self._holding():
            return None     # a carried object follows the gripper: the grasp and slip checks cover it
        distance = self.ports.surprise(chunk_id, self.task.object_id, self.config.surprise_wait)
        if distance is None or distance <= self.config.surprise_threshold:
            return None
        self.metrics.surprises += 1
        return Failure(FailureType.OBJECT_MOVED, subgoal,
                       f"world model surprised: '{self.task.object_id}' {distance:.3f} m from where it predicted "
                       f"after '{chunk_id}' (threshold {self.config.surprise_threshold:.3f} m)")

    def _recheck(self, reason: str) -> None:
        self.metrics.re_observations += 1
        self.ports.request_recheck([self.task.object_id], reason)

    def _belief_pair(self) -> tuple[Belief | None, Belief | None]:
        b = self.ports.beliefs([self.task.object_id, self.task.destination])
        obj = self.corrected.pop(self.task.object_id, None) or b.get(self.task.object_id)
        return obj, b.get(self.task.destination)

    def _usable(self, b: Belief | None) -> bool:
        if b is None:
            return False
        if b.held or not self.config.use_memory_validity:
            return all(math.isfinite(v) for v in b.position)
        return b.trustworthy(self.config.min_confidence) and not self._in_the_air(b)

    def _in_the_air(self, b: Belief) -> bool:
        """Not held, yet believed higher than anything rests here: seen while it fell (after a slip)."""
        return not b.held and b.position[2] > self.config.max_rest_height

    def _look(self) -> Failure | None:
        self._report("perceive", Subgoal.LOOK)
        deadline = self.ports.now() + self.config.look_timeout
        last_ask = -math.inf
        while True:
            obj, dest = self._belief_pair()
            if self._usable(obj) and dest is not None and all(math.isfinite(v) for v in dest.position):
                self.obj, self.dest = obj, dest
                self._say(f"look: believes '{obj.subject}' at {[round(v, 3) for v in obj.position]} "
                          f"(confidence {obj.confidence:.2f}, source {obj.source or '?'}), "
                          f"'{dest.subject}' at {[round(v, 3) for v in dest.position]}")
                return None
            now = self.ports.now()
            if self.config.use_viewpoint and now - last_ask >= self.config.recheck_period:
                why = "no belief" if obj is None else f"belief state {obj.state}, confidence {obj.confidence:.2f}" + (
                    f", {obj.position[2]:.2f} m up and not held" if self._in_the_air(obj) else "")
                self._recheck(f"supervisor needs '{self.task.object_id}': {why}")
                if last_ask == -math.inf:
                    self._say(f"look: '{self.task.object_id}' not trustworthy ({why}): re-check requested")
                last_ask = now
            if now >= deadline:
                what = "destination" if self._usable(obj) else "object"
                return Failure(FailureType.OBJECT_MOVED, Subgoal.LOOK,
                               f"no trustworthy belief about the {what} after {self.config.look_timeout:.0f} s")
            self._wait(self.config.poll_period)

    def _object_moved(self, subgoal: Subgoal) -> Failure | None:
        """Has the belief the plan was made on changed? (Memory validity off: the plan is not re-checked.)"""
        if not self.config.use_memory_validity:
            return None
        now = self.ports.beliefs([self.task.object_id]).get(self.task.object_id)
        if now is None:
            return Failure(FailureType.OBJECT_MOVED, subgoal, f"memory no longer believes '{self.task.object_id}' exists")
        if now.state in (STATE_INVALID, STATE_CONTRADICTED) and not now.held:
            return Failure(FailureType.OBJECT_MOVED, subgoal, f"belief about '{now.subject}' is "
                           f"{'invalid' if now.state == STATE_INVALID else 'contradicted'}")
        if self.planner.moved(self.obj, now, self.config.moved_tolerance) and not now.held:
            return Failure(FailureType.OBJECT_MOVED, subgoal,
                           f"'{now.subject}' believed at {[round(v, 3) for v in now.position]}, planned at "
                           f"{[round(v, 3) for v in self.obj.position]}")
        return None

    def _candidates(self, subgoal: Subgoal) -> list[Candidate]:
        count = self.config.num_candidates if self._world_model_on() else 1
        planned = self.planner.candidates(subgoal, self.task, self.obj, self.dest, count, self.yaw_offset,
                                          carry_raise=self.carry_raise, grasp_turn=self.grasp_turn)
        if not self._policy_on():
            return planned
        if self.unused_proposals is not None:
            proposed, self.unused_proposals = self.unused_proposals, None    # counted when proposed
        else:
            proposed = self.ports.propose(self.task, subgoal, self.config.num_candidates)
            self.metrics.policy_proposed += len(proposed)
        if not proposed:
            return planned
        target = planned[0]
        admitted, closest = [], math.inf
        for c in proposed:
            if not c.positions:
                continue
            gap = float(math.dist(c.positions[-1], target.positions[-1]))
            closest = min(closest, gap)
            if gap <= self.config.policy_reach_tolerance and c.gripper == target.gripper:
                admitted.append(c)
        self.metrics.policy_admitted += len(admitted)
        if not admitted:
            self._say(f"{subgoal.value}: policy proposed {len(proposed)} chunk(s), none reaches the subgoal "
                      f"(closest ends {closest:.3f} m from its target): planner candidates")
            return planned
        self._say(f"{subgoal.value}: {len(admitted)} of {len(proposed)} policy chunk(s) reach the subgoal; "
                  f"ranked with {len(planned)} planner candidate(s)")
        return admitted + (planned if self._world_model_on() else [])

    def _world_model_on(self) -> bool:
        return self.config.use_world_model and "world_model" not in self.lost

    def _choose(self, subgoal: Subgoal, candidates: list[Candidate]) -> Candidate | Failure:
        if not self._world_model_on():
            return max(candidates, key=lambda c: c.score) if any(c.score for c in candidates) else candidates[0]
        self._report("evaluate", subgoal)
        ev = self.ports.evaluate(self.task, candidates)
        vetoed = [candidates[k] for k in ev.vetoed if 0 <= k < len(candidates)]
        self.metrics.vetoes += len(vetoed)
        self.vetoed_signatures.setdefault(subgoal, set()).update(_signature(c) for c in vetoed)
        if vetoed:
            self._say(f"{subgoal.value}: world model vetoed {len(vetoed)} of {len(candidates)} candidate(s)"
                      + (f": {ev.message}" if ev.message else ""))
        if ev.best_index < 0 or ev.best_index >= len(candidates):
            return Failure(FailureType.VETO_ALL, subgoal,
                           f"world model vetoed all {len(candidates)} candidate(s): {ev.message}")
        self._say(f"{subgoal.value}: world model chose candidate {ev.best_index} of {len(candidates)}"
                  + (f" ({ev.message})" if ev.message else ""))
        return candidates[ev.best_index]

    def _wait_for(self, predicate, timeout: float):
        """Poll memory until `predicate(belief)` holds; returns the last belief and whether it held."""
        deadline = self.ports.now() + timeout
        while True:
            b = self.ports.beliefs([self.task.object_id]).get(self.task.object_id)
            if b is not None and predicate(b):
                return b, True
            if self.ports.now() >= deadline:
                return b, False
            self._wait(self.config.poll_period)

    def _verify(self, subgoal: Subgoal) -> Failure | None:
        oid = self.task.object_id
        if subgoal is Subgoal.GRASP:
            _, ok = self._wait_for(lambda b: b.held, self.config.grasp_check_timeout)
            return None if ok else Failure(FailureType.GRASP_MISSED, subgoal, f"memory does not see '{oid}' in the gripper")
        if subgoal in (Subgoal.LIFT, Subgoal.MOVE, Subgoal.PLACE):
            _, ok = self._wait_for(lambda b: b.held, self.config.poll_period)
            return None if ok else Failure(FailureType.SLIP, subgoal, f"'{oid}' no longer in the gripper")
        if subgoal is Subgoal.VERIFY:
            if self.config.use_viewpoint:
                self._recheck(f"supervisor verifies '{oid}' at '{self.task.destination}'")
            b, ok = self._wait_for(lambda b: self.planner.placed(self.task, b, self.dest), self.config.verify_timeout)
            if ok:
                self._say(f"verify: '{oid}' believed at {[round(v, 3) for v in b.position]}: in place")
                return None
            where = "no belief" if b is None else f"believed at {[round(v, 3) for v in b.position]}"
            return Failure(FailureType.OBJECT_MOVED, subgoal, f"'{oid}' not at '{self.task.destination}' ({where})")
        return None

    # ------------------------------------------------------------------ recovery
    def _recover(self, recovery: Recovery, failure: Failure) -> None:
        self._report("recover", failure.subgoal)
        try:
            if recovery in (Recovery.BACK_OFF, Recovery.REGRASP):
                opening = recovery is Recovery.REGRASP
                result = self.ports.execute(self.planner.back_off(opening), self.attempt, failure.subgoal)
                if result.cancelled:
                    raise Cancelled()
                self._say(f"recovery: backed off{' with the gripper open' if opening else ''} "
                          f"({'done' if result.ok else result.message})")
            if recovery is Recovery.BACK_OFF and failure.type is FailureType.CONTACT \
                    and failure.subgoal in (Subgoal.LIFT, Subgoal.MOVE) \
                    and self.carry_raise < self.config.max_carry_raise:
                # something stands in the way of the carry (a box taller than the carry height): go over it
                self.carry_raise = min(self.config.max_carry_raise, self.carry_raise + self.config.carry_raise_step)
                self._say(f"recovery: next carry {self.carry_raise:.2f} m higher")
            if recovery is Recovery.BACK_OFF and failure.type is FailureType.CONTACT \
                    and failure.subgoal is Subgoal.GRASP:
                # the fingers met something beside the object (a tray rim, a neighbour): a cube can be
                # taken by its other pair of faces
                self.grasp_turn = 0.0 if self.grasp_turn else math.pi / 2
                self._say(f"recovery: next grasp turned {'90' if self.grasp_turn else 'back by 90'} deg "
                          f"(the other pair of faces)")
            if recovery is Recovery.REGRASP:
                self.regrasps += 1
                k = self.regrasps
                self.yaw_offset = (1 if k % 2 else -1) * self.config.regrasp_yaw_step * ((k + 1) // 2)
                self._say(f"recovery: next grasp with wrist yaw offset {self.yaw_offset:+.2f} rad")
            if recovery in (Recovery.LOOK_AGAIN, Recovery.REPLAN_FRESH, Recovery.REGRASP) and self.config.use_viewpoint:
                self._recheck(f"recovery from {failure.type.value}")
        except NodeLost as lost:
            self.lost.add(lost.node)
            self.ports.hold(str(lost))
            self._say(f"recovery interrupted: {lost}")

    def _escalate(self, subgoal: Subgoal, reason: str, holding: bool) -> Outcome | Subgoal:
        if not self.config.use_escalation:
            return self._finish(False, "failed", reason)
        self.help_requests += 1
        rid = f"{self.state.task_id}-help-{self.help_requests}"
        beliefs = {}
        for name, b in (("object", self.obj), ("destination", self.dest)):
            if b is not None:
                beliefs[name] = {"subject": b.subject, "position": [round(v, 4) for v in b.position],
                                 "confidence": round(b.confidence, 3), "state": b.state, "held": b.held}
        question = HelpQuestion(
            request_id=rid,
            question=(f"Task '{self.task.canonical}' is stuck at '{subgoal.value}': {reason}. "
                      f"Retry, skip this step, abort, or tell me where '{self.task.object_id}' is?"),
            options=list(HELP_OPTIONS),
            context={"task": self.task.canonical, "subgoal": subgoal.value, "attempt": self.attempt,
                     "failures": [str(f) for f in self.failures[-10:]], "beliefs": beliefs,
                     "lost_nodes": sorted(self.lost), "holding": holding})
        self._say(f"escalation: help request '{rid}' sent")
        self._report("escalate", subgoal, waiting_for_human=True)
        answer = self.ports.ask_human(question)
        self._report("escalate", subgoal, waiting_for_human=False)
        if answer is None:
            return self._finish(False, "escalated", f"{reason}; no answer to help request '{rid}' in time")
        self._say(f"escalation: answer to '{rid}': kind {answer.kind}, '{answer.response[:200]}'")
        self.ports.remember_text(self.task.object_id, json.dumps(
            {"help_request": rid, "kind": answer.kind, "response": answer.response[:1000],
             "note": answer.note[:1000], "task": self.task.canonical}))
        response = answer.response.strip().lower()
        if answer.kind in (KIND_ABORT, KIND_REJECT) or response.startswith("abort"):
            return self._finish(False, "aborted", f"aborted by a human (help request '{rid}')")
        if response.startswith("skip"):
            nxt = SUBGOALS.index(subgoal) + 1
            if nxt >= len(SUBGOALS):
                return self._finish(True, "succeeded", f"verification skipped by a human (help request '{rid}')")
            self._say(f"escalation: skipping '{subgoal.value}' as told")
            return SUBGOALS[nxt]
        position = parse_position(answer.response) if answer.kind == KIND_CORRECT or "object_is_at" in response else None
        if position is not None:
            self.corrected[self.task.object_id] = Belief(self.task.object_id, position, confidence=1.0, source="human")
            self.ports.remember_position(self.task.object_id, position)
            self.lost.clear()
            self.budget.grant()
            self.restarts += 1
            self._say(f"escalation: '{self.task.object_id}' is at {list(position)} (human): re-planning")
            return Subgoal.LOOK
        if answer.kind == KIND_APPROVE or response.startswith("retry"):
            self.lost.clear()
            self.budget.grant()
            self.restarts += 1
            return restart_point(Recovery.REPLAN_FRESH, subgoal, holding)
        return self._finish(False, "escalated", f"answer to '{rid}' not understood: '{answer.response[:100]}'")
