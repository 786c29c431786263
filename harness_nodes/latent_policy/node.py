"""Latent policy node `latent_policy`: serves ProposeActions (N distinct latent actions, each decoded
into an end-effector-delta ActionChunk for this robot) and, with `closed_loop:=true`, drives the
task itself: observe -> propose -> execute the best candidate through the router -> repeat.

Subscribes
  <camera_prefix>/<cam>/image_raw    sensor_msgs/Image rgb8|bgr8    newest only
  <camera_prefix>/<cam>/camera_info  sensor_msgs/CameraInfo         focal length for the model's field of view
  joint_states                       sensor_msgs/JointState         when a request carries none
  harness/memory                     robot_harness/MemorySnapshot   belief about the goal's object
  harness/execution                  robot_harness/ExecutionFeedback closed loop: outcome of our chunks
Publishes
  harness/command                    robot_harness/ActionChunk      closed loop only
  /diagnostics                       diagnostic_msgs/DiagnosticArray latency, cache hit rate, rejections
Serves
  ~/propose_actions (/latent_policy/propose_actions) robot_harness/ProposeActions
Calls (optional, when the memory tracker runs)
  harness/memory/latent/store        robot_harness/StoreLatent      newly computed encodings

Encoding cache: an encoding is reused under the tool pose it was made at (2 mm, 0.01 rad) for as
long as memory's latent cache keeps the entry stored for it: memory drops an entry when a fact in
its region (`latent_region_radius` around the target) changes, and the node sees that in the next
snapshot (`snapshot_rate`, 2 Hz by default). Without a memory tracker, or before it believes in the
target, nothing is stored and only identical frames reuse an encoding. A store still on its way when the region changes carries the frames' capture stamp,
and memory refuses it (the region changed after the frames were captured).

Inference runs in the service's own callback group on a multi-threaded executor (and the closed
loop in its own thread), so subscriptions and diagnostics never wait for the model. Bad input
(wrong shapes, NaN, stale stamps, a goal naming an unknown object) gets success=false, the reason,
and no candidates. Names without a leading slash are relative (namespaces apply).
"""
from __future__ import annotations

import math
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Pose
from pydantic import BaseModel, Field
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState

from harness_nodes.common.callbacks import guarded, guarded_service
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.paths import _SOURCE_ROOT
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.stamps import to_seconds, to_time
from harness_nodes.latent_policy.core import (CAMERA_FOV_DEG, LatentPolicyCore, ObservationError, crop_to_fov)
from harness_nodes.latent_policy.state import StateError, ToolState
from robot_harness.msg import (ActionCandidates, ActionChunk, ExecutionFeedback, LatentAction, MemoryFact,
                               MemorySnapshot)
from robot_harness.srv import ProposeActions, StoreLatent

NODE_NAME = "latent_policy"
SERVICE = "~/propose_actions"
COMMAND_TOPIC = "harness/command"
FEEDBACK_TOPIC = "harness/execution"
MEMORY_TOPIC = "harness/memory"
STORE_LATENT = "harness/memory/latent/store"
DIAGNOSTICS_TOPIC = "/diagnostics"
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
NEWEST = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
MEMORY_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TERMINAL = (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED,
            ExecutionFeedback.STATUS_REJECTED, ExecutionFeedback.STATUS_HELD)
DEFAULT_MODEL_DIR = "models/latent_policy"
MAX_PIXELS = 4096 * 4096
KIND_VISUAL, KIND_LATENT, STATE_VALID = MemoryFact.KIND_VISUAL, MemoryFact.KIND_LATENT, MemoryFact.STATE_VALID
# a tool pose this close to the one an encoding was made at counts as "the arm has not moved"
POSE_RESOLUTION = np.array([0.002, 0.002, 0.002, 0.01, 0.002])   # x, y, z (m), yaw (rad), gripper width (m)
MAX_LATENT_ENTRIES = 256
BELIEF_WAIT = 15.0     # s the closed loop waits for memory's first belief about its target


class LatentPolicyParameters(BaseModel):
    # read at every request or chunk; the rest is fixed at start-up (read-only)
    DYNAMIC: ClassVar[frozenset[str]] = frozenset(
        {"num_candidates", "max_observation_age", "sample_candidates", "chunk_timeout"})

    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml; picks the decoder")
    model_dir: str = Field(DEFAULT_MODEL_DIR, min_length=1, description="weights directory (relative: to the package)")
    camera_prefix: str = Field("cameras", min_length=1)
    num_candidates: int = Field(4, ge=1, le=64, description="candidates when a request asks for 0")
    max_observation_age: float = Field(2.0, gt=0.0, le=60.0, description="s; older frames or joint states are stale")
    sample_candidates: bool = Field(False, description="sample distinct candidates (Gumbel top-k) instead of the N most likely")
    seed: int = Field(0, ge=0, description="sampling seed")
    closed_loop: bool = Field(False, description="drive the task itself through the router")
    goal: str = Field("put red_cube in tray", max_length=256, description="closed-loop goal")
    max_chunks: int = Field(60, ge=1, le=1000, description="closed loop: chunks before giving up")
    chunk_timeout: float = Field(20.0, gt=0.0, le=600.0, description="wall s to wait for a chunk's outcome")
    store_latents: bool = Field(True, description="store new encodings in the memory tracker's latent cache "
                                "and reuse them while memory keeps them (no fact in their region changed)")
    latent_region_radius: float = Field(0.25, gt=0.0, le=5.0, description="m around the target whose facts must "
                                        "stay unchanged for a stored encoding to be reused")
    diagnostics_period: float = Field(1.0, gt=0.0, le=60.0, description="s")


def resolve_model_dir(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else _SOURCE_ROOT / path


class LatentPolicyNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = declare_and_load(self, LatentPolicyParameters, self._apply_parameters)
        description = load_robot_description(self.params.robot)
        self.core = LatentPolicyCore(resolve_model_dir(self.params.model_dir), self.params.robot)
        self.tool = ToolState(description)
        self.lock = threading.Lock()            # one inference at a time
        self.rng = np.random.default_rng(self.params.seed)
        self.frames: dict[str, tuple[float, np.ndarray]] = {}
        self.focal: dict[str, float] = {}
        self.joint_state: JointState | None = None
        self.memory: MemorySnapshot | None = None
        self.memory_latents: tuple[float, set[str]] = (-math.inf, set())   # snapshot stamp, latent fact ids
        self.latent_entries: dict[str, tuple[str, float]] = {}   # pose key -> (memory entry id, stored at)
        self.feedback: dict[str, ExecutionFeedback] = {}
        self.stats = {"served": 0, "rejected": 0, "last_rejection": "", "latency": [], "chunks_sent": 0,
                      "closed_loop": "off", "latents_stored": 0, "latents_dropped": 0}
        for cam in self.core.config.cameras:
            base = f"{self.params.camera_prefix}/{cam}"
            self.create_subscription(Image, f"{base}/image_raw",
                                     guarded(self, lambda m, c=cam: self._on_image(c, m), f"image_{cam}"), NEWEST)
            self.create_subscription(CameraInfo, f"{base}/camera_info",
                                     guarded(self, lambda m, c=cam: self._on_info(c, m), f"info_{cam}"), NEWEST)
        self.create_subscription(JointState, "joint_states", guarded(self, self._on_joints), JOINT_STATE_QOS)
        self.create_subscription(MemorySnapshot, MEMORY_TOPIC, guarded(self, self._on_memory), MEMORY_QOS)
        self.create_subscription(ExecutionFeedback, FEEDBACK_TOPIC, guarded(self, self._on_feedback), RELIABLE)
        self.command_pub = self.create_publisher(ActionChunk, COMMAND_TOPIC, RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.inference_group = MutuallyExclusiveCallbackGroup()
        self.create_service(ProposeActions, SERVICE, guarded_service(self, self._on_propose),
                            callback_group=self.inference_group)
        self.store_cli = self.create_client(StoreLatent, STORE_LATENT, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.params.diagnostics_period, guarded(self, self._publish_diagnostics))
        self.loop_thread = None
        if self.params.closed_loop:
            self.loop_thread = threading.Thread(target=self._closed_loop, name="latent_policy_loop", daemon=True)
            self.loop_thread.start()
        self.get_logger().info(f"latent policy {self.core.model_id} serving {SERVICE}"
                               + (f"; closed loop on '{self.params.goal}'" if self.params.closed_loop else ""))

    # -- subscriptions only store
    def _on_image(self, cam: str, msg: Image) -> None:
        from harness_nodes.perception.core import FrameError, decode_rgb

        if msg.width * msg.height > MAX_PIXELS:
            raise FrameError(f"{cam} image {msg.width}x{msg.height} too large")
        rgb = decode_rgb(msg.encoding, msg.width, msg.height, msg.step, bytes(msg.data))
        fy = self.focal.get(cam, msg.height / (2.0 * math.tan(math.radians(60.0) / 2.0)))
        small = crop_to_fov(rgb, fy, CAMERA_FOV_DEG.get(cam, 60.0), self.core.config.image_size)
        self.frames[cam] = (to_seconds(msg.header.stamp), small)

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        fy = float(msg.k[4])
        if math.isfinite(fy) and fy > 0:
            self.focal[cam] = fy

    def _apply_parameters(self, params: LatentPolicyParameters) -> None:
        """A validated `ros2 param set` of LatentPolicyParameters.DYNAMIC (read at every request)."""
        self.params = params

    def _on_joints(self, msg: JointState) -> None:
        self.joint_state = msg

    def _on_memory(self, msg: MemorySnapshot) -> None:
        self.memory = msg
        self.memory_latents = (to_seconds(msg.header.stamp), {f.fact_id for f in msg.facts if f.kind == KIND_LATENT})

    # -- encoding reuse vouched for by memory
    @staticmethod
    def pose_key(state) -> str:
        return "pose:" + ":".join(str(int(v)) for v in np.round(np.asarray(state, float) / POSE_RESOLUTION))

    def reusable_key(self, state) -> str | None:
        """The pose key when memory vouches for the encoding cached under it (stored for this tool
        pose and still in memory's latent cache); None: only identical frames are reused."""
        key = self.pose_key(state)
        entry = self.latent_entries.get(key)
        if entry is None or not self.params.store_latents:
            return None
        entry_id, stored_at = entry
        snapshot_stamp, latent_ids = self.memory_latents
        if snapshot_stamp > stored_at and f"latent/{entry_id}" not in latent_ids:
            # memory dropped it: a fact in its region changed since the frames were encoded
            del self.latent_entries[key]
            self.core.cache.invalidate(key)
            self.stats["latents_dropped"] += 1
            return None
        return key

    def _on_feedback(self, msg: ExecutionFeedback) -> None:
        if msg.status in TERMINAL or msg.chunk_id not in self.feedback:
            self.feedback[msg.chunk_id] = msg

    # -- observation
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def observation(self, joint_state: JointState | None, scene=None, target: str = ""):
        """(frames, tool state, belief, capture stamp of the oldest frame) or ObservationError with
        the reason."""
        now = self.now()
        max_age = self.params.max_observation_age
        frames, captured = {}, math.inf
        for cam in self.core.config.cameras:
            if cam not in self.frames:
                raise ObservationError(f"no '{cam}' camera frame received yet on "
                                       f"{self.params.camera_prefix}/{cam}/image_raw")
            stamp, img = self.frames[cam]
            if now - stamp > max_age:
                raise ObservationError(f"'{cam}' frame is stale: {now - stamp:.2f} s old (max_observation_age {max_age} s)")
            frames[cam] = img
            captured = min(captured, stamp)
        js = joint_state if joint_state is not None and len(joint_state.name) else self.joint_state
        if js is None:
            raise ObservationError("no joint state in the request and none received on /joint_states")
        stamp = to_seconds(js.header.stamp)
        if stamp > 0 and now - stamp > max_age:
            raise ObservationError(f"joint state is stale: {now - stamp:.2f} s old (max_observation_age {max_age} s)")
        try:
            state = self.tool.from_joint_state(list(js.name), list(js.position))
        except StateError as exc:
            raise ObservationError(str(exc)) from None
        return frames, state, self.belief(target, scene), (captured if math.isfinite(captured) else now)

    def belief(self, target: str, scene=None):
        """The target's position: from the request's scene observation, else the memory tracker."""
        if scene is not None:
            for obj in scene.objects:
                if obj.object_id == target and obj.status == 0:
                    return [obj.pose.position.x, obj.pose.position.y, obj.pose.position.z]
        if self.memory is not None:
            for fact in self.memory.facts:
                if fact.subject == target and fact.kind == KIND_VISUAL and fact.state == STATE_VALID:
                    return [fact.pose.position.x, fact.pose.position.y, fact.pose.position.z]
        return None

    # -- service
    def _on_propose(self, request: ProposeActions.Request, response: ProposeActions.Response):
        response.success = False
        n = int(request.num_candidates) or self.params.num_candidates
        try:
            from harness_nodes.latent_policy.core import parse_goal
            target = parse_goal(request.goal, self.core.objects)
            frames, state, belief, captured = self.observation(request.joint_state, request.scene, target)
            with self.lock:
                proposal = self.core.propose(frames, state, request.goal, belief, n,
                                             self.rng if self.params.sample_candidates else None,
                                             cache_key=self.reusable_key(state))
        except ObservationError as exc:
            self.stats["rejected"] += 1
            self.stats["last_rejection"] = str(exc)[:200]
            response.message = f"rejected: {exc}"
            return response
        response.candidates = self.to_message(proposal, state)
        response.success = True
        response.message = f"{len(proposal.candidates)} candidates ({'cache hit' if proposal.cache_hit else 'encoded'}, " \
                           f"{proposal.seconds * 1000:.1f} ms)"
        self._count(proposal, state, belief, captured)
        return response

    def _count(self, proposal, state, belief, captured: float) -> None:
        self.stats["served"] += 1
        self.stats["latency"] = (self.stats["latency"] + [proposal.seconds])[-200:]
        # Without a belief about the target there is no region whose changes would retire the
        # encoding (one keyed on the tool outlived the cube moving elsewhere in the frames): not stored.
        if not proposal.cache_hit and belief is not None and self.params.store_latents \
                and self.store_cli.service_is_ready():
            self._store_latent(proposal.features, state, belief, captured)

    def _store_latent(self, features, state, belief, captured: float) -> None:
        """Store the encoding in memory's latent cache, keyed by the region around the target,
        stamped with the frames' capture time (memory refuses it
        if the region changed after that); once stored, it is reused at this tool pose."""
        centre = belief
        req = StoreLatent.Request(camera="+".join(self.core.config.cameras), model=self.core.model_id,
                                  region_radius=float(self.params.latent_region_radius))
        req.region_center.x, req.region_center.y, req.region_center.z = (float(v) for v in centre[:3])
        req.stamp = to_time(captured)
        req.shape = [int(s) for s in features.shape]
        req.data = features.numpy().astype(np.float32).reshape(-1).tolist()
        key = self.pose_key(state)
        self.store_cli.call_async(req).add_done_callback(
            guarded(self, lambda future: self._on_stored(future, key, features), "latent_stored"))

    def _on_stored(self, future, key: str, features) -> None:
        result = future.result()
        if result is None or not result.success:
            return
        with self.lock:
            self.core.cache.put(key, features)
        self.latent_entries[key] = (result.entry_id, self.now())
        self.stats["latents_stored"] += 1
        while len(self.latent_entries) > MAX_LATENT_ENTRIES:
            old = next(iter(self.latent_entries))
            del self.latent_entries[old]

    def to_message(self, proposal, state) -> ActionCandidates:
        out = ActionCandidates()
        out.header.stamp = self.get_clock().now().to_msg()
        out.header.frame_id = "world"
        gripper_open = state[4] >= self.tool.open_threshold
        dt = self.core.chunk_duration
        for cand in proposal.candidates:
            chunk = ActionChunk()
            chunk.header = out.header
            chunk.chunk_id = f"latent-{uuid.uuid4().hex[:12]}"
            chunk.source = "latent_policy"
            chunk.space = ActionChunk.SPACE_END_EFFECTOR_DELTA
            for j, (dx, dy, dz, dyaw) in enumerate(cand.cumulative()):
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = float(dx), float(dy), float(dz)
                pose.orientation.z, pose.orientation.w = math.sin(dyaw / 2.0), math.cos(dyaw / 2.0)
                chunk.ee_poses.append(pose)
                t = (j + 1) * dt
                chunk.ee_times.append(Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9))))
            want_open = bool(cand.grip_open[-1] >= 0.5)
            chunk.gripper_command = (ActionChunk.GRIPPER_NONE if want_open == gripper_open else
                                     ActionChunk.GRIPPER_OPEN if want_open else ActionChunk.GRIPPER_CLOSE)
            out.candidates.append(chunk)
            out.latents.append(LatentAction(header=out.header, codes=[int(c) for c in cand.codes],
                                            embedding=[float(v) for v in cand.embedding],
                                            log_prob=float(cand.log_prob), model_id=self.core.model_id))
            out.scores.append(float(cand.log_prob))
        return out

    # -- closed loop (own thread)
    def _closed_loop(self) -> None:
        from harness_nodes.latent_policy.core import parse_goal

        self.stats["closed_loop"] = "waiting for observations"
        target = parse_goal(self.params.goal, self.core.objects)
        # memory's first belief about the target usually follows the first frames by a moment: the
        # decoder steers by it, so wait a bounded while for it (without a tracker, go on without)
        deadline = time.monotonic() + BELIEF_WAIT
        while rclpy.ok() and self.belief(target) is None and time.monotonic() < deadline:
            self.stats["closed_loop"] = f"waiting for memory's belief about '{target}'"
            time.sleep(0.1)
        sent = 0
        while rclpy.ok() and sent < self.params.max_chunks:
            try:
                frames, state, belief, captured = self.observation(None, None, target)
            except ObservationError as exc:
                self.stats["closed_loop"] = f"waiting: {exc}"
                time.sleep(0.1)
                continue
            with self.lock:
                proposal = self.core.propose(frames, state, self.params.goal, belief, 1,
                                             cache_key=self.reusable_key(state))
            self._count(proposal, state, belief, captured)
            chunk = self.to_message(proposal, state).candidates[0]
            chunk.attempt = 1
            self.command_pub.publish(chunk)
            sent += 1
            self.stats["chunks_sent"] = sent
            self.stats["closed_loop"] = f"running: {sent} chunks"
            deadline = time.monotonic() + self.params.chunk_timeout
            while time.monotonic() < deadline and chunk.chunk_id not in self.feedback:
                time.sleep(0.02)
            fb = self.feedback.get(chunk.chunk_id)
            while fb is not None and fb.status not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.02)
                fb = self.feedback.get(chunk.chunk_id)
            if fb is None:
                self.command_pub.publish(chunk)   # at-least-once: the router ignores a repeated chunk_id
            # let the cameras catch up with the arm before the next observation
            wait_until = self.now() + 0.05
            while self.frames and min(s for s, _ in self.frames.values()) < wait_until and rclpy.ok() \
                    and time.monotonic() < deadline + 2.0:
                time.sleep(0.02)
        self.stats["closed_loop"] = f"done: {sent} chunks sent"

    # -- diagnostics
    def _publish_diagnostics(self) -> None:
        lat = np.array(self.stats["latency"]) * 1000.0
        level = DiagnosticStatus.WARN if self.stats["rejected"] and not self.stats["served"] else DiagnosticStatus.OK
        values = {"served": self.stats["served"], "rejected": self.stats["rejected"],
                  "cache_hit_rate": round(self.core.cache.hit_rate, 3), "cache_hits": self.core.cache.hits,
                  "cache_misses": self.core.cache.misses, "latents_stored": self.stats["latents_stored"],
                  "latents_dropped_by_memory": self.stats["latents_dropped"],
                  "latency_ms_mean": round(float(lat.mean()), 2) if len(lat) else 0.0,
                  "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if len(lat) else 0.0,
                  "chunks_sent": self.stats["chunks_sent"], "closed_loop": self.stats["closed_loop"],
                  "callback_errors": sum(getattr(self, "callback_errors", {}).values())}
        status = diagnostic_status(level, NODE_NAME, self.core.model_id, self.stats["last_rejection"] or "ok", values)
        publish_diagnostics(self.diag_pub, self.get_clock().now().to_msg(), [status])


def main(args=None) -> int:
    # Inference runs in the service's own callback group: a multi-threaded executor keeps the
    # subscriptions and diagnostics going meanwhile.
    return run_node(NODE_NAME, LatentPolicyNode, args,
                    executor=lambda context: MultiThreadedExecutor(num_threads=3, context=context))


if __name__ == "__main__":
    sys.exit(main())
