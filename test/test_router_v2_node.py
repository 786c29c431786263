"""Router v2 over DDS against a fake arm: e-stop latch and reset, stale command stream -> hold,
lifecycle (autostart off refuses commands until activated), controller switch to the forward
position controller, and hypothesis-generated malformed commands at both command inputs."""
from __future__ import annotations

import importlib.util
import math
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Float64MultiArray

from conftest import matched, spin_until
from robot_harness.msg import ActionChunk, ExecutionFeedback
from robot_harness.srv import ResetEstop, SwitchController
from test_router_node import ARM_JOINTS, HOME, FakeArm, ee_chunk, joint_chunk

pytestmark = pytest.mark.integration
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def call(node, client, request, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout)
    future = client.call_async(request)
    assert spin_until(node, future.done, timeout)
    return future.result()


def stream_point(q, t=0.01):
    chunk = joint_chunk([q], times=[t])
    return chunk


@pytest.mark.timeout(90)
def test_estop_latches_hold_until_reset_and_stale_stream_holds(start_node, ros_node):
    arm = FakeArm(ros_node)
    start_node("harness_nodes.router.node", "router.yaml")
    arm.wait_ready()
    estop = ros_node.create_publisher(Bool, "/harness/estop", RELIABLE)
    stream = ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE)
    reset = ros_node.create_client(ResetEstop, "/controller_router/reset_estop")
    # a long chunk is executing when the e-stop is pressed
    chunk = joint_chunk([HOME + 0.3], times=[4.0])
    arm.command_pub.publish(chunk)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses(chunk.chunk_id), 10)
    n_before = len(arm.arm_msgs)
    spin_until(ros_node, lambda: estop.get_subscription_count() > 0, 5)
    t0 = time.monotonic()
    estop.publish(Bool(data=True))
    assert spin_until(ros_node, lambda: len(arm.arm_msgs) > n_before and not arm.arm_msgs[-1].points, 5)
    assert time.monotonic() - t0 < 0.5          # hold reaches the controller quickly
    assert spin_until(ros_node, lambda: arm.final(chunk.chunk_id) is not None
                      or ExecutionFeedback.STATUS_HELD in arm.statuses(chunk.chunk_id), 5)
    assert ExecutionFeedback.STATUS_HELD in arm.statuses(chunk.chunk_id)
    # latched: commands refused, also after the button is released, until the reset
    estop.publish(Bool(data=False))
    refused = arm.send(joint_chunk([HOME + 0.05]))
    assert refused.status == ExecutionFeedback.STATUS_REJECTED and refused.failure == ExecutionFeedback.FAILURE_HELD
    assert "e-stop" in refused.message
    assert call(ros_node, reset, ResetEstop.Request()).success
    ok = arm.send(joint_chunk([HOME + 0.05]))
    assert ok.status == ExecutionFeedback.STATUS_SUCCEEDED, ok.message
    # stream at ~50 Hz, then stop: the watchdog holds within command_timeout (+ loop period)
    assert spin_until(ros_node, lambda: matched(stream), 5)
    for k in range(20):
        stream.publish(stream_point(HOME + 0.05 + 0.002 * k))
        spin_until(ros_node, lambda: False, 0.02)
    n = len(arm.arm_msgs)
    t_last = time.monotonic()
    assert n > 5 and all(len(m.points) == 1 for m in arm.arm_msgs[-5:])
    assert spin_until(ros_node, lambda: len(arm.arm_msgs) > n and not arm.arm_msgs[-1].points, 3)
    assert time.monotonic() - t_last < 0.5
    assert spin_until(ros_node, lambda: any("stale" in s.message for s in arm.diagnostics), 3)


@pytest.mark.timeout(90)
def test_lifecycle_without_autostart_and_controller_switch(start_node, ros_node):
    arm = FakeArm(ros_node)
    forward = []
    ros_node.create_subscription(Float64MultiArray, "/forward_position_controller/commands",
                                 lambda m: forward.append(list(m.data)), RELIABLE)
    start_node("harness_nodes.router.node", "router.yaml", autostart=False)
    # the router's writers have matched this test's readers once its (periodic) diagnostics arrive
    assert spin_until(ros_node, lambda: arm.command_pub.get_subscription_count() > 0 and arm.diagnostics, 20)
    refused = arm.send(joint_chunk([HOME + 0.05]))
    assert refused.status == ExecutionFeedback.STATUS_REJECTED
    assert refused.failure == ExecutionFeedback.FAILURE_INACTIVE and "not active" in refused.message
    assert not arm.arm_msgs
    change = ros_node.create_client(ChangeState, "/controller_router/change_state")
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        req = ChangeState.Request()
        req.transition.id = transition
        assert call(ros_node, change, req).success
    assert arm.send(joint_chunk([HOME + 0.05])).status == ExecutionFeedback.STATUS_SUCCEEDED
    # switch to the forward position controller: first output is the measured state (no jump)
    switch = ros_node.create_client(SwitchController, "/controller_router/switch_controller")
    res = call(ros_node, switch, SwitchController.Request(controller="forward_position"))
    assert res.success and res.active == "forward_position"
    assert spin_until(ros_node, lambda: len(forward) > 0, 5)
    assert np.allclose(forward[0], HOME + 0.05, atol=0.01)   # the measured state, not a stale target
    n_traj = len(arm.arm_msgs)
    arm.command_pub.publish(joint_chunk([HOME]))
    assert spin_until(ros_node, lambda: len(forward) > 10, 5)
    assert len(arm.arm_msgs) == n_traj        # nothing on the trajectory topic any more
    assert np.max(np.abs(np.diff(np.array(forward), axis=0))) < 0.05   # streamed, no jump
    bad = call(ros_node, switch, SwitchController.Request(controller="nonsense"))
    assert not bad.success and "unknown" in bad.message
    fjt = call(ros_node, switch, SwitchController.Request(controller="follow_joint_trajectory"))
    if control_msgs_importable():
        assert fjt.success and fjt.active == "follow_joint_trajectory", fjt.message
        assert call(ros_node, switch, SwitchController.Request(controller="forward_position")).success
    else:
        assert not fjt.success and "control_msgs" in fjt.message
    # deactivate: refuses with a clear reason
    req = ChangeState.Request()
    req.transition.id = Transition.TRANSITION_DEACTIVATE
    assert call(ros_node, change, req).success
    refused = arm.send(joint_chunk([HOME + 0.02]))
    assert refused.failure == ExecutionFeedback.FAILURE_INACTIVE


def control_msgs_importable() -> bool:
    return importlib.util.find_spec("control_msgs") is not None


def test_follow_joint_trajectory_route_is_offered_exactly_where_control_msgs_is_importable():
    from harness_nodes.router.node import control_msgs_available
    assert control_msgs_available() == control_msgs_importable()


finite = st.floats(-3.0, 3.0)
bad_float = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308])


@st.composite
def malformed(draw):
    kind = draw(st.sampled_from(["nan_joint", "wrong_len", "unknown", "dup", "abs_time", "empty",
                                 "gripper", "nan_pose", "zero_quat", "neg_time"]))
    if kind in ("nan_pose", "zero_quat", "gripper"):
        chunk = ee_chunk([[0.4, 0.0, 0.3]])
        if kind == "nan_pose":
            chunk.ee_poses[0].position.x = draw(bad_float)
        elif kind == "zero_quat":
            chunk.ee_poses[0].orientation.x = chunk.ee_poses[0].orientation.w = 0.0
        else:
            chunk.gripper_command = draw(st.sampled_from([3, 4, 200]))
            chunk.gripper_width = draw(st.sampled_from([-1.0, 5.0, math.nan]))
        return chunk
    q = list(HOME)
    names = list(ARM_JOINTS)
    t = 1.0
    if kind == "nan_joint":
        q[draw(st.integers(0, 6))] = draw(bad_float)
    elif kind == "wrong_len":
        # shorter or longer than the 7 joints named, never exactly 7
        q = q[:draw(st.integers(0, 6))] if draw(st.booleans()) else q + [0.0] * draw(st.integers(1, 2))
    elif kind == "unknown":
        names[draw(st.integers(0, 6))] = draw(st.text(min_size=1, max_size=8))
    elif kind == "dup":
        names[1] = names[0]
    elif kind == "abs_time":
        t = draw(st.sampled_from([1e9, 1e6, 3600.0]))
    elif kind == "neg_time":
        t = 0.0
    chunk = joint_chunk([q], names=names, times=[1.0])
    if kind == "empty":
        chunk.joint_points = []
    else:
        sec = int(min(t, 2**31 - 1))
        chunk.joint_points[0].time_from_start = Duration(sec=sec, nanosec=0)
    return chunk


@pytest.mark.timeout(120)
def test_malformed_commands_at_every_input_never_reach_the_arm(start_node, ros_node):
    arm = FakeArm(ros_node)
    start_node("harness_nodes.router.node", "router.yaml")
    arm.wait_ready()
    stream = ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE)
    spin_until(ros_node, lambda: stream.get_subscription_count() > 0, 10)
    inputs = {"command": arm.command_pub, "stream": stream}

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(chunk=malformed(), which=st.sampled_from(sorted(inputs)))
    def check(chunk, which):
        n_arm, n_grip, n_err = len(arm.arm_msgs), len(arm.gripper_msgs), len(arm.errors())
        inputs[which].publish(chunk)
        assert spin_until(ros_node, lambda: arm.final(chunk.chunk_id) is not None, 5), chunk
        fb = arm.final(chunk.chunk_id)
        assert fb.status == ExecutionFeedback.STATUS_REJECTED, (which, fb.message)
        assert spin_until(ros_node, lambda: len(arm.errors()) > n_err, 3)
        spin_until(ros_node, lambda: False, 0.05)
        assert len(arm.arm_msgs) == n_arm and len(arm.gripper_msgs) == n_grip

    check()
    ok = arm.send(joint_chunk([HOME + 0.05]))
    assert ok.status == ExecutionFeedback.STATUS_SUCCEEDED, ok.message
