"""The supervisor over DDS with real nodes: sim + router + memory tracker + perception (which fills
memory from the sim's cameras) + supervisor, each its own process, the policy and the world model
switched off (planner fallback). The test reads /sim/ground_truth only to judge the outcome.

Covered: a task that succeeds; an object no camera has seen, searched for and fetched; cancel mid-motion (the arm holds, the result says cancelled); a goal
naming an unknown object and a second goal while one runs, both refused at acceptance; escalation
(recovery off, the cube moved under the plan) -> HelpRequest -> HumanFeedback "retry" -> acted on
and kept in memory; hostile HumanFeedback and goal strings, after which the node still answers."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

from conftest import spin_until
from robot_harness.action import ExecuteTask
from robot_harness.msg import (ExecutionFeedback, HarnessStatus, HelpRequest, HumanFeedback, MemoryFact,
                               SimGroundTruth)
from robot_harness.srv import AssertFact, QueryMemory, SimControl

pytestmark = pytest.mark.integration
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
HELP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
ABLATED = dict(use_sim_time=True, use_policy=False, use_world_model=False)


class Harness:
    """Test-side client: the action, status, help requests, memory, ground truth (judging only)."""

    def __init__(self, node):
        self.node = node
        self.action = ActionClient(node, ExecuteTask, "/harness/execute_task")
        self.gt: SimGroundTruth | None = None
        self.joints: JointState | None = None
        self.status: list[HarnessStatus] = []
        self.help: list[HelpRequest] = []
        self.execution: list[ExecutionFeedback] = []
        self.diagnostics: list[str] = []
        self.feedback: list = []
        node.create_subscription(SimGroundTruth, "/sim/ground_truth", lambda m: setattr(self, "gt", m), 10)
        node.create_subscription(JointState, "/joint_states", lambda m: setattr(self, "joints", m), 10)
        node.create_subscription(HarnessStatus, "/harness/status", self.status.append, RELIABLE)
        node.create_subscription(HelpRequest, "/harness/help_request", self.help.append, HELP_QOS)
        node.create_subscription(ExecutionFeedback, "/harness/execution", self.execution.append, RELIABLE)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.human = node.create_publisher(HumanFeedback, "/harness/human_feedback", RELIABLE)
        self.query = node.create_client(QueryMemory, "/harness/memory/query")
        self.assert_fact = node.create_client(AssertFact, "/harness/memory/assert")
        self.control = node.create_client(SimControl, "/sim/control")

    def _on_diagnostics(self, msg):
        for s in msg.status:
            if s.name == "supervisor":
                self.diagnostics.append(s.message)

    def call(self, client, request, timeout=30.0):
        assert client.wait_for_service(timeout_sec=timeout)
        future = client.call_async(request)
        assert spin_until(self.node, future.done, timeout)
        return future.result()

    def believes(self, subject: str) -> bool:
        res = self.call(self.query, QueryMemory.Request(subject=subject, kind=MemoryFact.KIND_VISUAL))
        return any(f.state == MemoryFact.STATE_VALID and f.confidence > 0.5 for f in res.facts)

    def ready(self, subject="red_cube", timeout=120.0) -> None:
        assert self.action.wait_for_server(timeout_sec=60.0), "no ExecuteTask action server"
        assert spin_until(self.node, lambda: self.query.service_is_ready() and self.believes(subject), timeout), \
            f"memory never believed in {subject}"
        assert spin_until(self.node, lambda: self.human.get_subscription_count() > 0 and self.status, 30.0)

    def send(self, text: str, wait: float = 10.0, **fields):
        goal = ExecuteTask.Goal(task=text, **fields)
        future = self.action.send_goal_async(goal, feedback_callback=lambda f: self.feedback.append(f.feedback))
        assert spin_until(self.node, future.done, wait), "goal not answered"
        return future.result()

    def send_accepted(self, text: str, wait: float = 30.0, **fields):
        """Send until accepted (the supervisor's view of memory lags it by a snapshot period)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            handle = self.send(text, **fields)
            if handle.accepted:
                return handle
            spin_until(self.node, lambda: False, 1.0)
        raise AssertionError(f"goal '{text}' never accepted: {self.diagnostics[-3:]}")

    def result(self, handle, timeout: float):
        future = handle.get_result_async()
        assert spin_until(self.node, future.done, timeout), "no result in time"
        return future.result()

    def in_tray(self, oid="red_cube") -> bool:
        return self.gt is not None and oid in self.gt.in_tray and self.gt.held_object == ""


@pytest.fixture
def stack(start_node, tmp_path):
    def _start(sim: dict | None = None, **supervisor):
        nodes = {
            "sim": start_node("harness_nodes.sim.node", "sim.yaml", **(sim or {})),
            "router": start_node("harness_nodes.router.node", "router.yaml", use_sim_time=True),
            "memory": start_node("harness_nodes.memory.node", "memory.yaml", use_sim_time=True,
                                 db_path=str(tmp_path / "memory.sqlite")),
            "perception": start_node("harness_nodes.perception.node", "perception.yaml", use_sim_time=True),
            "supervisor": start_node("harness_nodes.supervisor.node", "supervisor.yaml", **{**ABLATED, **supervisor}),
        }
        return nodes
    return _start


def logs(nodes, name="supervisor", n=4000):
    return nodes[name].log()[-n:]


@pytest.mark.timeout(300)
def test_task_succeeds_with_planner_fallback_and_perception(stack, ros_node):
    nodes = stack()
    h = Harness(ros_node)
    h.ready()
    handle = h.send_accepted("put the red cube in the tray", task_id="t-ok")
    res = h.result(handle, 240.0)
    assert res.status == GoalStatus.STATUS_SUCCEEDED, (res.result.message, logs(nodes))
    assert res.result.success and res.result.outcome == "succeeded" and res.result.attempts >= 1
    assert spin_until(ros_node, h.in_tray, 10.0), (h.gt.in_tray if h.gt else None, logs(nodes))
    # (feedback is a topic and the result a service reply: the last feedback may arrive after the result)
    steps = {"look", "approach", "grasp", "lift", "move", "place", "release", "verify"}
    assert spin_until(ros_node, lambda: steps <= {f.subtask for f in h.feedback}, 5.0), {f.subtask for f in h.feedback}
    ours = [e for e in h.execution if e.chunk_id.startswith("sup-")]
    assert ours and all(e.attempt >= 1 for e in ours)            # the attempt travels with every command
    assert any(s.task_id == "t-ok" for s in h.status)
    assert all(n.alive() for n in nodes.values())


@pytest.mark.timeout(300)
def test_cancel_holds_the_arm_and_refusals_at_acceptance(stack, ros_node):
    nodes = stack()
    h = Harness(ros_node)
    h.ready()
    rejected = h.send("put the purple cube in the tray")
    assert not rejected.accepted
    assert spin_until(ros_node, lambda: any("unknown object 'purple cube'" in d for d in h.diagnostics), 5.0), \
        h.diagnostics[-3:]
    handle = h.send_accepted("put red_cube in tray", task_id="t-cancel")
    second = h.send("put red_cube in tray")
    assert not second.accepted
    assert spin_until(ros_node, lambda: any("busy" in d for d in h.diagnostics), 5.0)
    # mid-motion: the approach chunk executing
    assert spin_until(ros_node, lambda: any(e.chunk_id.startswith("sup-approach") and
                                            e.status == ExecutionFeedback.STATUS_EXECUTING for e in h.execution),
                      120.0), logs(nodes)
    cancel = handle.cancel_goal_async()
    assert spin_until(ros_node, cancel.done, 10.0)
    res = h.result(handle, 30.0)
    assert res.status == GoalStatus.STATUS_CANCELED, res.result.message
    assert res.result.outcome == "aborted" and "cancelled" in res.result.message and "arm held" in res.result.message
    # (the router's HELD feedback and the action result travel on different topics: either may arrive first)
    assert spin_until(ros_node, lambda: any(e.chunk_id.startswith("sup-") and e.status == ExecutionFeedback.STATUS_HELD
                                            for e in h.execution), 5.0)
    # the arm comes to rest and stays where it stopped (the sim applies the stop asynchronously: on a
    # loaded machine the joint states that arrive first can predate it, so wait for rest, then compare)
    def at_rest() -> bool:
        return h.joints is not None and len(h.joints.velocity) >= 7 \
            and float(np.max(np.abs(np.array(h.joints.velocity[:7])))) < 0.01
    assert spin_until(ros_node, at_rest, 10.0), h.joints
    before = np.array(h.joints.position[:7])
    spin_until(ros_node, lambda: False, 1.5)
    assert np.max(np.abs(np.array(h.joints.position[:7]) - before)) < 0.01
    # and a new goal is accepted again once the first has ended
    again = h.send_accepted("put red_cube in tray", task_id="t-after")
    cancel = again.cancel_goal_async()
    assert spin_until(ros_node, cancel.done, 10.0)
    assert h.result(again, 30.0).status == GoalStatus.STATUS_CANCELED
    assert all(n.alive() for n in nodes.values())


@pytest.mark.timeout(300)
def test_an_object_no_camera_has_seen_is_searched_for_and_fetched(stack, ros_node):
    # occluded: the red cube stands behind a tall box as the scene camera sees it, outside the wrist
    # camera's view at home; carrying it to the tray at the usual height meets that box
    nodes = stack(sim=dict(scenario="occluded", seed=3))
    h = Harness(ros_node)
    h.ready(subject="green_cube")
    assert not h.believes("red_cube")
    handle = h.send_accepted("put red_cube in tray", task_id="t-search")   # accepted: perception knows red cubes
    res = h.result(handle, 240.0)
    assert res.status == GoalStatus.STATUS_SUCCEEDED, (res.result.message, logs(nodes), logs(nodes, "perception"))
    assert spin_until(ros_node, h.in_tray, 10.0)
    log = nodes["supervisor"].log()
    assert "look: 'red_cube' not trustworthy (no belief): re-check requested" in log
    assert "viewpoint" in nodes["perception"].log() and "resolved: red_cube" in nodes["perception"].log()
    assert res.result.re_observations >= 1


@pytest.mark.timeout(360)
def test_escalation_is_answered_acted_on_and_remembered(stack, ros_node):
    nodes = stack(use_recovery=False, look_timeout=20.0)
    h = Harness(ros_node)
    h.ready()
    handle = h.send_accepted("put red_cube in tray", task_id="t-help")
    # the cube is moved while the arm approaches where it was
    assert spin_until(ros_node, lambda: any(f.subtask == "approach" and f.phase == "execute" for f in h.feedback),
                      120.0), logs(nodes)
    req = SimControl.Request(command=SimControl.Request.COMMAND_MOVE_OBJECT, object_id="red_cube")
    req.pose.position.x, req.pose.position.y, req.pose.position.z = 0.36, 0.16, 0.026
    req.pose.orientation.w = 1.0
    assert h.call(h.control, req).success
    assert spin_until(ros_node, lambda: h.help, 150.0), logs(nodes)
    question = h.help[-1]
    assert question.task_id == "t-help" and "retry" in question.options
    assert spin_until(ros_node, lambda: h.status and h.status[-1].waiting_for_human, 5.0)
    unknown = HumanFeedback(request_id="no-such-request", kind=HumanFeedback.KIND_APPROVE, response="retry")
    h.human.publish(unknown)
    assert spin_until(ros_node, lambda: any("unknown request id 'no-such-request'" in d for d in h.diagnostics), 5.0)
    # answer every help request with "retry" (recovery is off: any later failure asks again)
    future = handle.get_result_async()
    answered: list[str] = []

    def answer_open_requests() -> bool:
        for req in h.help:
            if req.request_id not in answered:
                answered.append(req.request_id)
                h.human.publish(HumanFeedback(request_id=req.request_id, kind=HumanFeedback.KIND_APPROVE,
                                              response="retry", note="the cube was pushed aside"))
        return future.done()

    assert spin_until(ros_node, answer_open_requests, 240.0), logs(nodes, n=8000)
    res = future.result()
    assert res.status == GoalStatus.STATUS_SUCCEEDED, (res.result.message, logs(nodes, n=8000))
    assert res.result.attempts == 1 + len(answered)               # each human retry is one more attempt
    assert "answer to 't-help-help-1': kind 0, 'retry'" in nodes["supervisor"].log()
    assert spin_until(ros_node, h.in_tray, 10.0)
    texts = h.call(h.query, QueryMemory.Request(kind=MemoryFact.KIND_TEXT)).facts
    assert any("the cube was pushed aside" in f.value and question.request_id in f.value for f in texts), \
        [f.value for f in texts]


# ---------------------------------------------------------------- hostile input (no sim needed)
@pytest.fixture
def light(start_node, tmp_path, ros_node):
    memory = start_node("harness_nodes.memory.node", "memory.yaml", db_path=str(tmp_path / "m.sqlite"))
    supervisor = start_node("harness_nodes.supervisor.node", "supervisor.yaml", use_policy=False,
                            use_world_model=False, ack_timeout=3.0, hold_timeout=2.0)
    h = Harness(ros_node)
    assert h.action.wait_for_server(timeout_sec=60.0), supervisor.log()
    fact = MemoryFact(kind=MemoryFact.KIND_VISUAL, subject="red_cube", confidence=0.9, source="test")
    fact.pose.position.x, fact.pose.position.z, fact.pose.orientation.w = 0.4, 0.025, 1.0
    fact.header.stamp = ros_node.get_clock().now().to_msg()
    assert h.call(h.assert_fact, AssertFact.Request(fact=fact)).success
    assert spin_until(ros_node, lambda: h.human.get_subscription_count() > 0 and h.status, 30.0)
    return h, supervisor, memory


def still_answers(h) -> bool:
    """The supervisor still refuses a bad goal at once and keeps publishing status."""
    n = len(h.status)
    refused = not h.send("put the purple cube in the tray").accepted
    return refused and spin_until(h.node, lambda: len(h.status) > n, 5.0)


@pytest.mark.timeout(240)
def test_hostile_feedback_and_goals_leave_the_supervisor_answering(light):
    h, supervisor, memory = light
    texts = st.one_of(st.just(""), st.text(max_size=50), st.just("x" * 100_000), st.just("😀" * 5000),
                      st.just("\x00\u202e\ufffe"), st.just("1e308 nan inf"))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rid=texts, kind=st.integers(0, 255), response=texts, note=texts)
    def feedback(rid, kind, response, note):
        h.human.publish(HumanFeedback(request_id=rid, kind=kind, response=response, note=note))

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(text=texts, task_id=texts, timeout=st.sampled_from([0.0, -1.0, 1e308, math.inf, math.nan]))
    def goals(text, task_id, timeout):
        handle = h.send(text, task_id=task_id, timeout=timeout)
        if handle.accepted:            # a goal the supervisor found valid: cancel it again
            spin_until(h.node, handle.cancel_goal_async().done, 10.0)
            h.result(handle, 60.0)

    feedback()
    assert still_answers(h), supervisor.log()[-3000:]
    goals()
    assert still_answers(h), supervisor.log()[-3000:]
    assert supervisor.alive() and memory.alive()
    assert any("HumanFeedback" in d for d in h.diagnostics)
    assert "input dropped" not in supervisor.log()                           # refused with a reason, no exception


@pytest.mark.timeout(180)
def test_dead_router_holds_reports_and_the_operator_answers(light, domain_id):
    """No router: the first chunk gets no feedback within ack_timeout -> hold attempted (the router's
    lifecycle service does not answer either: reported, bounded), escalation at once; the operator
    command lists the open request and aborts the task. Heartbeats keep their rate throughout."""
    import subprocess
    import sys

    from conftest import REPO, ros_env

    h, supervisor, _ = light
    beats: list = []
    h.node.create_subscription(Header, "/harness/heartbeat", beats.append,
                               QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    handle = h.send_accepted("put red_cube in tray", task_id="t-dead")
    assert spin_until(h.node, lambda: h.help, 60.0), supervisor.log()[-3000:]
    assert "router not answering" in h.help[-1].question
    assert spin_until(h.node, lambda: "hold failed" in supervisor.log(), 5.0), supervisor.log()[-3000:]
    n = len(beats)
    spin_until(h.node, lambda: False, 1.0)
    assert len(beats) - n >= 5, "heartbeat stalled while the task waits for a human"

    def operator(*args):
        return subprocess.run([sys.executable, "-m", "harness_nodes.supervisor.operator", *args],
                              env=ros_env(domain_id), cwd=REPO, capture_output=True, text=True, timeout=60)

    listed = operator("list", "--wait", "3")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    assert [r["request_id"] for r in rows if r["open"]] == [h.help[-1].request_id], listed.stdout
    answered = operator("answer", h.help[-1].request_id, "abort", "--note", "router is down")
    assert answered.returncode == 0, answered.stdout + answered.stderr[-2000:]
    res = h.result(handle, 30.0)
    assert res.status == GoalStatus.STATUS_ABORTED and res.result.outcome == "aborted", res.result.message
    texts = h.call(h.query, QueryMemory.Request(kind=MemoryFact.KIND_TEXT)).facts
    assert any("router is down" in f.value for f in texts)


@pytest.mark.timeout(180)
def test_policy_candidates_are_ranked_and_vetoed_by_the_world_model(start_node, tmp_path, ros_node):
    """Against the ProposeActions and EvaluateCandidates interfaces (served here by the test): the
    policy's candidates that reach the subgoal (here: end above the cube with the gripper opening)
    go to the world model with the planner's and the task's goal; a veto of all of them is a
    VETO_ALL failure and re-planned; the next ranking's choice is sent to the router (absent here:
    escalated, then aborted)."""
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Pose as PoseMsg

    from robot_harness.msg import ActionChunk, RolloutPrediction
    from robot_harness.srv import EvaluateCandidates, ProposeActions

    start_node("harness_nodes.memory.node", "memory.yaml", db_path=str(tmp_path / "m.sqlite"))
    supervisor = start_node("harness_nodes.supervisor.node", "supervisor.yaml", ack_timeout=3.0, hold_timeout=2.0)
    proposals, evaluations, sent = [], [], []

    def propose(req, res):
        proposals.append(req.goal)
        for k in range(2):
            chunk = ActionChunk(chunk_id=f"p{k}", source="test_policy", space=ActionChunk.SPACE_END_EFFECTOR)
            pose = PoseMsg()
            pose.position.x, pose.position.y, pose.position.z = 0.4, 0.02 * k, 0.025 + 0.15   # above the cube
            pose.orientation.x = 1.0
            chunk.ee_poses = [pose]
            chunk.ee_times = [Duration(sec=1)]
            chunk.gripper_command = ActionChunk.GRIPPER_OPEN
            res.candidates.candidates.append(chunk)
            res.candidates.scores.append(0.5)
        res.success = True
        return res

    def evaluate(req, res):
        evaluations.append([c.source for c in req.candidates])
        res.success = True
        res.predictions = [RolloutPrediction(chunk_id=c.chunk_id) for c in req.candidates]
        res.best_index = -1 if len(evaluations) == 1 else 1
        return res

    ros_node.create_service(ProposeActions, "/latent_policy/propose_actions", propose)
    ros_node.create_service(EvaluateCandidates, "/harness/world_model/evaluate", evaluate)
    ros_node.create_subscription(ActionChunk, "/harness/command", sent.append, RELIABLE)
    h = Harness(ros_node)
    assert h.action.wait_for_server(timeout_sec=60.0), supervisor.log()
    fact = MemoryFact(kind=MemoryFact.KIND_VISUAL, subject="red_cube", confidence=0.9, source="test")
    fact.pose.position.x, fact.pose.position.z, fact.pose.orientation.w = 0.4, 0.025, 1.0
    fact.header.stamp = ros_node.get_clock().now().to_msg()
    assert h.call(h.assert_fact, AssertFact.Request(fact=fact)).success
    handle = h.send_accepted("put the red cube in the tray", task_id="t-wm")
    assert spin_until(ros_node, lambda: h.help, 60.0), supervisor.log()[-3000:]
    log = supervisor.log()
    assert "veto_all at approach" in log and "world model chose candidate 1 of 6" in log, log[-3000:]
    assert "2 of 2 policy chunk(s) reach the subgoal" in log
    assert proposals and all(g == "put red_cube in tray" for g in proposals)
    assert evaluations[0] == ["policy:test_policy", "policy:test_policy"] + ["supervisor_planner"] * 4
    assert sent and sent[0].source == "policy:test_policy" and sent[0].ee_poses[0].position.y == pytest.approx(0.02)
    assert sent[0].attempt == 2                                   # the veto's re-plan is the second attempt
    h.human.publish(HumanFeedback(request_id=h.help[-1].request_id, kind=HumanFeedback.KIND_ABORT, response="abort"))
    assert h.result(handle, 30.0).result.outcome == "aborted"


@pytest.mark.timeout(180)
def test_a_policy_that_stops_answering_is_held_reported_and_replaced_by_the_planner(start_node, tmp_path, ros_node):
    """The policy's service is there but never answers (its node is not spun): after policy_timeout
    the supervisor holds, reports the lost node, and continues with planner chunks."""
    import rclpy

    from robot_harness.msg import ActionChunk
    from robot_harness.srv import ProposeActions

    start_node("harness_nodes.memory.node", "memory.yaml", db_path=str(tmp_path / "m.sqlite"))
    supervisor = start_node("harness_nodes.supervisor.node", "supervisor.yaml", use_world_model=False,
                            policy_timeout=2.0, ack_timeout=3.0, hold_timeout=1.0)
    hung = rclpy.create_node("hung_policy", context=ros_node.context)
    hung.create_service(ProposeActions, "/latent_policy/propose_actions", lambda req, res: res)
    sent: list = []
    ros_node.create_subscription(ActionChunk, "/harness/command", sent.append, RELIABLE)
    h = Harness(ros_node)
    assert h.action.wait_for_server(timeout_sec=60.0), supervisor.log()
    fact = MemoryFact(kind=MemoryFact.KIND_VISUAL, subject="red_cube", confidence=0.9, source="test")
    fact.pose.position.x, fact.pose.position.z, fact.pose.orientation.w = 0.4, 0.025, 1.0
    fact.header.stamp = ros_node.get_clock().now().to_msg()
    assert h.call(h.assert_fact, AssertFact.Request(fact=fact)).success
    handle = h.send_accepted("put red_cube in tray", task_id="t-hung")
    assert spin_until(ros_node, lambda: sent, 30.0), supervisor.log()[-3000:]
    log = supervisor.log()
    assert "hold: policy not answering" in log and "node_lost at approach" in log, log[-3000:]
    assert sent[0].source == "supervisor_planner" and sent[0].attempt == 2
    assert spin_until(ros_node, lambda: any(s.last_failure.startswith("node_lost") and s.task_id == "t-hung"
                                            for s in h.status), 5.0), [s.last_failure for s in h.status[-3:]]
    handle.cancel_goal_async()
    assert h.result(handle, 30.0).status == GoalStatus.STATUS_CANCELED
    hung.destroy_node()


@pytest.mark.timeout(240)
def test_hostile_state_inputs_leave_the_supervisor_answering(light):
    """Joint states, memory snapshots and execution feedback with NaN, inf, +-1e308, huge strings and
    arrays: dropped or ignored, the supervisor still refuses a bad goal and publishes status."""
    from robot_harness.msg import ExecutionFeedback as Feedback, MemorySnapshot

    h, supervisor, _ = light
    node = h.node
    js_pub = node.create_publisher(JointState, "/joint_states", 10)
    snap_pub = node.create_publisher(MemorySnapshot, "/harness/memory",
                                     QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))
    fb_pub = node.create_publisher(Feedback, "/harness/execution", RELIABLE)
    floats = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0])
    names = st.one_of(st.text(max_size=20), st.just("x" * 100_000))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=floats, n=st.sampled_from([0, 2, 9, 10_000]), name=names)
    def hostile(value, n, name):
        js_pub.publish(JointState(name=[name] * min(n, 100), position=[value] * n))
        fact = MemoryFact(subject=name, fact_id=name, kind=MemoryFact.KIND_VISUAL, confidence=float(value))
        fact.pose.position.x = value
        snap_pub.publish(MemorySnapshot(facts=[fact] * min(n, 2000)))
        fb_pub.publish(Feedback(chunk_id=name, tracking_error=value, executed_positions=[value] * n))

    hostile()
    assert still_answers(h), supervisor.log()[-3000:]
    assert supervisor.alive() and "input dropped" not in supervisor.log()    # handled, not caught by the guard


@pytest.mark.timeout(300)
def test_cube_moved_during_the_approach_is_caught_and_the_task_recovers(stack, ros_node):
    """The cube is moved while the arm approaches where it was: the contradiction (perception ->
    memory event) or the pre-grasp check catches it (or, moved too late to be seen, the missed grasp),
    the arm holds or backs off, looks again and finishes without a human."""
    nodes = stack()
    h = Harness(ros_node)
    h.ready()
    handle = h.send_accepted("put red_cube in tray", task_id="t-moved")
    assert spin_until(ros_node, lambda: any(f.subtask == "approach" and f.phase == "execute" for f in h.feedback),
                      120.0), logs(nodes)
    req = SimControl.Request(command=SimControl.Request.COMMAND_MOVE_OBJECT, object_id="red_cube")
    req.pose.position.x, req.pose.position.y, req.pose.position.z = 0.36, 0.16, 0.026
    req.pose.orientation.w = 1.0
    assert h.call(h.control, req).success
    res = h.result(handle, 240.0)
    assert res.status == GoalStatus.STATUS_SUCCEEDED, (res.result.message, logs(nodes, n=8000))
    # caught as a contradiction mid-approach or before the grasp, or (moved late) as a missed grasp
    log = nodes["supervisor"].log()
    assert res.result.attempts >= 2 and ("object_moved" in log or "grasp_missed" in log), logs(nodes)
    assert spin_until(ros_node, h.in_tray, 10.0)
    assert not h.help                                             # recovered without asking anyone


@pytest.mark.timeout(400)
def test_full_harness_with_the_world_model_and_the_latent_policy(start_node, ros_node, tmp_path):
    """Everything on: the latent policy drives the motion subgoals in closed loop (each step ranked
    and checked by the world model), the planner finishes each subgoal from where the policy left
    the tool; the task succeeds, judged from ground truth. (It once ran the policy's short delta
    chunks as whole subgoals, missed the grasp, spent the budget and waited for a human.)"""
    nodes = {
        "sim": start_node("harness_nodes.sim.node", "sim.yaml"),
        "router": start_node("harness_nodes.router.node", "router.yaml", use_sim_time=True),
        "memory": start_node("harness_nodes.memory.node", "memory.yaml", use_sim_time=True,
                             db_path=str(tmp_path / "memory.sqlite")),
        "perception": start_node("harness_nodes.perception.node", "perception.yaml", use_sim_time=True),
        "world_model": start_node("harness_nodes.world_model.node", "world_model.yaml", use_sim_time=True),
        # frames up to 10 s old are accepted here: on a loaded machine the sim's renders fall behind
        # and the freshness guard (tested on its own) would refuse every proposal
        "latent_policy": start_node("harness_nodes.latent_policy.node", None, use_sim_time=True,
                                    max_observation_age=10.0),
        "supervisor": start_node("harness_nodes.supervisor.node", "supervisor.yaml", use_sim_time=True,
                                 policy_steps=3),
    }
    h = Harness(ros_node)
    h.ready()
    handle = h.send_accepted("put the red cube in the tray", task_id="t-full")
    res = h.result(handle, 300.0)
    log = nodes["supervisor"].log()
    assert res.status == GoalStatus.STATUS_SUCCEEDED, (res.result.message, log[-6000:])
    assert spin_until(ros_node, h.in_tray, 10.0)
    assert "world model chose candidate" in log
    assert "policy step 1: 'policy" in log and res.result.policy_chunks >= 1, log[-6000:]   # the policy acted
    assert all(n.alive() for n in nodes.values())
