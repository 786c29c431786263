"""Integration tests of the memory_tracker node process: observations in, events/snapshot/markers
out, the query and latent services, bad input rejected with the node up, kill -9 keeps every fact
and every stored latent entry, a corrupted database is kept aside."""
from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from visualization_msgs.msg import MarkerArray

from conftest import matched, spin_until
from robot_harness.msg import MemoryEvent, MemoryFact, MemorySnapshot, ObjectObservation, SceneObservation
from robot_harness.srv import AssertFact, FetchLatent, QueryMemory, StoreLatent

pytestmark = pytest.mark.integration
MODULE = "harness_nodes.memory.node"
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Client:
    def __init__(self, node):
        self.node = node
        self.events: list[MemoryEvent] = []
        self.snapshots: list[MemorySnapshot] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: list[DiagnosticStatus] = []
        self.obs_pub = node.create_publisher(SceneObservation, "/harness/observations", RELIABLE)
        self.events_sub = node.create_subscription(MemoryEvent, "/harness/memory/events", self.events.append,
                                                   RELIABLE)
        node.create_subscription(MemorySnapshot, "/harness/memory", self.snapshots.append, LATCHED)
        node.create_subscription(MarkerArray, "/harness/memory/markers", self.markers.append, LATCHED)
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: self.diagnostics.extend(s for s in m.status if s.name == "memory_tracker"),
                                 10)
        self.query_cli = node.create_client(QueryMemory, "/harness/memory/query")
        self.assert_cli = node.create_client(AssertFact, "/harness/memory/assert")
        self.store_cli = node.create_client(StoreLatent, "/harness/memory/latent/store")
        self.fetch_cli = node.create_client(FetchLatent, "/harness/memory/latent/fetch")
        self.counter = 0

    def wait_ready(self, timeout=30.0):
        # Events are volatile: the tracker's event writer must know our reader before the first
        # observation. A first (latched, periodic) snapshot shows the tracker has matched our readers.
        assert spin_until(self.node, lambda: matched(self.obs_pub, self.events_sub)
                          and self.query_cli.service_is_ready() and len(self.snapshots) > 0, timeout), \
            "memory tracker not up"

    def call(self, client, request, timeout=10.0):
        assert client.wait_for_service(timeout_sec=timeout)
        future = client.call_async(request)
        assert spin_until(self.node, future.done, timeout)
        return future.result()

    def query(self, subject="", kind=QueryMemory.Request.KIND_ANY, region=None, min_confidence=0.0):
        req = QueryMemory.Request(subject=subject, kind=kind, min_confidence=float(min_confidence))
        if region is not None:
            req.use_region = True
            req.region_center.x, req.region_center.y, req.region_center.z = region[0]
            req.region_radius = float(region[1])
        res = self.call(self.query_cli, req)
        assert res.success, res.message
        return {f.fact_id: f for f in res.facts}

    def observe(self, objects: dict, frame="world", stamp_offset=0.0, camera="scene", wait_events=0, publish=True):
        msg = SceneObservation()
        now = self.node.get_clock().now().nanoseconds * 1e-9 + stamp_offset + self.counter * 1e-6
        self.counter += 1
        msg.header.stamp.sec = int(now)
        msg.header.stamp.nanosec = int((now - int(now)) * 1e9)
        msg.header.frame_id = frame
        msg.camera = camera
        msg.camera_pose.orientation.w = 1.0
        for oid, pos in objects.items():
            o = ObjectObservation()
            o.header = msg.header
            o.object_id = oid
            o.pose.position.x, o.pose.position.y, o.pose.position.z = pos
            o.pose.orientation.w = 1.0
            o.position_covariance = list((np.eye(3) * 1e-5).ravel())
            o.identity_confidence = 1.0
            o.visible_fraction = 1.0
            o.camera = camera
            msg.objects.append(o)
        n = len(self.events)
        if not publish:
            return msg
        self.obs_pub.publish(msg)
        if wait_events:
            assert spin_until(self.node, lambda: len(self.events) >= n + wait_events, 10.0), \
                f"expected {wait_events} event(s), got {[(e.event, e.fact_id) for e in self.events[n:]]}"
        return msg


def test_observations_events_snapshot_markers_query_and_bad_input(start_node, ros_node, tmp_path):
    node = start_node(MODULE, "memory.yaml", db_path=str(tmp_path / "m.sqlite"), snapshot_rate=5.0,
                      markers_rate=5.0, cameras=["scene"])
    c = Client(ros_node)
    c.wait_ready()
    c.observe({"red_cube": (0.4, 0.0, 0.025), "green_cube": (0.55, 0.1, 0.025)}, wait_events=2)
    assert {e.fact_id for e in c.events} == {"visual/red_cube", "visual/green_cube"}
    assert all(e.event == MemoryEvent.EVENT_CREATED for e in c.events)
    assert spin_until(ros_node, lambda: any(len(s.facts) == 2 for s in c.snapshots), 5.0)
    assert spin_until(ros_node, lambda: any(len(m.markers) == 5 for m in c.markers), 5.0)   # deleteall + 2x2
    facts = c.query(region=((0.4, 0.0, 0.0), 0.1))
    assert list(facts) == ["visual/red_cube"]
    red = facts["visual/red_cube"]
    assert red.state == MemoryFact.STATE_VALID and red.confidence > 0.99 and red.camera == "scene"
    # contradiction
    c.observe({"red_cube": (0.3, -0.1, 0.025)}, wait_events=1)
    assert c.events[-1].event == MemoryEvent.EVENT_CONTRADICTED
    # bad input: each rejected with an ERROR diagnostic, store untouched, node up
    before = {k: (f.pose.position.x, f.confidence) for k, f in c.query().items()}
    c.observe({"red_cube": (math.nan, 0.0, 0.0)})
    c.observe({"red_cube": (0.1, 0.1, 0.1)}, frame="camera_link")
    c.observe({"red_cube": (0.1, 0.1, 0.1)}, stamp_offset=3600.0)
    c.observe({"red_cube": (0.1, 0.1, 0.1)}, stamp_offset=-3600.0)
    c.observe({f"cube_{i}": (0.0, 0.0, 0.0) for i in range(1000)})
    dup = c.observe({"blue_cube": (0.1, 0.1, 0.1)}, publish=False)
    dup.objects.append(dup.objects[0])
    c.obs_pub.publish(dup)
    assert spin_until(ros_node, lambda: sum(s.level == DiagnosticStatus.ERROR for s in c.diagnostics) >= 6, 10.0), \
        [s.message for s in c.diagnostics]
    messages = " | ".join(s.message for s in c.diagnostics if s.level == DiagnosticStatus.ERROR)
    for needle in ("not finite", "unknown frame", "future", "old", "objects (max", "duplicate object ids"):
        assert needle in messages
    # a CameraInfo whose lens model the tracker cannot project through: reported once, node up
    from sensor_msgs.msg import CameraInfo
    from rclpy.qos import qos_profile_sensor_data
    info_pub = ros_node.create_publisher(CameraInfo, "/cameras/scene/camera_info", qos_profile_sensor_data)
    info = CameraInfo(width=320, height=240, distortion_model="kannala_brandt", d=[0.1, 0.0, 0.0, 0.0])
    info.k = [300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0]
    assert spin_until(ros_node, lambda: (info_pub.publish(info), any(
        "camera_info of 'scene'" in s.message and "kannala_brandt" in s.message for s in c.diagnostics))[1], 10.0)
    assert node.alive()
    after = {k: (f.pose.position.x, f.confidence) for k, f in c.query().items()}
    assert set(after) == set(before)
    assert all(after[k][0] == before[k][0] for k in before)
    # asserted text fact and a bad one
    fact = MemoryFact(kind=MemoryFact.KIND_TEXT, subject="task", value='"red cube to tray"', confidence=1.0)
    fact.pose.orientation.w = 1.0
    res = c.call(c.assert_cli, AssertFact.Request(fact=fact))
    assert res.success and res.fact_id == "text/task"
    bad = MemoryFact(kind=MemoryFact.KIND_VISUAL, subject="x", confidence=1.0)
    bad.pose.position.x = math.nan
    bad.pose.orientation.w = 1.0
    assert not c.call(c.assert_cli, AssertFact.Request(fact=bad)).success
    assert set(c.query(kind=MemoryFact.KIND_TEXT)) == {"text/task"}
    # latent cache: store, hit, miss, dropped when the region's facts change
    req = StoreLatent.Request(camera="scene", model="enc", region_radius=0.1, shape=[2, 2], data=[1.0, 2.0, 3.0, 4.0])
    req.region_center.x = 0.55
    req.region_center.y = 0.1
    assert c.call(c.store_cli, req).success
    fetch = FetchLatent.Request(camera="scene", model="enc", region_center=req.region_center, region_radius=0.1)
    hit = c.call(c.fetch_cli, fetch)
    assert hit.hit and list(hit.data) == [1.0, 2.0, 3.0, 4.0] and list(hit.shape) == [2, 2]
    c.observe({"green_cube": (0.6, 0.12, 0.025)}, wait_events=1)           # green moved: region changed
    miss = c.call(c.fetch_cli, fetch)
    assert not miss.hit and (miss.hits, miss.misses) == (1, 1)
    bad_req = StoreLatent.Request(camera="scene", model="enc", region_radius=0.1, shape=[3], data=[1.0])
    assert not c.call(c.store_cli, bad_req).success
    # an encoding of frames captured before green moved (a store on its way): refused with the reason
    late = StoreLatent.Request(camera="scene", model="enc", region_radius=0.1, shape=[1], data=[1.0],
                               region_center=req.region_center)
    late.stamp.sec = 1
    res = c.call(c.store_cli, late)
    assert not res.success and "after these frames were captured" in res.message, res.message
    assert node.alive()


def test_kill_9_and_restart_keeps_every_fact(start_node, ros_node, tmp_path):
    db = tmp_path / "m.sqlite"
    node = start_node(MODULE, "memory.yaml", db_path=str(db), cameras=["scene"])
    c = Client(ros_node)
    c.wait_ready()
    n = 40
    for k in range(4):
        c.observe({f"obj_{k}_{i}": (0.05 * i, 0.1 * k, 0.0) for i in range(n // 4)}, wait_events=n // 4)
    # a latent entry (an encoding of the region around obj_0_0), committed before the service answers
    store = StoreLatent.Request(camera="scene", model="enc", region_radius=0.04, shape=[3], data=[0.5, -1.0, 2.0])
    store.stamp = ros_node.get_clock().now().to_msg()   # captured now: after every change in its region
    stored = c.call(c.store_cli, store)
    assert stored.success
    before = c.query()
    assert len(before) == n + 1 and f"latent/{stored.entry_id}" in before      # the entry's latent fact
    os.killpg(node.proc.pid, signal.SIGKILL)          # no chance to flush or close
    node.proc.wait(5)
    assert node.proc.returncode == -signal.SIGKILL
    node2 = start_node(MODULE, "memory.yaml", db_path=str(db), cameras=["scene"])
    assert spin_until(ros_node, lambda: "memory tracker:" in node2.log(), 30.0), node2.log()
    assert f"reloaded {n + 1} fact(s) and 1 latent entry" in node2.log()

    # The killed process lingers in DDS discovery until its lease expires: a fresh client, retried.
    def call_fresh(srv, name, request):
        for _ in range(5):
            cli = ros_node.create_client(srv, name)
            assert cli.wait_for_service(timeout_sec=10.0)
            future = cli.call_async(request)
            if spin_until(ros_node, future.done, 4.0):
                return future.result()
            ros_node.destroy_client(cli)
        return None

    res = call_fresh(QueryMemory, "/harness/memory/query", QueryMemory.Request(kind=QueryMemory.Request.KIND_ANY))
    after = {f.fact_id: f for f in res.facts} if res is not None else {}
    assert set(after) == set(before)
    for fid, f in before.items():
        if f.kind == MemoryFact.KIND_LATENT:
            continue
        assert after[fid].pose.position.x == pytest.approx(f.pose.position.x)
        assert after[fid].confidence == pytest.approx(f.confidence, abs=0.02)
    fetched = call_fresh(FetchLatent, "/harness/memory/latent/fetch",
                         FetchLatent.Request(camera="scene", model="enc", region_center=store.region_center,
                                             region_radius=0.04))
    assert fetched is not None and fetched.hit and fetched.entry_id == stored.entry_id
    assert list(fetched.data) == [0.5, -1.0, 2.0] and list(fetched.shape) == [3]
    assert abs((fetched.stamp.sec - store.stamp.sec) + 1e-9 * (fetched.stamp.nanosec - store.stamp.nanosec)) < 1e-6


def test_corrupted_database_is_kept_aside_and_reported(start_node, ros_node, tmp_path):
    db = tmp_path / "m.sqlite"
    db.write_bytes(b"garbage" * 1000)
    node = start_node(MODULE, "memory.yaml", db_path=str(db), cameras=["scene"])
    c = Client(ros_node)
    c.wait_ready()
    assert spin_until(ros_node, lambda: any(s.level == DiagnosticStatus.ERROR and "kept as" in s.message
                                            for s in c.diagnostics), 10.0)
    kept = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == b"garbage" * 1000
    c.observe({"red_cube": (0.4, 0.0, 0.025)}, wait_events=1)
    assert node.alive() and "unreadable" in node.log()


def test_bad_parameter_exits_nonzero_naming_the_field(start_node, tmp_path):
    node = start_node(MODULE, "memory.yaml", db_path=str(tmp_path / "m.sqlite"), stale_threshold=1.5)
    assert node.proc.wait(30) == 2
    assert "stale_threshold" in node.log()


# ---------------------------------------------------------------- issue 8: hostile values, sizes, database paths
def test_extreme_regions_latent_shapes_and_huge_strings_are_refused_with_the_tracker_up(start_node, ros_node,
                                                                                       tmp_path):
    node = start_node(MODULE, "memory.yaml", db_path=str(tmp_path / "m.sqlite"), cameras=["scene"])
    c = Client(ros_node)
    c.wait_ready()
    c.observe({"red_cube": (0.4, 0.0, 0.025)}, wait_events=1)
    for center, radius in (((1e308, 0.0, 0.0), 0.1), ((0.0, 0.0, 0.0), 1e308), ((0.0, -1e308, 0.0), 1e308)):
        req = QueryMemory.Request(kind=QueryMemory.Request.KIND_ANY, use_region=True, region_radius=radius)
        req.region_center.x, req.region_center.y, req.region_center.z = center
        res = c.call(c.query_cli, req)
        assert not res.success and "region" in res.message, res.message
    far = StoreLatent.Request(camera="scene", model="enc", region_radius=0.1, shape=[1], data=[1.0])
    far.region_center.x = 1e308
    res = c.call(c.store_cli, far)
    assert not res.success and "center" in res.message, res.message
    res = c.call(c.fetch_cli, FetchLatent.Request(camera="scene", model="enc", region_center=far.region_center,
                                                  region_radius=0.1))
    assert not res.hit and "rejected" in res.message
    overflow = StoreLatent.Request(camera="scene", model="enc", region_radius=0.1, shape=[65536] * 4, data=[])
    res = c.call(c.store_cli, overflow)
    assert not res.success and "elements" in res.message, res.message
    assert not c.call(c.fetch_cli, FetchLatent.Request(camera="scene", model="enc", region_radius=0.1)).hit
    # 5 MB strings: an asserted fact's source, an observation's label
    fact = MemoryFact(kind=MemoryFact.KIND_TEXT, subject="note", value='"x"', confidence=1.0, source="s" * 5_000_000)
    fact.pose.orientation.w = 1.0
    res = c.call(c.assert_cli, AssertFact.Request(fact=fact))
    assert not res.success and "source" in res.message, res.message[:300]
    msg = c.observe({"blue_cube": (0.5, 0.2, 0.025)}, publish=False)
    msg.objects[0].label = "L" * 5_000_000
    c.obs_pub.publish(msg)
    assert spin_until(ros_node, lambda: any("label" in s.message for s in c.diagnostics), 10.0)
    facts = c.query()
    assert set(facts) == {"visual/red_cube"} and all(len(f.value) < 1000 for f in facts.values())
    assert node.alive()


@pytest.mark.parametrize("kind", ["empty file", "directory"])
def test_unusable_database_path_stops_the_tracker_naming_the_path(start_node, tmp_path, kind):
    db = tmp_path / "m.sqlite"
    if kind == "directory":
        db.mkdir()
    else:
        db.write_bytes(b"")
    node = start_node(MODULE, "memory.yaml", db_path=str(db), cameras=["scene"])
    assert node.proc.wait(30) == 3, node.log()
    assert str(db) in node.log() and ("directory" in node.log() or "0-byte" in node.log())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("m.sqlite")] == ["m.sqlite"]   # nothing renamed
    assert db.is_dir() if kind == "directory" else db.stat().st_size == 0


# ---------------------------------------------------------------- issue 8: every motion is accounted for
class FakeJointStates:
    """Publishes /joint_states of an arm as a controller would, without any router or feedback."""

    def __init__(self, node, robot: str):
        from sensor_msgs.msg import JointState
        from harness_nodes.common.robot_description import load_robot_description
        from harness_nodes.common.kinematics import ArmKinematics
        self.node = node
        self.description = load_robot_description(robot)
        self.kinematics = ArmKinematics.from_description(self.description)
        self.pub = node.create_publisher(JointState, "/joint_states", RELIABLE)
        self.msg_type = JointState
        self.q = np.array(self.description.arm.home, dtype=float)
        self.gripper = self.description.gripper.open_q

    def tool(self, q) -> np.ndarray:
        return np.array(self.kinematics.fk(list(q)).translation, dtype=float)

    def publish(self) -> None:
        d = self.description
        msg = self.msg_type()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = d.all_joint_names
        msg.position = [*map(float, self.q), *[float(self.gripper)] * len(d.gripper.joint_names),
                        *[float(self.gripper) * m for m in d.gripper.mimic_joints.values()]]
        self.pub.publish(msg)

    def hold(self, seconds: float) -> None:
        import time
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.publish()
            self.node.executor_for_test.spin_once(timeout_sec=0.02)

    def move(self, q1, steps: int = 30) -> None:
        q0 = self.q.copy()
        for a in np.linspace(0.0, 1.0, steps):
            self.q = q0 + a * (np.asarray(q1) - q0)
            self.publish()
            self.node.executor_for_test.spin_once(timeout_sec=0.02)


def test_motion_without_any_chunk_invalidates_facts_along_the_measured_path(start_node, ros_node, tmp_path):
    start_node(MODULE, "memory.yaml", db_path=str(tmp_path / "m.sqlite"), cameras=["scene"])
    c = Client(ros_node)
    arm = FakeJointStates(ros_node, "panda")
    c.wait_ready()
    assert spin_until(ros_node, lambda: arm.pub.get_subscription_count() > 0, 10.0)
    home = arm.q.copy()
    target = home + np.array([0.6, 0.3, 0.0, -0.3, 0.0, 0.3, 0.0])
    middle = arm.tool(home + 0.5 * (target - home))
    far = arm.tool(home) + np.array([0.0, 0.0, -0.45])      # well away from the swept path
    c.observe({"red_cube": tuple(middle), "green_cube": tuple(far)}, wait_events=2)
    arm.hold(0.5)
    n = len(c.events)
    arm.move(target)          # moved by something the tracker gets no chunk or feedback for
    assert spin_until(ros_node, lambda: (arm.publish(), any(e.fact_id == "visual/red_cube" and
                                                            e.event == MemoryEvent.EVENT_INVALIDATED
                                                            for e in c.events[n:]))[1], 10.0), \
        [(e.event, e.fact_id, e.reason) for e in c.events[n:]]
    invalidated = [e for e in c.events[n:] if e.event == MemoryEvent.EVENT_INVALIDATED]
    assert {e.fact_id for e in invalidated} == {"visual/red_cube"} and "action motion-" in invalidated[0].reason
    facts = c.query()
    assert facts["visual/red_cube"].state == MemoryFact.STATE_INVALID
    assert facts["visual/green_cube"].state == MemoryFact.STATE_VALID
    assert any(fid.startswith("action/motion-") for fid in facts)


def test_grasp_tracking_on_the_xarm6_uses_the_descriptions_gripper_width(start_node, ros_node, tmp_path):
    from robot_harness.msg import ExecutionFeedback
    start_node(MODULE, "memory.yaml", db_path=str(tmp_path / "m.sqlite"), cameras=["scene"], robot="xarm6")
    c = Client(ros_node)
    arm = FakeJointStates(ros_node, "xarm6")
    feedback = ros_node.create_publisher(ExecutionFeedback, "/harness/execution", RELIABLE)
    c.wait_ready()
    assert spin_until(ros_node, lambda: arm.pub.get_subscription_count() > 0
                      and feedback.get_subscription_count() > 0, 10.0)
    tool = arm.tool(arm.q)
    # Seen in the xArm6's base frame: accepted (the robot description's base frame is a world frame).
    c.observe({"red_cube": tuple(tool)}, frame="link_base", wait_events=1)
    arm.hold(0.3)
    feedback.publish(ExecutionFeedback(chunk_id="grasp-1", status=ExecutionFeedback.STATUS_ACCEPTED))
    arm.gripper = arm.description.gripper.position_for_width(0.05)     # closed on the 5 cm cube (~0.39 rad)
    arm.hold(0.3)
    n = len(c.events)
    feedback.publish(ExecutionFeedback(chunk_id="grasp-1", status=ExecutionFeedback.STATUS_SUCCEEDED))
    assert spin_until(ros_node, lambda: any("grasped after grasp-1" in e.reason for e in c.events[n:]), 10.0), \
        [(e.event, e.reason) for e in c.events[n:]]
    # Carried: the believed pose follows the measured tool.
    lifted = arm.q + np.array([0.0, -0.3, 0.0, 0.0, 0.3, 0.0])
    arm.move(lifted)
    expected = arm.tool(lifted)
    assert spin_until(ros_node, lambda: (arm.publish(), np.linalg.norm(np.array(
        [getattr(c.query()["visual/red_cube"].pose.position, a) for a in "xyz"]) - expected) < 0.01)[1], 10.0)
    red = c.query()["visual/red_cube"]
    assert red.source == "gripper" and red.state == MemoryFact.STATE_VALID
