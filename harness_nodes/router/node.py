"""Controller router node (lifecycle): the last line before motion.

Version 2 adds, in the router's own loop: self/table collision checks, the per-step change limit,
velocity scaling near singularities, path tracking and contact detection while moving, a grasp
check after closing; a servo-style command stream (`stream_topic`) guarded by a watchdog
(`command_timeout`), a supervisor heartbeat (`heartbeat_topic`/`heartbeat_timeout`), a latching
e-stop (`estop_topic`, std_msgs/Bool; released by the `~/reset_estop` service); a managed
lifecycle (`autostart` configures and activates at start; otherwise `/controller_router/change_state`);
and routing to joint_trajectory_controller (JointTrajectory topic), a forward position controller
(std_msgs/Float64MultiArray, streamed at `monitor_rate`) or, where control_msgs is importable,
the FollowJointTrajectory action, switchable at run time with `~/switch_controller`.

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
import traceback
from collections import deque

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from harness_nodes.common.node_main import run_node
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS
from harness_nodes.common.realtime import SchedulingResult, apply_realtime_priority
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.router.core import (Duplicate, Executing, Finished, Plan, RouterCore, RouterParameters,
                                       StartGripper)
from harness_nodes.router.trajectory import GripperTrajectory, JointTrajectory
from harness_nodes.router.validation import ChunkInput, Failure, Rejection
from harness_nodes.router.camera_mount import ee_T_camera, ee_target_for_camera
from harness_nodes.router.guard import Guard
from harness_nodes.router.kinematics import matrix_to_quat_xyzw, quat_xyzw_to_matrix
from robot_harness.msg import ActionChunk, ExecutionFeedback, ViewpointRequest
from robot_harness.srv import ResetEstop, SwitchController

NODE_NAME = "controller_router"
# Command and feedback topics come from the parameters; the controller topics from the robot description.
DIAGNOSTICS_TOPIC = "/diagnostics"
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
FEEDBACK_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
CONTROLLER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
CONTROLLERS = ("joint_trajectory", "forward_position", "follow_joint_trajectory")
DIAGNOSTICS_RATE = 1.0    # Hz
EXECUTING_PERIOD = 0.5    # s between EXECUTING feedback messages
LATENCY_SAMPLES = 1000

STATUS_NAME = "controller_router"
# Viewpoint requests (perception's active viewpoint selection): a wrist-camera pose, executed when the
# router is idle as an end-effector chunk with chunk_id = request_id (feedback on the feedback topic).
VIEWPOINT_TOPIC = "harness/viewpoint"
VIEWPOINT_CAMERA = "wrist"
VIEWPOINT_SPEED = 0.15      # m/s of the tool for viewpoint moves
VIEWPOINT_MIN_TIME = 1.5    # s


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


def control_msgs_available() -> bool:
    try:
        import control_msgs.action  # noqa: F401  (only on a real ROS 2 install)
        return True
    except ImportError:
        return False


class ControllerRouter(LifecycleNode):
    def __init__(self):
        super().__init__(NODE_NAME)
        # Raises ParameterError (field and range named) or the description's error: main() reports it.
        self.params = declare_and_load(self, RouterParameters)
        self.description = load_robot_description(self.params.robot)
        self.controller = self.params.controller or self.description.controllers.type
        if self.controller == "follow_joint_trajectory" and not control_msgs_available():
            raise RuntimeError("controller 'follow_joint_trajectory' needs control_msgs, which is not importable")
        self.core: RouterCore | None = None
        self.active = False
        self.lifecycle_state = "unconfigured"
        self.guard = Guard(self.params.command_timeout, self.params.heartbeat_timeout)
        topics = self.description.controllers

        self.joint_positions: dict[str, float] = {}
        self.joint_efforts: dict[str, float] = {}
        self.state_time: float | None = None
        self.latencies: deque = deque(maxlen=LATENCY_SAMPLES)   # s, command receipt -> trajectory publish
        self.last_ik_time = 0.0
        self._last_executing = -math.inf
        self.stream_target = None          # last stream target (arm joints), None when not streaming
        self.stream_count = 0
        self.forward = None                # (JointTrajectory, start time) streamed to a forward controller
        self.fjt_client = None
        self.fjt_goal = None
        self.hold_count = 0
        self.last_hold_reason = ""
        self.scheduling = SchedulingResult(False, 0, 0, "not applied yet")

        self.feedback_pub = self.create_publisher(ExecutionFeedback, self.params.feedback_topic, FEEDBACK_QOS)
        self.arm_pub = self.create_publisher(JointTrajectoryMsg, topics.arm_topic, CONTROLLER_QOS)
        self.forward_pub = self.create_publisher(Float64MultiArray, topics.forward_position_topic, CONTROLLER_QOS)
        self.gripper_pub = self.create_publisher(JointTrajectoryMsg, topics.gripper_topic, CONTROLLER_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(JointState, topics.joint_states_topic, self._on_joint_state, JOINT_STATE_QOS)
        self.create_subscription(ActionChunk, self.params.command_topic, self._on_command, COMMAND_QOS)
        self.create_subscription(ActionChunk, self.params.stream_topic, self._on_stream, COMMAND_QOS)
        self.create_subscription(Bool, self.params.estop_topic, self._on_estop, COMMAND_QOS)
        self.create_subscription(Header, self.params.heartbeat_topic, self._on_heartbeat, COMMAND_QOS)
        self.pending_viewpoint: ViewpointRequest | None = None   # newest request, run when idle
        self._ee_T_camera = None
        self.create_subscription(ViewpointRequest, VIEWPOINT_TOPIC, self._on_viewpoint, COMMAND_QOS)
        self.create_service(ResetEstop, "~/reset_estop", self._on_reset_estop)
        self.create_service(SwitchController, "~/switch_controller", self._on_switch)
        self.create_timer(1.0 / self.params.monitor_rate, self._on_loop)
        self.create_timer(1.0 / DIAGNOSTICS_RATE, self._on_diagnostics)
        self.get_logger().info(
            f"controller router for '{self.description.name}' ({self.controller}): {self.params.command_topic}, "
            f"{self.params.stream_topic} -> {topics.arm_topic}, {topics.gripper_topic}; "
            f"feedback on {self.params.feedback_topic}; autostart {self.params.autostart}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.core = RouterCore(self.description, self.params)
        except Exception as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        if self.controller == "follow_joint_trajectory":
            self._make_fjt_client()
        self.lifecycle_state = "inactive"
        self.get_logger().info("configured (inactive)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.active = True
        self.lifecycle_state = "active"
        self.get_logger().info("active: accepting commands")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False        # refuse new commands whatever happens below
        self.lifecycle_state = "inactive"
        try:
            self._hold("router deactivated (lifecycle)")
        except Exception as exc:   # rclpy swallows callback exceptions silently: say what went wrong
            self.get_logger().error(f"deactivate: hold failed: {exc!r}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.ERROR
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self.core = None
        self.lifecycle_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.active:
            self._hold("router shutting down")
        self.active = False
        self.lifecycle_state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def refusal(self) -> tuple[Failure, str] | None:
        if not self.active or self.core is None:
            return Failure.INACTIVE, (f"router is not active (lifecycle state '{self.lifecycle_state}'): "
                                      f"configure and activate it via /{NODE_NAME}/change_state")
        reason = self.guard.refusal()
        return (Failure.HELD, reason) if reason else None

    # ------------------------------------------------------------------ callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return
        for name, position in zip(msg.name, msg.position):
            self.joint_positions[name] = float(position)
        if len(msg.effort) == len(msg.name):
            for name, effort in zip(msg.name, msg.effort):
                self.joint_efforts[name] = float(effort)
        self.state_time = self.now()

    def _on_command(self, msg: ActionChunk) -> None:
        received = time.perf_counter()
        now = self.now()
        state_age = None if self.state_time is None else now - self.state_time
        refused = self.refusal()
        if refused is not None:
            if self.core is not None:
                self.core.counters.rejected += 1
            self._reject(msg, Rejection(*refused))
            return
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
        self.stream_target = None
        self.guard.last_stream = None
        self._publish_feedback(plan.chunk_id, plan.attempt, ExecutionFeedback.STATUS_ACCEPTED,
                               message="; ".join(plan.notes), clamps=plan.clamps)
        self._send_arm(plan.arm, now)
        self.latencies.append(time.perf_counter() - received)
        self.last_ik_time = plan.ik_time
        self.core.start(plan, now)
        self._last_executing = now
        self.get_logger().info(
            f"chunk '{plan.chunk_id}' accepted: {len(plan.arm.times) - 1} point(s), {plan.arm.duration:.2f} s, "
            f"clamps {plan.clamps}, IK {plan.ik_time * 1000:.1f} ms, "
            f"latency {self.latencies[-1] * 1000:.1f} ms")

    def _on_stream(self, msg: ActionChunk) -> None:
        """Servo-style stream: one point per message, forwarded at once, watchdog-guarded."""
        received = time.perf_counter()
        now = self.now()
        refused = self.refusal()
        if refused is None and self.core.busy:
            refused = (Failure.BUSY, f"busy: chunk '{self.core.active_chunk_id}' is executing")
        if refused is not None:
            if self.core is not None:
                self.core.counters.rejected += 1
            self._reject(msg, Rejection(*refused))
            return
        state_age = None if self.state_time is None else now - self.state_time
        try:
            result = self.core.plan_stream(chunk_from_msg(msg), dict(self.joint_positions) or None,
                                           self.stream_target, state_age)
        except Exception as exc:
            self.core.counters.rejected += 1
            result = Rejection(Failure.INVALID_INPUT, f"could not process stream command: {exc}")
        if isinstance(result, Rejection):
            self._reject(msg, result)
            return
        target, duration, _clamps = result
        self.stream_target = target
        self.guard.on_stream(now)
        self.stream_count += 1
        if self.controller == "forward_position":
            self.forward = None
            self.forward_pub.publish(Float64MultiArray(data=[float(x) for x in target]))
        else:
            traj = JointTrajectory(tuple(self.core.arm_joints), np.array([duration]), target[None, :],
                                   np.zeros((1, len(target))))
            self._send_arm(traj, now, skip_first=False)
        self.latencies.append(time.perf_counter() - received)

    def _on_viewpoint(self, msg: ViewpointRequest) -> None:
        """Keep the newest request; it runs as soon as no chunk executes (between task phases)."""
        if msg.camera != VIEWPOINT_CAMERA:
            self._publish_feedback(msg.request_id, 0, ExecutionFeedback.STATUS_REJECTED, Failure.INVALID_INPUT,
                                   f"viewpoint for camera '{msg.camera}': only '{VIEWPOINT_CAMERA}' can be moved")
            return
        self.pending_viewpoint = msg
        self._run_viewpoint()

    def _run_viewpoint(self) -> None:
        msg = self.pending_viewpoint
        if msg is None or self.core is None or self.core.busy:
            return
        self.pending_viewpoint = None
        chunk = ActionChunk()
        chunk.header = msg.header
        chunk.chunk_id = msg.request_id
        chunk.source = "viewpoint"
        chunk.space = ActionChunk.SPACE_END_EFFECTOR
        try:
            if self._ee_T_camera is None:
                self._ee_T_camera = ee_T_camera(self.core.kinematics, self.description.camera_link)
            c, o = msg.camera_pose.position, msg.camera_pose.orientation
            pos, rot = ee_target_for_camera((c.x, c.y, c.z), quat_xyzw_to_matrix((o.x, o.y, o.z, o.w)),
                                            self._ee_T_camera)
            q = self.core.arm_state(self.joint_positions)
            start = self.core.kinematics.fk(q).translation if not isinstance(q, str) else pos
            duration = max(VIEWPOINT_MIN_TIME, float(np.linalg.norm(pos - start)) / VIEWPOINT_SPEED)
            quat = matrix_to_quat_xyzw(rot)
        except Exception as exc:   # NaN pose, zero quaternion, ...: the router's validation reports it
            pos, quat, duration = (math.nan,) * 3, (0.0, 0.0, 0.0, 1.0), VIEWPOINT_MIN_TIME
            self.get_logger().error(f"viewpoint '{msg.request_id}': cannot convert camera pose: {exc!r}")
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quat)
        chunk.ee_poses = [pose]
        chunk.ee_times = [_duration(duration)]
        chunk.gripper_command = ActionChunk.GRIPPER_NONE
        self.get_logger().info(f"viewpoint '{msg.request_id}': camera to "
                               f"({msg.camera_pose.position.x:.3f}, {msg.camera_pose.position.y:.3f}, "
                               f"{msg.camera_pose.position.z:.3f}) in {duration:.1f} s")
        self._on_command(chunk)

    def _on_estop(self, msg: Bool) -> None:
        if self.guard.on_estop(msg.data):
            self._hold("e-stop pressed (latched until ~/reset_estop)", level=DiagnosticStatus.ERROR)

    def _on_heartbeat(self, msg: Header) -> None:
        if self.guard.on_heartbeat(self.now()):
            self.get_logger().info("supervisor heartbeat resumed")

    def _on_reset_estop(self, req, res):
        res.success, res.message = self.guard.reset_estop()
        self.get_logger().info(f"reset_estop: {res.message}")
        return res

    def _on_switch(self, req, res):
        name = req.controller
        res.active = self.controller
        if name not in CONTROLLERS:
            res.success, res.message = False, f"unknown controller '{name}'; known: {list(CONTROLLERS)}"
            return res
        if name == "follow_joint_trajectory" and not control_msgs_available():
            res.success, res.message = False, "follow_joint_trajectory needs control_msgs, which is not importable"
            return res
        if name == self.controller:
            res.success, res.message = True, f"'{name}' already active"
            return res
        old = self.controller
        self._hold(f"controller switched from {old} to {name}", level=DiagnosticStatus.OK)
        self.controller = name
        if name == "follow_joint_trajectory" and self.fjt_client is None:
            self._make_fjt_client()
        if name == "forward_position":
            q = self.core.arm_state(self.joint_positions) if self.core else "no core"
            if not isinstance(q, str):   # start the new controller exactly where the arm is
                self.forward_pub.publish(Float64MultiArray(data=[float(x) for x in q]))
        res.success, res.message, res.active = True, f"switched from {old} to {name}", name
        self.get_logger().info(res.message)
        return res

    def _on_loop(self) -> None:
        now = self.now()
        for reason in self.guard.check(now):
            self._hold(reason)
        if self.forward is not None:
            traj, start = self.forward
            t = now - start
            q = traj.sample(min(t, traj.duration))
            self.forward_pub.publish(Float64MultiArray(data=[float(x) for x in q]))
            if t >= traj.duration:
                self.forward = None
        if self.core is None or not self.core.busy:
            self._run_viewpoint()
            return
        for event in self.core.update(now, self.joint_positions, self.state_time, self.joint_efforts):
            if isinstance(event, StartGripper):
                self.gripper_pub.publish(gripper_trajectory_msg(event.trajectory))
            elif isinstance(event, Executing):
                if now - self._last_executing >= EXECUTING_PERIOD:
                    self._last_executing = now
                    plan = self.core.execution.plan
                    self._publish_feedback(event.chunk_id, plan.attempt, ExecutionFeedback.STATUS_EXECUTING,
                                           message=event.phase, progress=event.progress, clamps=plan.clamps)
            elif isinstance(event, Finished):
                if event.stop_arm:
                    self._stop_arm()
                    self._diagnose(DiagnosticStatus.ERROR, f"chunk '{event.chunk_id}' stopped: {event.message}",
                                   {"failure": Failure(event.failure).name})
                self._publish_finished(event)

    # ------------------------------------------------------------------ output routing
    def _send_arm(self, traj: JointTrajectory, now: float, skip_first: bool = True) -> None:
        if self.controller == "forward_position":
            self.forward = (traj, now)
        elif self.controller == "follow_joint_trajectory":
            self._send_fjt(arm_trajectory_msg(traj))
        else:
            self.arm_pub.publish(arm_trajectory_msg(traj))

    def _stop_arm(self) -> None:
        """Hold the arm where it is, on the active controller (JTC: an empty trajectory stops it)."""
        self.forward = None
        self.stream_target = None
        if self.controller == "forward_position":
            q = self.core.arm_state(self.joint_positions) if self.core else "no core"
            if not isinstance(q, str):
                self.forward_pub.publish(Float64MultiArray(data=[float(x) for x in q]))
        elif self.controller == "follow_joint_trajectory":
            if self.fjt_goal is not None:
                self.fjt_goal.cancel_goal_async()
                self.fjt_goal = None
        else:
            msg = JointTrajectoryMsg()
            msg.joint_names = list(self.description.arm.joint_names)
            self.arm_pub.publish(msg)

    def _hold(self, reason: str, level=DiagnosticStatus.WARN) -> None:
        """Stop the arm, finish the executing chunk as HELD, report on /diagnostics."""
        self.hold_count += 1
        self.last_hold_reason = reason
        self.guard.last_stream = None
        self._stop_arm()
        if self.core is not None:
            finished = self.core.hold(self.now(), reason, self.joint_positions)
            if finished is not None:
                self._publish_finished(finished)
        self._publish_feedback("", 0, ExecutionFeedback.STATUS_HELD, Failure.HELD, reason)
        self._diagnose(level, f"hold: {reason}", {"holds": self.hold_count})
        self.get_logger().warn(f"hold: {reason}")

    def _make_fjt_client(self) -> None:
        from control_msgs.action import FollowJointTrajectory
        from rclpy.action import ActionClient
        self._fjt_type = FollowJointTrajectory
        self.fjt_client = ActionClient(self, FollowJointTrajectory,
                                       self.description.controllers.follow_joint_trajectory_action)

    def _send_fjt(self, traj_msg: JointTrajectoryMsg) -> None:
        if self.fjt_client is None:
            self._make_fjt_client()
        goal = self._fjt_type.Goal()
        goal.trajectory = traj_msg
        future = self.fjt_client.send_goal_async(goal)
        future.add_done_callback(lambda f: setattr(self, "fjt_goal", f.result()))

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
        fb.rejections = self.core.counters.rejected if self.core else 0
        self.feedback_pub.publish(fb)

    def _publish_finished(self, f: Finished) -> None:
        status = (ExecutionFeedback.STATUS_SUCCEEDED if f.succeeded else
                  ExecutionFeedback.STATUS_HELD if f.held else ExecutionFeedback.STATUS_FAILED)
        self._publish_feedback(f.chunk_id, f.attempt, status, f.failure, f.message, f.tracking_error,
                               f.progress, f.gripper_width, f.clamps)
        text = (f"chunk '{f.chunk_id}' {'succeeded' if f.succeeded else 'held' if f.held else 'failed'} "
                f"(tracking error {f.tracking_error:.4f} rad, gripper {f.gripper_width:.4f} m)"
                + (f": {f.message}" if f.message else ""))
        # One call site per severity: rclpy (Jazzy) raises if one call site logs at two severities.
        if f.succeeded:
            self.get_logger().info(text)
        else:
            self.get_logger().warn(text)

    def _reject(self, msg: ActionChunk, rejection: Rejection) -> None:
        self._publish_feedback(msg.chunk_id, msg.attempt, ExecutionFeedback.STATUS_REJECTED,
                               rejection.failure, rejection.reason)
        self._diagnose(DiagnosticStatus.ERROR, f"rejected chunk '{msg.chunk_id}': {rejection.reason}",
                       {"chunk_id": msg.chunk_id, "source": msg.source,
                        "failure": Failure(rejection.failure).name, "reason": rejection.reason})
        self.get_logger().error(f"chunk '{msg.chunk_id}' rejected ({Failure(rejection.failure).name}): "
                                f"{rejection.reason}")

    def _diagnose(self, level, message: str, values: dict | None = None) -> None:
        status = DiagnosticStatus(level=level, name=STATUS_NAME, hardware_id=self.description.name,
                                  message=message)
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in (values or {}).items()]
        self._publish_diagnostics([status])

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
        lat = self.latency_stats()
        refused = self.refusal()
        active = self.core.active_chunk_id if self.core else None
        state = ("no joint state yet" if self.state_time is None else
                 f"holding: {refused[1]}" if refused else
                 f"executing '{active}'" if active else "streaming" if self.guard.streaming else "idle")
        level = DiagnosticStatus.WARN if refused else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=STATUS_NAME, hardware_id=self.description.name,
                                  message=state)
        values = {"lifecycle": self.lifecycle_state, "controller": self.controller,
                  "estop_latched": self.guard.estop_latched, "heartbeat_lost": self.guard.heartbeat_lost,
                  "holds": self.hold_count, "last_hold_reason": self.last_hold_reason,
                  "stream_commands": self.stream_count, "realtime_scheduling": self.scheduling.message}
        if self.core is not None:
            c = self.core.counters
            values.update({
                "accepted": c.accepted, "rejected": c.rejected, "clamps": c.clamps, "succeeded": c.succeeded,
                "failed": c.failed, "busy_rejections": c.busy, "duplicates": c.duplicates,
                "collision_rejections": c.collisions, "step_clamps": c.step_clamps,
                "singularity_slowdowns": c.singularity_slowdowns, "collision_slowdowns": c.collision_slowdowns,
                "contacts": c.contacts,
                "tracking_failures": c.tracking_failures, "grasp_failures": c.grasp_failures})
        values.update({
            "forward_latency_ms_last": lat["last"] * 1000, "forward_latency_ms_mean": lat["mean"] * 1000,
            "forward_latency_ms_max": lat["max"] * 1000, "forward_latency_samples": lat["count"],
            "ik_ms_last": self.last_ik_time * 1000})
        status.values = [KeyValue(key=k, value=(f"{v:.3f}" if isinstance(v, float) else str(v)))
                         for k, v in values.items()]
        self._publish_diagnostics([status])


def _on_start(node: ControllerRouter) -> int:
    """Real-time scheduling if asked (the middleware's threads exist now), then, like nav2's
    lifecycle manager, configure and activate (unless autostart is false)."""
    node.scheduling = apply_realtime_priority(node.params.realtime_priority)
    if node.params.realtime_priority and not node.scheduling.applied:
        node.get_logger().warn(node.scheduling.message)
    elif node.scheduling.applied:
        node.get_logger().info(node.scheduling.message)
    if not node.params.autostart:
        return 0
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS or \
            node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        print(f"{NODE_NAME}: autostart failed (configure/activate)", file=sys.stderr, flush=True)
        return 4
    return 0


def _warn_if_busy(node: ControllerRouter) -> None:
    if node.core is not None and node.core.busy:
        node.get_logger().warn(f"shutting down while chunk '{node.core.active_chunk_id}' executes")


def main(args=None) -> int:
    return run_node(NODE_NAME, ControllerRouter, args, on_start=_on_start, on_exit=_warn_if_busy)


if __name__ == "__main__":
    sys.exit(main())
