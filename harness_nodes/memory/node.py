"""Memory tracker node `memory_tracker`: keeps facts about the world with their validity.

Subscribes
  /harness/observations   robot_harness/SceneObservation   perception (facts, negative evidence)
  /joint_states           sensor_msgs/JointState           tool pose (FK) and gripper width: swept
                                                           path of every motion, grasp and release
  /harness/execution      robot_harness/ExecutionFeedback  when a chunk ran (path -> invalidation)
  /harness/command        robot_harness/ActionChunk        the chunk's intended path (fallback)
  /cameras/<cam>/camera_info, /cameras/<cam>/depth         frustum and occlusion for negative evidence
Publishes
  /harness/memory          robot_harness/MemorySnapshot     rate-limited (snapshot_rate)
  /harness/memory/events   robot_harness/MemoryEvent        created/verified/stale/invalidated/contradicted
  /harness/memory/markers  visualization_msgs/MarkerArray   spheres coloured by confidence (red 0 .. green 1)
  /harness/memory/recheck  robot_harness/ViewpointRequest   stale/uncertain facts the task depends on
  /diagnostics             diagnostic_msgs/DiagnosticArray  counters, latent hits/misses, rejected input
Services
  /harness/memory/query         robot_harness/QueryMemory
  /harness/memory/assert        robot_harness/AssertFact
  /harness/memory/latent/store  robot_harness/StoreLatent
  /harness/memory/latent/fetch  robot_harness/FetchLatent

Callbacks convert and validate (service requests and every string and array size through the
pydantic models of boundary.py: a region centre of 1e308, a latent shape whose product overflows or
a 5 MB `source` is refused with a reason), then call the pure `MemoryCore`; every callback is
guarded (common/callbacks.py), its error counts are on /diagnostics. Every change (facts and latent
entries) is committed to SQLite before the callback returns (a kill -9 loses no fact and no stored
encoding; the recency of fetched entries is written by the next tick). All times are the node clock
(`use_sim_time:=true` follows /clock).

The tool's swept path is measured from /joint_states (forward kinematics of the robot description):
a chunk's path while it runs, and any motion no chunk accounts for (`MeasuredMotion`) once the arm
comes to rest. The gripper width is the description's width for the measured gripper joints (a
width table on the xArm6). Observation frames: `world_frames` plus the robot's base frame.

The database path must be a store or absent: a directory or a 0-byte file stops the node at
start-up with the path named (exit 3). SIGINT (once or twice) and SIGTERM flush, close the store
and exit 0 (common/node_main.py).
"""
from __future__ import annotations

import math
import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, Pose
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from harness_nodes.common.callbacks import guarded, guarded_service
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS, LATCHED
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.stamps import to_seconds, to_time
from harness_nodes.memory.boundary import (MAX_NAME, FactStrings, LatentKey, LatentStore, Limits, QueryRequest,
                                           validate)
from harness_nodes.memory.config import MemoryParameters
from harness_nodes.memory.core import InputError, MemoryCore
from harness_nodes.memory.motion import MeasuredMotion
from harness_nodes.memory.latent import StaleEncoding
from harness_nodes.common.geometry import CameraModel
from harness_nodes.memory.facts import Fact, Kind, ObjectObs, SceneObs, State
from harness_nodes.memory.persistence import SqliteStore
from harness_nodes.common.kinematics import ArmKinematics
from robot_harness.msg import (ActionChunk, ExecutionFeedback, MemoryEvent, MemoryFact, MemorySnapshot,
                               SceneObservation, ViewpointRequest)
from robot_harness.srv import AssertFact, FetchLatent, QueryMemory, StoreLatent

NODE_NAME = "memory_tracker"
DIAGNOSTICS_TOPIC = "/diagnostics"
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
EVENTS_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
STATUS_NAME = "memory_tracker"
# A held chunk (e-stop, watchdog) moved part of the way: its measured path counts as a failed one's.
TERMINAL = (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED, ExecutionFeedback.STATUS_HELD)
STARTED = (ExecutionFeedback.STATUS_ACCEPTED, ExecutionFeedback.STATUS_EXECUTING)
MAX_CHUNKS_REMEMBERED = 64
MAX_PATH_POINTS = 2000
MAX_CAMERAS = 64            # distinct observation cameras whose pose is remembered (re-check planning)
MAX_IMAGE_PIXELS = 4096 * 4096


def _xyz(p) -> tuple:
    return (float(p.x), float(p.y), float(p.z))


def _quat(o) -> tuple:
    return (float(o.x), float(o.y), float(o.z), float(o.w))


def scene_from_msg(msg: SceneObservation) -> SceneObs:
    """ROS message -> plain data; the core validates everything."""
    objects = []
    for o in msg.objects:
        stamp = to_seconds(o.header.stamp) if (o.header.stamp.sec or o.header.stamp.nanosec) else None
        objects.append(ObjectObs(object_id=o.object_id, label=o.label, status=int(o.status),
                                 position=_xyz(o.pose.position), orientation=_quat(o.pose.orientation),
                                 covariance=tuple(float(v) for v in o.position_covariance),
                                 identity_confidence=float(o.identity_confidence),
                                 visible_fraction=float(o.visible_fraction), pixel_support=int(o.pixel_support),
                                 camera=o.camera, frame_id=o.header.frame_id, stamp=stamp))
    return SceneObs(camera=msg.camera, stamp=to_seconds(msg.header.stamp), frame_id=msg.header.frame_id,
                    camera_position=_xyz(msg.camera_pose.position),
                    camera_orientation=_quat(msg.camera_pose.orientation), objects=objects,
                    latency=float(msg.latency))


def fact_to_msg(f: Fact, stamp: Time, frame: str) -> MemoryFact:
    m = MemoryFact()
    m.header.stamp = stamp
    m.header.frame_id = frame
    m.fact_id = f.fact_id
    m.kind = int(f.kind)
    m.subject = f.subject
    m.value = f.value
    if f.has_pose:
        m.pose.position = Point(x=f.position[0], y=f.position[1], z=f.position[2])
    else:
        m.pose.position = Point(x=math.nan, y=math.nan, z=math.nan)
    m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = f.orientation
    m.position_covariance = [float(v) for v in f.covariance]
    m.confidence = float(f.confidence)
    m.first_seen = to_time(f.first_seen)
    m.last_verified = to_time(f.last_verified)
    m.source = f.source
    m.camera = f.camera
    m.state = int(f.state)
    m.invalidated_by = f.invalidated_by
    return m


def fact_from_msg(m: MemoryFact) -> Fact:
    return Fact(fact_id=m.fact_id, kind=m.kind, subject=m.subject, value=m.value,
                position=_xyz(m.pose.position), orientation=_quat(m.pose.orientation),
                covariance=tuple(float(v) for v in m.position_covariance), confidence=float(m.confidence),
                source=m.source, camera=m.camera, state=m.state, invalidated_by=m.invalidated_by)


def default_db_path() -> Path:
    ros_home = os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    return Path(ros_home) / "robot_harness" / "memory.sqlite"


class MemoryTracker(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        p = declare_and_load(self, MemoryParameters, self._apply_parameters)
        self.description = d = load_robot_description(p.robot)
        self.params = p = self._with_base_frame(p)
        self.limits = Limits.of(p)
        self.kinematics = ArmKinematics.from_description(d)
        self.frame = p.world_frames[0]
        self.store = None
        self.db_error = ""
        if p.persist:
            path = Path(p.db_path).expanduser() if p.db_path else default_db_path()
            self.store = SqliteStore(path, p.db_synchronous.upper())
            if self.store.recovered_from is not None:
                self.db_error = self.store.error
                self.get_logger().error(self.db_error)
        self.core = MemoryCore(p, self.store, self.now())
        if self.store is not None:
            n = self.core.latent_loaded
            self.get_logger().info(f"memory store {self.store.path}: reloaded {self.core.loaded} fact(s) and {n} "
                                   f"latent entr{'y' if n == 1 else 'ies'} ({self.core.latent_foreign_dropped} "
                                   f"dropped: their region's facts were changed by another writer), "
                                   f"downtime {getattr(self.core, 'downtime', 0.0):.1f} s")

        # state fed by callbacks
        self.joint_positions: dict[str, float] = {}
        self.camera_models: dict[str, CameraModel] = {}
        self._camera_info_problem: dict[str, str] = {}
        self.camera_poses: dict[str, tuple] = {}
        self.depth: dict[str, tuple[float, np.ndarray]] = {}
        self.active: OrderedDict[str, list] = OrderedDict()       # chunk_id -> swept tool path
        self.intended: OrderedDict[str, list] = OrderedDict()     # chunk_id -> commanded ee positions
        self.finished: OrderedDict[str, bool] = OrderedDict()
        self.rejections: list[str] = []
        self.callback_errors: Counter = Counter()
        self.last_rejection = ""
        self.known_joints = set(d.all_joint_names)
        self.motion = MeasuredMotion(p.ee_path_min_step, p.motion_settle_time, MAX_PATH_POINTS)

        self.snapshot_pub = self.create_publisher(MemorySnapshot, p.snapshot_topic, LATCHED)
        self.events_pub = self.create_publisher(MemoryEvent, p.events_topic, EVENTS_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, p.markers_topic, LATCHED)
        self.recheck_pub = self.create_publisher(ViewpointRequest, p.recheck_topic, RELIABLE)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(SceneObservation, p.observation_topic, guarded(self, self._on_observation),
                                 RELIABLE)
        self.create_subscription(JointState, d.controllers.joint_states_topic, guarded(self, self._on_joint_state),
                                 JOINT_STATE_QOS)
        self.create_subscription(ExecutionFeedback, p.execution_topic, guarded(self, self._on_execution), RELIABLE)
        self.create_subscription(ActionChunk, p.command_topic, guarded(self, self._on_command), RELIABLE)
        for cam in p.cameras:
            base = f"{p.camera_topic_prefix}/{cam}"
            self.create_subscription(CameraInfo, f"{base}/camera_info",
                                     guarded(self, lambda m, c=cam: self._on_camera_info(c, m), "camera_info"),
                                     qos_profile_sensor_data)
            self.create_subscription(Image, f"{base}/depth", guarded(self, lambda m, c=cam: self._on_depth(c, m),
                                                                     "depth"), qos_profile_sensor_data)
        prefix = p.service_prefix.rstrip("/")
        self.create_service(QueryMemory, f"{prefix}/query", guarded_service(self, self._on_query))
        self.create_service(AssertFact, f"{prefix}/assert", guarded_service(self, self._on_assert))
        self.create_service(StoreLatent, f"{prefix}/latent/store", guarded_service(self, self._on_latent_store))
        self.create_service(FetchLatent, f"{prefix}/latent/fetch", guarded_service(self, self._on_latent_fetch))
        self.create_timer(1.0 / p.tick_rate, guarded(self, self._on_tick))
        self.create_timer(1.0 / p.diagnostics_rate, guarded(self, self._on_diagnostics))
        if p.snapshot_rate > 0:
            self.create_timer(1.0 / p.snapshot_rate, guarded(self, self._publish_snapshot))
        if p.markers_rate > 0:
            self.create_timer(1.0 / p.markers_rate, guarded(self, self._publish_markers))
        if p.recheck_rate > 0:
            self.create_timer(1.0 / p.recheck_rate, guarded(self, self._publish_rechecks))
        self._publish_events()
        self.get_logger().info(f"memory tracker: {p.observation_topic} -> {p.snapshot_topic}, {p.events_topic}; "
                               f"{len(self.core)} fact(s)")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _with_base_frame(self, params: MemoryParameters) -> MemoryParameters:
        """The robot's base frame is where its poses are expressed: always an accepted frame."""
        frames = list(dict.fromkeys([*(f for f in params.world_frames if f), self.description.base_frame]))
        return params.model_copy(update={"world_frames": frames})

    def _apply_parameters(self, params: MemoryParameters) -> None:
        """A validated `ros2 param set` of MemoryParameters.DYNAMIC: node and core read it from now on."""
        self.params = self.core.p = self._with_base_frame(params)
        self.limits = Limits.of(self.params)

    # ------------------------------------------------------------------ callbacks
    def _commit(self) -> None:
        """Persist every change made by this callback, then publish its events."""
        now = self.now()
        try:
            self.core.flush(now)
        except Exception as exc:   # disk full, locked, ...: keep running, say so loudly
            self.db_error = f"persistence failed: {exc!r}"
            self.get_logger().error(self.db_error)
        self._publish_events()

    def _on_observation(self, msg: SceneObservation) -> None:
        now = self.now()
        try:
            scene = scene_from_msg(msg)
            model = self.camera_models.get(scene.camera)
            depth = None
            d = self.depth.get(scene.camera)
            if d is not None and abs(d[0] - scene.stamp) <= self.params.depth_max_age:
                depth = d[1]
            self.core.ingest(scene, now, model, depth)
            if scene.camera in self.camera_poses or len(self.camera_poses) < MAX_CAMERAS:
                self.camera_poses[scene.camera] = (scene.camera_position, scene.camera_orientation)
        except InputError as exc:
            self._reject(f"observation from camera '{msg.camera[:64]}'", str(exc))
            return
        except Exception as exc:   # never let a malformed message take the node down
            self._reject(f"observation from camera '{msg.camera[:64]}'", f"could not process: {exc!r}")
            return
        self._commit()

    def _on_camera_info(self, cam: str, msg: CameraInfo) -> None:
        k = list(msg.k)
        if len(k) != 9 or not all(math.isfinite(v) for v in k) or k[0] <= 0 or k[4] <= 0 \
                or msg.width == 0 or msg.height == 0:
            return
        try:    # lens distortion too: negative evidence must project where the camera really sees
            model = CameraModel(int(msg.width), int(msg.height), k[0], k[4], k[2], k[5],
                                distortion_model=msg.distortion_model, d=tuple(msg.d))
        except ValueError as exc:
            # No model, no negative evidence from this camera (never lower confidence on a guess).
            self.camera_models.pop(cam, None)
            if self._camera_info_problem.get(cam) != str(exc):      # once per problem, not per frame
                self._camera_info_problem[cam] = str(exc)
                self._reject(f"camera_info of '{cam}'", str(exc))
            return
        self._camera_info_problem.pop(cam, None)
        self.camera_models[cam] = model

    def _on_depth(self, cam: str, msg: Image) -> None:
        if msg.encoding != "32FC1" or msg.width == 0 or msg.height == 0 or msg.width * msg.height > MAX_IMAGE_PIXELS \
                or len(msg.data) != msg.height * msg.step or msg.step < 4 * msg.width:
            return
        arr = np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(msg.height, msg.step // 4)[:, :msg.width]
        self.depth[cam] = (to_seconds(msg.header.stamp), arr)

    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            return
        for name, position in zip(msg.name, msg.position):
            if name in self.known_joints:           # unknown names are not kept (bounded state)
                self.joint_positions[name] = float(position)
        arm = self.description.arm.joint_names
        if not all(j in self.joint_positions for j in arm):
            return
        q = [self.joint_positions[j] for j in arm]
        if not all(math.isfinite(v) for v in q):
            return
        now = self.now()
        pose = self.kinematics.fk(q)
        pos = np.array(pose.translation, dtype=float)
        grip = self.description.gripper
        fingers = [self.joint_positions.get(f, math.nan) for f in grip.joint_names]
        width = grip.width_from_joints(fingers) if all(math.isfinite(v) for v in fingers) else math.nan
        for path in self.active.values():
            if len(path) < MAX_PATH_POINTS and (not path or np.linalg.norm(pos - path[-1]) >= self.params.ee_path_min_step):
                path.append(pos)
        active = next(reversed(self.active), "") if self.active else ""
        had = self.core.held is not None
        n0 = len(self.core.events)
        self.core.update_gripper(pos, np.array(pose.rotation), width, now, active)
        changed = len(self.core.events) != n0 or (had and self.core.held is None)
        if self.active:
            self.motion.rest(pos)                   # the running chunk records this motion
        else:
            changed |= self._apply_measured_motion(self.motion.update(pos, now), now)
        if changed:
            self._commit()

    def _apply_measured_motion(self, path, now: float) -> bool:
        """A motion no chunk accounted for has ended: it sweeps facts as a chunk does."""
        if path is None or len(path) < 2:
            return False
        name = f"motion-{self.motion.segments}"
        n = self.core.apply_action(name, path, now, "measured", "joint_states")
        held = self.core.check_grasp(name, now)
        self.get_logger().info(f"arm moved without a chunk ({name}): {len(path)} path point(s), {n} fact(s) "
                               f"affected" + (f", now holding '{held}'" if held else ""))
        return True

    def _on_command(self, msg: ActionChunk) -> None:
        if msg.space != ActionChunk.SPACE_END_EFFECTOR or len(msg.ee_poses) > MAX_PATH_POINTS \
                or not msg.chunk_id or len(msg.chunk_id) > MAX_NAME:
            return
        pts = [_xyz(p.position) for p in msg.ee_poses]
        self.intended[msg.chunk_id] = pts
        while len(self.intended) > MAX_CHUNKS_REMEMBERED:
            self.intended.popitem(last=False)

    def _ee_position(self) -> np.ndarray | None:
        return None if self.core.ee is None else self.core.ee[0]

    def _on_execution(self, msg: ExecutionFeedback) -> None:
        cid = msg.chunk_id
        if not cid or cid in self.finished:
            return
        if len(cid) > MAX_NAME:
            self._reject("execution feedback", f"chunk_id longer than {MAX_NAME} characters")
            return
        if msg.status in STARTED:
            if cid not in self.active:
                ee = self._ee_position()
                # Motion measured before the feedback arrived belongs to this chunk.
                before = self.motion.take()
                self.active[cid] = before or ([] if ee is None else [ee])
                while len(self.active) > MAX_CHUNKS_REMEMBERED:
                    self.active.popitem(last=False)
            return
        if msg.status not in TERMINAL or (msg.status == ExecutionFeedback.STATUS_HELD and cid not in self.active):
            self.active.pop(cid, None)      # never moved (a hold of a chunk never started, a rejection)
            return
        self.finished[cid] = True
        while len(self.finished) > MAX_CHUNKS_REMEMBERED:
            self.finished.popitem(last=False)
        path = list(self.active.pop(cid, []))
        if len(path) < 2:
            path = self.motion.take() or path       # feedback missed the start: the measured motion
        ee = self._ee_position()
        if not self.active:
            self.motion.rest(ee)
        if ee is not None:
            path.append(ee)
        if len(path) < 2 and cid in self.intended:
            path = [*path, *self.intended[cid]]
        contacts = []
        if msg.failure == ExecutionFeedback.FAILURE_CONTACT and ee is not None:
            contacts.append(ee)
        now = self.now()
        outcome = {ExecutionFeedback.STATUS_SUCCEEDED: "succeeded",
                   ExecutionFeedback.STATUS_HELD: "held"}.get(msg.status, "failed")
        try:
            n = self.core.apply_action(cid, np.array(path) if path else np.empty((0, 3)), now, outcome,
                                       "controller_router", contacts)
            held = self.core.check_grasp(cid, now)
        except Exception as exc:
            self._reject(f"execution feedback of '{cid}'", f"could not process: {exc!r}")
            return
        self.get_logger().info(f"chunk '{cid}' {outcome}: {len(path)} path point(s), {n} fact(s) affected"
                               + (f", now holding '{held}'" if held else ""))
        self._commit()

    def _on_query(self, req: QueryMemory.Request, res: QueryMemory.Response) -> QueryMemory.Response:
        now = self.now()
        try:
            kind = None if req.kind == QueryMemory.Request.KIND_ANY else int(req.kind)
            if kind is not None and kind not in [int(k) for k in Kind]:
                raise InputError(f"unknown kind {req.kind}")
            q = validate(QueryRequest, self.limits, subject=req.subject, kind=kind,
                         center=_xyz(req.region_center) if req.use_region else None,
                         radius=float(req.region_radius) if req.use_region else 0.0,
                         min_confidence=float(req.min_confidence))
            # Fact objects only for the facts answered (at most snapshot_max_facts), built vectorised.
            facts, total = self.core.query_page(now, q.subject, q.kind, q.center, q.radius, q.min_confidence,
                                                limit=self.params.snapshot_max_facts)
        except (InputError, ValueError) as exc:
            res.success, res.message = False, f"query rejected: {exc}"
            return res
        stamp = self.get_clock().now().to_msg()
        res.facts = [fact_to_msg(f, stamp, self.frame) for f in facts]
        res.success = True
        res.message = f"{total} fact(s)" + (" (truncated)" if total > len(res.facts) else "")
        return res

    def _on_assert(self, req: AssertFact.Request, res: AssertFact.Response) -> AssertFact.Response:
        try:
            f = req.fact
            validate(FactStrings, fact_id=f.fact_id, subject=f.subject, source=f.source, camera=f.camera,
                     invalidated_by=f.invalidated_by)
            fid = self.core.assert_fact(fact_from_msg(req.fact), self.now())
        except (InputError, ValueError, TypeError) as exc:
            self._reject("asserted fact", str(exc))
            res.success, res.message = False, str(exc)
            return res
        self._commit()
        res.success, res.fact_id, res.message = True, fid, "stored"
        return res

    def _on_latent_store(self, req: StoreLatent.Request, res: StoreLatent.Response) -> StoreLatent.Response:
        try:
            r = validate(LatentStore, self.limits, camera=req.camera, model=req.model,
                         center=_xyz(req.region_center), radius=float(req.region_radius),
                         stamp=to_seconds(req.stamp), shape=list(req.shape), length=len(req.data))
            key = self.core.latent_store(r.camera, r.model, r.center, r.radius, r.stamp, r.shape,
                                         np.asarray(req.data, np.float32), self.now())
        except StaleEncoding as exc:      # a store that was on its way when the region changed
            res.success, res.message = False, str(exc)
            return res
        except (InputError, ValueError) as exc:
            self._reject("latent store", str(exc))
            res.success, res.message = False, str(exc)
            return res
        self._commit()
        res.success, res.entry_id, res.message = True, key, "stored"
        return res

    def _on_latent_fetch(self, req: FetchLatent.Request, res: FetchLatent.Response) -> FetchLatent.Response:
        try:
            k = validate(LatentKey, self.limits, camera=req.camera, model=req.model, center=_xyz(req.region_center),
                         radius=float(req.region_radius))
            e = self.core.latent_fetch(k.camera, k.model, k.center, k.radius)
        except (InputError, ValueError) as exc:
            res.hit, res.message = False, f"fetch rejected: {exc}"
            res.hits, res.misses = self.core.latent.hits, self.core.latent.misses
            return res
        if e is None:
            res.hit, res.message = False, "miss"
        else:
            res.hit, res.message, res.entry_id = True, "hit", e.entry_id
            res.stamp = to_time(e.stamp)
            res.shape = list(e.shape)
            res.data = e.data
        res.hits, res.misses = self.core.latent.hits, self.core.latent.misses
        return res

    def _on_tick(self) -> None:
        now = self.now()
        self.core.tick(now)
        if not self.active:           # the arm came to rest and no joint state told us yet
            self._apply_measured_motion(self.motion.poll(now), now)
        self._commit()

    # ------------------------------------------------------------------ output
    def _reject(self, what: str, reason: str) -> None:
        reason = reason[:500]
        self.last_rejection = f"{what} rejected: {reason}"
        self.core.counters.rejected += 0 if "could not process" not in reason else 1
        self.get_logger().warning(self.last_rejection)
        self._publish_diagnostics([diagnostic_status(DiagnosticStatus.ERROR, STATUS_NAME, "memory",
                                                     self.last_rejection[:500], {"reason": reason[:500]})])

    def _publish_events(self) -> None:
        for e in self.core.drain_events():
            m = MemoryEvent()
            m.header.stamp = to_time(e.stamp)
            m.header.frame_id = self.frame
            m.event = int(e.event)
            m.fact_id = e.fact_id
            m.subject = e.subject
            m.reason = e.reason
            m.confidence_before = float(e.confidence_before)
            m.confidence_after = float(e.confidence_after)
            self.events_pub.publish(m)

    def _snapshot_facts(self, limit: int) -> list[Fact]:
        t = self.core.table
        now = self.now()
        live = t.live_slots()
        # Current beliefs first, superseded (contradicted) copies last.
        live = live[np.argsort(t.state[live] == State.CONTRADICTED, kind="stable")][:limit]
        return t.facts(live, now)

    def build_snapshot(self) -> MemorySnapshot:
        stamp = self.get_clock().now().to_msg()
        snap = MemorySnapshot()
        snap.header.stamp = stamp
        snap.header.frame_id = self.frame
        snap.facts = [fact_to_msg(f, stamp, self.frame) for f in self._snapshot_facts(self.params.snapshot_max_facts)]
        return snap

    def _publish_snapshot(self) -> None:
        if self.snapshot_pub.get_subscription_count() == 0:    # ~65 us per fact to build: only when wanted
            return
        self.snapshot_pub.publish(self.build_snapshot())

    def _publish_markers(self) -> None:
        if self.markers_pub.get_subscription_count() == 0:
            return
        stamp = self.get_clock().now().to_msg()
        arr = MarkerArray()
        clear = Marker()
        clear.header.stamp, clear.header.frame_id = stamp, self.frame
        clear.action = Marker.DELETEALL
        arr.markers.append(clear)
        facts = [f for f in self._snapshot_facts(self.params.markers_max * 2)
                 if f.has_pose and f.kind in (Kind.VISUAL, Kind.ENVIRONMENT)][:self.params.markers_max]
        for i, f in enumerate(facts):
            c = max(0.0, min(1.0, f.confidence))
            alpha = {State.VALID: 0.9, State.STALE: 0.5, State.INVALID: 0.3, State.CONTRADICTED: 0.15}[f.state]
            sphere = Marker()
            sphere.header.stamp, sphere.header.frame_id = stamp, self.frame
            sphere.ns, sphere.id, sphere.type, sphere.action = "facts", i, Marker.SPHERE, Marker.ADD
            sphere.pose.position = Point(x=f.position[0], y=f.position[1], z=f.position[2])
            sphere.pose.orientation.w = 1.0
            sigma = math.sqrt(max(f.covariance[0], f.covariance[4], f.covariance[8], 0.0))
            size = max(0.03, min(0.5, 4.0 * sigma))
            sphere.scale.x = sphere.scale.y = sphere.scale.z = size
            sphere.color = ColorRGBA(r=1.0 - c, g=c, b=0.1, a=alpha)
            text = Marker()
            text.header.stamp, text.header.frame_id = stamp, self.frame
            text.ns, text.id, text.type, text.action = "labels", i, Marker.TEXT_VIEW_FACING, Marker.ADD
            text.pose.position = Point(x=f.position[0], y=f.position[1], z=f.position[2] + size)
            text.pose.orientation.w = 1.0
            text.scale.z = 0.02
            text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=0.9)
            text.text = f"{f.subject} {c:.2f} {f.state.name.lower()}"
            arr.markers += [sphere, text]
        self.markers_pub.publish(arr)

    def _publish_rechecks(self) -> None:
        now = self.now()
        cams = {name: (*self.camera_poses[name], self.camera_models.get(name)) for name in self.camera_poses}
        for r in self.core.recheck_requests(now, cams):
            m = ViewpointRequest()
            m.header.stamp = to_time(now)
            m.header.frame_id = self.frame
            m.request_id = r.request_id
            m.camera = r.camera
            m.camera_pose = Pose()
            m.camera_pose.position = Point(x=float(r.camera_position[0]), y=float(r.camera_position[1]),
                                           z=float(r.camera_position[2]))
            (m.camera_pose.orientation.x, m.camera_pose.orientation.y, m.camera_pose.orientation.z,
             m.camera_pose.orientation.w) = (float(v) for v in r.camera_orientation)
            m.look_at = Point(x=float(r.look_at[0]), y=float(r.look_at[1]), z=float(r.look_at[2]))
            m.subjects = list(r.subjects)
            m.reason = r.reason[:1000]
            m.expected_information_gain = float(r.information_gain)
            m.estimated_cost = float(r.cost)
            self.recheck_pub.publish(m)

    def _publish_diagnostics(self, statuses: list[DiagnosticStatus]) -> None:
        publish_diagnostics(self.diagnostics_pub, self.get_clock().now().to_msg(), statuses)

    def _on_diagnostics(self) -> None:
        c = self.core.counters
        t = self.core.table
        live = t.live_slots()
        states = np.bincount(t.state[live], minlength=4) if len(live) else np.zeros(4, int)
        level = DiagnosticStatus.ERROR if self.db_error else DiagnosticStatus.OK
        msg = self.db_error or f"{len(self.core)} fact(s)"
        values = {
            "facts": len(self.core), "valid": int(states[0]), "stale": int(states[1]), "invalid": int(states[2]),
            "contradicted": int(states[3]), "observations": c.observations, "rejected": c.rejected,
            "created": c.created, "verified": c.verified, "contradictions": c.contradicted,
            "invalidations": c.invalidated, "stale_events": c.stale, "negative_evidence": c.negative_evidence,
            "actions": c.actions, "grasps": c.grasps, "releases": c.releases, "pruned": c.pruned,
            "held": self.core.held.fact_id if self.core.held else "",
            "latent_entries": len(self.core.latent.entries), "latent_hits": self.core.latent.hits,
            "latent_misses": self.core.latent.misses, "latent_dropped": self.core.latent.dropped,
            "latent_refused_stale": self.core.latent.refused_stale,
            "flush_ms_mean": 1000 * c.flush_seconds / max(1, c.flushes),
            "db_path": str(self.store.path) if self.store else "", "last_rejection": self.last_rejection[:300],
            "measured_motions": self.motion.segments,
            "callback_errors": sum(self.callback_errors.values()),
            "callback_errors_by_callback": dict(self.callback_errors),
        }
        self._publish_diagnostics([diagnostic_status(level, STATUS_NAME, "memory", msg[:500], values,
                                                     float_format=".3f")])

    def close(self) -> None:
        """Last flush and close of the store (run once by run_node before the node is destroyed)."""
        try:
            self.core.flush(self.now())
        except Exception as exc:
            self.get_logger().error(f"final flush failed: {exc!r}")
        if self.store is not None:
            self.store.close()
            self.get_logger().info(f"memory store {self.store.path} closed ({len(self.core)} fact(s))")


def main(args=None) -> int:
    return run_node(NODE_NAME, MemoryTracker, args, on_exit=MemoryTracker.close)


if __name__ == "__main__":
    sys.exit(main())
