"""Scripted pick-and-place expert node: puts a named cube in the tray by sending action chunks
to the controller router over /harness/command and reading /harness/execution.

It reads object poses from /sim/ground_truth: it is the scripted expert that records
demonstrations, not a harness node, and success is judged from ground truth. It never touches the
simulation's internals or the arm's command topics. Its callbacks are guarded
(common/callbacks.py) and keep only feedback on its own chunks and a ground truth whose arrays agree.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from typing import ClassVar

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Pose
from pydantic import BaseModel, Field
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy

from harness_nodes.common.callbacks import guarded
from harness_nodes.common.params import ParameterError, declare_and_load
from harness_nodes.expert.plan import Phase, PickPlaceConfig, plan_pick_place, waypoint_times
from robot_harness.msg import ActionChunk, ExecutionFeedback, SimGroundTruth

COMMAND_TOPIC = "harness/command"
FEEDBACK_TOPIC = "harness/execution"
GROUND_TRUTH_TOPIC = "sim/ground_truth"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
STATUS_NAMES = {v: k[len("STATUS_"):].lower() for k, v in vars(ExecutionFeedback).items()
                if k.startswith("STATUS_") and isinstance(v, int)}
RESEND_PERIOD = 1.0   # wall s without any feedback before a command is sent again
NOT_READY_RETRY = 0.25   # wall s between sends while the router reports it is not ready
NOT_READY_FAILURES = (ExecutionFeedback.FAILURE_NO_STATE, ExecutionFeedback.FAILURE_INACTIVE)
ROUTER_NODE = "controller_router"
TERMINAL = (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED,
            ExecutionFeedback.STATUS_REJECTED, ExecutionFeedback.STATUS_HELD)


class ExpertParameters(BaseModel):
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({"max_attempts", "phase_timeout", "task_timeout",
                                                   "startup_timeout"})   # the rest is read-only
    object_id: str = Field("red_cube", min_length=1, description="cube to put in the tray")
    tray_id: str = Field("tray", min_length=1)
    max_attempts: int = Field(3, ge=1, le=10, description="pick-and-place attempts")
    phase_timeout: float = Field(30.0, gt=0.0, le=600.0, description="wall s per chunk")
    task_timeout: float = Field(240.0, gt=0.0, le=3600.0, description="wall s for the whole task")
    startup_timeout: float = Field(60.0, gt=0.0, le=600.0, description="wall s to find router and sim")


class PickPlaceExpert(Node):
    def __init__(self):
        super().__init__("pick_place_expert")
        self.params = declare_and_load(self, ExpertParameters, self._apply_parameters)
        self.plan_config = PickPlaceConfig()
        self.command_pub = self.create_publisher(ActionChunk, COMMAND_TOPIC, RELIABLE)
        self.create_subscription(ExecutionFeedback, FEEDBACK_TOPIC, guarded(self, self._on_feedback), RELIABLE)
        self.create_subscription(SimGroundTruth, GROUND_TRUTH_TOPIC, guarded(self, self._on_ground_truth), 10)
        self.sent_ids: set[str] = set()
        self.ground_truth: SimGroundTruth | None = None
        self.feedback: dict[str, ExecutionFeedback] = {}
        self.commands_sent = 0
        self.last_target: np.ndarray | None = None

    def _apply_parameters(self, params: ExpertParameters) -> None:
        """A validated `ros2 param set` of ExpertParameters.DYNAMIC (timeouts, attempts): used from now on."""
        self.params = params

    # -- callbacks only store
    def _on_feedback(self, msg: ExecutionFeedback) -> None:
        if msg.chunk_id not in self.sent_ids:
            return      # another sender's chunk: not ours to remember
        if msg.status in TERMINAL or msg.chunk_id not in self.feedback:
            self.feedback[msg.chunk_id] = msg

    def _on_ground_truth(self, msg: SimGroundTruth) -> None:
        if len(msg.object_ids) == len(msg.poses):
            self.ground_truth = msg

    # -- helpers
    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and rclpy.ok():
            if predicate():
                return True
            rclpy.spin_once(self, timeout_sec=0.05)
        return bool(predicate())

    def object_pose(self, object_id: str) -> Pose | None:
        gt = self.ground_truth
        if gt is None or object_id not in gt.object_ids:
            return None
        return gt.poses[list(gt.object_ids).index(object_id)]

    def make_chunk(self, phase: Phase, attempt: int, start: np.ndarray) -> ActionChunk:
        times = waypoint_times(start, phase.positions, self.plan_config)
        chunk = ActionChunk()
        chunk.header.stamp = self.get_clock().now().to_msg()
        chunk.header.frame_id = "world"
        chunk.chunk_id = f"expert-{phase.name}-{attempt}-{uuid.uuid4().hex[:8]}"
        self.sent_ids.add(chunk.chunk_id)
        chunk.source = "scripted_expert"
        chunk.attempt = attempt
        chunk.space = ActionChunk.SPACE_END_EFFECTOR
        for p, t in zip(phase.positions, times):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p)
            qx, qy, qz, qw = (float(v) for v in phase.quaternion)
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
            chunk.ee_poses.append(pose)
            sec = int(t)
            chunk.ee_times.append(Duration(sec=sec, nanosec=int((t - sec) * 1e9)))
        chunk.gripper_command = phase.gripper
        return chunk

    def send_phase(self, phase: Phase, attempt: int) -> ExecutionFeedback | None:
        start = self.last_target if self.last_target is not None else phase.positions[0] + [0, 0, 0.3]
        self.last_target = phase.positions[-1]
        deadline = time.monotonic() + self.params.phase_timeout
        while True:
            chunk = self.make_chunk(phase, attempt, start)
            self.commands_sent += 1
            # At-least-once delivery: resend until the router answers; it ignores a chunk_id it has seen.
            done = False
            while not done and time.monotonic() < deadline:
                if chunk.chunk_id not in self.feedback:
                    self.command_pub.publish(chunk)
                done = self.spin_until(lambda: chunk.chunk_id in self.feedback
                                       and self.feedback[chunk.chunk_id].status in TERMINAL,
                                       min(RESEND_PERIOD, max(0.0, deadline - time.monotonic())))
            fb = self.feedback.get(chunk.chunk_id)
            # A router that has no joint state yet (or is not active yet) is not ready: that is not a
            # failed attempt. Send the phase again, as a new chunk, until the phase deadline.
            not_ready = (done and fb.status == ExecutionFeedback.STATUS_REJECTED
                         and fb.failure in NOT_READY_FAILURES)
            if not_ready and time.monotonic() + NOT_READY_RETRY < deadline:
                self.get_logger().info(f"phase {phase.name}: router not ready ({fb.message}); sending again")
                self.spin_until(lambda: False, NOT_READY_RETRY)
                continue
            break
        status = STATUS_NAMES.get(fb.status, fb.status) if fb else "no feedback"
        self.get_logger().info(f"phase {phase.name} (attempt {attempt}): status {status}"
                               + (f" ({fb.message})" if fb and fb.message else ""))
        return fb if done else None

    def router_listening(self) -> bool:
        """The router itself (not just any subscriber, e.g. the memory tracker) is on both topics."""
        subscribers = {info.node_name for info in self.get_subscriptions_info_by_topic(COMMAND_TOPIC)}
        return ROUTER_NODE in subscribers and self.count_publishers(FEEDBACK_TOPIC) > 0

    def wait_for_system(self) -> bool:
        """Ground truth is flowing and the router listens on the command topic."""
        return self.spin_until(lambda: self.ground_truth is not None and self.router_listening(),
                               self.params.startup_timeout)

    def attempt_pick_place(self, attempt: int) -> bool:
        obj = self.object_pose(self.params.object_id)
        tray = self.object_pose(self.params.tray_id)
        if obj is None or tray is None:
            self.get_logger().error(f"'{self.params.object_id}' or '{self.params.tray_id}' not in ground truth")
            return False
        phases = plan_pick_place(
            [obj.position.x, obj.position.y, obj.position.z],
            [obj.orientation.x, obj.orientation.y, obj.orientation.z, obj.orientation.w],
            [tray.position.x, tray.position.y, tray.position.z], self.plan_config)
        for phase in phases:
            fb = self.send_phase(phase, attempt)
            if fb is None or fb.status != ExecutionFeedback.STATUS_SUCCEEDED:
                return False
            if phase.name == "lift":
                rclpy.spin_once(self, timeout_sec=0.2)
                if self.ground_truth.held_object != self.params.object_id:
                    self.get_logger().warn("grasp check: object not held after lift; retrying")
                    return False
        return True

    def in_tray(self) -> bool:
        gt = self.ground_truth
        return gt is not None and self.params.object_id in gt.in_tray and gt.held_object == ""

    def run(self) -> dict:
        wall_start = time.monotonic()
        if not self.wait_for_system():
            return {"success": False, "reason": "router or simulation not found",
                    "commands_sent": 0, "attempts": 0}
        sim_start = self.ground_truth.header.stamp.sec + self.ground_truth.header.stamp.nanosec * 1e-9
        attempts = 0
        success = False
        while attempts < self.params.max_attempts and not success:
            if time.monotonic() - wall_start > self.params.task_timeout:
                break
            attempts += 1
            if self.attempt_pick_place(attempts):
                success = self.spin_until(self.in_tray, 5.0)
        gt = self.ground_truth
        sim_end = gt.header.stamp.sec + gt.header.stamp.nanosec * 1e-9
        return {
            "success": success,
            "object": self.params.object_id,
            "attempts": attempts,
            "commands_sent": self.commands_sent,
            "sim_time_s": round(sim_end - sim_start, 2),
            "wall_time_s": round(time.monotonic() - wall_start, 2),
        }


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        expert = PickPlaceExpert()
    except ParameterError as exc:
        print(f"pick_place_expert: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        summary = expert.run()
    except KeyboardInterrupt:
        summary = {"success": False, "reason": "interrupted"}
    print("pick-and-place summary: " + json.dumps(summary), flush=True)
    expert.destroy_node()
    rclpy.try_shutdown()
    return 0 if summary.get("success") else 1


if __name__ == "__main__":
    sys.exit(main())
