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
finished with SUCCEEDED or FAILED on `feedback_topic` (FAILED with FAILURE_CLAMPED when the executed
target differs from the asked one; `executed_positions`/`requested_positions` say by how much). An
invalid chunk is answered with REJECTED (reason in `message`) and an ERROR on /diagnostics, and
nothing reaches the controllers. While a chunk executes, other chunks are rejected with
FAILURE_BUSY (no preemption); a repeat of the executing chunk_id is ignored, a repeat of a recently
finished one gets its final feedback again, a reused chunk_id with different content is rejected.

Threads (safety first): commands, stream commands and viewpoint requests arrive as serialized
bytes; the executor thread only checks their size (MAX_* bytes: a 100k-point chunk is refused
without being deserialized) and queues them (COMMAND_QUEUE chunks, STREAM_QUEUE stream commands;
beyond that the oldest is dropped, a dropped chunk answered REJECTED/BUSY by the planner, so a
flood costs the executor thread nothing but the queueing). A planning worker thread deserializes, validates,
plans (IK, collision checks) and commits a plan under the router's lock, and only if no hold
happened meanwhile (a plan computed while the e-stop arrives is discarded, never sent). The
executor thread keeps serving the e-stop, heartbeat, joint states, the watchdog and the execution
monitor (loop and diagnostics timers run on the steady wall clock, so they keep running when
/clock stops). Every callback goes through harness_nodes/common/callbacks.py.

E-stop: subscribed best-effort (matches reliable and best-effort publishers) and, to receive a
press that happened before the router started, reliable + transient-local (publishers should
publish reliable + transient-local: the press is latched for late joiners). Heartbeat: best-effort.

Streams: each stream (commands closer than `command_timeout`) gets feedback under its own id
(`stream-<n>`): ACCEPTED, EXECUTING every EXECUTING_PERIOD, HELD with the reason when it ends.
Stream commands whose header stamp is older than `command_timeout` or that far in the future, or
that waited longer than that in the router, are dropped (FAILURE_STALE); a zero stamp means
unstamped (only the queueing time is checked). The watchdog holds `command_timeout` after the last
command by node time or wall time, whichever comes first. Contact (effort at the limit) while
streaming holds, unless the stream moves away from it.

Supervision: joint states missing, or /clock stopped under use_sim_time, for longer than
`state_timeout` of wall time -> the executing chunk fails (NO_STATE), streams hold, /diagnostics
says ERROR (no joint state at all: WARN, ERROR after NO_STATE_ERROR_AFTER s). Another publisher on
the arm or gripper command topics (graph check every GRAPH_CHECK_PERIOD s) -> ERROR on
/diagnostics, commands refused, a running chunk or stream held. Viewpoint requests wait while a
chunk executes or a stream is active. On shutdown (SIGINT, SIGTERM, lifecycle shutdown) the router
commands a hold at the measured position before it exits.

All chunk timing uses the node clock (`use_sim_time:=true` follows /clock).
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Pose
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from harness_nodes.common.callbacks import guarded, guarded_service
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS
from harness_nodes.common.realtime import SchedulingResult, apply_realtime_priority
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.stamps import to_duration
from harness_nodes.router.configuration import RouterParameters
from harness_nodes.router.core import RouterCore
from harness_nodes.router.execution import Executing, Finished, StartGripper
from harness_nodes.router.planner import Duplicate, Plan
from harness_nodes.router.trajectory import GripperTrajectory, JointTrajectory
from harness_nodes.router.messages import chunk_from_msg
from harness_nodes.router.validation import Failure, Rejection, short, validate_viewpoint
from harness_nodes.common.camera_mount import ee_T_camera, ee_target_for_camera
from harness_nodes.router.guard import Guard
from harness_nodes.common.geometry import matrix_to_quat, quat_to_matrix
from robot_harness.msg import ActionChunk, ExecutionFeedback, ViewpointRequest
from robot_harness.srv import ResetEstop, SwitchController

NODE_NAME = "controller_router"
# Command and feedback topics come from the parameters; the controller topics from the robot description.
DIAGNOSTICS_TOPIC = "/diagnostics"
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
FEEDBACK_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
CONTROLLER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
# Best effort + volatile matches every publisher; reliable + transient-local gets a latched press
# published before the router (re)started.
ESTOP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
ESTOP_LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
HEARTBEAT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
CONTROLLERS = ("joint_trajectory", "forward_position", "follow_joint_trajectory")
DIAGNOSTICS_RATE = 1.0    # Hz
EXECUTING_PERIOD = 0.5    # s between EXECUTING feedback messages
LATENCY_SAMPLES = 1000
# Boundary caps, checked on the serialized message before anything is deserialized.
COMMAND_BASE_BYTES = 16384          # header, ids, names
COMMAND_POINT_BYTES = 1024          # per waypoint (a 7-joint point with every array filled is ~250)
MAX_STATE_BYTES = 65536             # /joint_states
MAX_VIEWPOINT_BYTES = 16384
REFUSAL_PREFIX_BYTES = 4096         # bytes of a refused message kept to read its chunk_id
COMMAND_QUEUE = 16                  # chunks waiting for the planning worker (older ones refused beyond)
STREAM_QUEUE = 8                    # stream commands waiting (older ones dropped beyond)
GRAPH_CHECK_PERIOD = 0.2            # s between checks for other publishers on the controller topics
NO_STATE_ERROR_AFTER = 5.0          # s without any joint state after start: WARN -> ERROR
MAX_EVENTS_PER_SECOND = 50          # rejection logs and diagnostics beyond this per second are counted only
ECHO_ID_LENGTH = 80                 # characters of a caller's id echoed in feedback (longer ids shortened)
MAX_FEEDBACK_MESSAGE = 2000
GIL_SWITCH_INTERVAL = 0.0005        # s: the executor thread gets the interpreter back quickly from the planner

STATUS_NAME = "controller_router"
# Viewpoint requests (perception's active viewpoint selection): a wrist-camera pose, executed when the
# router is idle (no chunk, no stream) as an end-effector chunk with chunk_id = request_id.
VIEWPOINT_TOPIC = "harness/viewpoint"
VIEWPOINT_CAMERA = "wrist"
VIEWPOINT_SPEED = 0.15      # m/s of the tool for viewpoint moves
VIEWPOINT_MIN_TIME = 1.5    # s



def arm_trajectory_msg(traj: JointTrajectory) -> JointTrajectoryMsg:
    msg = JointTrajectoryMsg()   # header.stamp zero: start now
    msg.joint_names = list(traj.joint_names)
    for t, q, v in zip(traj.times, traj.positions, traj.velocities):
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in q]
        point.velocities = [float(x) for x in v]
        point.time_from_start = to_duration(float(t))
        msg.points.append(point)
    return msg


def gripper_trajectory_msg(traj: GripperTrajectory) -> JointTrajectoryMsg:
    msg = JointTrajectoryMsg()
    msg.joint_names = list(traj.joint_names)
    point = JointTrajectoryPoint()
    point.positions = [float(x) for x in traj.positions]
    point.velocities = [0.0] * len(traj.positions)
    point.time_from_start = to_duration(traj.duration)
    msg.points.append(point)
    return msg


def peek_chunk_id(data: bytes) -> str:
    """chunk_id of a serialized ActionChunk without deserializing it (CDR: encapsulation, stamp,
    frame_id, chunk_id), shortened for echoing; '' if the bytes do not parse."""
    try:
        order = "little" if data[1] == 1 else "big"
        off = 4 + 8
        n = int.from_bytes(data[off:off + 4], order)
        off = 4 + ((off - 4 + 4 + n + 3) & ~3)
        m = int.from_bytes(data[off:off + 4], order)
        raw = data[off + 4:off + 4 + max(0, min(m - 1, 4096))]
        return short(raw.decode("utf-8", errors="replace"))
    except Exception:   # noqa: BLE001 - any garbage: no id
        return ""


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
        self.params = declare_and_load(self, RouterParameters, self._apply_parameters)
        self.description = load_robot_description(self.params.robot)
        self.controller = self.params.controller or self.description.controllers.type
        if self.controller == "follow_joint_trajectory" and not control_msgs_available():
            raise RuntimeError("controller 'follow_joint_trajectory' needs control_msgs, which is not importable")
        self.core: RouterCore | None = None
        self.active = False
        self.lifecycle_state = "unconfigured"
        self.guard = Guard(self.params.command_timeout, self.params.heartbeat_timeout)
        topics = self.description.controllers
        self.max_command_bytes = COMMAND_BASE_BYTES + COMMAND_POINT_BYTES * self.params.max_chunk_points

        # Shared between the executor thread and the planning worker: guarded by `lock`.
        self.lock = threading.RLock()
        self.generation = 0                # +1 on every hold: plans computed across a hold are discarded
        self.joint_positions: dict[str, float] = {}
        self.joint_efforts: dict[str, float] = {}
        self.state_time: float | None = None
        self.state_wall: float | None = None     # monotonic receipt time of the last joint state
        self.started_wall = time.monotonic()
        self.clock_value: float | None = None    # node clock at the last loop, and when it last moved
        self.clock_wall = time.monotonic()
        self.supervision_error = ""              # joint states / clock stopped (wall time), "" if fine
        self.latencies: deque = deque(maxlen=LATENCY_SAMPLES)   # s, command receipt -> trajectory publish
        self.last_ik_time = 0.0
        self._last_executing = -math.inf
        self.stream_target = None          # last stream target (arm joints), None when not streaming
        self.stream_count = 0
        self.stream_id = ""                # feedback id of the active stream
        self.stream_serial = 0
        self._stream_feedback_wall = -math.inf
        self.contact_since: float | None = None  # wall time a contact (effort at the limit) began
        self.forward = None                # (JointTrajectory, start time) streamed to a forward controller
        self.fjt_client = None
        self.fjt_goal = None
        self.hold_count = 0
        self.last_hold_reason = ""
        self.other_publishers = ""         # "topic: nodes" of foreign publishers on the controller topics
        self._graph_wall = -math.inf
        self.dropped = {"oversize": 0, "queue_full": 0, "stale": 0, "discarded_plans": 0}
        self._events = deque(maxlen=MAX_EVENTS_PER_SECOND)
        self.shutdown_hold_done = False
        self.scheduling = SchedulingResult(False, 0, 0, "not applied yet")

        self.feedback_pub = self.create_publisher(ExecutionFeedback, self.params.feedback_topic, FEEDBACK_QOS)
        self.arm_pub = self.create_publisher(JointTrajectoryMsg, topics.arm_topic, CONTROLLER_QOS)
        self.forward_pub = self.create_publisher(Float64MultiArray, topics.forward_position_topic, CONTROLLER_QOS)
        self.gripper_pub = self.create_publisher(JointTrajectoryMsg, topics.gripper_topic, CONTROLLER_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(JointState, topics.joint_states_topic, guarded(self, self._on_joint_state),
                                 JOINT_STATE_QOS, raw=True)
        self.create_subscription(ActionChunk, self.params.command_topic, guarded(self, self._on_command),
                                 COMMAND_QOS, raw=True)
        self.create_subscription(ActionChunk, self.params.stream_topic, guarded(self, self._on_stream),
                                 COMMAND_QOS, raw=True)
        for qos in (ESTOP_QOS, ESTOP_LATCHED_QOS):
            self.create_subscription(Bool, self.params.estop_topic, guarded(self, self._on_estop), qos)
        self.create_subscription(Header, self.params.heartbeat_topic, guarded(self, self._on_heartbeat),
                                 HEARTBEAT_QOS)
        self.pending_viewpoint = None      # newest valid request (request_id, header, position, quaternion)
        self._ee_T_camera = None
        self.create_subscription(ViewpointRequest, VIEWPOINT_TOPIC, guarded(self, self._on_viewpoint),
                                 COMMAND_QOS, raw=True)
        self.create_service(ResetEstop, "~/reset_estop", guarded_service(self, self._on_reset_estop))
        self.create_service(SwitchController, "~/switch_controller", guarded_service(self, self._on_switch))
        steady = Clock(clock_type=ClockType.STEADY_TIME)   # keeps ticking when /clock stops
        self.create_timer(1.0 / self.params.monitor_rate, guarded(self, self._on_loop), clock=steady)
        self.create_timer(1.0 / DIAGNOSTICS_RATE, guarded(self, self._on_diagnostics), clock=steady)

        self._commands: deque = deque()    # (bytes, monotonic receipt)
        self._streams: deque = deque()
        self._viewpoints: deque = deque(maxlen=1)
        self._refusals: deque = deque(maxlen=4 * COMMAND_QUEUE)   # (id prefix bytes, Rejection) to answer
        self._wake = threading.Condition()
        self._stop_worker = False
        self.worker = threading.Thread(target=self._work, name="router_planner", daemon=True)
        self.worker.start()
        self.get_logger().info(
            f"controller router for '{self.description.name}' ({self.controller}): {self.params.command_topic}, "
            f"{self.params.stream_topic} -> {topics.arm_topic}, {topics.gripper_topic}; "
            f"feedback on {self.params.feedback_topic}; autostart {self.params.autostart}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _apply_parameters(self, params: RouterParameters) -> None:
        """A validated `ros2 param set` of RouterParameters.DYNAMIC: used from the next plan/check on."""
        self.params = params
        self.guard.command_timeout, self.guard.heartbeat_timeout = params.command_timeout, params.heartbeat_timeout
        if self.core is not None:
            self.core.params = params
            self.core.timing = dataclasses.replace(self.core.timing, velocity_scale=params.velocity_scale,
                                                   acceleration_scale=params.acceleration_scale,
                                                   min_segment_time=params.min_segment_time)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            core = RouterCore(self.description, self.params)
        except Exception as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        with self.lock:
            self.core = core
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
        with self.lock:
            self.core = None
        self.lifecycle_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.shutdown_hold("router shutting down (lifecycle)")
        self.active = False
        self.lifecycle_state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def shutdown_hold(self, reason: str) -> None:
        """Going down: refuse everything, hold the arm at its measured position, once."""
        self.active = False
        if self.shutdown_hold_done:
            return
        self.shutdown_hold_done = True
        if not self.context.ok():
            self.get_logger().error(f"{reason}: middleware already shut down, cannot command a hold")
            return
        self._hold(reason, level=DiagnosticStatus.WARN)

    def stop_worker(self) -> None:
        with self._wake:
            self._stop_worker = True
            self._wake.notify_all()
        self.worker.join(timeout=2.0)

    def refusal(self) -> tuple[Failure, str] | None:
        if not self.active or self.core is None:
            return Failure.INACTIVE, (f"router is not active (lifecycle state '{self.lifecycle_state}'): "
                                      f"configure and activate it via /{NODE_NAME}/change_state")
        reason = self.guard.refusal()
        if reason:
            return Failure.HELD, reason
        if self.other_publishers:
            return Failure.HELD, f"another node commands the arm ({self.other_publishers}): refusing commands"
        if self.supervision_error:
            return Failure.NO_STATE, self.supervision_error
        return None

    def _event_allowed(self) -> bool:
        """Rate limit for per-message logs and diagnostics (a flood must not flood the logs)."""
        t = time.monotonic()
        if len(self._events) == self._events.maxlen and t - self._events[0] < 1.0:
            return False
        self._events.append(t)
        return True

    # ------------------------------------------------------------------ executor-thread callbacks
    def _on_joint_state(self, data: bytes) -> None:
        if len(data) > MAX_STATE_BYTES:
            self.dropped["oversize"] += 1
            return
        msg = deserialize_message(data, JointState)
        if len(msg.position) != len(msg.name):
            return
        efforts = len(msg.effort) == len(msg.name)
        with self.lock:
            for name, position in zip(msg.name, msg.position):
                self.joint_positions[name] = float(position)
            if efforts:
                for name, effort in zip(msg.name, msg.effort):
                    self.joint_efforts[name] = float(effort)
            self.state_time = self.now()
            self.state_wall = time.monotonic()

    def _enqueue(self, queue: deque, limit: int, item, refusal: Rejection | None = None) -> None:
        """Queue `item` for the planner; beyond `limit` the oldest is dropped (with `refusal`, the
        planner answers it: the executor thread never spends time on feedback for a flood)."""
        with self._wake:
            if len(queue) >= limit:
                dropped = queue.popleft()
                if refusal is not None:
                    self.dropped["queue_full"] += 1
                    self._refusals.append((dropped[0][:REFUSAL_PREFIX_BYTES], refusal))
                else:
                    self.dropped["stale"] += 1
            queue.append(item)
            self._wake.notify()

    def _refuse_oversize(self, data: bytes, what: str) -> None:
        self.dropped["oversize"] += 1
        with self._wake:
            self._refusals.append((data[:REFUSAL_PREFIX_BYTES], Rejection(
                Failure.INVALID_INPUT, f"{what} of {len(data)} bytes exceeds the router's cap of "
                f"{self.max_command_bytes} bytes (max_chunk_points {self.params.max_chunk_points})")))
            self._wake.notify()

    def _on_command(self, data: bytes) -> None:
        if len(data) > self.max_command_bytes:
            self._refuse_oversize(data, "message")
            return
        self._enqueue(self._commands, COMMAND_QUEUE, (data, time.monotonic()), Rejection(
            Failure.BUSY, f"router command queue full ({COMMAND_QUEUE} chunks waiting): refused"))

    def _on_stream(self, data: bytes) -> None:
        if len(data) > self.max_command_bytes:
            self._refuse_oversize(data, "stream command")
            return
        self._enqueue(self._streams, STREAM_QUEUE, (data, time.monotonic()))

    def _on_viewpoint(self, data: bytes) -> None:
        if len(data) > MAX_VIEWPOINT_BYTES:
            self.dropped["oversize"] += 1
            self._diagnose(DiagnosticStatus.ERROR, f"viewpoint request of {len(data)} bytes exceeds the cap of "
                           f"{MAX_VIEWPOINT_BYTES} bytes: dropped")
            return
        self._enqueue(self._viewpoints, 1, data)

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
            res.success, res.message = False, f"unknown controller '{short(name)}'; known: {list(CONTROLLERS)}"
            return res
        if name == "follow_joint_trajectory" and not control_msgs_available():
            res.success, res.message = False, "follow_joint_trajectory needs control_msgs, which is not importable"
            return res
        if name == self.controller:
            res.success, res.message = True, f"'{name}' already active"
            return res
        old = self.controller
        with self.lock:
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
        with self.lock:
            self._loop()

    def _loop(self) -> None:
        now, wall = self.now(), time.monotonic()
        if now != self.clock_value:
            self.clock_value, self.clock_wall = now, wall
        for reason in self.guard.check(now, wall):
            self._hold(reason)
        if wall - self._graph_wall >= GRAPH_CHECK_PERIOD:
            self._graph_wall = wall
            self._check_other_publishers()
        self._supervise(now, wall)
        if self.stream_id and self.guard.streaming and wall - self._stream_feedback_wall >= EXECUTING_PERIOD:
            self._stream_feedback_wall = wall
            self._publish_feedback(self.stream_id, 0, ExecutionFeedback.STATUS_EXECUTING,
                                   message=f"streaming: {self.stream_count} command(s) so far")
        if self.forward is not None:
            traj, start = self.forward
            t = now - start
            q = traj.sample(min(t, traj.duration))
            self.forward_pub.publish(Float64MultiArray(data=[float(x) for x in q]))
            if t >= traj.duration:
                self.forward = None
        if self.core is None or not self.core.busy:
            if self.pending_viewpoint is not None:
                with self._wake:
                    self._wake.notify()
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
                    self._diagnose(DiagnosticStatus.ERROR, f"chunk '{short(event.chunk_id)}' stopped: {event.message}",
                                   {"failure": Failure(event.failure).name})
                self._publish_finished(event)

    def _supervise(self, now: float, wall: float) -> None:
        """Wall-time checks the node clock cannot do: joint states or /clock stopped; contact while streaming."""
        timeout = self.params.state_timeout
        problem = ""
        if self.state_wall is not None and wall - self.state_wall > timeout:
            problem = f"joint states stopped: none for {wall - self.state_wall:.2f} s (state_timeout {timeout} s)"
        elif self.state_wall is not None and self.get_clock().clock_type == ClockType.ROS_TIME \
                and self.get_clock().ros_time_is_active and wall - self.clock_wall > timeout:
            problem = f"/clock stopped: sim time has not advanced for {wall - self.clock_wall:.2f} s"
        if problem and not self.supervision_error:
            self.get_logger().error(problem)
        self.supervision_error = problem
        if problem and self.core is not None and self.core.busy:
            self._stop_arm()
            finished = self.core.fail(now, Failure.NO_STATE, problem, self.joint_positions)
            self._diagnose(DiagnosticStatus.ERROR, f"chunk '{short(finished.chunk_id)}' failed: {problem}")
            self._publish_finished(finished)
        if problem and self.guard.streaming:
            self._hold(problem, level=DiagnosticStatus.ERROR)
        if self.core is None:
            return
        contact = self.core.stream_contact(self.joint_efforts, self._measured(), self.stream_target) \
            if self.guard.streaming else self.core.contact(self.joint_efforts)
        if contact is None:
            self.contact_since = None
            return
        if self.contact_since is None:
            self.contact_since = wall
        if self.guard.streaming and wall - self.contact_since >= self.params.contact_time:
            self.core.counters.contacts += 1
            self._hold(f"contact while streaming: {contact}", level=DiagnosticStatus.ERROR)

    def _measured(self):
        q = self.core.arm_state(self.joint_positions) if self.core else "no core"
        return None if isinstance(q, str) else q

    def _check_other_publishers(self) -> None:
        topics = self.description.controllers
        found = []
        for topic in (topics.arm_topic, topics.gripper_topic, topics.forward_position_topic):
            others = [f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in self.get_publishers_info_by_topic(topic)
                      if not (i.node_name == self.get_name() and i.node_namespace == self.get_namespace())]
            if others:
                found.append(f"{topic}: {', '.join(sorted(set(others)))}")
        text = "; ".join(found)
        if text and text != self.other_publishers:
            self.get_logger().error(f"other publisher(s) on the controller topics: {text}")
        self.other_publishers = text
        if text and ((self.core is not None and self.core.busy) or self.guard.streaming):
            self._hold(f"another node publishes on the controller topics ({text})", level=DiagnosticStatus.ERROR)

    # ------------------------------------------------------------------ planning worker thread
    def _work(self) -> None:
        while True:
            with self._wake:
                while not (self._stop_worker or self._commands or self._streams or self._viewpoints
                           or self._refusals or self._viewpoint_due()):
                    self._wake.wait(timeout=0.05)
                if self._stop_worker:
                    return
                refusals = list(self._refusals)
                self._refusals.clear()
                stream = self._streams.popleft() if self._streams else None
                command = self._commands.popleft() if stream is None and self._commands else None
                viewpoint = self._viewpoints.popleft() if stream is None and command is None and self._viewpoints \
                    else None
            for prefix, rejection in refusals:
                self._reject_id(peek_chunk_id(prefix), 0, rejection)
            try:
                if stream is not None:
                    self._process_stream(*stream)
                elif command is not None:
                    self._process_command(*command)
                elif viewpoint is not None:
                    self._accept_viewpoint(viewpoint)
                else:
                    self._run_viewpoint()
            except Exception as exc:   # noqa: BLE001 - counted and logged like any guarded callback
                guarded(self, self._raise, "planner")(exc)

    @staticmethod
    def _raise(exc: Exception) -> None:
        raise exc

    def _process_command(self, data: bytes, received: float, msg: ActionChunk | None = None) -> None:
        if msg is None:
            msg = deserialize_message(data, ActionChunk)
        with self.lock:
            generation = self.generation
            refused = self.refusal()
            if refused is not None:
                if self.core is not None:
                    self.core.counters.rejected += 1
                self._reject(msg, Rejection(*refused))
                return
            core = self.core
            positions = dict(self.joint_positions) or None
            state_age = None if self.state_time is None else self.now() - self.state_time
        try:
            result = core.submit(chunk_from_msg(msg), positions, state_age)
        except Exception as exc:  # never let a malformed message take the router down
            self.get_logger().error(f"chunk '{short(msg.chunk_id)}': internal error while checking it: {exc!r}")
            core.counters.rejected += 1
            result = Rejection(Failure.INVALID_INPUT, f"could not process chunk: {short(exc, 300)}")
        with self.lock:
            if isinstance(result, Duplicate):
                if result.finished is not None:
                    self._publish_finished(result.finished)
                self.get_logger().info(f"chunk '{short(msg.chunk_id)}' is a duplicate; ignored")
                return
            if isinstance(result, Rejection):
                self._reject(msg, result)
                return
            refused = self.refusal()
            if refused is None and self.generation != generation:
                refused = (Failure.HELD, f"discarded: the router held while it was planned ({self.last_hold_reason})")
            if refused is None and self.core is not core:
                refused = (Failure.INACTIVE, "discarded: the router was reconfigured while it was planned")
            if refused is None and core.busy:
                refused = (Failure.BUSY, f"busy: chunk '{short(core.active_chunk_id)}' is executing")
            if refused is not None:
                self.dropped["discarded_plans"] += 1
                core.counters.rejected += 1
                self._reject(msg, Rejection(*refused))
                return
            plan: Plan = result
            now = self.now()
            if self.stream_id:
                self._end_stream(ExecutionFeedback.STATUS_HELD, f"preempted by chunk '{short(plan.chunk_id)}'")
            self.stream_target = None
            self.guard.end_stream()
            self._publish_feedback(plan.chunk_id, plan.attempt, ExecutionFeedback.STATUS_ACCEPTED,
                                   message="; ".join(plan.notes), clamps=plan.clamps)
            self._send_arm(plan.arm, now)
            self.latencies.append(time.monotonic() - received)
            self.last_ik_time = plan.ik_time
            core.start(plan, now, dict(self.joint_efforts))
            self._last_executing = now
        self.get_logger().info(
            f"chunk '{short(plan.chunk_id)}' accepted: {len(plan.arm.times) - 1} point(s), {plan.arm.duration:.2f} s, "
            f"clamps {plan.clamps}, IK {plan.ik_time * 1000:.1f} ms, "
            f"latency {self.latencies[-1] * 1000:.1f} ms")

    def _stale(self, msg: ActionChunk, received: float) -> str:
        timeout = self.params.command_timeout
        waited = time.monotonic() - received
        if waited > timeout:
            return f"stale: waited {waited:.3f} s in the router (command_timeout {timeout} s)"
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if stamp != 0.0:
            age = self.now() - stamp
            if age > timeout:
                return f"stale: header.stamp is {age:.3f} s old (command_timeout {timeout} s)"
            if age < -timeout:
                return f"header.stamp is {-age:.3f} s in the future (more than command_timeout {timeout} s)"
        return ""

    def _process_stream(self, data: bytes, received: float) -> None:
        """Servo-style stream: one point per message, forwarded at once, watchdog-guarded."""
        msg = deserialize_message(data, ActionChunk)
        stale = self._stale(msg, received)
        if stale:
            self.dropped["stale"] += 1
            self._reject(msg, Rejection(Failure.STALE, stale))
            return
        with self.lock:
            generation = self.generation
            refused = self.refusal()
            if refused is None and self.core.busy:
                refused = (Failure.BUSY, f"busy: chunk '{short(self.core.active_chunk_id)}' is executing")
            if refused is not None:
                if self.core is not None:
                    self.core.counters.rejected += 1
                self._reject(msg, Rejection(*refused))
                return
            core = self.core
            positions = dict(self.joint_positions) or None
            last_target = self.stream_target
            state_age = None if self.state_time is None else self.now() - self.state_time
        try:
            result = core.plan_stream(chunk_from_msg(msg), positions, last_target, state_age)
        except Exception as exc:
            core.counters.rejected += 1
            result = Rejection(Failure.INVALID_INPUT, f"could not process stream command: {short(exc, 300)}")
        with self.lock:
            if not isinstance(result, Rejection):
                refused = self.refusal()
                if refused is None and self.generation != generation:
                    refused = (Failure.HELD, f"discarded: the router held meanwhile ({self.last_hold_reason})")
                if refused is None and core.busy:
                    refused = (Failure.BUSY, f"busy: chunk '{short(core.active_chunk_id)}' is executing")
                if refused is None:
                    stale = self._stale(msg, received)
                    if stale:
                        refused = (Failure.STALE, stale)
                if refused is None and self.contact_since is not None \
                        and time.monotonic() - self.contact_since >= self.params.contact_time:
                    contact = core.stream_contact(self.joint_efforts, self._measured(), result[0])
                    if contact:
                        refused = (Failure.CONTACT, f"{contact}: only commands moving away from it are accepted")
                if refused is not None:
                    result = Rejection(*refused)
            if isinstance(result, Rejection):
                self._reject(msg, result)
                return
            target, duration, _clamps = result
            now = self.now()
            if not self.stream_id:
                self.stream_serial += 1
                self.stream_id = f"stream-{self.stream_serial}"
                self._stream_feedback_wall = time.monotonic()
                self._publish_feedback(self.stream_id, 0, ExecutionFeedback.STATUS_ACCEPTED,
                                       message=f"stream started by command '{short(msg.chunk_id)}' "
                                               f"from '{short(msg.source)}'")
            self.stream_target = target
            self.guard.on_stream(now, received)
            self.stream_count += 1
            if self.controller == "forward_position":
                self.forward = None
                self.forward_pub.publish(Float64MultiArray(data=[float(x) for x in target]))
            else:
                traj = JointTrajectory(tuple(core.arm_joints), np.array([duration]), target[None, :],
                                       np.zeros((1, len(target))))
                self._send_arm(traj, now)
            self.latencies.append(time.monotonic() - received)

    def _end_stream(self, status: int, reason: str) -> None:
        if self.stream_id:
            self._publish_feedback(self.stream_id, 0, status, Failure.HELD if status == ExecutionFeedback.STATUS_HELD
                                   else Failure.NONE, reason)
        self.stream_id = ""

    def _accept_viewpoint(self, data: bytes) -> None:
        """Validate a request and keep the newest; it runs when no chunk executes and no stream is active."""
        msg = deserialize_message(data, ViewpointRequest)
        p, o = msg.camera_pose.position, msg.camera_pose.orientation
        limits = self.core.limits if self.core is not None else None
        if limits is None:
            result = Rejection(Failure.INACTIVE, "router is not configured")
        else:
            result = validate_viewpoint(msg.request_id, msg.camera, (p.x, p.y, p.z), (o.x, o.y, o.z, o.w),
                                        msg.header.frame_id, limits, VIEWPOINT_CAMERA)
        if isinstance(result, Rejection):
            self._reject_id(msg.request_id, 0, result, what="viewpoint")
            return
        with self.lock:
            self.pending_viewpoint = (msg.request_id, msg.header, result[0], result[1])
        self._run_viewpoint()

    def _viewpoint_due(self) -> bool:
        return (self.pending_viewpoint is not None and self.core is not None and not self.core.busy
                and not self.guard.streaming)

    def _run_viewpoint(self) -> None:
        with self.lock:
            if not self._viewpoint_due():
                return
            request_id, header, camera_pos, camera_quat = self.pending_viewpoint
            self.pending_viewpoint = None
            core = self.core
            q = core.arm_state(self.joint_positions)
        if self._ee_T_camera is None:
            self._ee_T_camera = ee_T_camera(core.kinematics, self.description.camera_link)
        pos, rot = ee_target_for_camera(tuple(camera_pos), quat_to_matrix(tuple(camera_quat)), self._ee_T_camera)
        start = core.kinematics.fk(q).translation if not isinstance(q, str) else pos
        distance = float(np.linalg.norm(pos - start))
        duration = max(VIEWPOINT_MIN_TIME, distance / VIEWPOINT_SPEED) if math.isfinite(distance) else math.nan
        if not math.isfinite(duration) or duration > self.params.max_chunk_duration:
            self._reject_id(request_id, 0, Rejection(Failure.LIMIT_VIOLATION,
                            f"viewpoint move of {distance:.3f} m is not feasible"), what="viewpoint")
            return
        quat = matrix_to_quat(rot)
        chunk = ActionChunk()
        chunk.header = header
        chunk.chunk_id = request_id
        chunk.source = "viewpoint"
        chunk.space = ActionChunk.SPACE_END_EFFECTOR
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quat)
        chunk.ee_poses = [pose]
        chunk.ee_times = [to_duration(duration)]
        chunk.gripper_command = ActionChunk.GRIPPER_NONE
        self.get_logger().info(f"viewpoint '{short(request_id)}': camera to "
                               f"({camera_pos[0]:.3f}, {camera_pos[1]:.3f}, {camera_pos[2]:.3f}) in {duration:.1f} s")
        self._process_command(b"", time.monotonic(), msg=chunk)

    # ------------------------------------------------------------------ output routing
    def _send_arm(self, traj: JointTrajectory, now: float) -> None:
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
        """Stop the arm (first), discard plans being computed, finish the executing chunk or stream
        as HELD, report on /diagnostics."""
        with self.lock:
            self._stop_arm()
            self.generation += 1
            self.hold_count += 1
            self.last_hold_reason = reason
            self.guard.end_stream()
            if self.core is not None:
                finished = self.core.hold(self.now(), reason, self.joint_positions)
                if finished is not None:
                    self._publish_finished(finished)
            self._end_stream(ExecutionFeedback.STATUS_HELD, reason)
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
                          gripper_width: float = math.nan, clamps: int = 0, executed=(), requested=()) -> None:
        fb = ExecutionFeedback()
        fb.header.stamp = self.get_clock().now().to_msg()
        fb.header.frame_id = self.description.base_frame
        fb.chunk_id = short(chunk_id, 2 * ECHO_ID_LENGTH)
        fb.attempt = int(attempt) & 0xFFFFFFFF
        fb.status = status
        fb.failure = int(failure)
        fb.message = short(message, MAX_FEEDBACK_MESSAGE)
        fb.tracking_error = float(tracking_error)
        fb.progress = float(progress)
        fb.gripper_width = float(gripper_width)
        fb.clamps = int(clamps)
        fb.rejections = self.core.counters.rejected if self.core else 0
        if executed:
            fb.joint_names = list(self.description.arm.joint_names)
            fb.executed_positions = [float(x) for x in executed]
            fb.requested_positions = [float(x) for x in requested]
        self.feedback_pub.publish(fb)

    def _publish_finished(self, f: Finished) -> None:
        status = (ExecutionFeedback.STATUS_SUCCEEDED if f.succeeded else
                  ExecutionFeedback.STATUS_HELD if f.held else ExecutionFeedback.STATUS_FAILED)
        self._publish_feedback(f.chunk_id, f.attempt, status, f.failure, f.message, f.tracking_error,
                               f.progress, f.gripper_width, f.clamps, f.executed_target, f.requested_target)
        text = (f"chunk '{short(f.chunk_id)}' {'succeeded' if f.succeeded else 'held' if f.held else 'failed'} "
                f"(tracking error {f.tracking_error:.4f} rad, gripper {f.gripper_width:.4f} m)"
                + (f": {f.message}" if f.message else ""))
        # One call site per severity: rclpy (Jazzy) raises if one call site logs at two severities.
        if f.succeeded:
            self.get_logger().info(text)
        else:
            self.get_logger().warn(text)

    def _reject(self, msg: ActionChunk, rejection: Rejection) -> None:
        self._reject_id(msg.chunk_id, msg.attempt, rejection, source=msg.source)

    def _reject_id(self, chunk_id: str, attempt: int, rejection: Rejection, source: str = "",
                   what: str = "chunk") -> None:
        """REJECTED feedback (always), an ERROR on /diagnostics and a log line (rate-limited)."""
        self._publish_feedback(chunk_id, attempt, ExecutionFeedback.STATUS_REJECTED, rejection.failure,
                               rejection.reason)
        if not self._event_allowed():
            return
        self._diagnose(DiagnosticStatus.ERROR, f"rejected {what} '{short(chunk_id)}': {short(rejection.reason, 500)}",
                       {"chunk_id": short(chunk_id), "source": short(source),
                        "failure": Failure(rejection.failure).name, "reason": short(rejection.reason, 500)})
        self.get_logger().error(f"{what} '{short(chunk_id)}' rejected ({Failure(rejection.failure).name}): "
                                f"{short(rejection.reason, 500)}")

    def _diagnose(self, level, message: str, values: dict | None = None) -> None:
        self._publish_diagnostics([diagnostic_status(level, STATUS_NAME, self.description.name, message, values)])

    def _publish_diagnostics(self, statuses: list[DiagnosticStatus]) -> None:
        publish_diagnostics(self.diagnostics_pub, self.get_clock().now().to_msg(), statuses)

    def latency_stats(self) -> dict[str, float]:
        lat = list(self.latencies)
        if not lat:
            return {"last": math.nan, "mean": math.nan, "max": math.nan, "count": 0}
        return {"last": lat[-1], "mean": sum(lat) / len(lat), "max": max(lat), "count": len(lat)}

    def _on_diagnostics(self) -> None:
        with self.lock:
            self._diagnostics()

    def _diagnostics(self) -> None:
        lat = self.latency_stats()
        refused = self.refusal()
        active = self.core.active_chunk_id if self.core else None
        waited = time.monotonic() - self.started_wall
        if self.other_publishers:
            level, state = DiagnosticStatus.ERROR, f"another node commands the arm: {self.other_publishers}"
        elif self.supervision_error:
            level, state = DiagnosticStatus.ERROR, self.supervision_error
        elif self.state_time is None:
            level, state = ((DiagnosticStatus.WARN, "no joint state yet") if waited < NO_STATE_ERROR_AFTER else
                            (DiagnosticStatus.ERROR, f"no joint state yet after {waited:.1f} s"))
        else:
            level = DiagnosticStatus.WARN if refused else DiagnosticStatus.OK
            state = (f"holding: {refused[1]}" if refused else
                     f"executing '{short(active)}'" if active else "streaming" if self.guard.streaming else "idle")
        values = {"lifecycle": self.lifecycle_state, "controller": self.controller,
                  "estop_latched": self.guard.estop_latched, "heartbeat_lost": self.guard.heartbeat_lost,
                  "holds": self.hold_count, "last_hold_reason": self.last_hold_reason,
                  "stream_commands": self.stream_count, "realtime_scheduling": self.scheduling.message,
                  "other_publishers": self.other_publishers, "supervision": self.supervision_error or "ok",
                  "dropped_oversize": self.dropped["oversize"], "dropped_queue_full": self.dropped["queue_full"],
                  "dropped_stale": self.dropped["stale"], "discarded_plans": self.dropped["discarded_plans"],
                  "callback_errors": sum(getattr(self, "callback_errors", {}).values())}
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
        self._publish_diagnostics([diagnostic_status(level, STATUS_NAME, self.description.name, state, values,
                                                     float_format=".3f")])


def _install_shutdown_hold(node: ControllerRouter) -> None:
    """SIGINT/SIGTERM: hold the arm at once, while the middleware is still up, then hand the signal
    to run_node's handler, which stops the spin loop (on_exit, destroy, exit code 0)."""
    previous = {}

    def on_signal(signum, frame):
        node.shutdown_hold(f"router shutting down ({signal.Signals(signum).name})")
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)


def _on_start(node: ControllerRouter) -> int:
    """Shutdown hold on signals; a short interpreter switch interval (the planner thread must not
    keep the e-stop waiting); real-time scheduling if asked (the middleware's threads exist now);
    then, like nav2's lifecycle manager, configure and activate (unless autostart is false)."""
    _install_shutdown_hold(node)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    node.scheduling = apply_realtime_priority(node.params.realtime_priority)
    if node.scheduling.applied and node.params.realtime_priority > 1:
        # The planner stays SCHED_FIFO (never preempted by ordinary processes while it holds the
        # interpreter lock) but one below the executor thread serving the e-stop.
        os.sched_setscheduler(node.worker.native_id, os.SCHED_FIFO,
                              os.sched_param(node.params.realtime_priority - 1))
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


def _on_exit(node: ControllerRouter) -> None:
    """Leaving spin (signal, Ctrl-C, bringup stopping the stack): hold first, then stop the planner."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not cut the hold short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if node.core is not None and node.core.busy:
        node.get_logger().warn(f"shutting down while chunk '{short(node.core.active_chunk_id)}' executes: holding")
    node.shutdown_hold("router shutting down")
    node.stop_worker()


def main(args=None) -> int:
    return run_node(NODE_NAME, ControllerRouter, args, on_start=_on_start, on_exit=_on_exit)


if __name__ == "__main__":
    sys.exit(main())
