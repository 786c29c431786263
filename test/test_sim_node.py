"""Integration tests of the `sim` node as a real process (harness_nodes.sim.node) over DDS."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from conftest import spin_until
from harness_nodes.common.robot_description import load_robot_description

pytestmark = pytest.mark.integration

MODULE = "harness_nodes.sim.node"
PANDA = load_robot_description("panda")
HOME = np.array(PANDA.arm.home)
TARGET = HOME + np.array([0.3, 0.2, -0.2, 0.3, 0.3, -0.2, 0.3])


class Probe:
    """Subscriptions of the test node to the sim's outputs."""

    def __init__(self, node, cameras: tuple[str, ...] = ()):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from geometry_msgs.msg import PoseStamped
        from trajectory_msgs.msg import JointTrajectory
        from robot_harness.msg import SimGroundTruth

        self.node = node
        self.joint_states, self.clock, self.diagnostics, self.ground_truth = [], [], [], []
        self.images: dict[str, list] = {}
        node.create_subscription(JointState, "/joint_states", self.joint_states.append, 10)
        node.create_subscription(Clock, "/clock", self.clock.append, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        node.create_subscription(SimGroundTruth, "/sim/ground_truth", self.ground_truth.append, 10)
        for cam in cameras:
            for topic, kind in (("image_raw", Image), ("depth", Image), ("camera_info", CameraInfo),
                                ("pose", PoseStamped)):
                key = f"{cam}/{topic}"
                self.images[key] = []
                node.create_subscription(kind, f"/cameras/{key}", self.images[key].append,
                                         qos_profile_sensor_data)
        self.arm_pub = node.create_publisher(JointTrajectory, PANDA.controllers.arm_topic, 10)

    def arm_positions(self) -> np.ndarray | None:
        if not self.joint_states:
            return None
        msg = self.joint_states[-1]
        index = {n: i for i, n in enumerate(msg.name)}
        return np.array([msg.position[index[n]] for n in PANDA.arm.joint_names])

    def wait_ready(self, timeout: float = 20.0) -> None:
        assert spin_until(self.node, lambda: len(self.joint_states) > 2 and
                          self.arm_pub.get_subscription_count() > 0, timeout), \
            "sim published no /joint_states or has no trajectory subscriber"

    def send_arm(self, names, points, stamp_sec: float = 0.0):
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        from builtin_interfaces.msg import Duration

        msg = JointTrajectory()
        msg.header.stamp.sec = int(stamp_sec)
        msg.joint_names = list(names)
        for positions, tfs in points:
            pt = JointTrajectoryPoint()
            pt.positions = [float(v) for v in positions]
            pt.time_from_start = Duration(sec=int(tfs), nanosec=int(round((tfs % 1) * 1e9)))
            msg.points.append(pt)
        self.arm_pub.publish(msg)

    def errors(self) -> list:
        from diagnostic_msgs.msg import DiagnosticStatus

        return [s for a in self.diagnostics for s in a.status if s.level == DiagnosticStatus.ERROR]


def _stamp(t) -> float:
    return t.sec + t.nanosec * 1e-9


def test_joint_states_and_clock_in_sim_time(start_node, ros_node):
    sim = start_node(MODULE, "sim.yaml", real_time_factor=2.0, cameras=["scene"])
    probe = Probe(ros_node)
    probe.wait_ready()
    assert spin_until(ros_node, lambda: len(probe.clock) > 50 and len(probe.joint_states) > 20, 10.0)
    js = probe.joint_states[-1]
    assert list(js.name) == PANDA.all_joint_names
    assert len(js.position) == len(js.velocity) == len(js.effort) == 9
    assert np.allclose(probe.arm_positions(), HOME, atol=1e-3)
    clocks = [_stamp(c.clock) for c in probe.clock]
    assert all(b > a for a, b in zip(clocks, clocks[1:])) and clocks[-1] > 0
    stamps = [_stamp(m.header.stamp) for m in probe.joint_states]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    # stamped with sim time, not wall time
    assert stamps[-1] < 1e6 and abs(stamps[-1] - clocks[-1]) < 1.0
    # ~2x real time: over 2 wall s, sim time advances by clearly more than 2.4 s
    t0, w0 = clocks[-1], time.monotonic()
    spin_until(ros_node, lambda: time.monotonic() - w0 > 2.0, 3.0)
    rate = (_stamp(probe.clock[-1].clock) - t0) / (time.monotonic() - w0)
    assert 1.2 < rate < 2.6, rate
    assert sim.alive()


def test_arm_trajectory_moves_arm_and_bad_ones_are_rejected(start_node, ros_node):
    sim = start_node(MODULE, "sim.yaml", real_time_factor=4.0, camera_rate=0.0)
    probe = Probe(ros_node)
    probe.wait_ready()
    names = list(PANDA.arm.joint_names)
    bad = [
        (names, [([math.nan] + list(TARGET[1:]), 1.0)]),                  # NaN
        (names[:-1] + ["panda_joint99"], [(TARGET, 1.0)]),                  # unknown joint
        (names, [(TARGET[:-1], 1.0)]),                                     # wrong length
        (names, [(TARGET + np.array([5.0, 0, 0, 0, 0, 0, 0]), 1.0)]),      # beyond the URDF limit
        (names, [(TARGET, 1.0), (HOME, 0.5)]),                             # time going backwards
        ([], [([], 1.0)]),                                                  # no joints
    ]
    for traj in bad:
        probe.send_arm(*traj)
    n0 = len(probe.joint_states)
    assert spin_until(ros_node, lambda: len(probe.joint_states) > n0 + 150, 15.0)   # >= 1.5 s sim
    assert np.abs(probe.arm_positions() - HOME).max() < 1e-3, "malformed trajectory moved the arm"
    assert spin_until(ros_node, lambda: len(probe.errors()) >= len(bad), 5.0), \
        [s.message for s in probe.errors()]
    assert sim.alive()
    # A valid one, joints in another order, is tracked to the target.
    order = [3, 0, 6, 1, 5, 2, 4]
    probe.send_arm([names[i] for i in order], [([TARGET[i] for i in order], 1.5)])
    assert spin_until(ros_node, lambda: np.abs(probe.arm_positions() - TARGET).max() < 0.01, 15.0), \
        probe.arm_positions() - TARGET
    assert sim.alive()


def _call(node, client, request, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout), "no /sim/control service"
    future = client.call_async(request)
    assert spin_until(node, future.done, timeout)
    return future.result()


def test_sim_control_reset_move_remove_slip(start_node, ros_node):
    from robot_harness.srv import SimControl

    start_node(MODULE, "sim.yaml", real_time_factor=4.0, camera_rate=0.0, seed=1)
    probe = Probe(ros_node)
    probe.wait_ready()
    client = ros_node.create_client(SimControl, "/sim/control")

    def gt_pose(obj):
        gt = probe.ground_truth[-1]
        return gt.poses[list(gt.object_ids).index(obj)]

    assert spin_until(ros_node, lambda: len(probe.ground_truth) > 0, 10.0)
    assert set(probe.ground_truth[-1].object_ids) == {"red_cube", "green_cube", "blue_cube", "tray"}
    initial = gt_pose("red_cube")

    req = SimControl.Request(command=SimControl.Request.COMMAND_MOVE_OBJECT, object_id="red_cube")
    req.pose.position.x, req.pose.position.y, req.pose.position.z = 0.62, 0.25, 0.03
    req.pose.orientation.w = 1.0
    res = _call(ros_node, client, req)
    assert res.success, res.message
    n = len(probe.ground_truth)
    assert spin_until(ros_node, lambda: len(probe.ground_truth) > n + 5, 10.0)
    pose = gt_pose("red_cube")
    assert abs(pose.position.x - 0.62) < 0.01 and abs(pose.position.y - 0.25) < 0.01 and pose.position.z < 0.05

    req = SimControl.Request(command=SimControl.Request.COMMAND_MOVE_OBJECT, object_id="purple_cube")
    req.pose.orientation.w = 1.0
    res = _call(ros_node, client, req)
    assert not res.success and "purple_cube" in res.message

    res = _call(ros_node, client, SimControl.Request(
        command=SimControl.Request.COMMAND_REMOVE_OBJECT, object_id="blue_cube"))
    assert res.success
    res = _call(ros_node, client, SimControl.Request(command=SimControl.Request.COMMAND_INJECT_GRASP_SLIP))
    assert not res.success and "held" in res.message
    res = _call(ros_node, client, SimControl.Request(command=SimControl.Request.COMMAND_RESET,
                                                     scenario="nope", seed=1))
    assert not res.success and "nope" in res.message
    n = len(probe.ground_truth)
    assert spin_until(ros_node, lambda: len(probe.ground_truth) > n + 3, 10.0)
    blue = gt_pose("blue_cube").position
    assert math.hypot(blue.x, blue.y) > 1.5

    res = _call(ros_node, client, SimControl.Request(command=SimControl.Request.COMMAND_RESET,
                                                     scenario="nominal", seed=1))
    assert res.success, res.message
    n = len(probe.ground_truth)
    assert spin_until(ros_node, lambda: len(probe.ground_truth) > n + 3, 10.0)
    red = gt_pose("red_cube").position
    assert abs(red.x - initial.position.x) < 0.005 and abs(red.y - initial.position.y) < 0.005
    assert math.hypot(gt_pose("blue_cube").position.x, gt_pose("blue_cube").position.y) < 0.7


def test_camera_publishes_configured_size_when_subscribed(start_node, ros_node):
    sim = start_node(MODULE, "sim.yaml", real_time_factor=1.0, image_width=160, image_height=120,
                     cameras=["scene"], camera_rate=5.0)
    probe = Probe(ros_node, cameras=("scene",))
    probe.wait_ready()
    keys = ["scene/image_raw", "scene/depth", "scene/camera_info", "scene/pose"]
    assert spin_until(ros_node, lambda: all(probe.images[k] for k in keys), 20.0), \
        {k: len(v) for k, v in probe.images.items()}
    img, depth = probe.images["scene/image_raw"][-1], probe.images["scene/depth"][-1]
    assert (img.width, img.height, img.encoding, img.step) == (160, 120, "rgb8", 480)
    assert len(img.data) == 160 * 120 * 3 and img.header.frame_id == "scene_optical_frame"
    assert (depth.width, depth.height, depth.encoding) == (160, 120, "32FC1")
    d = np.frombuffer(bytes(depth.data), dtype=np.float32).reshape(120, 160)
    assert 1.0 < d[60, 80] < 1.4
    info = probe.images["scene/camera_info"][-1]
    assert (info.width, info.height, info.distortion_model) == (160, 120, "plumb_bob")
    assert info.k[0] > 0 and info.k[2] == pytest.approx(79.5) and info.header.frame_id == "scene_optical_frame"
    pose = probe.images["scene/pose"][-1]
    assert pose.header.frame_id == "world" and pose.pose.position.x == pytest.approx(1.3)
    # about camera_rate (5 Hz of sim time at real time): a few frames in 2 s, not dozens
    n0, w0 = len(probe.images["scene/image_raw"]), time.monotonic()
    spin_until(ros_node, lambda: time.monotonic() - w0 > 2.0, 3.0)
    assert 3 <= len(probe.images["scene/image_raw"]) - n0 <= 12
    assert sim.alive()


def test_bad_parameter_exits_nonzero_naming_field(start_node):
    sim = start_node(MODULE, "sim.yaml", physics_rate=-5.0)
    sim.proc.wait(20)
    assert sim.proc.returncode not in (0, None)
    assert "physics_rate" in sim.log()
    sim2 = start_node(MODULE, "sim.yaml", cameras=["scene", "thermal"])
    sim2.proc.wait(20)
    assert sim2.proc.returncode not in (0, None) and "thermal" in sim2.log()


def test_move_into_absurd_places_and_trajectories_in_the_past_are_refused(start_node, ros_node):
    """Issue 8: MOVE_OBJECT to x = 1e308 or inside the robot's base is refused with the reason and the
    cube stays; a trajectory whose points all lie in the past is rejected (a joint_trajectory_controller
    does) instead of executed as a jump faster than the joint limits."""
    from robot_harness.srv import SimControl

    sim = start_node(MODULE, "sim.yaml", real_time_factor=2.0, camera_rate=0.0)
    probe = Probe(ros_node)
    probe.wait_ready()
    client = ros_node.create_client(SimControl, "/sim/control")
    assert spin_until(ros_node, lambda: len(probe.ground_truth) > 0, 10.0)

    def red():
        gt = probe.ground_truth[-1]
        return gt.poses[list(gt.object_ids).index("red_cube")].position

    before = red()
    for (x, y, z), why in (((1e308, 0.0, 0.03), "position"), ((0.0, 0.0, 0.05), "inside the robot base"),
                           ((math.inf, 0.0, 0.0), "position")):
        req = SimControl.Request(command=SimControl.Request.COMMAND_MOVE_OBJECT, object_id="red_cube")
        req.pose.position.x, req.pose.position.y, req.pose.position.z = x, y, z
        req.pose.orientation.w = 1.0
        res = _call(ros_node, client, req)
        assert not res.success and why in res.message, res.message
    n = len(probe.ground_truth)
    assert spin_until(ros_node, lambda: len(probe.ground_truth) > n + 3, 10.0)
    assert abs(red().x - before.x) < 0.005 and abs(red().y - before.y) < 0.005
    # all points in the past (stamped 1 s of sim time ago, ending 0.5 s ago)
    assert spin_until(ros_node, lambda: _stamp(probe.clock[-1].clock) > 2.0 if probe.clock else False, 10.0)
    now = _stamp(probe.clock[-1].clock)
    probe.send_arm(list(PANDA.arm.joint_names), [(TARGET, 0.5)], stamp_sec=int(now) - 1)
    assert spin_until(ros_node, lambda: any("in the past" in s.message for s in probe.errors()), 5.0), \
        [s.message for s in probe.errors()]
    n0 = len(probe.joint_states)
    assert spin_until(ros_node, lambda: len(probe.joint_states) > n0 + 50, 10.0)
    assert np.abs(probe.arm_positions() - HOME).max() < 1e-3, "a trajectory in the past moved the arm"
    assert sim.alive()
