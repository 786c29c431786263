"""Perception node `perception`: RGB-D frames of any number of cameras -> SceneObservations, negative
evidence for remembered objects, and where to move the wrist camera next.

Subscribes (per camera in `cameras`, sensor-data QoS, newest only)
  <prefix>/<cam>/image_raw    sensor_msgs/Image rgb8|bgr8
  <prefix>/<cam>/depth        sensor_msgs/Image 32FC1 (m) | 16UC1 (mm)
  <prefix>/<cam>/camera_info  sensor_msgs/CameraInfo K, D: plumb_bob | rational_polynomial | equidistant,
                                                      empty/zero D = undistorted (R, P unused: image_raw)
  <prefix>/<cam>/pose         geometry_msgs/PoseStamped, optical frame in `world_frame`
  /harness/memory             robot_harness/MemorySnapshot   expected objects (negative evidence, targets)
  /harness/memory/recheck     robot_harness/ViewpointRequest facts memory wants re-checked
  /harness/execution          robot_harness/ExecutionFeedback router busy?  outcome of our requests
  /joint_states               sensor_msgs/JointState          IK seed and motion cost of viewpoints
Publishes
  /harness/observations       robot_harness/SceneObservation one per processed frame (latency = now - stamp)
  /harness/viewpoint          robot_harness/ViewpointRequest wrist-camera pose to take (router executes it)
  /diagnostics                diagnostic_msgs/DiagnosticArray rejected frames (ERROR), latency, drops,
                                                              camera ranking, viewpoint verification

Frames are matched by stamp (colour + depth, camera pose within `max_pose_lag`); only the newest
complete frame per camera waits to be processed, older ones are dropped and counted. Frames still
waiting for their pair are bounded (`max_pending_frames` per camera and kind, oldest dropped first,
counted as `<cam>_unmatched_dropped` on /diagnostics), so unmatched colour or depth frames cannot
grow memory. Every callback is guarded (common/callbacks.py; error counts on /diagnostics); strings
and arrays from outside are capped (images by `max_image_pixels`, snapshot facts, re-check subjects,
joint names). Callbacks convert and validate; the pure cores (core.py, viewpoint.py) do the work.
SIGINT (once or twice) and SIGTERM exit 0 (common/node_main.py).
"""
from __future__ import annotations

import math
import sys
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, PoseStamped
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CameraInfo, Image, JointState

from harness_nodes.common.callbacks import guarded
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.messages import pose_msg
from harness_nodes.common.node_main import run_node
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS, LATCHED
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.stamps import to_seconds, to_time
from harness_nodes.perception.config import PerceptionParameters
from harness_nodes.perception.core import (ExpectedFact, Frame, FrameError, PerceptionCore,
                                           camera_model_from_info, decode_depth, decode_rgb, pose_from)
from harness_nodes.common.geometry import matrix_to_quat
from harness_nodes.perception.viewpoint import Target, ViewpointPlanner, search_target
from robot_harness.msg import (ExecutionFeedback, MemorySnapshot, ObjectObservation, SceneObservation,
                               ViewpointRequest)

NODE_NAME = "perception"
DIAGNOSTICS_TOPIC = "/diagnostics"
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
NEWEST = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
POSE_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
STATUS_NAME = "perception"
KIND_VISUAL, STATE_VALID, STATE_STALE = 0, 0, 1
TERMINAL = (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED, ExecutionFeedback.STATUS_REJECTED,
            ExecutionFeedback.STATUS_HELD)
LATENCY_SAMPLES = 500
ROUTER_QUIET = 1.0       # s without router activity before it counts as idle
MAX_NAME = 256           # characters of a subject or id taken from another node
MAX_FACTS = 10000        # facts of one memory snapshot considered
MAX_RECHECKS = 256       # subjects remembered as re-check requests
RECHECK_MEMORY = 30.0    # s a re-check request keeps its subject a target


def sigma_of(cov) -> float:
    c = np.asarray(cov, dtype=float).reshape(3, 3)
    return float(math.sqrt(max(np.max(np.diag(c)), 0.0)))


class CameraState:
    def __init__(self):
        self.info = None               # CameraInfo
        self.poses: deque = deque(maxlen=50)   # (stamp, position, quaternion)
        self.rgb: dict[float, Image] = {}
        self.depth: dict[float, Image] = {}
        self.ready = None              # (stamp, rgb msg, depth msg, wall time ready)
        self.processed = self.dropped = self.rejected = self.unmatched_dropped = 0
        self.last_pose = None          # (position, rotation) of the last processed frame
        self.model = None


class PerceptionNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = p = declare_and_load(self, PerceptionParameters, self._apply_parameters)
        self.core = PerceptionCore(p)
        self.description = load_robot_description(p.robot)
        self.arm_joints = list(self.description.arm.joint_names)
        self.planner = self._make_planner()
        self.sizes = dict(zip(p.object_ids, p.object_sizes))
        self.cams = {c: CameraState() for c in p.cameras}
        self.facts: list = []
        self.rechecks: dict[str, float] = {}     # subject -> wall time requested
        self.joints: dict[str, float] = {}
        self.router_activity = -math.inf          # wall time of the last non-terminal feedback
        self.request = None                       # outstanding viewpoint request (dict)
        self.failed_views: list[np.ndarray] = []
        self.verifications: list[dict] = []
        self.latencies: deque = deque(maxlen=LATENCY_SAMPLES)
        self.process_times: deque = deque(maxlen=LATENCY_SAMPLES)
        self.last_rejection = ""
        self.ranking: list = []
        self.requests_sent = 0
        self.callback_errors: Counter = Counter()

        self.obs_pub = self.create_publisher(SceneObservation, p.observation_topic, RELIABLE)
        self.view_pub = self.create_publisher(ViewpointRequest, p.viewpoint_topic, RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        for cam in p.cameras:
            base = f"{p.camera_topic_prefix}/{cam}"
            self.create_subscription(Image, f"{base}/image_raw",
                                     guarded(self, lambda m, c=cam: self._on_image(c, m, "rgb"), "image_raw"),
                                     qos_profile_sensor_data)
            self.create_subscription(Image, f"{base}/depth",
                                     guarded(self, lambda m, c=cam: self._on_image(c, m, "depth"), "depth"),
                                     qos_profile_sensor_data)
            self.create_subscription(CameraInfo, f"{base}/camera_info",
                                     guarded(self, lambda m, c=cam: self._on_info(c, m), "camera_info"),
                                     qos_profile_sensor_data)
            self.create_subscription(PoseStamped, f"{base}/pose",
                                     guarded(self, lambda m, c=cam: self._on_pose(c, m), "pose"), POSE_QOS)
        self.create_subscription(MemorySnapshot, p.memory_topic, guarded(self, self._on_memory), LATCHED)
        self.create_subscription(ViewpointRequest, p.recheck_topic, guarded(self, self._on_recheck), RELIABLE)
        self.create_subscription(ExecutionFeedback, p.execution_topic, guarded(self, self._on_feedback), RELIABLE)
        self.create_subscription(JointState, self.description.controllers.joint_states_topic,
                                 guarded(self, self._on_joints), JOINT_STATE_QOS)
        self.create_timer(1.0 / p.process_rate, guarded(self, self._on_process))
        self.create_timer(1.0 / p.diagnostics_rate, guarded(self, self._on_diagnostics))
        if p.viewpoint_rate > 0 and self.planner is not None:
            self.create_timer(1.0 / p.viewpoint_rate, guarded(self, self._on_viewpoint))
        self.get_logger().info(f"perception: cameras {list(p.cameras)} -> {p.observation_topic}; viewpoints "
                               f"{'on ' + p.viewpoint_topic if self.planner else 'off'}")

    def _make_planner(self):
        p = self.params
        if p.movable_camera not in p.cameras or p.viewpoint_rate <= 0:
            return None
        from harness_nodes.common.camera_mount import ee_T_camera
        from harness_nodes.common.kinematics import ArmKinematics
        kin = ArmKinematics.from_description(self.description)
        return ViewpointPlanner(p, kin, ee_T_camera(kin, self.description.camera_link),
                                self.description.arm.velocity_limit)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _apply_parameters(self, params: PerceptionParameters) -> None:
        """A validated `ros2 param set` of PerceptionParameters.DYNAMIC: node, core and planner read it from now on."""
        self.params = self.core.p = params
        if self.planner is not None:
            self.planner.p = params

    # ------------------------------------------------------------------ input callbacks
    def _on_image(self, cam: str, msg: Image, kind: str) -> None:
        st = self.cams[cam]
        if msg.width * msg.height > self.params.max_image_pixels or len(msg.data) > 8 * self.params.max_image_pixels:
            self._reject(cam, f"{kind} image {msg.width}x{msg.height} ({len(msg.data)} bytes) larger than "
                              f"max_image_pixels {self.params.max_image_pixels}")
            return
        t = to_seconds(msg.header.stamp)
        store, other = (st.rgb, st.depth) if kind == "rgb" else (st.depth, st.rgb)
        store[t] = msg
        for old in [s for s in store if s < t - 2.0]:
            del store[old]
            st.unmatched_dropped += 1
        while len(store) > self.params.max_pending_frames:     # stamps that never pair up: oldest go
            del store[min(store)]
            st.unmatched_dropped += 1
        if t in other:
            rgb, depth = (msg, other[t]) if kind == "rgb" else (other[t], msg)
            if st.ready is not None:
                st.dropped += 1          # never processed: a newer frame replaces it
            st.ready = (t, rgb, depth, time.monotonic())
            for s in [s for s in st.rgb if s <= t]:
                del st.rgb[s]
            for s in [s for s in st.depth if s <= t]:
                del st.depth[s]

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        self.cams[cam].info = msg

    def _on_pose(self, cam: str, msg: PoseStamped) -> None:
        if msg.header.frame_id != self.params.world_frame:
            self._reject(cam, f"pose frame '{msg.header.frame_id[:64]}' is not '{self.params.world_frame}'")
            return
        o, q = msg.pose.position, msg.pose.orientation
        self.cams[cam].poses.append((to_seconds(msg.header.stamp), (o.x, o.y, o.z), (q.x, q.y, q.z, q.w)))

    def _on_memory(self, msg: MemorySnapshot) -> None:
        self.facts = [f for f in msg.facts[:MAX_FACTS]
                      if f.kind == KIND_VISUAL and f.state in (STATE_VALID, STATE_STALE) and len(f.subject) <= MAX_NAME
                      and all(math.isfinite(v) for v in (f.pose.position.x, f.pose.position.y, f.pose.position.z))
                      and all(math.isfinite(v) for v in f.position_covariance) and math.isfinite(f.confidence)]

    def _on_recheck(self, msg: ViewpointRequest) -> None:
        now = time.monotonic()
        for s in msg.subjects[:MAX_RECHECKS]:
            if s and len(s) <= MAX_NAME:
                self.rechecks[s] = now
        if len(self.rechecks) > MAX_RECHECKS:       # forget the oldest
            for s in sorted(self.rechecks, key=self.rechecks.get)[:len(self.rechecks) - MAX_RECHECKS]:
                del self.rechecks[s]

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.name) == len(msg.position):
            self.joints.update((n, float(v)) for n, v in zip(msg.name, msg.position) if n in self.arm_joints)

    def _on_feedback(self, msg: ExecutionFeedback) -> None:
        if msg.status not in TERMINAL and msg.chunk_id:
            self.router_activity = time.monotonic()
        r = self.request
        if r is None or msg.chunk_id != r["id"]:
            return
        if msg.status == ExecutionFeedback.STATUS_SUCCEEDED:
            r["state"], r["done_stamp"] = "settling", self.now()
        elif msg.status in TERMINAL:
            self.get_logger().warn(f"viewpoint {r['id']} not reached: {msg.message[:500]}")
            self.failed_views.append(r["position"])
            self._diagnose(DiagnosticStatus.WARN, f"viewpoint {r['id']} not reached", {"reason": msg.message})
            self.request = None

    # ------------------------------------------------------------------ processing
    def _on_process(self) -> None:
        for cam, st in self.cams.items():
            if st.ready is None:
                continue
            t, rgb, depth, ready_at = st.ready
            pose = self._pose_at(st, t)
            if pose is None:
                if time.monotonic() - ready_at < self.params.pose_wait:
                    continue      # the pose may still come
                st.ready = None
                self._reject(cam, f"no camera pose within {self.params.max_pose_lag} s of stamp {t:.3f}")
                continue
            st.ready = None
            self._process(cam, st, t, rgb, depth, pose)

    def _pose_at(self, st: CameraState, t: float):
        best = None
        for s, pos, q in st.poses:
            if abs(s - t) <= self.params.max_pose_lag and (best is None or abs(s - t) < abs(best[0] - t)):
                best = (s, pos, q)
        return best

    def _process(self, cam: str, st: CameraState, t: float, rgb: Image, depth: Image, pose) -> None:
        try:
            if st.info is None:
                raise FrameError("no camera_info received")
            model = camera_model_from_info(st.info.width, st.info.height, st.info.k, st.info.distortion_model,
                                           st.info.d)
            if st.info.header.frame_id and rgb.header.frame_id and st.info.header.frame_id != rgb.header.frame_id:
                raise FrameError(f"camera_info frame '{st.info.header.frame_id}' != image frame "
                                 f"'{rgb.header.frame_id}'")
            if (rgb.width, rgb.height) != (model.width, model.height) or \
                    (depth.width, depth.height) != (model.width, model.height):
                raise FrameError(f"image {rgb.width}x{rgb.height} / depth {depth.width}x{depth.height} do not "
                                 f"match camera_info {model.width}x{model.height}")
            img = decode_rgb(rgb.encoding, rgb.width, rgb.height, rgb.step, bytes(rgb.data))
            dep = decode_depth(depth.encoding, depth.width, depth.height, depth.step, bytes(depth.data),
                               bool(depth.is_bigendian))
            position, rotation = pose_from(pose[1], pose[2])
            frame = Frame(cam, t, img, dep, model, position, rotation)
            result = self.core.process(frame, self._expected())
        except FrameError as exc:
            self._reject(cam, str(exc))
            return
        except Exception as exc:   # never let one frame take the node down
            self._reject(cam, f"could not process: {exc!r}")
            return
        st.processed += 1
        st.model, st.last_pose = model, (position, rotation)
        if self.planner is not None:
            world, inside = self.core.world_points(frame)
            self.planner.emap.update(world[::2, ::2][inside[::2, ::2]])
            self.planner.emap.observe(world[::2, ::2][self.core.surface_mask(frame, world)[::2, ::2]])
        self._publish(result, frame, pose)
        self.process_times.append(result.process_time)
        r = self.request
        if r is not None and r["state"] == "settling" and cam == r["camera"] and t > r["done_stamp"]:
            r["frames"] += 1

    def _expected(self) -> list[ExpectedFact]:
        out = []
        for f in self.facts:
            pos = np.array([f.pose.position.x, f.pose.position.y, f.pose.position.z])
            out.append(ExpectedFact(f.subject, pos, np.asarray(f.position_covariance).reshape(3, 3),
                                    float(f.confidence), self.sizes.get(f.subject, 0.05)))
        return out

    def _publish(self, result, frame: Frame, pose) -> None:
        wf = self.params.world_frame
        msg = SceneObservation()
        msg.header.stamp = to_time(frame.stamp)
        msg.header.frame_id = wf
        msg.camera = frame.camera
        msg.camera_pose = pose_msg(pose[1], pose[2])
        for d in result.objects:
            o = ObjectObservation()
            o.header = msg.header
            o.object_id = d.object_id
            o.label = d.label
            o.status = int(d.status)
            o.pose = pose_msg(d.position, d.quaternion)
            o.position_covariance = [float(v) for v in np.asarray(d.covariance).ravel()]
            o.identity_confidence = float(d.identity_confidence)
            o.visible_fraction = float(d.visible_fraction)
            o.pixel_support = int(d.pixel_support)
            o.camera = frame.camera
            msg.objects.append(o)
        latency = max(0.0, self.now() - frame.stamp)
        msg.latency = float(latency)
        self.latencies.append(latency)
        self.obs_pub.publish(msg)

    # ------------------------------------------------------------------ viewpoints
    def _targets(self) -> list[Target]:
        p = self.params
        task = {s for s in p.task_subjects if s}
        now = time.monotonic()
        rechecked = {s for s, t in self.rechecks.items() if now - t < 30.0}
        out = []
        for f in self.facts:
            if f.subject not in task and f.subject not in rechecked:
                continue      # only what the task depends on moves the arm
            cov = np.asarray(f.position_covariance, dtype=float).reshape(3, 3)
            uncertain = sigma_of(cov) > p.uncertain_sigma
            stale = f.state == STATE_STALE or f.confidence < p.stale_threshold
            if not (uncertain or stale or f.subject in rechecked):
                continue
            pos = np.array([f.pose.position.x, f.pose.position.y, f.pose.position.z])
            weight = 2.0 if f.subject in rechecked else 1.0
            out.append(Target(f.subject, pos, cov if np.any(cov) else np.eye(3) * 0.02 ** 2,
                              float(f.confidence), weight, self.sizes.get(f.subject, 0.05)))
        # a re-checked object memory holds no fact about: search where no camera has seen the table yet
        known = {f.subject for f in self.facts}
        for subject in sorted(s for s in rechecked if s not in known and s in self.sizes):
            size = self.sizes[subject]
            regions = self.planner.emap.hidden_regions(p.search_region_min, p.search_region_max, size)
            if regions:
                out.append(search_target(subject, regions[0], size))
        return out

    def _on_viewpoint(self) -> None:
        p = self.params
        r = self.request
        if r is not None:
            self._check_request(r)
            return
        if time.monotonic() - self.router_activity < ROUTER_QUIET:
            return      # the arm is busy with a task phase: look between phases only
        targets = self._targets()
        if not targets:
            self.ranking = []
            return
        fixed = {c: (*st.last_pose, st.model) for c, st in self.cams.items()
                 if c != p.movable_camera and st.last_pose is not None and st.model is not None}
        ranking = self.planner.rank_fixed(fixed, targets)
        self.ranking = [(v.camera, v.gain) for v in ranking]
        wrist = self.cams.get(p.movable_camera)
        if wrist is None or wrist.model is None:
            return
        q = [self.joints.get(j, math.nan) for j in self.arm_joints]
        q = np.array(q) if all(math.isfinite(v) for v in q) else None
        best, views = self.planner.plan(targets, wrist.model, q, p.movable_camera, self.failed_views)
        if best is None:
            return
        if ranking and ranking[0].gain >= best.score:
            return      # a fixed camera's next frame is worth as much as moving: no motion
        self.requests_sent += 1
        rid = f"viewpoint-{self.requests_sent}-{int(self.now() * 1000)}"
        msg = ViewpointRequest()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = p.world_frame
        msg.request_id = rid
        msg.camera = p.movable_camera
        msg.camera_pose = pose_msg(best.position, matrix_to_quat(best.rotation))
        look = np.mean([t.position for t in targets], axis=0)
        msg.look_at = Point(x=float(look[0]), y=float(look[1]), z=float(look[2]))
        msg.subjects = [t.subject for t in targets]
        msg.reason = "; ".join(f"{t.subject} sigma {sigma_of(t.covariance):.3f} m conf {t.confidence:.2f} "
                               f"P(visible) {best.visible.get(t.subject, 0):.2f}" for t in targets)[:1000]
        msg.expected_information_gain = float(best.gain)
        msg.estimated_cost = float(best.cost / max(p.cost_weight, 1e-9)) if p.cost_weight > 0 else 0.0
        before = {t.subject: (sigma_of(t.covariance), t.confidence) for t in targets}
        self.request = {"id": rid, "camera": p.movable_camera, "position": best.position, "state": "sent",
                        "sent": time.monotonic(), "frames": 0, "before": before, "done_stamp": math.inf}
        self.view_pub.publish(msg)
        self.get_logger().info(f"viewpoint {rid}: camera at {np.round(best.position, 3).tolist()}, gain "
                               f"{best.gain:.2f} nats, cost {msg.estimated_cost:.2f} s ({msg.reason})")

    def _check_request(self, r: dict) -> None:
        p = self.params
        if time.monotonic() - r["sent"] > p.request_timeout + 10.0:
            self.get_logger().warn(f"viewpoint {r['id']} timed out")
            self.failed_views.append(r["position"])
            self.request = None
            return
        if r["state"] != "settling" or r["frames"] < p.settle_frames:
            return
        if "settled_at" not in r:
            r["settled_at"] = time.monotonic()
            return       # give memory one snapshot period to take the new frames in
        facts = {f.subject: f for f in self.facts}
        results = {}
        for subject, (sigma0, conf0) in r["before"].items():
            f = facts.get(subject)
            if f is None:
                results[subject] = (sigma0, conf0, math.nan, math.nan, False)
                continue
            sigma1 = sigma_of(f.position_covariance)
            results[subject] = (sigma0, conf0, sigma1, float(f.confidence),
                                sigma1 < sigma0 * 0.8 or float(f.confidence) > conf0 + 0.05)
        ok = all(v[4] for v in results.values())
        summary = ", ".join(f"{s}: sigma {v[0]:.3f} -> {v[2]:.3f} m, conf {v[1]:.2f} -> {v[3]:.2f}"
                            for s, v in results.items())
        self.verifications.append({"id": r["id"], "resolved": ok, "summary": summary})
        if not ok:
            self.failed_views.append(r["position"])
        for subject, v in results.items():
            if v[4]:
                self.rechecks.pop(subject, None)     # served: the next request asks again if need be
        self.get_logger().info(f"viewpoint {r['id']} {'resolved' if ok else 'did not resolve'}: {summary}")
        self._diagnose(DiagnosticStatus.OK if ok else DiagnosticStatus.WARN,
                       f"viewpoint {r['id']} {'resolved' if ok else 'did not resolve'} the uncertainty",
                       {"request_id": r["id"], "resolved": ok, "summary": summary})
        self.request = None

    # ------------------------------------------------------------------ diagnostics
    def _reject(self, cam: str, reason: str) -> None:
        reason = reason[:500]
        if cam in self.cams:
            self.cams[cam].rejected += 1
        self.last_rejection = f"frame from camera '{cam}' rejected: {reason}"
        self.get_logger().warning(self.last_rejection)
        self._diagnose(DiagnosticStatus.ERROR, self.last_rejection[:500], {"camera": cam, "reason": reason[:500]})

    def _diagnose(self, level, message: str, values: dict | None = None) -> None:
        status = diagnostic_status(level, STATUS_NAME, "perception", message, values, max_text=500)
        publish_diagnostics(self.diag_pub, self.get_clock().now().to_msg(), [status])

    def _on_diagnostics(self) -> None:
        lat = np.array(self.latencies) if self.latencies else np.array([math.nan])
        proc = np.array(self.process_times) if self.process_times else np.array([math.nan])
        values = {"latency_ms_p50": float(np.median(lat)) * 1000, "latency_ms_max": float(np.max(lat)) * 1000,
                  "process_ms_p50": float(np.median(proc)) * 1000, "process_ms_max": float(np.max(proc)) * 1000,
                  "last_rejection": self.last_rejection, "viewpoint_requests": self.requests_sent,
                  "camera_ranking": ", ".join(f"{c} {g:.2f}" for c, g in self.ranking),
                  "last_verification": self.verifications[-1]["summary"] if self.verifications else ""}
        for cam, st in self.cams.items():
            values[f"{cam}_processed"] = st.processed
            values[f"{cam}_dropped"] = st.dropped
            values[f"{cam}_rejected"] = st.rejected
            values[f"{cam}_unmatched_dropped"] = st.unmatched_dropped
            values[f"{cam}_pending"] = len(st.rgb) + len(st.depth)
        values["callback_errors"] = sum(self.callback_errors.values())
        values["callback_errors_by_callback"] = dict(self.callback_errors)
        status = diagnostic_status(DiagnosticStatus.OK, STATUS_NAME, "perception",
                                   f"{sum(s.processed for s in self.cams.values())} frame(s) processed", values,
                                   float_format=".3f", max_text=500)
        publish_diagnostics(self.diag_pub, self.get_clock().now().to_msg(), [status])


def main(args=None) -> int:
    return run_node(NODE_NAME, PerceptionNode, args)


if __name__ == "__main__":
    sys.exit(main())
