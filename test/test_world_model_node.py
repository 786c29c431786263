"""The world_model node over DDS: a candidate that would knock the obstacle over is vetoed before
anything moves; bad candidates are rejected one by one; stale states are refused; hostile requests
never take the service down; latency and backend use reach /diagnostics; surprise after execution."""
from __future__ import annotations

import math

import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectoryPoint

from conftest import spin_until
from harness_nodes.common.qos import LATCHED
from harness_nodes.common.robot_description import load_robot_description
from robot_harness.msg import ActionChunk, ExecutionFeedback, MemoryFact, MemorySnapshot, WorldModelSurprise
from robot_harness.srv import EvaluateCandidates

pytestmark = pytest.mark.integration
SERVICE = "/harness/world_model/evaluate"
DESC = load_robot_description("panda")
HOME = list(DESC.arm.home)
OBJECTS = {"red_cube": (0.42, 0.06, 0.025), "green_cube": (0.56, 0.10, 0.025), "blue_cube": (0.45, 0.22, 0.025),
           "tray": (0.5, -0.18, 0.0042), "obstacle": (0.5, -0.01, 0.12)}
BIG = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, 1e-300])


def facts():
    out = []
    for subject, (x, y, z) in OBJECTS.items():
        f = MemoryFact()
        f.fact_id, f.subject, f.kind, f.state, f.confidence = f"f-{subject}", subject, 0, 0, 0.9
        f.pose.position.x, f.pose.position.y, f.pose.position.z = x, y, z
        f.pose.orientation.w = 1.0
        out.append(f)
    return out


def chunk(name, points, times=None, gripper=0):
    c = ActionChunk()
    c.header.frame_id = "world"
    c.chunk_id, c.space, c.gripper_command = name, ActionChunk.SPACE_END_EFFECTOR, gripper
    for i, (x, y, z) in enumerate(points):
        p = Pose()
        p.position.x, p.position.y, p.position.z = float(x), float(y), float(z)
        p.orientation.x, p.orientation.w = 1.0, 0.0  # tool pointing down
        c.ee_poses.append(p)
        t = times[i] if times else float(i + 1)
        c.ee_times.append(Duration(sec=int(t), nanosec=int((t - int(t)) * 1e9)))
    return c


def request(node, candidates, stamp_age=0.0):
    req = EvaluateCandidates.Request()
    req.goal = "put red_cube in the tray"
    req.joint_state.name = list(DESC.arm.joint_names) + list(DESC.gripper.joint_names)
    req.joint_state.position = HOME + [0.04, 0.04]
    now = node.get_clock().now().nanoseconds * 1e-9 - stamp_age
    req.joint_state.header.stamp.sec, req.joint_state.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
    req.facts = facts()
    req.candidates = candidates
    return req


def call(node, client, req, timeout=60.0):
    future = client.call_async(req)
    assert spin_until(node, future.done, timeout), "no answer from world_model"
    return future.result()


def knock_and_safe():
    ox, oy, _ = OBJECTS["obstacle"]
    return (chunk("knock", [(ox, oy + 0.15, 0.1), (ox, oy - 0.12, 0.1)]),
            chunk("safe", [(ox, oy + 0.15, 0.45), (ox, oy - 0.12, 0.45)]))


@pytest.fixture
def physics_server(start_node, ros_node):
    proc = start_node("harness_nodes.world_model.node", "world_model.yaml", backend="physics", max_candidates=8)
    client = ros_node.create_client(EvaluateCandidates, SERVICE)
    assert spin_until(ros_node, client.service_is_ready, 60), proc.log()
    return proc, client


def test_knocking_candidate_is_vetoed_and_bad_ones_rejected_one_by_one(physics_server, ros_node):
    proc, client = physics_server
    diags = []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    knock, safe = knock_and_safe()
    nan = chunk("nan", [(math.nan, 0.0, 0.3)])
    unknown = ActionChunk(chunk_id="joint", space=ActionChunk.SPACE_JOINT, joint_names=["elbow"])
    unknown.joint_points = [JointTrajectoryPoint(positions=[0.1], time_from_start=Duration(sec=1))]
    absurd = chunk("absurd", [(0.5, 0.0, 0.3)], times=[1e5])
    res = call(ros_node, client, request(ros_node, [knock, nan, safe, unknown, absurd]))
    assert res.success, res.message
    assert res.best_index == 2, [list(p.violations) for p in res.predictions]
    assert [p.chunk_id for p in res.predictions] == ["knock", "nan", "safe", "joint", "absurd"]
    assert res.predictions[0].failure_probability == 1.0 and res.predictions[0].violations
    assert "non-finite" in res.predictions[1].violations[0]
    assert "unknown joint" in res.predictions[3].violations[0]
    assert "duration" in res.predictions[4].violations[0]
    assert res.predictions[2].failure_probability == 0.0 and list(res.predictions[2].violations) == []
    stale = call(ros_node, client, request(ros_node, [safe], stamp_age=30.0))
    assert not stale.success and "too old" in stale.message
    empty = call(ros_node, client, request(ros_node, []))
    assert not empty.success and "empty batch" in empty.message

    def reported():
        return any(s.name == "world_model" and any(kv.key == "latency_p95_ms" for kv in s.values)
                   and any(kv.key == "backend_physics" and int(kv.value) >= 2 for kv in s.values)
                   for d in diags for s in d.status)
    assert spin_until(ros_node, reported, 10), "no world_model latency / backend use on /diagnostics"


def test_hostile_requests_never_take_the_service_down(physics_server, ros_node):
    proc, client = physics_server

    @st.composite
    def hostile(draw):
        c = ActionChunk()
        c.chunk_id = draw(st.sampled_from(["", "x" * 100000, "ok", "\u00e9\u00e9"]))
        c.space = draw(st.integers(0, 255))
        c.gripper_command = draw(st.integers(0, 255))
        c.gripper_width = draw(BIG)
        n = draw(st.integers(0, 3))
        for _ in range(n):
            p = Pose()
            p.position.x, p.position.y, p.position.z = draw(BIG), draw(BIG), draw(BIG)
            p.orientation.x, p.orientation.w = draw(BIG), draw(BIG)
            c.ee_poses.append(p)
        c.ee_times = [Duration(sec=draw(st.integers(0, 2**31 - 1))) for _ in range(draw(st.integers(0, 3)))]
        c.joint_names = draw(st.lists(st.sampled_from(["panda_joint1", "nope", "y" * 5000]), max_size=3))
        c.joint_points = [JointTrajectoryPoint(positions=[draw(BIG)] * draw(st.integers(0, 3)),
                                               time_from_start=Duration(sec=draw(st.integers(0, 100))))
                          for _ in range(draw(st.integers(0, 2)))]
        return c

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cands=st.lists(hostile(), min_size=0, max_size=4), joint=BIG, goal=st.sampled_from(["", "z" * 100000]),
           many=st.booleans())
    def check(cands, joint, goal, many):
        req = request(ros_node, cands)
        req.goal = goal
        req.joint_state.position = [joint] + HOME[1:] + [0.04, 0.04]
        if many:
            req.candidates = cands + [chunk(f"m{i}", [(math.nan, 0.0, 0.3)]) for i in range(300)]
        res = call(ros_node, client, req, timeout=120)
        if res.success:
            assert len(res.predictions) == len(req.candidates)
            assert all("max_candidates" in p.violations[0] for p in res.predictions[8:])
            assert all(p.violations for p in res.predictions[:len(cands)] if p.failure_probability == 1.0)
        else:
            assert res.message
        assert proc.alive()

    check()
    knock, safe = knock_and_safe()
    res = call(ros_node, client, request(ros_node, [knock, safe]))
    assert res.success and res.best_index == 1, res.message


def test_learned_backend_answers_in_one_batch_and_surprise_follows_execution(start_node, ros_node):
    proc = start_node("harness_nodes.world_model.node", "world_model.yaml", backend="learned")
    client = ros_node.create_client(EvaluateCandidates, SERVICE)
    assert spin_until(ros_node, client.service_is_ready, 60), proc.log()
    surprises = []
    ros_node.create_subscription(WorldModelSurprise, "/harness/world_model/surprise", surprises.append, 10)
    feedback = ros_node.create_publisher(ExecutionFeedback, "/harness/execution", 10)
    memory = ros_node.create_publisher(MemorySnapshot, "/harness/memory", LATCHED)   # as the memory tracker
    cands = [chunk(f"c{i}", [(0.45, -0.1 + 0.02 * i, 0.3)]) for i in range(16)]
    res = call(ros_node, client, request(ros_node, cands))
    assert res.success and len(res.predictions) == 16 and "learned" in res.message, res.message
    assert all(len(p.predicted_state) == len(res.predictions[0].predicted_state) > 20 for p in res.predictions)
    assert all(0.0 <= p.failure_probability <= 1.0 and p.uncertainty >= 0.0 for p in res.predictions)
    assert spin_until(ros_node, lambda: feedback.get_subscription_count() > 0 and memory.get_subscription_count() > 0, 20)
    done = ExecutionFeedback(chunk_id="c3", status=ExecutionFeedback.STATUS_SUCCEEDED)
    done.header.stamp = ros_node.get_clock().now().to_msg()
    feedback.publish(done)
    snap = MemorySnapshot()
    moved = facts()
    moved[0].pose.position.x += 0.2                 # the red cube is far from where it was predicted
    snap.facts = moved

    def published():
        snap.header.stamp = ros_node.get_clock().now().to_msg()
        memory.publish(snap)
        return any(s.chunk_id == "c3" for s in surprises)
    assert spin_until(ros_node, published, 20, step=0.2), proc.log()
    s = next(s for s in surprises if s.chunk_id == "c3")
    red = list(s.subjects).index("red_cube")
    assert s.surprise[red] == pytest.approx(0.2, abs=0.05) and s.surprising
