"""Supervisor node `supervisor`: the ExecuteTask action server that runs a task through the harness.

Action server   harness/execute_task         robot_harness/ExecuteTask   goal, feedback (phase, subtask,
                                                                           attempt, progress), result, cancel
Publishes
  harness/command         robot_harness/ActionChunk      the chosen chunk (attempt echoed by the router)
  harness/heartbeat       std_msgs/Header                 steady `heartbeat_rate`, own timer and callback group
  harness/status          robot_harness/HarnessStatus     steady `status_rate` (R, 10)
  harness/help_request    robot_harness/HelpRequest       escalations (R, transient local, 10)
  harness/memory/recheck  robot_harness/ViewpointRequest  subjects perception should look at again
  /diagnostics            diagnostic_msgs/DiagnosticArray goals accepted/refused (with the reason),
                                                           feedback for unknown requests, callback errors
Subscribes
  harness/execution       robot_harness/ExecutionFeedback  outcome of our chunks
  harness/memory          robot_harness/MemorySnapshot     which objects memory believes exist (goal check)
  harness/memory/events   robot_harness/MemoryEvent        the task object contradicted while the arm approaches
                                                           it: hold at once, look again (event-driven)
  harness/human_feedback  robot_harness/HumanFeedback      answers to help requests, unsolicited notes
  harness/observations    robot_harness/SceneObservation   latest scene, handed to the policy
  joint_states            sensor_msgs/JointState           handed to the policy and the world model
  harness/world_model/surprise  robot_harness/WorldModelSurprise  predicted vs remembered object positions
                                                           after our chunks: a high one is a failure cue
Clients
  harness/memory/query, harness/memory/assert          beliefs; human answers kept as text facts
  latent_policy/propose_actions (ProposeActions)       candidates (`use_policy`)
  harness/world_model/evaluate (EvaluateCandidates)    rank and veto (`use_world_model`)
  controller_router/change_state (lifecycle)           hold: deactivate (the router stops the arm at its
                                                       measured position, finishes the chunk HELD) and
                                                       activate again, so the hold never outlives us

Goals: one task at a time. A goal while one runs is refused at acceptance ("busy"), as are a goal
that does not parse, names an object memory has no belief about and perception cannot recognise
(`searchable_objects`: those are accepted and searched for in the look step), or is impossible; the reason is
logged, on /diagnostics and in HarnessStatus.last_failure (an action client only sees "rejected").
A cancel holds the arm and ends the goal CANCELED with outcome "aborted" and a message saying
cancelled. The task loop (runner.py, pure) runs in the action's execute callback on its own
callback group of a MultiThreadedExecutor; heartbeat and status timers have another, so a
blocked task never stops them. Every wait on another node is bounded (parameters *_timeout).
Every callback goes through common/callbacks.py; HumanFeedback is validated (sizes, kind) first.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, Pose
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from pydantic import BaseModel, Field, ValidationError
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

from harness_nodes.common.callbacks import guarded
from harness_nodes.common.kinematics import ArmKinematics
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS, LATCHED
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.supervisor.config import SupervisorParameters
from harness_nodes.supervisor.planner import Belief, Candidate, PlannerConfig, Planner, waypoint_times
from harness_nodes.supervisor.recovery import FailureType, Subgoal
from harness_nodes.supervisor.runner import (Answer, Evaluation, ExecResult, HelpQuestion, NodeLost, RunState,
                                             TaskMetrics, TaskRunner)
from harness_nodes.supervisor.task import Task, TaskError, parse_task
from robot_harness.action import ExecuteTask
from robot_harness.msg import (ActionChunk, ExecutionFeedback, HarnessStatus, HelpRequest, HumanFeedback,
                               MemoryEvent, MemoryFact, MemorySnapshot, SceneObservation, ViewpointRequest,
                               WorldModelSurprise)
from robot_harness.srv import AssertFact, EvaluateCandidates, ProposeActions, QueryMemory

NODE_NAME = "supervisor"
DIAGNOSTICS_TOPIC = "/diagnostics"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
FEEDBACK_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
HELP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
HEARTBEAT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
TERMINAL = (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED,
            ExecutionFeedback.STATUS_REJECTED, ExecutionFeedback.STATUS_HELD)
NOT_READY = (ExecutionFeedback.FAILURE_NO_STATE, ExecutionFeedback.FAILURE_INACTIVE, ExecutionFeedback.FAILURE_BUSY)
FAILURE_TYPES = {
    ExecutionFeedback.FAILURE_GRASP: FailureType.GRASP_MISSED,
    ExecutionFeedback.FAILURE_CONTACT: FailureType.CONTACT,
    ExecutionFeedback.FAILURE_COLLISION: FailureType.CONTACT,
    ExecutionFeedback.FAILURE_IK: FailureType.UNREACHABLE,
    ExecutionFeedback.FAILURE_LIMIT_VIOLATION: FailureType.UNREACHABLE,
    ExecutionFeedback.FAILURE_CLAMPED: FailureType.UNREACHABLE,
    ExecutionFeedback.FAILURE_INVALID_INPUT: FailureType.UNREACHABLE,
}
RESEND_PERIOD = 1.0        # s without any feedback before a chunk is published again (router dedups by id)
NOT_READY_RETRY = 0.25     # s between sends while the router is not ready or busy (e.g. a viewpoint move)
DISCOVERY_WAIT = 2.0       # s the task thread waits for the policy or world-model service to be discovered
WAIT_STEP = 0.05           # s: longest sleep of the task thread before it looks at cancel again
MAX_REQUEST_ID = 128
MAX_TEXT = 2000
MAX_OPEN_HELP = 64         # answered or open help requests remembered (unknown-id detection)
MAX_CHUNK_IDS = 512
MAX_SNAPSHOT_FACTS = 5000  # facts of a memory snapshot looked at (the tracker sends at most snapshot_max_facts)
MAX_JOINTS = 64            # joint state entries handed on (a longer one is dropped)
EVENTS_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
# Subgoals a contradiction of the object's belief interrupts: the arm is heading for where it was.
INTERRUPTIBLE = (Subgoal.APPROACH,)
MAX_SURPRISES = 256        # chunk ids whose surprise is remembered
MAX_SURPRISE_SUBJECTS = 64
MAX_STEPS_IN_RESULT = 400  # step lines in the action result (the newest)


class FeedbackInput(BaseModel):
    """A HumanFeedback as the boundary accepts it."""
    request_id: str = Field(max_length=MAX_REQUEST_ID)
    kind: int = Field(ge=HumanFeedback.KIND_APPROVE, le=HumanFeedback.KIND_ABORT)
    response: str = Field(max_length=MAX_TEXT)
    note: str = Field(max_length=MAX_TEXT)


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


class Supervisor(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = declare_and_load(self, SupervisorParameters, self._apply_parameters)
        p = self.params
        self.lock = threading.Lock()
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.timers_group = MutuallyExclusiveCallbackGroup()     # heartbeat, status, diagnostics
        self.io_group = ReentrantCallbackGroup()                 # subscriptions, service answers
        self.task_group = MutuallyExclusiveCallbackGroup()       # the running task
        self.planner = Planner(PlannerConfig())
        description = load_robot_description(p.robot)
        self.gripper = description.gripper
        self.arm_joints = list(description.arm.joint_names)
        self.kinematics = ArmKinematics.from_description(description)
        self.kinematics_lock = threading.Lock()

        self.command_pub = self.create_publisher(ActionChunk, p.command_topic, RELIABLE)
        self.heartbeat_pub = self.create_publisher(Header, p.heartbeat_topic, HEARTBEAT_QOS)
        self.status_pub = self.create_publisher(HarnessStatus, p.status_topic, RELIABLE)
        self.help_pub = self.create_publisher(HelpRequest, p.help_topic, HELP_QOS)
        self.recheck_pub = self.create_publisher(ViewpointRequest, p.recheck_topic, FEEDBACK_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)

        self.create_subscription(ExecutionFeedback, p.execution_topic, guarded(self, self._on_execution),
                                 FEEDBACK_QOS, callback_group=self.io_group)
        self.create_subscription(MemorySnapshot, p.memory_topic, guarded(self, self._on_snapshot), LATCHED,
                                 callback_group=self.io_group)
        self.create_subscription(MemoryEvent, p.memory_events_topic, guarded(self, self._on_memory_event), EVENTS_QOS,
                                 callback_group=self.io_group)
        self.create_subscription(HumanFeedback, p.human_feedback_topic, guarded(self, self._on_human_feedback),
                                 RELIABLE, callback_group=self.io_group)
        self.create_subscription(SceneObservation, p.observation_topic, guarded(self, self._on_observation),
                                 RELIABLE, callback_group=self.io_group)
        self.create_subscription(JointState, p.joint_states_topic, guarded(self, self._on_joint_state),
                                 JOINT_STATE_QOS, callback_group=self.io_group)
        self.create_subscription(WorldModelSurprise, p.surprise_topic, guarded(self, self._on_surprise),
                                 RELIABLE, callback_group=self.io_group)

        prefix = p.memory_service_prefix.rstrip("/")
        self.query_client = self.create_client(QueryMemory, f"{prefix}/query", callback_group=self.io_group)
        self.assert_client = self.create_client(AssertFact, f"{prefix}/assert", callback_group=self.io_group)
        self.policy_client = self.create_client(ProposeActions, p.policy_service, callback_group=self.io_group)
        self.world_model_client = self.create_client(EvaluateCandidates, p.world_model_service,
                                                     callback_group=self.io_group)
        self.lifecycle_client = self.create_client(ChangeState, f"{p.router_node}/change_state",
                                                   callback_group=self.io_group)

        self.action_server = ActionServer(
            self, ExecuteTask, p.action_name, execute_callback=self._execute,
            goal_callback=guarded(self, self._on_goal, "goal_callback"),
            cancel_callback=guarded(self, self._on_cancel, "cancel_callback"),
            callback_group=self.task_group)

        self.create_timer(1.0 / p.heartbeat_rate, guarded(self, self._on_heartbeat), clock=self.steady,
                          callback_group=self.timers_group)
        self.create_timer(1.0 / p.status_rate, guarded(self, self._on_status), clock=self.steady,
                          callback_group=self.timers_group)
        self.create_timer(1.0, guarded(self, self._on_diagnostics), clock=self.steady,
                          callback_group=self.timers_group)

        self.contradicted: dict[str, tuple[float, str]] = {}   # subject -> (monotonic s, reason)
        self.surprises: OrderedDict[str, dict[str, float]] = OrderedDict()   # chunk_id -> subject -> m
        self.known_objects: set[str] = set()
        self.snapshot_facts: list[MemoryFact] = []
        self.joint_state: JointState | None = None
        self.scene: SceneObservation | None = None
        self.feedback: dict[str, ExecutionFeedback] = {}
        self.sent_ids: set[str] = set()
        self.busy = False
        self.run_state = RunState(task_id="")
        self.open_help: dict[str, dict] = {}           # request_id -> {"event", "answer", "task_id"}
        self.answered_help: list[str] = []
        self.counts: Counter = Counter()
        self.last_rejection = ""
        self.last_outcome = ""
        self.get_logger().info(
            f"supervisor: action {p.action_name}; policy {'on' if p.use_policy else 'off'}, world model "
            f"{'on' if p.use_world_model else 'off'}, recovery {'on' if p.use_recovery else 'off'}, "
            f"escalation {'on' if p.use_escalation else 'off'}; places {p.place_map()}")

    def _apply_parameters(self, params: SupervisorParameters) -> None:
        """A validated `ros2 param set` of SupervisorParameters.DYNAMIC: used from the next task on."""
        self.params = params

    def stamp(self):
        return self.get_clock().now().to_msg()

    # ------------------------------------------------------------------ subscriptions (store only)
    def _on_execution(self, msg: ExecutionFeedback) -> None:
        with self.lock:
            if msg.chunk_id not in self.sent_ids:
                return
            if msg.status in TERMINAL or msg.chunk_id not in self.feedback:
                self.feedback[msg.chunk_id] = msg

    def _on_snapshot(self, msg: MemorySnapshot) -> None:
        facts = [f for f in msg.facts[:MAX_SNAPSHOT_FACTS] if len(f.subject) <= MAX_REQUEST_ID
                 and len(f.fact_id) <= 2 * MAX_REQUEST_ID and len(f.value) <= 8 * MAX_TEXT]
        objects = {f.subject for f in facts if f.kind == MemoryFact.KIND_VISUAL and f.subject
                   and f.state != MemoryFact.STATE_INVALID}
        with self.lock:
            self.known_objects = objects
            self.snapshot_facts = facts

    def _on_memory_event(self, msg: MemoryEvent) -> None:
        if msg.event == MemoryEvent.EVENT_CONTRADICTED and len(msg.subject) <= MAX_REQUEST_ID:
            with self.lock:
                self.contradicted[msg.subject] = (time.monotonic(), _short(msg.reason, 200))
                while len(self.contradicted) > MAX_OPEN_HELP:
                    self.contradicted.pop(next(iter(self.contradicted)))

    def _on_surprise(self, msg: WorldModelSurprise) -> None:
        """Keep the surprise per chunk id (only finite, consistent reports; others counted and dropped)."""
        subjects, values = list(msg.subjects), list(msg.surprise)
        if (len(msg.chunk_id) > 2 * MAX_REQUEST_ID or len(subjects) != len(values)
                or len(subjects) > MAX_SURPRISE_SUBJECTS or any(len(s) > MAX_REQUEST_ID for s in subjects)
                or not all(math.isfinite(v) and 0.0 <= v < 1e3 for v in values)):
            self.counts["surprise_refused"] += 1
            return
        with self.lock:
            self.surprises[msg.chunk_id] = dict(zip(subjects, (float(v) for v in values)))
            self.surprises.move_to_end(msg.chunk_id)
            while len(self.surprises) > MAX_SURPRISES:
                self.surprises.popitem(last=False)

    def tool_position(self) -> tuple[float, float, float] | None:
        """The tool's position (world) from the newest joint state, None when the arm is not in it."""
        js = self.joint_state
        if js is None:
            return None
        pos = dict(zip(js.name, js.position))
        q = [pos.get(j, math.nan) for j in self.arm_joints]
        if not all(math.isfinite(v) for v in q):
            return None
        with self.kinematics_lock:
            t = self.kinematics.fk(q).translation
        return float(t[0]), float(t[1]), float(t[2])

    def _on_observation(self, msg: SceneObservation) -> None:
        self.scene = msg           # handed to the policy as it came: the policy validates its request

    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.name) <= MAX_JOINTS and len(msg.name) == len(msg.position):
            self.joint_state = msg

    def gripped(self) -> bool | None:
        """Fingers closed on something, from the newest joint state (None: fingers not in it)."""
        js = self.joint_state
        if js is None or len(js.name) != len(js.position):
            return None
        pos = dict(zip(js.name, js.position))
        fingers = [pos.get(j, math.nan) for j in self.gripper.joint_names]
        if not all(math.isfinite(v) for v in fingers):
            return None
        width = self.gripper.width_from_joints(fingers)
        return bool(self.params.gripper_empty_width < width < self.params.gripper_open_width)

    def _on_human_feedback(self, msg: HumanFeedback) -> None:
        try:
            fb = FeedbackInput(request_id=msg.request_id, kind=int(msg.kind), response=msg.response, note=msg.note)
        except ValidationError as exc:
            self._refuse_feedback(f"HumanFeedback refused: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
            return
        if not fb.request_id:
            text = fb.note or fb.response
            if text:
                self.counts["unsolicited_feedback"] += 1
                self._assert_text_async("human", json.dumps({"unsolicited": True, "kind": fb.kind,
                                                              "response": fb.response, "note": fb.note}))
            return
        with self.lock:
            entry = self.open_help.get(fb.request_id)
            if entry is not None and entry["answer"] is None:
                entry["answer"] = Answer(fb.kind, fb.response, fb.note)
                entry["event"].set()
                self.counts["answers"] += 1
                return
        why = "already answered" if fb.request_id in self.answered_help or entry is not None else "no such help request"
        self._refuse_feedback(f"HumanFeedback for unknown request id '{_short(fb.request_id)}': {why}; ignored")

    def _refuse_feedback(self, reason: str) -> None:
        self.counts["feedback_refused"] += 1
        self.get_logger().warning(reason, throttle_duration_sec=1.0)
        self._diagnose(DiagnosticStatus.WARN, reason)

    # ------------------------------------------------------------------ timers
    def _on_heartbeat(self) -> None:
        self.heartbeat_pub.publish(Header(stamp=self.stamp(), frame_id=NODE_NAME))

    def _on_status(self) -> None:
        s = self.run_state
        msg = HarnessStatus()
        msg.header.stamp = self.stamp()
        msg.task_id, msg.phase, msg.subtask = s.task_id, s.phase, s.subtask
        msg.attempt, msg.retries_left = int(s.attempt), int(max(0, s.retries_left))
        msg.last_failure = s.last_failure if self.busy else (self.last_rejection or s.last_failure)
        msg.waiting_for_human = bool(s.waiting_for_human)
        self.status_pub.publish(msg)

    def _on_diagnostics(self) -> None:
        self._diagnose(DiagnosticStatus.OK, "running a task" if self.busy else "idle")

    def _diagnose(self, level, message: str) -> None:
        values = {**self.counts, "busy": self.busy, "task_id": self.run_state.task_id, "phase": self.run_state.phase,
                  "last_rejection": _short(self.last_rejection, 300), "last_outcome": _short(self.last_outcome, 300),
                  "callback_errors": sum(getattr(self, "callback_errors", Counter()).values())}
        publish_diagnostics(self.diagnostics_pub, self.stamp(),
                            [diagnostic_status(level, NODE_NAME, NODE_NAME, message, values, max_text=500)])

    # ------------------------------------------------------------------ action server
    def _on_goal(self, goal: ExecuteTask.Goal) -> GoalResponse:
        reason = self._goal_problem(goal)
        if reason is None:
            with self.lock:
                if self.busy:
                    reason = (f"busy: task '{self.run_state.task_id}' is running (one task at a time: "
                              f"cancel it or wait for its result)")
                else:
                    self.busy = True
        if reason is not None:
            self.counts["goals_rejected"] += 1
            self.last_rejection = f"goal rejected: {reason}"
            self.get_logger().warning(self.last_rejection)
            self._diagnose(DiagnosticStatus.WARN, self.last_rejection)
            return GoalResponse.REJECT
        self.counts["goals_accepted"] += 1
        self.last_rejection = ""
        return GoalResponse.ACCEPT

    def _goal_problem(self, goal: ExecuteTask.Goal) -> str | None:
        if len(goal.task_id) > MAX_REQUEST_ID:
            return f"task_id longer than {MAX_REQUEST_ID} characters"
        if not (math.isfinite(goal.timeout) and 0.0 <= goal.timeout <= 86400.0):
            return f"timeout {goal.timeout} s is not in 0..86400 (0 = the node's task_timeout)"
        if goal.max_attempts > 100:
            return f"max_attempts {goal.max_attempts} is above 100"
        try:
            self._parse(goal.task)
        except TaskError as exc:
            return str(exc)
        return None

    def _parse(self, text: str) -> Task:
        with self.lock:
            objects = (set(self.known_objects) | set(self.params.searchable_objects)) - set(self.params.places)
        return parse_task(text, objects, set(self.params.places))

    def _on_cancel(self, goal_handle) -> CancelResponse:
        self.get_logger().info("cancel requested: the task holds the arm and stops")
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle):
        goal = goal_handle.request
        task_id = goal.task_id[:MAX_REQUEST_ID] or f"task-{uuid.uuid4().hex[:8]}"
        result = ExecuteTask.Result()
        try:
            task = self._parse(goal.task)      # memory may have changed since acceptance
            params = self.params
            ports = NodePorts(self, goal_handle, task_id)
            ports.object_id = task.object_id
            runner = TaskRunner(ports, task, task_id, params.runner_config(),
                                self.planner, max_attempts=int(goal.max_attempts),
                                timeout=goal.timeout or params.task_timeout)
            self.run_state = runner.state
            outcome = runner.run()
            result.success, result.outcome = outcome.success, outcome.outcome
            result.attempts, result.message = int(outcome.attempts), outcome.message[:MAX_TEXT]
            self._fill_metrics(result, outcome.metrics, outcome.steps)
        except TaskError as exc:
            result.success, result.outcome, result.attempts = False, "failed", 0
            result.message = f"goal no longer valid: {exc}"
        except Exception as exc:   # noqa: BLE001 - the action must always get a result
            self.get_logger().error(f"task {task_id} failed inside the supervisor: {exc!r}")
            result.success, result.outcome, result.message = False, "failed", f"internal error: {exc!r}"[:MAX_TEXT]
        finally:
            with self.lock:
                self.busy = False
        self.last_outcome = f"{task_id}: {result.outcome}: {result.message}"
        self.get_logger().info(f"task {task_id} {result.outcome}: {result.message}")
        if goal_handle.is_cancel_requested and not result.success:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    @staticmethod
    def _fill_metrics(result, m: TaskMetrics, steps: list[str]) -> None:
        result.retries, result.escalations, result.vetoes = int(m.retries), int(m.escalations), int(m.vetoes)
        result.false_vetoes, result.stale_fact_uses = int(m.false_vetoes), int(m.stale_fact_uses)
        result.re_observations, result.surprises = int(m.re_observations), int(m.surprises)
        result.policy_chunks, result.planner_chunks = int(m.policy_executed), int(m.planner_executed)
        result.decision_latency_ms = [float(v) for v in m.decision_latency_ms[-1000:]]
        result.steps = [line[:MAX_TEXT] for line in steps[-MAX_STEPS_IN_RESULT:]]

    # ------------------------------------------------------------------ helpers for the ports
    def call(self, client, request, timeout: float, name: str, wait_for_server: bool = True):
        """Call a service and wait at most `timeout` s; NodeLost when nothing answers."""
        if not client.service_is_ready() and (not wait_for_server or not client.wait_for_service(timeout)):
            raise NodeLost(name, f"service '{client.srv_name}' not available within {timeout:.1f} s")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            raise NodeLost(name, f"no answer from '{client.srv_name}' within {timeout:.1f} s")
        if future.exception() is not None:
            raise NodeLost(name, f"'{client.srv_name}' failed: {future.exception()!r}")
        return future.result()

    def _assert_text_async(self, subject: str, text: str) -> None:
        """Keep a text fact without waiting (from a subscriber: never block the executor)."""
        if not self.assert_client.service_is_ready():
            self.get_logger().warning("memory assert service not available: note not kept", throttle_duration_sec=2.0)
            return
        fact = MemoryFact(kind=MemoryFact.KIND_TEXT, subject=subject[:MAX_REQUEST_ID], value=text[:MAX_TEXT],
                          confidence=1.0, source="human", fact_id=f"text/human/{uuid.uuid4().hex[:12]}")
        fact.header.stamp = self.stamp()
        self.assert_client.call_async(AssertFact.Request(fact=fact))

    def chunk_msg(self, candidate: Candidate, attempt: int, subgoal: Subgoal, start) -> ActionChunk:
        if candidate.payload is not None:
            chunk = ActionChunk()
            src = candidate.payload
            for field in ("space", "ee_poses", "ee_times", "joint_names", "joint_points", "gripper_command",
                          "gripper_width"):
                setattr(chunk, field, getattr(src, field))
            chunk.source = f"policy:{_short(src.source, 40)}" if src.source else "policy"
        else:
            chunk = ActionChunk()
            chunk.space = ActionChunk.SPACE_END_EFFECTOR_DELTA if candidate.delta else ActionChunk.SPACE_END_EFFECTOR
            origin = (0.0, 0.0, 0.0) if candidate.delta else start
            times = waypoint_times(origin, candidate.positions, self.planner.config.pick)
            for pos, t in zip(candidate.positions, times):
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
                (pose.orientation.x, pose.orientation.y, pose.orientation.z,
                 pose.orientation.w) = (float(v) for v in candidate.quaternion)
                chunk.ee_poses.append(pose)
                chunk.ee_times.append(Duration(sec=int(t), nanosec=int((t - int(t)) * 1e9)))
            chunk.gripper_command = int(candidate.gripper)
            chunk.source = "supervisor_planner"
        chunk.header.stamp = self.stamp()
        chunk.header.frame_id = "world"
        chunk.attempt = int(attempt)
        chunk.chunk_id = f"sup-{subgoal.value}-{candidate.name[:24]}-a{attempt}-{uuid.uuid4().hex[:8]}"
        return chunk


class NodePorts:
    """The runner's ports over ROS: bounded service calls, chunks with feedback, the lifecycle hold."""

    def __init__(self, node: Supervisor, goal_handle, task_id: str):
        self.node, self.goal_handle, self.task_id = node, goal_handle, task_id
        self.params = node.params
        self.last_target = None
        self.help_count = 0
        self.object_id = ""          # the task's object: the only thing the supervisor ever grips
        self.evaluated_ids: dict[int, str] = {}   # id(candidate) -> chunk id the world model predicted
        self.predicted_sent: set[str] = set()     # chunk ids sent that the world model has a prediction for

    # -- memory
    def beliefs(self, subjects: list[str]) -> dict[str, Belief]:
        out = {}
        places = self.params.place_map()
        for subject in subjects:
            req = QueryMemory.Request(subject=subject, kind=MemoryFact.KIND_VISUAL, min_confidence=0.0)
            res = self.node.call(self.node.query_client, req, self.params.service_timeout, "memory")
            facts = [f for f in res.facts if f.subject == subject] if res.success else []
            if facts:
                best = max(facts, key=lambda f: (f.state == MemoryFact.STATE_VALID, f.fact_id == f"visual/{subject}",
                                                 f.confidence))
                p, o = best.pose.position, best.pose.orientation
                out[subject] = Belief(subject, (p.x, p.y, p.z), (o.x, o.y, o.z, o.w), float(best.confidence),
                                      int(best.state), best.value, best.source,
                                      best.last_verified.sec + best.last_verified.nanosec * 1e-9,
                                      gripped=self.node.gripped() if subject == self.object_id else None)
            elif subject in places:
                out[subject] = Belief(subject, places[subject], source="config")
        return out

    def request_recheck(self, subjects: list[str], reason: str) -> None:
        msg = ViewpointRequest()
        msg.header.stamp = self.node.stamp()
        msg.header.frame_id = "world"
        msg.request_id = f"{self.task_id}-recheck-{uuid.uuid4().hex[:6]}"
        msg.camera = "wrist"
        msg.camera_pose.orientation.w = 1.0
        msg.subjects = list(subjects)
        msg.reason = reason[:500]
        self.node.recheck_pub.publish(msg)

    def remember_text(self, subject: str, text: str) -> None:
        fact = MemoryFact(kind=MemoryFact.KIND_TEXT, subject=subject[:MAX_REQUEST_ID], value=text[:MAX_TEXT],
                          confidence=1.0, source="human", fact_id=f"text/human/{uuid.uuid4().hex[:12]}")
        fact.header.stamp = self.node.stamp()
        self._assert(fact, "the human's answer as a text fact")

    def remember_position(self, subject: str, position: tuple) -> None:
        fact = MemoryFact(kind=MemoryFact.KIND_VISUAL, subject=subject, confidence=0.9, source="human")
        fact.header.stamp = self.node.stamp()
        fact.pose.position = Point(x=float(position[0]), y=float(position[1]), z=float(position[2]))
        fact.pose.orientation.w = 1.0
        fact.position_covariance = [1e-4, 0.0, 0.0, 0.0, 1e-4, 0.0, 0.0, 0.0, 1e-4]
        self._assert(fact, f"the human's position for '{subject}'")

    def _assert(self, fact: MemoryFact, what: str) -> None:
        """Keep `fact` in memory; a refusal or a silent tracker is logged, never raised."""
        try:
            res = self.node.call(self.node.assert_client, AssertFact.Request(fact=fact), self.params.service_timeout,
                                 "memory")
            if not res.success:
                self.log(f"memory refused {what}: {res.message}")
        except NodeLost as exc:
            self.log(f"{what} not kept in memory: {exc}")

    # -- policy and world model
    def propose(self, task: Task, subgoal: Subgoal, count: int) -> list[Candidate]:
        client = self.node.policy_client
        if not self._discovered(client):
            self.log(f"{subgoal.value}: policy not reachable ('{client.srv_name}'): planner fallback")
            return []
        req = ProposeActions.Request(goal=task.canonical, num_candidates=int(count))
        if self.node.joint_state is not None:
            req.joint_state = self.node.joint_state
        if self.node.scene is not None:
            req.scene = self.node.scene
        res = self.node.call(client, req, self.params.policy_timeout, "policy", wait_for_server=False)
        if not res.success:
            self.log(f"{subgoal.value}: policy refused: {_short(res.message, 200)}: planner fallback")
            return []
        c = res.candidates
        scores = list(c.scores) if len(c.scores) == len(c.candidates) else [0.0] * len(c.candidates)
        tool = self.node.tool_position()
        return [Candidate(name=f"policy{k}", source="policy", payload=chunk, score=float(s),
                          positions=self._end_point(chunk, tool), gripper=int(chunk.gripper_command))
                for k, (chunk, s) in enumerate(zip(c.candidates, scores))]

    @staticmethod
    def _end_point(chunk: ActionChunk, tool) -> tuple:
        """Where a policy chunk leaves the tool (world), for the subgoal screen; () when unknown."""
        if not chunk.ee_poses:
            return ()
        last = chunk.ee_poses[-1].position
        end = (last.x, last.y, last.z)
        if chunk.space == ActionChunk.SPACE_END_EFFECTOR_DELTA:
            if tool is None:
                return ()
            end = tuple(t + d for t, d in zip(tool, end))
        elif chunk.space != ActionChunk.SPACE_END_EFFECTOR:
            return ()
        return (tuple(float(v) for v in end),) if all(math.isfinite(v) for v in end) else ()

    def _discovered(self, client) -> bool:
        """Is the service there? A node that has just started may not be discovered yet: wait a
        bounded moment (DISCOVERY_WAIT) rather than going on without it."""
        return client.service_is_ready() or client.wait_for_service(timeout_sec=DISCOVERY_WAIT)

    def evaluate(self, task: Task, candidates: list[Candidate]) -> Evaluation:
        client = self.node.world_model_client
        if not self._discovered(client):
            self.log(f"world model not reachable ('{client.srv_name}'): first candidate unchecked")
            return Evaluation(0, "world model not reachable")
        start = self.last_target
        req = EvaluateCandidates.Request(goal=task.canonical)
        if self.node.joint_state is not None:
            req.joint_state = self.node.joint_state
        with self.node.lock:
            # current beliefs only: a superseded (contradicted) copy would put the object where it was
            req.facts = [f for f in self.node.snapshot_facts if f.kind == MemoryFact.KIND_VISUAL
                         and f.state in (MemoryFact.STATE_VALID, MemoryFact.STATE_STALE)][:256]
        state = self.node.run_state
        subgoal = Subgoal(state.subtask) if state.subtask in Subgoal._value2member_map_ else Subgoal.VERIFY
        req.candidates = [self.node.chunk_msg(c, state.attempt, subgoal, start or self._start(c)) for c in candidates]
        res = self.node.call(client, req, self.params.world_model_timeout, "world_model", wait_for_server=False)
        if not res.success:
            return Evaluation(0, f"world model could not evaluate ({_short(res.message, 200)}): first candidate")
        # the chosen chunk is sent under the id the world model predicted it with: its surprise follows
        self.evaluated_ids = {id(c): m.chunk_id for c, m in zip(candidates, req.candidates)}
        worst = [f"{k}: {', '.join(p.violations[:3])}" for k, p in enumerate(res.predictions) if p.violations]
        vetoed = tuple(k for k, p in enumerate(res.predictions) if p.violations)
        return Evaluation(int(res.best_index), "; ".join(worst)[:500], vetoed)

    def tool_position(self) -> tuple[float, float, float] | None:
        return self.node.tool_position()

    def surprise(self, chunk_id: str, subject: str, timeout: float) -> float | None:
        """The world model's surprise (m) about `subject` after chunk `chunk_id`, waiting at most
        `timeout` s for it; None when none came (not predicted, or the subject not compared)."""
        if chunk_id not in self.predicted_sent:
            return None                      # sent under a new id (a resend): the world model has nothing to compare
        deadline = time.monotonic() + timeout
        while True:
            with self.node.lock:
                found = self.node.surprises.get(chunk_id)
            if found is not None:
                return found.get(subject)
            if time.monotonic() >= deadline or self.cancelled():
                return None
            time.sleep(WAIT_STEP)

    # -- the arm
    def _start(self, candidate: Candidate):
        return [candidate.positions[0][0], candidate.positions[0][1], candidate.positions[0][2] + 0.3] \
            if candidate.positions else [0.0, 0.0, 0.0]

    def execute(self, candidate: Candidate, attempt: int, subgoal: Subgoal) -> ExecResult:
        node = self.node
        start = self.last_target if self.last_target is not None else self._start(candidate)
        deadline = time.monotonic() + self.params.chunk_timeout
        evaluated_id = self.evaluated_ids.pop(id(candidate), "")
        self.evaluated_ids.clear()
        while True:
            chunk = node.chunk_msg(candidate, attempt, subgoal, start)
            if evaluated_id:
                chunk.chunk_id, evaluated_id = evaluated_id, ""   # only the first send: a resend is new content
                self.predicted_sent.add(chunk.chunk_id)
            with node.lock:
                node.sent_ids.add(chunk.chunk_id)
                if len(node.sent_ids) > MAX_CHUNK_IDS:
                    node.sent_ids.clear()
                    node.feedback.clear()
                    node.sent_ids.add(chunk.chunk_id)
            sent_at = last_send = time.monotonic()
            node.command_pub.publish(chunk)
            fb = None
            while True:
                if self.cancelled():
                    self.hold("task cancelled while a chunk executes")
                    return ExecResult(False, cancelled=True, message="cancelled")
                with node.lock:
                    fb = node.feedback.get(chunk.chunk_id)
                    moved = (node.contradicted.get(self.object_id)
                             if subgoal in INTERRUPTIBLE and self.params.use_memory_validity else None)
                if moved is not None and moved[0] > sent_at and (fb is None or fb.status not in TERMINAL):
                    self.hold(f"'{self.object_id}' contradicted while approaching it: {moved[1]}")
                    return ExecResult(False, FailureType.OBJECT_MOVED,
                                      f"memory contradicted '{self.object_id}' during the approach ({moved[1]})")
                now = time.monotonic()
                if fb is not None and fb.status in TERMINAL:
                    break
                if fb is None and now - sent_at > self.params.ack_timeout:
                    raise NodeLost("router", f"no feedback on chunk '{chunk.chunk_id}' within "
                                             f"{self.params.ack_timeout:.1f} s")
                if fb is None and now - last_send > RESEND_PERIOD:
                    node.command_pub.publish(chunk)      # at least once: the router ignores a repeat
                    last_send = now
                if now > deadline:
                    self.hold(f"chunk '{chunk.chunk_id}' not finished in {self.params.chunk_timeout:.0f} s")
                    return ExecResult(False, FailureType.TIMEOUT, f"chunk not finished in {self.params.chunk_timeout:.0f} s")
                time.sleep(WAIT_STEP)
            if fb.status == ExecutionFeedback.STATUS_REJECTED and fb.failure in NOT_READY \
                    and time.monotonic() + NOT_READY_RETRY < deadline:
                time.sleep(NOT_READY_RETRY)        # router not ready or moving a camera: send again
                continue
            break
        if fb.status == ExecutionFeedback.STATUS_SUCCEEDED:
            if not candidate.delta and candidate.positions:
                self.last_target = list(candidate.positions[-1])
            return ExecResult(True, message=fb.message, chunk_id=chunk.chunk_id)
        kind = FAILURE_TYPES.get(fb.failure, FailureType.TIMEOUT)
        status = {ExecutionFeedback.STATUS_FAILED: "failed", ExecutionFeedback.STATUS_REJECTED: "rejected",
                  ExecutionFeedback.STATUS_HELD: "held"}.get(fb.status, str(fb.status))
        return ExecResult(False, kind, f"router {status} '{chunk.chunk_id}' (failure {fb.failure}): "
                                       f"{_short(fb.message, 300)}", chunk_id=chunk.chunk_id)

    def hold(self, reason: str) -> bool:
        """Hold the arm through the router: deactivate (stop at the measured position, chunk HELD),
        then activate again so commands are accepted once the supervisor decides to move."""
        self.log(f"hold: {reason}")
        client = self.node.lifecycle_client
        timeout = self.params.hold_timeout
        try:
            res = self.node.call(client, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE)),
                                 timeout, "router")
            held = bool(res.success)
            res = self.node.call(client, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE)),
                                 timeout, "router")
            if not res.success:
                self.log("hold: the router did not re-activate; it refuses commands until activated")
        except NodeLost as exc:
            self.log(f"hold failed: {exc}")
            return False
        return held

    # -- the human
    def ask_human(self, question: HelpQuestion) -> Answer | None:
        node = self.node
        entry = {"event": threading.Event(), "answer": None, "task_id": self.task_id}
        with node.lock:
            node.open_help[question.request_id] = entry
        msg = HelpRequest(request_id=question.request_id, task_id=self.task_id, question=question.question[:MAX_TEXT],
                          options=list(question.options), context=json.dumps(question.context)[:8 * MAX_TEXT])
        msg.header.stamp = node.stamp()
        node.help_pub.publish(msg)
        node.counts["help_requests"] += 1
        deadline = time.monotonic() + self.params.help_timeout
        try:
            while time.monotonic() < deadline and not self.cancelled():
                if entry["event"].wait(WAIT_STEP * 4):
                    return entry["answer"]
            return None
        finally:
            with node.lock:
                node.open_help.pop(question.request_id, None)
                node.answered_help.append(question.request_id)
                del node.answered_help[:-MAX_OPEN_HELP]

    # -- bookkeeping
    def report(self, state: RunState) -> None:
        self.node.run_state = state
        fb = ExecuteTask.Feedback(phase=state.phase, subtask=state.subtask, attempt=int(state.attempt),
                                  progress=float(min(1.0, max(0.0, state.progress))))
        self.goal_handle.publish_feedback(fb)

    def log(self, line: str) -> None:
        self.node.get_logger().info(line)

    def cancelled(self) -> bool:
        return bool(self.goal_handle.is_cancel_requested) or not self.node.context.ok()

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.cancelled():
            time.sleep(min(WAIT_STEP, max(0.0, end - time.monotonic())))

    def now(self) -> float:
        return time.monotonic()


def main(args=None) -> int:
    return run_node(NODE_NAME, Supervisor, args,
                    executor=lambda context: MultiThreadedExecutor(num_threads=4, context=context))


if __name__ == "__main__":
    sys.exit(main())
