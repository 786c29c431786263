"""Controller router node: the last line before motion.

Subscribes action chunks (`command_topic`, robot_harness/ActionChunk) and /joint_states; every
chunk is converted, validated and planned by `RouterCore` (pure, see core.py). A valid chunk is
answered with ACCEPTED, sent to the arm controller as one trajectory_msgs/JointTrajectory
(header.stamp zero = start now), monitored at MONITOR_RATE, followed by the gripper trajectory, and
finished with SUCCEEDED or FAILED on `feedback_topic`. An invalid chunk is answered with REJECTED
(reason in `message`) and an ERROR on /diagnostics, and nothing reaches the controllers. While a
chunk executes, other chunks are rejected with FAILURE_BUSY (no preemption); a repeat of the
executing chunk_id is ignored, a repeat of a recently finished one gets its final feedback again.

All timing uses the node clock (`use_sim_time:=true` follows /clock).
"""
from __future__ import annotations

import math
import sys
import time
from collections import deque

import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from harness_nodes.common.params import ParameterError, declare_and_load
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.router.core import (Duplicate, Executing, Finished, Plan, RouterCore, RouterParameters,
                                       StartGripper)
from harness_nodes.router.trajectory import GripperTrajectory, JointTrajectory
from harness_nodes.router.validation import ChunkInput, Failure, Rejection
from robot_harness.msg import ActionChunk, ExecutionFeedback

NODE_NAME = "controller_router"
# Command and feedback topics come from the parameters; the controller topics from the robot description.
DIAGNOSTICS_TOPIC = "/diagnostics"
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
FEEDBACK_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
CONTROLLER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
# Best effort subscriber: matches reliable and best-effort joint state publishers alike.
JOINT_STATE_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
MONITOR_RATE = 50.0       # Hz
DIAGNOSTICS_RATE = 1.0    # Hz
EXECUTING_PERIOD = 0.5    # s between EXECUTING feedback messages
LATENCY_SAMPLES = 1000

STATUS_NAME = "controller_router"


def _seconds(d: Duration) -> float:
    return float(d.sec) + float(d.nanosec) * 1e-9


def _duration(t: float) -> Duration:
    sec = int(math.floor(t))
    nsec = int(round((t - sec) * 1e9))
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return Duration(sec=sec, nanosec=nsec)


def chunk_from_msg(msg: ActionChunk) -> ChunkInput:
    """ROS message -> plain data; no checks here (validation does them all)."""
    return ChunkInput(
        chunk_id=msg.chunk_id, space=msg.space, source=msg.source, attempt=msg.attempt,
        frame_id=msg.header.frame_id,
        ee_positions=[(p.position.x, p.position.y, p.position.z) for p in msg.ee_poses],
        ee_orientations=[(p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) for p in msg.ee_poses],
        ee_times=[_seconds(d) for d in msg.ee_times],
        joint_names=list(msg.joint_names),
        joint_positions=[list(p.positions) for p in msg.joint_points],
        joint_velocities=[list(p.velocities) for p in msg.joint_points],
        joint_accelerations=[list(p.accelerations) for p in msg.joint_points],
        joint_times=[_seconds(p.time_from_start) for p in msg.joint_points],
        gripper_command=msg.gripper_command, gripper_width=msg.gripper_width)


def arm_trajectory_msg(traj: JointTrajectory) -> JointTrajectoryMsg:
    msg = JointTrajectoryMsg()   # header.stamp zero: start now
    msg.joint_names = list(traj.joint_names)
    for t, q, v in zip(traj.times, traj.positions, traj.velocities):
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in q]
        point.velocities = [float(x) for x in v]
        point.time_from_start = _duration(float(t))
        msg.points.append(point)
    return msg


def gripper_trajectory_msg(traj: GripperTrajectory) -> JointTrajectoryMsg:
    msg = JointTrajectoryMsg()
    msg.joint_names = list(traj.joint_names)
    point = JointTrajectoryPoint()
    point.positions = [float(x) for x in traj.positions]
    point.velocities = [0.0] * len(traj.positions)
    point.time_from_start = _duration(traj.duration)
    msg.points.append(point)
    return msg


class ControllerRouter(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        # Raises ParameterError (field and range named) or the description's error: main() reports it.
        self.params = declare_and_load(self, RouterParameters)
        self.description = load_robot_description(self.params.robot)
        self.core = RouterCore(self.description, self.params)
        topics = self.description.controllers

        self.joint_positions: dict[str, float] = {}
        self.state_time: float | None = None
        self.latencies: deque = deque(maxlen=LATENCY_SAMPLES)   # s, command receipt -> trajectory publish
        self.last_ik_time = 0.0
        self._last_executing = -math.inf

        self.feedback_pub = self.create_publisher(ExecutionFeedback, self.params.feedback_topic, FEEDBACK_QOS)
        self.arm_pub = self.create_publisher(JointTrajectoryMsg, topics.arm_topic, CONTROLLER_QOS)
        self.gripper_pub = self.create_publisher(JointTrajectoryMsg, topics.gripper_topic, CONTROLLER_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(JointState, topics.joint_states_topic, self._on_joint_state, JOINT_STATE_QOS)
        self.create_subscription(ActionChunk, self.params.command_topic, self._on_command, COMMAND_QOS)
        self.create_timer(1.0 / MONITOR_RATE, self._on_monitor)
        self.create_timer(1.0 / DIAGNOSTICS_RATE, self._on_diagnostics)
        self.get_logger().info(
            f"controller router for '{self.description.name}': {self.params.command_topic} -> "
            f"{topics.arm_topic}, {topics.gripper_topic}; feedback on {self.params.feedback_topic}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return
        for name, position in zip(msg.name, msg.position):
            self.joint_positions[name] = float(position)
        self.state_time = self.now()

    def _on_command(self, msg: ActionChunk) -> None:
        received = time.perf_counter()
        now = self.now()
        state_age = None if self.state_time is None else now - self.state_time
        try:
            chunk = chunk_from_msg(msg)
            result = self.core.submit(chunk, dict(self.joint_positions) or None, state_age)
        except Exception as exc:  # never let a malformed message take the router down
            self.get_logger().error(f"chunk '{msg.chunk_id}': internal error while checking it: {exc!r}")
            self.core.counters.rejected += 1
            result = Rejection(Failure.INVALID_INPUT, f"could not process chunk: {exc}")
        if isinstance(result, Duplicate):
            if result.finished is not None:
                self._publish_finished(result.finished)
            self.get_logger().info(f"chunk '{msg.chunk_id}' is a duplicate; ignored")
            return
        if isinstance(result, Rejection):
            self._reject(msg, result)
            return
        plan: Plan = result
        self._publish_feedback(plan.chunk_id, plan.attempt, ExecutionFeedback.STATUS_ACCEPTED,
                               message="; ".join(plan.notes), clamps=plan.clamps)
        self.arm_pub.publish(arm_trajectory_msg(plan.arm))
        self.latencies.append(time.perf_counter() - received)
        self.last_ik_time = plan.ik_time
        self.core.start(plan, now)
        self._last_executing = now
        self.get_logger().info(
            f"chunk '{plan.chunk_id}' accepted: {len(plan.arm.times) - 1} point(s), {plan.arm.duration:.2f} s, "
            f"clamps {plan.clamps}, IK {plan.ik_time * 1000:.1f} ms, "
            f"latency {self.latencies[-1] * 1000:.1f} ms")

    def _on_monitor(self) -> None:
        if not self.core.busy:
            return
        now = self.now()
        for event in self.core.update(now, self.joint_positions, self.state_time):
            if isinstance(event, StartGripper):
                self.gripper_pub.publish(gripper_trajectory_msg(event.trajectory))
            elif isinstance(event, Executing):
                if now - self._last_executing >= EXECUTING_PERIOD:
                    self._last_executing = now
                    plan = self.core.execution.plan
                    self._publish_feedback(event.chunk_id, plan.attempt, ExecutionFeedback.STATUS_EXECUTING,
                                           message=event.phase, progress=event.progress, clamps=plan.clamps)
            elif isinstance(event, Finished):
                self._publish_finished(event)

    # ------------------------------------------------------------------ output
    def _publish_feedback(self, chunk_id: str, attempt: int, status: int, failure: int = 0, message: str = "",
                          tracking_error: float = math.nan, progress: float = 0.0,
                          gripper_width: float = math.nan, clamps: int = 0) -> None:
        fb = ExecutionFeedback()
        fb.header.stamp = self.get_clock().now().to_msg()
        fb.header.frame_id = self.description.base_frame
        fb.chunk_id = chunk_id
        fb.attempt = int(attempt) & 0xFFFFFFFF
        fb.status = status
        fb.failure = int(failure)
        fb.message = message
        fb.tracking_error = float(tracking_error)
        fb.progress = float(progress)
        fb.gripper_width = float(gripper_width)
        fb.clamps = int(clamps)
        fb.rejections = self.core.counters.rejected
        self.feedback_pub.publish(fb)

    def _publish_finished(self, f: Finished) -> None:
        status = ExecutionFeedback.STATUS_SUCCEEDED if f.succeeded else ExecutionFeedback.STATUS_FAILED
        self._publish_feedback(f.chunk_id, f.attempt, status, f.failure, f.message, f.tracking_error,
                               f.progress, f.gripper_width, f.clamps)
        log = self.get_logger().info if f.succeeded else self.get_logger().warn
        log(f"chunk '{f.chunk_id}' {'succeeded' if f.succeeded else 'failed'} "
            f"(tracking error {f.tracking_error:.4f} rad, gripper {f.gripper_width:.4f} m)"
            + (f": {f.message}" if f.message else ""))

    def _reject(self, msg: ActionChunk, rejection: Rejection) -> None:
        self._publish_feedback(msg.chunk_id, msg.attempt, ExecutionFeedback.STATUS_REJECTED,
                               rejection.failure, rejection.reason)
        status = DiagnosticStatus(level=DiagnosticStatus.ERROR, name=STATUS_NAME, hardware_id=self.description.name,
                                  message=f"rejected chunk '{msg.chunk_id}': {rejection.reason}")
        status.values = [KeyValue(key="chunk_id", value=msg.chunk_id),
                         KeyValue(key="source", value=msg.source),
                         KeyValue(key="failure", value=Failure(rejection.failure).name),
                         KeyValue(key="reason", value=rejection.reason)]
        self._publish_diagnostics([status])
        self.get_logger().error(f"chunk '{msg.chunk_id}' rejected ({Failure(rejection.failure).name}): "
                                f"{rejection.reason}")

    def _publish_diagnostics(self, statuses: list[DiagnosticStatus]) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = statuses
        self.diagnostics_pub.publish(array)

    def latency_stats(self) -> dict[str, float]:
        lat = list(self.latencies)
        if not lat:
            return {"last": math.nan, "mean": math.nan, "max": math.nan, "count": 0}
        return {"last": lat[-1], "mean": sum(lat) / len(lat), "max": max(lat), "count": len(lat)}

    def _on_diagnostics(self) -> None:
        c = self.core.counters
        lat = self.latency_stats()
        active = self.core.active_chunk_id
        state = "no joint state yet" if self.state_time is None else (
            f"executing '{active}'" if active else "idle")
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=STATUS_NAME, hardware_id=self.description.name,
                                  message=state)
        values = {
            "accepted": c.accepted, "rejected": c.rejected, "clamps": c.clamps, "succeeded": c.succeeded,
            "failed": c.failed, "busy_rejections": c.busy, "duplicates": c.duplicates,
            "forward_latency_ms_last": lat["last"] * 1000, "forward_latency_ms_mean": lat["mean"] * 1000,
            "forward_latency_ms_max": lat["max"] * 1000, "forward_latency_samples": lat["count"],
            "ik_ms_last": self.last_ik_time * 1000,
        }
        status.values = [KeyValue(key=k, value=(f"{v:.3f}" if isinstance(v, float) else str(v)))
                         for k, v in values.items()]
        self._publish_diagnostics([status])


def main(args=None) -> int:
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = ControllerRouter()
    except ParameterError as exc:
        logger.error(f"invalid parameter: {exc}")
        print(f"{NODE_NAME}: invalid parameter: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    except Exception as exc:  # bad robot description, missing URDF, ...
        logger.error(f"cannot start: {exc}")
        print(f"{NODE_NAME}: cannot start: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 3
    code = 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node.core.busy:
            node.get_logger().warn(f"shutting down while chunk '{node.core.active_chunk_id}' executes")
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
