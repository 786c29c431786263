"""Memory tracker in the simulation: sim + controller router + memory_tracker as processes; the
test stands in for perception (it reads /sim/ground_truth, being test code, and publishes truthful
SceneObservations when it "looks"). A pick invalidates the picked object's pose and lowers nearby
facts, the held object's pose follows the gripper, and an object moved by the sim while out of
view is caught on the next look."""
from __future__ import annotations

import uuid

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose, PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from conftest import matched, spin_until
from harness_nodes.expert.plan import PickPlaceConfig, plan_pick_place, waypoint_times
from robot_harness.msg import (ActionChunk, ExecutionFeedback, MemoryEvent, MemoryFact, MemorySnapshot, ObjectObservation,
                               SceneObservation, SimGroundTruth)
from robot_harness.srv import QueryMemory, SimControl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TERMINAL = (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED, ExecutionFeedback.STATUS_REJECTED)


class Perception:
    """Test-side stand-in for perception and the task: looks, sends chunks, queries memory."""

    def __init__(self, node):
        self.node = node
        self.gt: SimGroundTruth | None = None
        self.cam_pose: PoseStamped | None = None
        self.events: list[MemoryEvent] = []
        self.feedback: dict[str, ExecutionFeedback] = {}
        node.create_subscription(SimGroundTruth, "/sim/ground_truth", self._on_gt, 10)
        node.create_subscription(PoseStamped, "/cameras/scene/pose", self._on_cam, qos_profile_sensor_data)
        self.events_sub = node.create_subscription(MemoryEvent, "/harness/memory/events", self.events.append,
                                                   RELIABLE)
        self.snapshots: list[MemorySnapshot] = []
        node.create_subscription(MemorySnapshot, "/harness/memory", self.snapshots.append,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        node.create_subscription(ExecutionFeedback, "/harness/execution", self._on_fb, RELIABLE)
        self.router_state = ""        # the router's own word on its state, from /diagnostics
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.obs_pub = node.create_publisher(SceneObservation, "/harness/observations", RELIABLE)
        self.cmd_pub = node.create_publisher(ActionChunk, "/harness/command", RELIABLE)
        self.query_cli = node.create_client(QueryMemory, "/harness/memory/query")
        self.control_cli = node.create_client(SimControl, "/sim/control")

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name == "controller_router":
                self.router_state = status.message

    def router_has_state(self) -> bool:
        return self.router_state not in ("", "no joint state yet")

    def _on_gt(self, msg):
        self.gt = msg

    def _on_cam(self, msg):
        self.cam_pose = msg

    def _on_fb(self, msg):
        if msg.status in TERMINAL or msg.chunk_id not in self.feedback:
            self.feedback[msg.chunk_id] = msg

    def pose(self, oid) -> Pose:
        return self.gt.poses[list(self.gt.object_ids).index(oid)]

    def look(self, visible, wait_events=0):
        """Publish one truthful observation of `visible` objects (after a fresh ground truth)."""
        stamp_before = self.gt.header.stamp
        assert spin_until(self.node, lambda: self.gt.header.stamp != stamp_before, 5.0)
        msg = SceneObservation()
        msg.header.stamp = self.gt.header.stamp
        msg.header.frame_id = "world"
        msg.camera = "scene"
        msg.camera_pose = self.cam_pose.pose
        for oid in visible:
            o = ObjectObservation()
            o.header = msg.header
            o.object_id = oid
            o.label = "cube"
            o.pose = self.pose(oid)
            o.position_covariance = list((np.eye(3) * 0.003 ** 2).ravel())
            o.identity_confidence = 0.95
            o.visible_fraction = 1.0
            o.camera = "scene"
            msg.objects.append(o)
        n = len(self.events)
        self.obs_pub.publish(msg)
        if wait_events:
            assert spin_until(self.node, lambda: len(self.events) >= n + wait_events, 10.0)
        return self.events[n:]

    def query(self, subject=""):
        future = self.query_cli.call_async(QueryMemory.Request(subject=subject, kind=QueryMemory.Request.KIND_ANY))
        assert spin_until(self.node, future.done, 10.0)
        return {f.fact_id: f for f in future.result().facts}

    def send(self, phase, start) -> str:
        cfg = PickPlaceConfig()
        times = waypoint_times(start, phase.positions, cfg)
        chunk = ActionChunk()
        chunk.header.frame_id = "world"
        chunk.chunk_id = f"test-{phase.name}-{uuid.uuid4().hex[:6]}"
        chunk.source = "test"
        chunk.space = ActionChunk.SPACE_END_EFFECTOR
        for p, t in zip(phase.positions, times):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p)
            (pose.orientation.x, pose.orientation.y, pose.orientation.z,
             pose.orientation.w) = (float(v) for v in phase.quaternion)
            chunk.ee_poses.append(pose)
            chunk.ee_times.append(Duration(sec=int(t), nanosec=int((t - int(t)) * 1e9)))
        chunk.gripper_command = phase.gripper
        self.cmd_pub.publish(chunk)
        assert spin_until(self.node, lambda: chunk.chunk_id in self.feedback
                          and self.feedback[chunk.chunk_id].status in TERMINAL, 40.0), f"no feedback for {phase.name}"
        assert self.feedback[chunk.chunk_id].status == ExecutionFeedback.STATUS_SUCCEEDED, \
            self.feedback[chunk.chunk_id].message
        return chunk.chunk_id


def test_pick_invalidates_and_moved_object_is_caught(start_node, ros_node, tmp_path):
    start_node("harness_nodes.sim.node", "sim.yaml", real_time_factor=2.0, cameras=["scene"])
    start_node("harness_nodes.router.node", "router.yaml", use_sim_time=True)
    memory = start_node("harness_nodes.memory.node", "memory.yaml", use_sim_time=True, cameras=["scene"],
                        db_path=str(tmp_path / "m.sqlite"))
    w = Perception(ros_node)
    assert spin_until(ros_node, lambda: w.gt is not None and w.cam_pose is not None
                      and w.obs_pub.get_subscription_count() > 0 and w.cmd_pub.get_subscription_count() >= 2
                      and w.query_cli.service_is_ready(), 60.0), memory.log()
    # Events are volatile: the tracker must have matched our event reader before the first look; a
    # first (periodic, latched) snapshot shows it has matched this test's readers.
    assert spin_until(ros_node, lambda: matched(w.obs_pub, w.events_sub) and w.snapshots, 30.0), memory.log()
    assert spin_until(ros_node, w.router_has_state, 30.0), w.router_state     # the router has seen the arm
    cubes = ["red_cube", "green_cube", "blue_cube"]
    created = w.look(cubes, wait_events=3)
    assert {e.fact_id for e in created} == {f"visual/{c}" for c in cubes}
    green_before = w.query("green_cube")["visual/green_cube"].confidence

    # ---- pick the red cube: pre-grasp, descend + close, lift
    red = w.pose("red_cube")
    tray = w.pose("tray")
    phases = plan_pick_place([red.position.x, red.position.y, red.position.z],
                             [red.orientation.x, red.orientation.y, red.orientation.z, red.orientation.w],
                             [tray.position.x, tray.position.y, tray.position.z])
    start = phases[0].positions[0] + np.array([0, 0, 0.3])
    ids = []
    for phase in phases[:3]:
        ids.append(w.send(phase, start))
        start = phase.positions[-1]
    descend = ids[1]
    assert spin_until(ros_node, lambda: any(e.event == MemoryEvent.EVENT_INVALIDATED and e.subject == "red_cube"
                                            and descend in e.reason for e in w.events), 5.0), \
        [(e.event, e.subject, e.reason) for e in w.events]
    facts = w.query()
    assert facts[f"action/{descend}"].kind == 1
    green = facts["visual/green_cube"]
    assert green.confidence < green_before - 0.05          # nearby fact lowered by the swept path
    red_fact = facts["visual/red_cube"]
    assert red_fact.source == "gripper" and '"held": true' in red_fact.value
    # The held cube's believed pose follows the gripper up (lift).
    assert red_fact.pose.position.z > red.position.z + 0.08, red_fact.pose.position
    assert w.gt.held_object == "red_cube"

    # ---- blue cube moved by the sim while nobody looks; the next look catches it
    req = SimControl.Request(command=SimControl.Request.COMMAND_MOVE_OBJECT, object_id="blue_cube")
    req.pose.position.x, req.pose.position.y, req.pose.position.z = 0.35, -0.2, 0.026
    req.pose.orientation.w = 1.0
    assert w.control_cli.wait_for_service(timeout_sec=10.0)
    future = w.control_cli.call_async(req)
    assert spin_until(ros_node, future.done, 10.0) and future.result().success
    assert spin_until(ros_node, lambda: abs(w.pose("blue_cube").position.y + 0.2) < 0.01, 5.0)
    caught = w.look(["blue_cube", "green_cube"], wait_events=1)
    blue = [e for e in caught if e.subject == "blue_cube"]
    assert blue and blue[0].event in (MemoryEvent.EVENT_CONTRADICTED, MemoryEvent.EVENT_STALE), \
        [(e.event, e.subject, e.reason) for e in caught]
    facts = w.query("blue_cube")
    assert facts["visual/blue_cube"].pose.position.y == pytest.approx(-0.2, abs=0.01)   # observation wins
    assert any(f.state == MemoryFact.STATE_CONTRADICTED for f in facts.values())         # old belief kept
    assert memory.alive()
