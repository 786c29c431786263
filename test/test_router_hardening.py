"""Router hardening over DDS (issue 8): a real router process against the fake arm of
test_router_node. E-stop during planning and under a command flood, best-effort and latched
e-stop/heartbeat, the hold on shutdown, a dead sim under use_sim_time, viewpoint validation and
priority, foreign publishers on the controller topics, clamped and reused chunks, contact while
streaming, stale stream commands and stream feedback, string caps, and hypothesis-generated hostile
input at every subscriber and service (the router keeps answering, nothing moves)."""
from __future__ import annotations

import math
import signal
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Pose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Header
from trajectory_msgs.msg import JointTrajectory

from conftest import matched, spin_until
from harness_nodes.common.camera_mount import camera_for_ee, ee_T_camera
from harness_nodes.common.geometry import matrix_to_quat
from harness_nodes.common.kinematics import ArmKinematics
from robot_harness.msg import ActionChunk, ExecutionFeedback, ViewpointRequest
from robot_harness.srv import ResetEstop, SwitchController
from test_router_node import ARM_JOINTS, DESC, DOWN, HOME, FakeArm, ee_chunk, joint_chunk
from test_router_v2_node import call

pytestmark = pytest.mark.integration
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
KIN = ArmKinematics.from_description(DESC)
HOLD_BOUND = 0.15   # s from the e-stop to the hold at the controller (goal 10 ms; CI machines are shared)


def is_hold(msg: JointTrajectory) -> bool:
    return not msg.points


def worst_chunk(n: int = 200) -> ActionChunk:
    """The heaviest chunk the router accepts: max_chunk_points end-effector poses (IK, collision
    and workspace checks on each), a small circle around the tool at home."""
    tool = KIN.fk(HOME).translation
    quat = tuple(matrix_to_quat(KIN.fk(HOME).rotation))
    a = np.linspace(0.0, 2 * np.pi, n)
    points = [tool + 0.04 * np.array([np.sin(x), np.cos(x) - 1.0, 0.0]) for x in a]
    return ee_chunk(points, times=[0.1 * (i + 1) for i in range(n)], quat=quat)


def last_diag(arm: FakeArm) -> DiagnosticStatus | None:
    own = [s for s in arm.diagnostics if s.name == "controller_router" and any(v.key == "lifecycle" for v in s.values)]
    return own[-1] if own else None


def fresh_diagnostics(node, arm: FakeArm, timeout: float = 5.0) -> DiagnosticStatus:
    n = len(arm.diagnostics)
    assert spin_until(node, lambda: any(any(v.key == "lifecycle" for v in s.values) for s in arm.diagnostics[n:]),
                      timeout), "router stopped publishing diagnostics"
    return last_diag(arm)


def value(status: DiagnosticStatus, key: str) -> str:
    return next(v.value for v in status.values if v.key == key)


def feedback_after(arm: FakeArm, index: int, chunk_id: str, statuses) -> ExecutionFeedback | None:
    return next((f for f in arm.feedback[index:] if f.chunk_id == chunk_id and f.status in statuses), None)


def router_up(start_node, ros_node, arm: FakeArm | None = None, **params):
    arm = arm or FakeArm(ros_node)
    proc = start_node("harness_nodes.router.node", "router.yaml", **params)
    arm.wait_ready()
    return arm, proc


# ---------------------------------------------------------------- 1. e-stop while planning / flooded
@pytest.mark.timeout(120)
def test_estop_during_planning_discards_the_plan_and_holds_at_once(start_node, ros_node):
    arm, _ = router_up(start_node, ros_node)
    estop = ros_node.create_publisher(Bool, "/harness/estop", RELIABLE)
    reset = ros_node.create_client(ResetEstop, "/controller_router/reset_estop")
    assert spin_until(ros_node, lambda: matched(estop), 5)
    delays = []
    for trial in range(3):
        chunk = worst_chunk()
        n = len(arm.arm_msgs)
        arm.command_pub.publish(chunk)
        spin_until(ros_node, lambda: False, 0.005)
        t0 = time.monotonic()
        estop.publish(Bool(data=True))
        assert spin_until(ros_node, lambda: any(is_hold(m) for m in arm.arm_msgs[n:]), 5)
        delays.append(time.monotonic() - t0)
        # the plan that was being computed never reaches the arm
        assert spin_until(ros_node, lambda: arm.final(chunk.chunk_id) is not None, 10)
        fb = arm.final(chunk.chunk_id)
        assert fb.status == ExecutionFeedback.STATUS_REJECTED and fb.failure == ExecutionFeedback.FAILURE_HELD, \
            fb.message
        assert not [m for m in arm.arm_msgs[n:] if m.points]
        estop.publish(Bool(data=False))
        assert spin_until(ros_node, lambda: call(ros_node, reset, ResetEstop.Request()).success, 5)
    assert sorted(delays)[1] < HOLD_BOUND, f"hold after {delays} s"   # median: the machine is shared
    # the same kind of chunk is accepted and sent when nothing interferes
    chunk = worst_chunk()
    arm.command_pub.publish(chunk)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses(chunk.chunk_id), 30), \
        [f.message for f in arm.feedback if f.chunk_id == chunk.chunk_id]
    assert spin_until(ros_node, lambda: any(len(m.points) > 100 for m in arm.arm_msgs), 5)


@pytest.mark.timeout(120)
def test_estop_acts_under_a_command_flood_and_after_a_huge_chunk(start_node, ros_node):
    arm, _ = router_up(start_node, ros_node)
    estop = ros_node.create_publisher(Bool, "/harness/estop", RELIABLE)
    reset = ros_node.create_client(ResetEstop, "/controller_router/reset_estop")
    assert spin_until(ros_node, lambda: matched(estop), 5)
    # a 100k-point chunk is refused at the boundary, cheaply, with a reason naming the cap
    huge = joint_chunk([HOME] * 100_000, times=[0.001 * (i + 1) for i in range(100_000)])
    n = len(arm.arm_msgs)
    arm.command_pub.publish(huge)
    t0 = time.monotonic()
    estop.publish(Bool(data=True))
    assert spin_until(ros_node, lambda: any(is_hold(m) for m in arm.arm_msgs[n:]), 5)
    assert time.monotonic() - t0 < HOLD_BOUND
    assert spin_until(ros_node, lambda: arm.final(huge.chunk_id) is not None, 10)
    assert "exceeds" in arm.final(huge.chunk_id).message
    estop.publish(Bool(data=False))
    assert call(ros_node, reset, ResetEstop.Request()).success
    # ~1000 valid chunks/s (batches of 20 every 20 ms), e-stop pressed in the middle
    delays = []
    for trial in range(3):
        n = len(arm.arm_msgs)
        t_press = None
        t_end = time.monotonic() + 0.6
        k = 0
        while time.monotonic() < t_end:
            for _ in range(20):
                arm.command_pub.publish(joint_chunk([HOME + 0.001 * (k % 7)]))
                k += 1
            if t_press is None and time.monotonic() > t_end - 0.3:
                t_press = time.monotonic()
                estop.publish(Bool(data=True))
            ros_node.executor_for_test.spin_once(timeout_sec=0.0)
            if t_press is not None and any(is_hold(m) for m in arm.arm_msgs[n:]):
                break
            time.sleep(0.02)
        assert spin_until(ros_node, lambda: any(is_hold(m) for m in arm.arm_msgs[n:]), 5)
        hold_at = time.monotonic()
        delays.append(hold_at - t_press)
        estop.publish(Bool(data=False))
        spin_until(ros_node, lambda: False, 0.3)
        assert call(ros_node, reset, ResetEstop.Request()).success
    assert min(delays) < HOLD_BOUND, delays
    assert fresh_diagnostics(ros_node, arm) is not None


# ---------------------------------------------------------------- 2. QoS: best effort, latched
@pytest.mark.timeout(120)
def test_best_effort_estop_and_heartbeat_act_and_a_latched_press_holds_a_starting_router(start_node, ros_node):
    latched = ros_node.create_publisher(Bool, "/harness/estop", LATCHED)
    latched.publish(Bool(data=True))           # pressed before the router exists
    arm = FakeArm(ros_node)
    start_node("harness_nodes.router.node", "router.yaml", heartbeat_timeout=0.5)
    # the router comes up holding
    assert spin_until(ros_node, lambda: last_diag(arm) is not None and "e-stop" in last_diag(arm).message
                      and arm.command_pub.get_subscription_count() > 0, 30)
    assert value(last_diag(arm), "estop_latched") == "True"
    refused = arm.send(joint_chunk([HOME + 0.05]))
    assert refused.status == ExecutionFeedback.STATUS_REJECTED and refused.failure == ExecutionFeedback.FAILURE_HELD
    assert "e-stop" in refused.message
    latched.publish(Bool(data=False))
    reset = ros_node.create_client(ResetEstop, "/controller_router/reset_estop")
    assert spin_until(ros_node, lambda: call(ros_node, reset, ResetEstop.Request()).success, 5)
    # best-effort e-stop: matched and acted on
    estop = ros_node.create_publisher(Bool, "/harness/estop", BEST_EFFORT)
    assert spin_until(ros_node, lambda: matched(estop), 5)
    chunk = joint_chunk([HOME + 0.3], times=[4.0])
    arm.command_pub.publish(chunk)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses(chunk.chunk_id), 10)
    n = len(arm.arm_msgs)
    estop.publish(Bool(data=True))
    assert spin_until(ros_node, lambda: any(is_hold(m) for m in arm.arm_msgs[n:]), 2)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_HELD in arm.statuses(chunk.chunk_id), 5)
    estop.publish(Bool(data=False))
    latched.publish(Bool(data=False))
    assert spin_until(ros_node, lambda: call(ros_node, reset, ResetEstop.Request()).success, 5)
    # best-effort heartbeat: seen, and its loss holds
    beat = ros_node.create_publisher(Header, "/harness/heartbeat", BEST_EFFORT)
    assert spin_until(ros_node, lambda: matched(beat), 5)
    for _ in range(10):
        beat.publish(Header())
        spin_until(ros_node, lambda: False, 0.05)
    assert spin_until(ros_node, lambda: any("heartbeat lost" in s.message for s in arm.diagnostics), 5)


# ---------------------------------------------------------------- 4. going down safely
@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_holds_the_arm_before_exiting(start_node, ros_node, sig):
    arm, proc = router_up(start_node, ros_node)
    target = HOME + np.array([0.6, 0, 0, 0, 0, 0, 0])
    chunk = joint_chunk([target], times=[4.0])
    arm.command_pub.publish(chunk)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses(chunk.chunk_id), 10)
    spin_until(ros_node, lambda: False, 1.0)
    n = len(arm.arm_msgs)
    proc.proc.send_signal(sig)
    assert spin_until(ros_node, lambda: any(is_hold(m) for m in arm.arm_msgs[n:]), 5), proc.log()[-2000:]
    assert spin_until(ros_node, lambda: proc.proc.poll() is not None, 10)
    assert proc.proc.returncode == 0, proc.log()[-3000:]
    spin_until(ros_node, lambda: False, 3.5)   # past the chunk's end
    reached = arm.positions[ARM_JOINTS[0]]
    assert reached < HOME[0] + 0.45, f"the arm finished the motion after the router went down ({reached:.3f})"


# ---------------------------------------------------------------- 5. dead sim, no state
@pytest.mark.timeout(90)
def test_stopped_clock_and_joint_states_fail_the_chunk_and_report_error(start_node, ros_node):
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    sim_t = [100.0]
    running = [True]

    def tick():
        if running[0]:
            sim_t[0] += 0.02
            s = int(sim_t[0])
            clock.publish(Clock(clock=Time(sec=s, nanosec=int((sim_t[0] - s) * 1e9))))
    ros_node.create_timer(0.02, tick)
    arm, _ = router_up(start_node, ros_node, use_sim_time=True)
    chunk = joint_chunk([HOME + 0.3], times=[4.0])
    arm.command_pub.publish(chunk)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses(chunk.chunk_id), 10)
    running[0] = False          # the sim dies: no /clock, no joint states
    arm.publish_state = False
    t0 = time.monotonic()
    assert spin_until(ros_node, lambda: arm.final(chunk.chunk_id) is not None, 6)
    fb = arm.final(chunk.chunk_id)
    assert fb.status == ExecutionFeedback.STATUS_FAILED and fb.failure == ExecutionFeedback.FAILURE_NO_STATE, fb.message
    assert time.monotonic() - t0 < 4.0
    status = fresh_diagnostics(ros_node, arm)
    assert status.level == DiagnosticStatus.ERROR and "stopped" in status.message


@pytest.mark.timeout(60)
def test_no_joint_state_is_a_warning_then_an_error(start_node, ros_node):
    arm = FakeArm(ros_node, publish_state=False)
    start_node("harness_nodes.router.node", "router.yaml")
    first = fresh_diagnostics(ros_node, arm, 20)
    assert first.level == DiagnosticStatus.WARN and first.message == "no joint state yet"
    assert spin_until(ros_node, lambda: last_diag(arm).level == DiagnosticStatus.ERROR, 10)
    assert "no joint state" in last_diag(arm).message


# ---------------------------------------------------------------- 6. viewpoints
def viewpoint(request_id: str, position, quat, camera: str = "wrist") -> ViewpointRequest:
    msg = ViewpointRequest(request_id=request_id, camera=camera)
    msg.header.frame_id = DESC.base_frame
    p, o = msg.camera_pose.position, msg.camera_pose.orientation
    p.x, p.y, p.z = (float(v) for v in position)
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return msg


@pytest.mark.timeout(120)
def test_viewpoints_are_validated_and_wait_for_an_active_stream(start_node, ros_node):
    arm, _ = router_up(start_node, ros_node)
    vp = ros_node.create_publisher(ViewpointRequest, "/harness/viewpoint", RELIABLE)
    stream = ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE)
    assert spin_until(ros_node, lambda: matched(vp, stream), 10)
    cam = camera_for_ee(KIN.fk(HOME).translation, KIN.fk(HOME).rotation, ee_T_camera(KIN, DESC.camera_link))
    cam_pos, cam_quat = cam[0], matrix_to_quat(cam[1])
    cases = {"inf": (viewpoint("vp-inf", (math.inf, 0.0, 0.5), cam_quat), "camera_pose.position"),
             "huge": (viewpoint("vp-huge", (1e308, 0.0, 0.5), cam_quat), "camera_pose.position"),
             "zero": (viewpoint("vp-zero", cam_pos, (0, 0, 0, 0)), "camera_pose.orientation is a zero quaternion"),
             "norm3": (viewpoint("vp-norm3", cam_pos, (0, 0, 0, 3.0)), "camera_pose.orientation has norm 3")}
    for name, (msg, reason) in cases.items():
        n = len(arm.arm_msgs)
        vp.publish(msg)
        assert spin_until(ros_node, lambda: arm.final(msg.request_id) is not None, 5), name
        fb = arm.final(msg.request_id)
        assert fb.status == ExecutionFeedback.STATUS_REJECTED and reason in fb.message, (name, fb.message)
        assert len(arm.arm_msgs) == n
    fresh_diagnostics(ros_node, arm)
    # a stream is active: the viewpoint waits, every stream command is served
    n_fb = len(arm.feedback)
    for k in range(25):
        stream.publish(joint_chunk([HOME + 0.002 * k], times=[0.05]))
        if k == 5:
            vp.publish(viewpoint("vp-ok", cam_pos, cam_quat))
        spin_until(ros_node, lambda: False, 0.02)
    spin_until(ros_node, lambda: False, 0.05)
    during = arm.feedback[n_fb:]
    assert not [f for f in during if f.status == ExecutionFeedback.STATUS_REJECTED], \
        [(f.chunk_id, f.message) for f in during if f.status == ExecutionFeedback.STATUS_REJECTED]
    # the viewpoint runs once the stream has stopped (held as stale)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses("vp-ok"), 10)
    accepted = next(i for i, f in enumerate(arm.feedback) if f.chunk_id == "vp-ok")
    stale = next(i for i, f in enumerate(arm.feedback) if f.status == ExecutionFeedback.STATUS_HELD
                 and "stale" in f.message)
    assert stale < accepted


# ---------------------------------------------------------------- 7. foreign publishers
@pytest.mark.timeout(90)
def test_another_publisher_on_the_arm_topic_holds_and_is_an_error(start_node, ros_node):
    arm, _ = router_up(start_node, ros_node)
    chunk = joint_chunk([HOME + 0.3], times=[4.0])
    arm.command_pub.publish(chunk)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_ACCEPTED in arm.statuses(chunk.chunk_id), 10)
    intruder = ros_node.create_publisher(JointTrajectory, DESC.controllers.arm_topic, RELIABLE)
    assert spin_until(ros_node, lambda: ExecutionFeedback.STATUS_HELD in arm.statuses(chunk.chunk_id), 5)
    assert spin_until(ros_node, lambda: last_diag(arm).level == DiagnosticStatus.ERROR
                      and "another node" in last_diag(arm).message, 5)
    refused = arm.send(joint_chunk([HOME]))
    assert refused.status == ExecutionFeedback.STATUS_REJECTED and "another node" in refused.message
    ros_node.destroy_publisher(intruder)
    assert spin_until(ros_node, lambda: last_diag(arm).level == DiagnosticStatus.OK, 10)
    assert arm.send(joint_chunk([HOME])).status == ExecutionFeedback.STATUS_SUCCEEDED


# ---------------------------------------------------------------- 8, 9. clamped, reused ids
@pytest.mark.timeout(90)
def test_clamped_chunk_reports_executed_vs_asked_and_reused_ids_are_refused(start_node, ros_node):
    arm, _ = router_up(start_node, ros_node)
    asked = HOME + np.array([2.0, 0, 0, 0, 0, 0, 0])   # one step of 2 rad > max_joint_step 1.5
    fb = arm.send(joint_chunk([asked], times=[3.0]))
    assert fb.status == ExecutionFeedback.STATUS_FAILED and fb.failure == ExecutionFeedback.FAILURE_CLAMPED, fb.message
    assert list(fb.joint_names) == ARM_JOINTS
    assert fb.requested_positions[0] == pytest.approx(asked[0], abs=1e-6)
    assert fb.executed_positions[0] == pytest.approx(HOME[0] + 1.5, abs=1e-3)
    back = arm.send(joint_chunk([HOME], times=[3.0]))
    assert back.status == ExecutionFeedback.STATUS_SUCCEEDED and back.failure == ExecutionFeedback.FAILURE_NONE
    # same id, different content: refused with the reason, nothing moves
    first = joint_chunk([HOME + 0.05])
    assert arm.send(first).status == ExecutionFeedback.STATUS_SUCCEEDED
    other = joint_chunk([HOME - 0.05])
    other.chunk_id = first.chunk_id
    n_fb, n_arm = len(arm.feedback), len(arm.arm_msgs)
    arm.command_pub.publish(other)
    assert spin_until(ros_node, lambda: feedback_after(arm, n_fb, first.chunk_id, (
        ExecutionFeedback.STATUS_REJECTED, ExecutionFeedback.STATUS_SUCCEEDED)) is not None, 5)
    again = feedback_after(arm, n_fb, first.chunk_id, (ExecutionFeedback.STATUS_REJECTED,
                                                        ExecutionFeedback.STATUS_SUCCEEDED))
    assert again.status == ExecutionFeedback.STATUS_REJECTED and "reused" in again.message
    assert len(arm.arm_msgs) == n_arm
    # same id, same content: the earlier outcome again
    n_fb = len(arm.feedback)
    arm.command_pub.publish(first)
    assert spin_until(ros_node, lambda: feedback_after(arm, n_fb, first.chunk_id, TERMINAL_OK) is not None, 5)


TERMINAL_OK = (ExecutionFeedback.STATUS_SUCCEEDED,)


# ---------------------------------------------------------------- 10-12. streams
class PressingArm(FakeArm):
    """The fake arm with joint efforts: `pressing` sets joint2 at its effort limit (pushing +)."""

    def __init__(self, node):
        self.pressing = False
        super().__init__(node)

    def _tick(self) -> None:
        if not self.publish_state:
            return
        super_pub = self.state_pub
        self.publish_state = False
        super()._tick()
        self.publish_state = True
        msg = JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(self.positions)
        msg.position = [float(v) for v in self.positions.values()]
        effort = {n: 0.0 for n in msg.name}
        if self.pressing:
            effort[ARM_JOINTS[1]] = 0.99 * DESC.arm.effort_limit[1]
        msg.effort = [effort[n] for n in msg.name]
        super_pub.publish(msg)


@pytest.mark.timeout(120)
def test_stream_contact_holds_and_a_chunk_away_from_the_contact_runs(start_node, ros_node):
    arm = PressingArm(ros_node)
    arm, _ = router_up(start_node, ros_node, arm=arm)
    stream = ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE)
    assert spin_until(ros_node, lambda: matched(stream), 10)
    arm.pressing = True
    into = np.array([0, 1.0, 0, 0, 0, 0, 0])
    held = lambda: any(f.status == ExecutionFeedback.STATUS_HELD and "contact" in f.message for f in arm.feedback)
    for k in range(40):
        stream.publish(joint_chunk([HOME + 0.002 * k * into], times=[0.05]))
        spin_until(ros_node, lambda: False, 0.02)
        if held():
            break
    assert held(), "no hold on contact while streaming"
    # commands pushing further in are refused while the contact lasts
    push = joint_chunk([HOME + 0.1 * into], times=[0.05])
    stream.publish(push)
    assert spin_until(ros_node, lambda: arm.final(push.chunk_id) is not None, 3)
    assert arm.final(push.chunk_id).failure == ExecutionFeedback.FAILURE_CONTACT
    # "go home" moves away from the contact: it runs although the effort is still at the limit
    away = joint_chunk([HOME - 0.2 * into], times=[1.5])
    fb = arm.send(away)
    assert fb.status == ExecutionFeedback.STATUS_SUCCEEDED, fb.message


@pytest.mark.timeout(120)
def test_stream_feedback_stale_stamps_and_the_wall_clock_watchdog(start_node, ros_node):
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    sim_t = [50.0]
    running = [True]

    def tick():
        if running[0]:
            sim_t[0] += 0.01
            s = int(sim_t[0])
            clock.publish(Clock(clock=Time(sec=s, nanosec=int((sim_t[0] - s) * 1e9))))
    ros_node.create_timer(0.01, tick)
    arm, _ = router_up(start_node, ros_node, use_sim_time=True)
    stream = ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE)
    assert spin_until(ros_node, lambda: matched(stream), 10)

    def stamped(offset: float) -> ActionChunk:
        c = joint_chunk([HOME + 0.01], times=[0.05])
        t = sim_t[0] + offset
        c.header.stamp = Time(sec=int(t), nanosec=int((t - int(t)) * 1e9))
        return c
    for offset in (-3600.0 + 60.0, 3600.0):   # an hour old (clamped to the sim epoch), an hour ahead
        c = stamped(max(offset, -sim_t[0] + 1.0))
        n = len(arm.arm_msgs)
        stream.publish(c)
        assert spin_until(ros_node, lambda: arm.final(c.chunk_id) is not None, 3)
        fb = arm.final(c.chunk_id)
        assert fb.status == ExecutionFeedback.STATUS_REJECTED and fb.failure == ExecutionFeedback.FAILURE_STALE
        assert len(arm.arm_msgs) == n
    # a stream with feedback: accepted with an id, executing, then held as stale with the reason
    n_fb = len(arm.feedback)
    for k in range(40):
        stream.publish(stamped(0.0))
        spin_until(ros_node, lambda: False, 0.02)
    running[0] = False                 # sim time stops with the stream: the wall clock must hold
    n = len(arm.arm_msgs)
    t_last = time.monotonic()
    assert spin_until(ros_node, lambda: any(is_hold(m) for m in arm.arm_msgs[n:]), 3)
    assert time.monotonic() - t_last < 0.3
    fbs = arm.feedback[n_fb:]
    ids = {f.chunk_id for f in fbs if f.chunk_id.startswith("stream-")}
    assert len(ids) == 1
    sid = ids.pop()
    statuses = [f.status for f in fbs if f.chunk_id == sid]
    assert statuses[0] == ExecutionFeedback.STATUS_ACCEPTED
    assert ExecutionFeedback.STATUS_EXECUTING in statuses
    assert spin_until(ros_node, lambda: any(f.chunk_id == sid and f.status == ExecutionFeedback.STATUS_HELD
                                            and "stale" in f.message for f in arm.feedback), 3)


# ---------------------------------------------------------------- 13. string caps
@pytest.mark.timeout(90)
def test_huge_strings_are_refused_and_never_echoed(start_node, ros_node):
    arm, _ = router_up(start_node, ros_node)
    n_fb, n_diag = len(arm.feedback), len(arm.diagnostics)
    for id_length in (200, 5_000_000):
        c = joint_chunk([HOME + 0.05])
        c.chunk_id = "x" * id_length
        arm.command_pub.publish(c)
        assert spin_until(ros_node, lambda: len([f for f in arm.feedback[n_fb:]
                                                 if f.status == ExecutionFeedback.STATUS_REJECTED]) >= 1, 10)
        n_fb = len(arm.feedback)
    c = joint_chunk([HOME + 0.05])
    c.source = "s" * 100_000
    fb = arm.send(c)
    assert fb.status == ExecutionFeedback.STATUS_REJECTED and "source" in fb.message
    fresh_diagnostics(ros_node, arm)
    assert all(len(f.chunk_id) <= 200 and len(f.message) <= 2100 for f in arm.feedback)
    assert all(len(s.message) <= 1000 and all(len(v.value) <= 1000 for v in s.values) for s in arm.diagnostics[n_diag:])
    assert arm.send(joint_chunk([HOME + 0.05])).status == ExecutionFeedback.STATUS_SUCCEEDED


# ---------------------------------------------------------------- 14. hostile input everywhere
bad_float = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 1e-308])
huge_text = st.sampled_from(["", "x" * 70_000, "\u00e9" * 1000, "wrist", "a\x00b"])
arrays = st.lists(bad_float, min_size=0, max_size=12) | st.builds(lambda n: [1e308] * n, st.sampled_from([7, 5000]))


@st.composite
def hostile(draw):
    kind = draw(st.sampled_from(["command", "stream", "estop", "heartbeat", "viewpoint", "joint_states"]))
    if kind in ("command", "stream"):
        c = ActionChunk(chunk_id=draw(huge_text) or "h", space=draw(st.sampled_from([0, 1, 2, 7])),
                        source=draw(huge_text))
        c.header.frame_id = draw(st.sampled_from(["", DESC.base_frame, "x" * 1000]))
        c.header.stamp.sec = draw(st.sampled_from([0, 1, 2**31 - 1, -5]))
        if c.space == 1:
            c.joint_names = draw(st.sampled_from([ARM_JOINTS, ARM_JOINTS[:3], ["x" * 500] * 7, []]))
            pt = joint_chunk([HOME]).joint_points[0]
            pt.positions = draw(arrays)
            c.joint_points = [pt] * draw(st.sampled_from([0, 1, 3]))
        else:
            pose = Pose()
            pose.position.x, pose.position.y = draw(bad_float), draw(bad_float)
            pose.orientation.w = draw(bad_float)
            c.ee_poses = [pose] * draw(st.sampled_from([0, 1, 2]))
            c.ee_times = ee_chunk([[0.4, 0, 0.3]]).ee_times * draw(st.sampled_from([0, 1, 2]))
        c.gripper_command = draw(st.sampled_from([0, 1, 3, 255]))
        c.gripper_width = draw(bad_float)
        return kind, c
    if kind == "estop":
        return kind, Bool(data=False)        # a press is legitimate input; hostility is in the others
    if kind == "heartbeat":
        h = Header(frame_id=draw(huge_text))
        return kind, h
    if kind == "viewpoint":
        v = viewpoint(draw(huge_text), [draw(bad_float) for _ in range(3)], [draw(bad_float) for _ in range(4)],
                      camera=draw(huge_text))
        v.subjects = [draw(huge_text)] * draw(st.sampled_from([0, 2]))
        return kind, v
    js = JointState(name=draw(st.sampled_from([list(ARM_JOINTS), ["x" * 300] * 3, []])))
    js.position = draw(arrays)
    js.effort = draw(arrays)
    return kind, js


@pytest.mark.timeout(240)
def test_hostile_input_at_every_subscriber_and_service_moves_nothing(start_node, ros_node):
    arm, proc = router_up(start_node, ros_node)
    pubs = {"command": arm.command_pub,
            "stream": ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE),
            "estop": ros_node.create_publisher(Bool, "/harness/estop", RELIABLE),
            "heartbeat": ros_node.create_publisher(Header, "/harness/heartbeat", RELIABLE),
            "viewpoint": ros_node.create_publisher(ViewpointRequest, "/harness/viewpoint", RELIABLE),
            "joint_states": ros_node.create_publisher(JointState, DESC.controllers.joint_states_topic, 10)}
    reset = ros_node.create_client(ResetEstop, "/controller_router/reset_estop")
    switch = ros_node.create_client(SwitchController, "/controller_router/switch_controller")
    assert spin_until(ros_node, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 10)
    before = dict(arm.positions)

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(item=hostile(), controller=huge_text)
    def check(item, controller):
        kind, msg = item
        n_arm, n_grip = len(arm.arm_msgs), len(arm.gripper_msgs)
        pubs[kind].publish(msg)
        spin_until(ros_node, lambda: False, 0.05)
        res = call(ros_node, switch, SwitchController.Request(controller=controller))
        assert not res.success or res.active in ("joint_trajectory", "forward_position")
        assert call(ros_node, reset, ResetEstop.Request()) is not None
        assert len([m for m in arm.arm_msgs[n_arm:] if m.points]) == 0
        assert len(arm.gripper_msgs) == n_grip

    check()
    assert proc.alive()
    assert call(ros_node, switch, SwitchController.Request(controller="joint_trajectory")).success
    fresh_diagnostics(ros_node, arm)
    assert all(abs(arm.positions[n] - before[n]) < 1e-9 for n in ARM_JOINTS)
    assert value(fresh_diagnostics(ros_node, arm), "callback_errors") == "0", proc.log()[-3000:]


@pytest.mark.timeout(90)
def test_stream_commands_queued_behind_planning_do_not_execute_once_stale(start_node, ros_node):
    """The sender stops while the router is busy planning (a long chunk that fails IK at its last
    pose): the stream commands that waited longer than command_timeout are dropped, not executed."""
    arm, _ = router_up(start_node, ros_node, command_timeout=0.05)
    stream = ros_node.create_publisher(ActionChunk, "/harness/command_stream", RELIABLE)
    assert spin_until(ros_node, lambda: matched(stream), 10)
    slow = worst_chunk()
    last = slow.ee_poses[-1].position
    last.x, last.y, last.z = 0.88, 0.0, 1.15          # inside the workspace box, out of reach
    n = len(arm.arm_msgs)
    arm.command_pub.publish(slow)
    spin_until(ros_node, lambda: False, 0.02)
    queued = [joint_chunk([HOME + 0.01 * (k + 1)], times=[0.05]) for k in range(3)]
    for c in queued:
        stream.publish(c)
    assert spin_until(ros_node, lambda: all(arm.final(c.chunk_id) is not None for c in queued), 10)
    assert arm.final(slow.chunk_id).failure == ExecutionFeedback.FAILURE_IK
    assert all(arm.final(c.chunk_id).failure == ExecutionFeedback.FAILURE_STALE for c in queued), \
        [arm.final(c.chunk_id).message for c in queued]
    assert not [m for m in arm.arm_msgs[n:] if m.points]
