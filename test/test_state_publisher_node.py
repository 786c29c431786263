"""The state publisher over DDS: subscribers of the standard types (std_msgs/String,
tf2_msgs/TFMessage) receive the robot description and the transforms; hostile joint states leave
it publishing; in the running sim stack every frame_id a message carries resolves in the tf tree."""
from __future__ import annotations

import importlib
import math
import signal
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from conftest import REPO, matched, ros_env, spin_until
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.state_publisher.core import MAX_JOINTS_PER_MESSAGE, Transform, reachable

pytestmark = pytest.mark.integration

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def as_transforms(messages) -> list[Transform]:
    return [Transform(t.header.frame_id, t.child_frame_id,
                      (t.transform.translation.x, t.transform.translation.y, t.transform.translation.z),
                      (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                       t.transform.rotation.w))
            for m in messages for t in m.transforms]


class TfListener:
    """What a tf2 listener subscribes to, with the standard message type."""

    def __init__(self, node):
        self.static: list[TFMessage] = []
        self.dynamic: list[TFMessage] = []
        self.descriptions: list[String] = []
        node.create_subscription(TFMessage, "/tf_static", self.static.append, LATCHED)
        self.tf_sub = node.create_subscription(TFMessage, "/tf", self.dynamic.append, RELIABLE)
        node.create_subscription(String, "/robot_description", self.descriptions.append, LATCHED)

    def transforms(self) -> list[Transform]:
        return as_transforms(self.static) + as_transforms(self.dynamic[-1:])

    def last_joint1(self, parent: str, child: str) -> Transform | None:
        for t in reversed(as_transforms(self.dynamic[-1:])):
            if t.parent == parent and t.child == child:
                return t
        return None


def message_class(type_name: str):
    """'pkg/msg/Name' -> the generated class (rosidl_runtime_py is not on PyPI)."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def joint_state(names, positions) -> JointState:
    msg = JointState()
    msg.name = list(names)
    msg.position = [float(v) for v in positions]
    return msg


def test_description_and_transforms_arrive_with_the_standard_types(start_node, ros_node):
    d = load_robot_description("panda")
    listener = TfListener(ros_node)
    pub = ros_node.create_publisher(JointState, "/joint_states", 10)
    node = start_node("harness_nodes.state_publisher.node", "state_publisher.yaml")
    assert spin_until(ros_node, lambda: listener.static and listener.descriptions, 30.0), node.log()
    assert listener.descriptions[-1].data == d.urdf_path.read_text()
    static = {(t.parent, t.child) for t in as_transforms(listener.static)}
    assert {("world", "panda_link0"), ("world", "scene_optical_frame"),
            ("panda_hand", "wrist_optical_frame")} <= static
    assert spin_until(ros_node, lambda: matched(pub, listener.tf_sub), 15.0)
    home = list(d.arm.home)
    pub.publish(joint_state(d.arm.joint_names, home))
    assert spin_until(ros_node, lambda: listener.dynamic, 15.0), node.log()
    frames = reachable(listener.transforms(), "world")
    assert {d.end_effector_frame, "panda_link7", "wrist_optical_frame", "scene_optical_frame"} <= frames
    assert node.alive()


def test_hostile_joint_states_leave_it_publishing(start_node, ros_node):
    d = load_robot_description("panda")
    listener = TfListener(ros_node)
    pub = ros_node.create_publisher(JointState, "/joint_states", 10)
    node = start_node("harness_nodes.state_publisher.node", "state_publisher.yaml")
    assert spin_until(ros_node, lambda: listener.static and matched(pub, listener.tf_sub), 30.0), node.log()
    probe = iter(range(1, 10_000))

    def answers_a_valid_state() -> bool:
        angle = 0.001 * next(probe)
        pub.publish(joint_state(d.arm.joint_names[:1], [angle]))

        def moved():
            t = listener.last_joint1("panda_link0", "panda_link1")
            # rotation about z by `angle`: quaternion z = sin(angle / 2)
            return t is not None and abs(t.rotation[2] - math.sin(angle / 2)) < 1e-9
        return spin_until(ros_node, moved, 10.0)

    hostile_value = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 0.0])
    hostile_name = st.one_of(st.sampled_from(d.all_joint_names), st.text(max_size=2000))

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(names=st.lists(hostile_name, max_size=20), values=st.lists(hostile_value, max_size=20),
           huge=st.booleans())
    def check(names, values, huge):
        if huge:
            names = [f"joint_{i}" for i in range(MAX_JOINTS_PER_MESSAGE * 20)]
            values = [1e308] * len(names)
        pub.publish(joint_state(names, values))
        assert answers_a_valid_state(), node.log()[-2000:]
        for t in as_transforms(listener.dynamic[-1:]):
            assert all(math.isfinite(v) for v in (*t.translation, *t.rotation))

    check()
    assert node.alive()


@pytest.mark.timeout(150)
def test_every_frame_id_of_the_sim_stack_resolves_in_the_tf_tree(domain_id, tmp_path, ros_node):
    listener = TfListener(ros_node)
    frame_ids: dict[str, set[str]] = {}

    def collect(topic):
        def on_message(msg):
            headers = [msg.header] if hasattr(msg, "header") else []
            headers += [m.header for m in getattr(msg, "markers", [])]
            frame_ids.setdefault(topic, set()).update(h.frame_id for h in headers if h.frame_id)
        return on_message

    log = open(tmp_path / "bringup.log", "w")
    stack = subprocess.Popen(
        [sys.executable, "-m", "harness_nodes.bringup.cli", "sim", "--use-sim-time",
         "-p", "sim.real_time_factor:=2.0"],
        env=ros_env(domain_id), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        subscribed: set[str] = set()
        wanted = {"/joint_states", "/cameras/scene/image_raw", "/cameras/wrist/depth",
                  "/cameras/wrist/camera_info", "/cameras/scene/pose", "/harness/memory"}

        def subscribe_to_everything() -> bool:
            for topic, types in ros_node.get_topic_names_and_types():
                if topic in subscribed or topic in ("/tf", "/tf_static"):
                    continue
                subscribed.add(topic)
                msg_type = message_class(types[0])
                fields = msg_type.get_fields_and_field_types()
                if "header" in fields or "markers" in fields:
                    ros_node.create_subscription(msg_type, topic, collect(topic), BEST_EFFORT)
            return wanted <= set(frame_ids) and bool(listener.dynamic)

        assert spin_until(ros_node, subscribe_to_everything, 90.0), \
            f"no frame_ids yet from {wanted - set(frame_ids)}; {(tmp_path / 'bringup.log').read_text()[-3000:]}"
        frames = reachable(listener.transforms(), "world")
        unresolved = {topic: ids - frames for topic, ids in frame_ids.items() if ids - frames}
        assert not unresolved, f"frame_ids not in the tf tree: {unresolved}"
        assert {"scene_optical_frame", "wrist_optical_frame", "world"} <= set().union(*frame_ids.values())
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait(10)
        log.close()
