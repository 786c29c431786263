"""ROS 2 node `sim`: the PyBullet world (`world.py`) speaking what a ros2_control Panda speaks.

The sim drives time: a dedicated thread steps physics at `physics_rate` (paced by
`real_time_factor`, 0 = as fast as possible), publishes /clock and stamps every message with sim
time. The ROS executor runs in the main thread, so subscriptions and services stay responsive.
Cameras render in a separate process (see render_worker.py), only when someone subscribes.

Topics (all stamps = sim time, frame `world` unless stated):
  pub /clock                          rosgraph_msgs/Clock       reliable, depth 10, every physics step
  pub /joint_states                   sensor_msgs/JointState    reliable, depth 10, joint_state_rate
  pub /sim/ground_truth               robot_harness/SimGroundTruth  reliable, depth 10, ground_truth_rate
  pub /cameras/<cam>/image_raw        sensor_msgs/Image rgb8         sensor-data QoS, camera_rate
  pub /cameras/<cam>/depth            sensor_msgs/Image 32FC1 (m)    sensor-data QoS
  pub /cameras/<cam>/camera_info      sensor_msgs/CameraInfo plumb_bob, frame <cam>_optical_frame
  pub /cameras/<cam>/pose             geometry_msgs/PoseStamped of the optical frame in world
  pub /diagnostics                    diagnostic_msgs/DiagnosticArray (1 Hz status, rejected commands)
  sub controllers.arm_topic / gripper_topic   trajectory_msgs/JointTrajectory (header.stamp 0 = now)
  sub controllers.forward_position_topic      std_msgs/Float64MultiArray (arm joint positions, at once)
  srv /sim/control                    robot_harness/SimControl

Every callback is guarded (common/callbacks.py): malformed input is rejected with a reason on
/diagnostics (trajectories: unknown/duplicate joints, wrong lengths, non-finite or out-of-limit
positions, too many points, all points in the past; MOVE_OBJECT: non-finite, beyond the cell or
inside the robot's base) and never stops the sim; callback error counts are in the 1 Hz status.
SIGINT (once or repeated) and SIGTERM stop the physics thread and the render worker and exit 0.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter
from typing import ClassVar

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from typing import Annotated

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from harness_nodes.common.geometry import matrix_to_quat
from harness_nodes.common.handover import HandoverLock
from harness_nodes.common.callbacks import guarded, guarded_service
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.messages import pose_msg
from harness_nodes.common.node_main import run_node
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.stamps import to_seconds, to_time
from harness_nodes.common.camera_mount import CAMERAS, camera_list
from harness_nodes.sim.world import MOVE_LIMIT, SCENARIOS, SimWorld, TrajectoryPoint
from robot_harness.msg import SimGroundTruth
from robot_harness.srv import SimControl

NODE_NAME = "sim"
WORLD_FRAME = "world"
GROUND_TRUTH_TOPIC = "sim/ground_truth"
CONTROL_SERVICE = "sim/control"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
MAX_LAG = 0.25   # wall s behind schedule before the sim gives up catching up
MAX_NAME = 128   # characters of an object id or scenario name in /sim/control
MAX_POINTS = 10000   # points of one trajectory
MAX_JOINTS = 64      # joint names of one trajectory


class SimParameters(BaseModel):
    """Parameters of the `sim` node (config/sim.yaml)."""
    # Changeable at run time (`ros2 param set`), read by the physics loop; every other field is read-only.
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({"real_time_factor", "joint_state_rate", "ground_truth_rate"})
    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml")
    scenario: str = Field("nominal", min_length=1, description=f"one of {list(SCENARIOS)}")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="jitters the scenario's object poses")
    gui: bool = Field(False, description="PyBullet GUI window (needs a display)")
    physics_rate: float = Field(240.0, ge=60.0, le=2000.0, description="Hz of sim time")
    real_time_factor: float = Field(1.0, ge=0.0, le=100.0, description="sim s per wall s; 0 = max")
    joint_state_rate: float = Field(100.0, gt=0.0, le=1000.0, description="Hz of sim time")
    camera_rate: float = Field(5.0, ge=0.0, le=60.0, description="Hz of sim time per camera; 0 = off")
    ground_truth_rate: float = Field(10.0, gt=0.0, le=1000.0, description="Hz of sim time")
    cameras: list[str] = Field(default_factory=lambda: ["scene", "wrist"],
                               description=f"subset of {list(CAMERAS)}")
    image_width: int = Field(320, ge=16, le=1920, description="pixels")
    image_height: int = Field(240, ge=16, le=1080, description="pixels")

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, v: str) -> str:
        if v not in SCENARIOS:
            raise ValueError(f"unknown scenario '{v}', known: {list(SCENARIOS)}")
        return v

    @field_validator("cameras", mode="before")
    @classmethod
    def _known_cameras(cls, v):
        return camera_list(v)

    @model_validator(mode="after")
    def _rates(self) -> "SimParameters":
        for name in ("joint_state_rate", "camera_rate", "ground_truth_rate"):
            if getattr(self, name) > self.physics_rate:
                raise ValueError(f"{name} ({getattr(self, name)}) must be <= physics_rate "
                                 f"({self.physics_rate})")
        return self


Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-MOVE_LIMIT, le=MOVE_LIMIT)]
QuaternionValue = Annotated[float, Field(allow_inf_nan=False, ge=-1.5, le=1.5)]


class ControlRequest(BaseModel):
    """/sim/control at the boundary: names bounded, MOVE_OBJECT's pose finite, inside the cell and
    with a usable quaternion (the world refuses poses inside the robot's base)."""
    command: int = Field(ge=0, le=255)
    scenario: str = Field("", max_length=MAX_NAME)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    object_id: str = Field("", max_length=MAX_NAME)
    position: tuple[Coordinate, Coordinate, Coordinate] = (0.0, 0.0, 0.0)
    quaternion: tuple[QuaternionValue, QuaternionValue, QuaternionValue, QuaternionValue] = (0.0, 0.0, 0.0, 1.0)

    @model_validator(mode="after")
    def _move(self) -> "ControlRequest":
        if self.command == SimControl.Request.COMMAND_MOVE_OBJECT:
            norm = math.sqrt(sum(v * v for v in self.quaternion))
            if abs(norm - 1.0) > 0.1:
                raise ValueError(f"orientation quaternion has norm {norm:.3f}, expected 1")
        return self

    @classmethod
    def from_msg(cls, req: SimControl.Request) -> "ControlRequest":
        pos, q = req.pose.position, req.pose.orientation
        try:
            return cls(command=req.command, scenario=req.scenario, seed=req.seed, object_id=req.object_id,
                       position=(pos.x, pos.y, pos.z), quaternion=(q.x, q.y, q.z, q.w))
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
                                       for e in exc.errors())[:500]) from None


def validate_trajectory(msg: JointTrajectory, known: list[str], lower: list[float],
                        upper: list[float]) -> str | None:
    """None if `msg` is acceptable for joints `known` with position limits, else why not."""
    names = list(msg.joint_names)
    if not names:
        return "no joint_names"
    if len(names) > MAX_JOINTS or len(msg.points) > MAX_POINTS:
        return f"{len(names)} joint names / {len(msg.points)} points (max {MAX_JOINTS} / {MAX_POINTS})"
    unknown = [n for n in names if n not in known]
    if unknown:
        return f"unknown joint(s) {unknown}; this controller has {known}"
    if len(set(names)) != len(names):
        return f"duplicate joint names {names}"
    index = [known.index(n) for n in names]
    last = -math.inf
    for k, pt in enumerate(msg.points):
        if len(pt.positions) != len(names):
            return f"point {k}: {len(pt.positions)} positions for {len(names)} joints"
        for field in ("velocities", "accelerations", "effort"):
            values = getattr(pt, field)
            if len(values) not in (0, len(names)):
                return f"point {k}: {len(values)} {field} for {len(names)} joints"
            if not all(math.isfinite(v) for v in values):
                return f"point {k}: non-finite {field}"
        for i, q in zip(index, pt.positions):
            if not math.isfinite(q):
                return f"point {k}: non-finite position for {known[i]}"
            if not lower[i] - 1e-6 <= q <= upper[i] + 1e-6:
                return f"point {k}: {known[i]} = {q:.4f} outside [{lower[i]:.4f}, {upper[i]:.4f}]"
        t = to_seconds(pt.time_from_start) if pt.time_from_start.sec >= 0 else -1.0
        if t < 0 or (k > 0 and t <= last):
            return f"point {k}: time_from_start {t:.3f} s must be >= 0 and strictly increasing"
        last = t
    return None


def trajectory_points(msg: JointTrajectory) -> list[TrajectoryPoint]:
    return [TrajectoryPoint(list(pt.positions), to_seconds(pt.time_from_start),
                            list(pt.velocities) if len(pt.velocities) else None)
            for pt in msg.points]


class SimNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = declare_and_load(self, SimParameters, self._apply_parameters)
        prm = self.params
        self.description = load_robot_description(prm.robot)
        self.lock = HandoverLock()
        self.world = SimWorld(self.description, physics_rate=prm.physics_rate,
                              image_width=prm.image_width, image_height=prm.image_height,
                              scenario=prm.scenario, seed=prm.seed).connect(gui=prm.gui)
        ctrl = self.description.controllers
        self.clock_pub = self.create_publisher(Clock, "/clock", RELIABLE)
        self.joint_pub = self.create_publisher(JointState, ctrl.joint_states_topic, RELIABLE)
        self.gt_pub = self.create_publisher(SimGroundTruth, GROUND_TRUTH_TOPIC, RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self.camera_names = list(prm.cameras) if prm.camera_rate > 0 else []
        self.cam_pubs = {}
        for cam in self.camera_names:
            base = f"cameras/{cam}"
            self.cam_pubs[cam] = {
                "image": self.create_publisher(Image, f"{base}/image_raw", qos_profile_sensor_data),
                "depth": self.create_publisher(Image, f"{base}/depth", qos_profile_sensor_data),
                "info": self.create_publisher(CameraInfo, f"{base}/camera_info", qos_profile_sensor_data),
                "pose": self.create_publisher(PoseStamped, f"{base}/pose", qos_profile_sensor_data),
            }
        arm, grip = self.description.arm, self.description.gripper
        self._arm_limits = (list(arm.joint_names), list(arm.position_lower), list(arm.position_upper))
        n = len(grip.joint_names)
        lo, hi = grip.position_bounds
        self._grip_limits = (list(grip.joint_names), [lo] * n, [hi] * n)
        self.create_subscription(JointTrajectory, ctrl.arm_topic, guarded(self, self._on_arm), RELIABLE)
        self.create_subscription(JointTrajectory, ctrl.gripper_topic, guarded(self, self._on_gripper), RELIABLE)
        # forward_position_controller: one position per arm joint, applied at once.
        self.create_subscription(Float64MultiArray, ctrl.forward_position_topic, guarded(self, self._on_forward),
                                 RELIABLE)
        self.create_service(SimControl, CONTROL_SERVICE, guarded_service(self, self._on_control))
        self.renderer = None
        if self.camera_names:
            from harness_nodes.sim.render_worker import RenderWorker
            try:
                self.renderer = RenderWorker(str(prm.robot), prm.image_width, prm.image_height)
            except Exception as exc:   # degrade: no cameras rather than no sim
                self.get_logger().error(f"camera render worker failed, cameras disabled: {exc}")
        self.rejected = 0
        self.callback_errors = Counter()
        self.measured_rtf = 0.0
        self._running = False
        self._thread = threading.Thread(target=self._run, name="sim_physics", daemon=True)
        self.get_logger().info(
            f"sim: robot={prm.robot} scenario={prm.scenario} seed={prm.seed} "
            f"physics={prm.physics_rate} Hz rtf={prm.real_time_factor} cameras={self.camera_names}")

    def _apply_parameters(self, params: SimParameters) -> None:
        """A validated `ros2 param set` of SimParameters.DYNAMIC: the physics loop picks it up."""
        self.params = params

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._running = True
        self._thread.start()

    def shutdown(self) -> None:
        self._running = False
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
        with self.lock:
            self.world.disconnect()

    # ------------------------------------------------------------------ command callbacks
    def _on_arm(self, msg: JointTrajectory) -> None:
        self._on_trajectory(msg, "arm_controller", self._arm_limits, self.world.set_arm_trajectory)

    def _on_gripper(self, msg: JointTrajectory) -> None:
        self._on_trajectory(msg, "gripper_controller", self._grip_limits,
                            self.world.set_gripper_trajectory)

    def _on_forward(self, msg: Float64MultiArray) -> None:
        names, lower, upper = self._arm_limits
        values = list(msg.data)
        error = None
        if len(values) != len(names):
            error = f"{len(values)} values for {len(names)} joints"
        elif not all(math.isfinite(v) for v in values):
            error = "non-finite value"
        else:
            with self.lock:
                error = self.world.set_arm_trajectory(names, [TrajectoryPoint(values, 0.0)])
        if error is not None:
            self.rejected += 1
            self._diagnose(DiagnosticStatus.ERROR, "sim: forward_position_controller", f"rejected command: {error}")

    def _on_trajectory(self, msg, controller, limits, setter) -> None:
        error = validate_trajectory(msg, *limits)
        if error is None:
            start = to_seconds(msg.header.stamp)
            try:
                with self.lock:
                    error = setter(list(msg.joint_names), trajectory_points(msg),
                                   None if start == 0.0 else start)
            except Exception as exc:  # never let a bad message take the sim down
                error = f"internal error: {exc!r}"

        if error is not None:
            error = error[:500]
            self.rejected += 1
            self.get_logger().error(f"{controller}: rejected trajectory: {error}")
            self._diagnose(DiagnosticStatus.ERROR, f"sim: {controller}",
                           f"rejected trajectory: {error}")

    def _on_control(self, req: SimControl.Request, res: SimControl.Response) -> SimControl.Response:
        try:
            with self.lock:
                res.message = self._control(req)
            res.success = True
        except (KeyError, ValueError, RuntimeError) as exc:
            res.success = False
            res.message = str(exc).strip("'\"")
        except Exception as exc:  # never let a bad request take the sim down
            res.success = False
            res.message = f"internal error: {exc!r}"
        level = DiagnosticStatus.OK if res.success else DiagnosticStatus.WARN
        self._diagnose(level, "sim: control", f"command {req.command}: {res.message}"[:500])
        if res.success:
            self.get_logger().info(f"/sim/control command {req.command}: {res.message}")
        else:
            self.get_logger().warning(f"/sim/control command {req.command} failed: {res.message}")
        return res

    def _control(self, req: SimControl.Request) -> str:
        w = self.world
        if req.command == SimControl.Request.COMMAND_RESET and req.seed < 0:
            raise ValueError(f"seed must be >= 0, got {req.seed}")
        r = ControlRequest.from_msg(req)
        if r.command == SimControl.Request.COMMAND_RESET:
            scenario = r.scenario or w.scenario
            w.reset(scenario, r.seed)
            return f"reset scenario '{scenario}' seed {r.seed}"
        if r.command == SimControl.Request.COMMAND_MOVE_OBJECT:
            w.move_object(r.object_id, r.position, r.quaternion)
            return f"moved {r.object_id}"
        if req.command == SimControl.Request.COMMAND_REMOVE_OBJECT:
            w.remove_object(r.object_id)
            return f"removed {r.object_id}"
        if req.command == SimControl.Request.COMMAND_INJECT_GRASP_SLIP:
            return f"{w.inject_grasp_slip()} slips out of the gripper"
        raise ValueError(f"unknown command {req.command}")

    # ------------------------------------------------------------------ physics thread
    def _run(self) -> None:
        prm = self.params
        rtf = prm.real_time_factor
        periods = {"js": 1.0 / prm.joint_state_rate, "gt": 1.0 / prm.ground_truth_rate}
        cam_period = 1.0 / prm.camera_rate if prm.camera_rate > 0 else math.inf
        due = {"js": 0.0, "gt": 0.0, "cam": 0.0}
        with self.lock:
            sim0 = self.world.sim_time
        wall0 = time.monotonic()
        meas_wall, meas_sim = wall0, sim0
        clock = Clock()
        try:
            while self._running and rclpy.ok(context=self.context):
                self.lock.yield_to_waiters()
                with self.lock.loop():
                    if self.world.client is None:
                        break
                    self.world.step()
                    t = self.world.sim_time
                    js = gt = snapshot = None
                    if t + 1e-9 >= due["js"]:
                        js = self.world.joint_states()
                        due["js"] = max(due["js"] + periods["js"], t)
                    if t + 1e-9 >= due["gt"]:
                        gt = self.world.ground_truth()
                        due["gt"] = max(due["gt"] + periods["gt"], t)
                    cams_due = []
                    if self.camera_names and t + 1e-9 >= due["cam"]:
                        due["cam"] = max(due["cam"] + cam_period, t)
                        cams_due = self.camera_names
                        render = [c for c in cams_due if self._wants_images(c)]
                        if render and self.renderer is not None and not self.renderer.busy:
                            snapshot = (self.world.snapshot(), render)
                        poses = {c: self.world.camera_pose(c) for c in cams_due}
                stamp = to_time(t)
                clock.clock = stamp
                self.clock_pub.publish(clock)
                if js is not None:
                    self._publish_joint_states(js, stamp)
                if gt is not None:
                    self._publish_ground_truth(gt, stamp)
                for cam in cams_due:
                    self._publish_camera_meta(cam, stamp, poses[cam])
                self._service_renderer(snapshot, t)
                # pacing
                now = time.monotonic()
                if now - meas_wall >= 1.0:
                    self.measured_rtf = (t - meas_sim) / (now - meas_wall)
                    meas_wall, meas_sim = now, t
                    self._status()
                if self.params is not prm:   # changed by `ros2 param set`: new pace and rates from now on
                    prm, rtf, wall0, sim0 = self.params, self.params.real_time_factor, now, t
                    periods = {"js": 1.0 / prm.joint_state_rate, "gt": 1.0 / prm.ground_truth_rate}
                if rtf > 0:
                    ahead = wall0 + (t - sim0) / rtf - now
                    if ahead > 0:
                        time.sleep(ahead)
                    elif ahead < -MAX_LAG:
                        wall0, sim0 = now, t   # can't keep up: run slower than asked, don't burst
        except Exception as exc:  # pragma: no cover - report instead of dying silently
            if self._running and rclpy.ok(context=self.context):
                self.get_logger().fatal(f"physics thread crashed: {exc!r}")
                raise

    def _wants_images(self, cam: str) -> bool:
        pubs = self.cam_pubs[cam]
        return pubs["image"].get_subscription_count() > 0 or pubs["depth"].get_subscription_count() > 0

    def _service_renderer(self, request, t: float) -> None:
        if self.renderer is None:
            return
        try:
            result = self.renderer.poll()
            if result is not None:
                self._publish_images(result)
            if request is not None:
                snapshot, cams = request
                self.renderer.submit(snapshot, cams, t)
        except (EOFError, OSError, BrokenPipeError) as exc:
            self.get_logger().error(f"camera render worker died, cameras disabled: {exc!r}")
            self.renderer = None

    # ------------------------------------------------------------------ publishing
    def _publish_joint_states(self, js, stamp: Time) -> None:
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = js.names
        msg.position = js.positions.tolist()
        msg.velocity = js.velocities.tolist()
        msg.effort = js.efforts.tolist()
        self.joint_pub.publish(msg)

    def _publish_ground_truth(self, gt, stamp: Time) -> None:
        msg = SimGroundTruth()
        msg.header.stamp = stamp
        msg.header.frame_id = WORLD_FRAME
        msg.object_ids = list(gt.object_ids)
        msg.poses = [pose_msg(pos, q) for pos, q in zip(gt.positions, gt.quaternions)]
        msg.held_object = gt.held_object
        msg.in_tray = list(gt.in_tray)
        self.gt_pub.publish(msg)

    def _publish_camera_meta(self, cam: str, stamp: Time, pose) -> None:
        pubs = self.cam_pubs[cam]
        if pubs["info"].get_subscription_count() > 0:
            pubs["info"].publish(self.camera_info(cam, stamp))
        if pubs["pose"].get_subscription_count() > 0:
            position, rot = pose
            msg = PoseStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = WORLD_FRAME
            msg.pose = pose_msg(position, matrix_to_quat(rot))
            pubs["pose"].publish(msg)

    def camera_info(self, cam: str, stamp: Time) -> CameraInfo:
        fx, fy, cx, cy = self.world.intrinsics(cam)
        msg = CameraInfo()
        msg.header.stamp = stamp
        msg.header.frame_id = f"{cam}_optical_frame"
        msg.width, msg.height = self.params.image_width, self.params.image_height
        msg.distortion_model = "plumb_bob"
        msg.d = [0.0] * 5
        msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg

    def _publish_images(self, result: dict) -> None:
        stamp = to_time(result["stamp"])
        for cam, r in result["images"].items():
            pubs = self.cam_pubs[cam]
            frame = f"{cam}_optical_frame"
            h, w = r["depth"].shape
            img = Image()
            img.header.stamp, img.header.frame_id = stamp, frame
            img.height, img.width, img.encoding, img.step = h, w, "rgb8", 3 * w
            img.is_bigendian = 0
            img.data = r["rgb"].tobytes()
            pubs["image"].publish(img)
            depth = Image()
            depth.header.stamp, depth.header.frame_id = stamp, frame
            depth.height, depth.width, depth.encoding, depth.step = h, w, "32FC1", 4 * w
            depth.is_bigendian = int(sys.byteorder == "big")
            depth.data = r["depth"].astype("float32").tobytes()
            pubs["depth"].publish(depth)

    def _diagnose(self, level, name: str, message: str, values: dict | None = None) -> None:
        publish_diagnostics(self.diag_pub, to_time(self.world.sim_time),
                            [diagnostic_status(level, name, "pybullet", message, values)])

    def _status(self) -> None:
        self._diagnose(DiagnosticStatus.OK, "sim: physics", "running", {
            "sim_time": f"{self.world.sim_time:.3f}",
            "real_time_factor_target": self.params.real_time_factor,
            "real_time_factor_measured": f"{self.measured_rtf:.2f}",
            "rejected_trajectories": self.rejected,
            "callback_errors": sum(self.callback_errors.values()),
            "callback_errors_by_callback": dict(self.callback_errors),
            "scenario": self.world.scenario, "seed": self.world.seed})


def main(args=None) -> int:
    # The physics thread starts once the node exists and stops (joined, render worker closed,
    # world disconnected) before the node is destroyed: one SIGINT, two or a SIGTERM exit 0.
    return run_node(NODE_NAME, SimNode, args, on_start=lambda node: node.start() or 0,
                    on_exit=SimNode.shutdown)


if __name__ == "__main__":
    sys.exit(main())
