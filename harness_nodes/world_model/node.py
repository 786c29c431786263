"""ROS node `world_model`: the EvaluateCandidates service over the world-model core, surprise after
execution, latency and backend use on /diagnostics.

Thin plumbing: messages -> plain data -> `WorldModelCore.evaluate()` -> response. The service runs
in its own callback group on a multi-threaded executor, so evaluations never block the
subscriptions and the diagnostics timer. A request's joint state older than `max_state_age` is
refused with the reason; an empty joint state uses the last /joint_states, an empty fact list the
last memory snapshot.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from typing import ClassVar

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from pydantic import BaseModel, ConfigDict, Field
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from harness_nodes.common.callbacks import guarded, guarded_service
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.stamps import to_seconds
from harness_nodes.router.messages import chunk_from_msg
from harness_nodes.world_model.configuration_world_model import WorldModelConfig
from harness_nodes.world_model.core import BACKENDS, WorldModelCore
from harness_nodes.world_model.surprise import SurpriseTracker
from robot_harness.msg import ExecutionFeedback, MemorySnapshot, RolloutPrediction, WorldModelSurprise
from robot_harness.srv import EvaluateCandidates

NODE_NAME = "world_model"
STATUS_NAME = "world_model"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
SNAPSHOT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
MAX_FACTS = 10000        # facts per request considered, at most
MAX_MESSAGE = 300        # characters of a violation echoed back


class WorldModelParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # read at every request; the rest is built into the core at start-up (read-only)
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({"max_state_age"})

    robot: str = Field("panda", min_length=1)
    backend: str = Field("auto", pattern="^(learned|physics|auto)$",
                         description="learned ensemble, physics shadow world, or auto (learned; physics where uncertain)")
    model_dir: str = Field("", description="folder of ensemble.safetensors + ensemble.json; empty = models/world_model")
    service: str = Field("harness/world_model/evaluate", min_length=1)
    joint_states_topic: str = Field("joint_states", min_length=1)
    memory_topic: str = Field("harness/memory", min_length=1)
    execution_topic: str = Field("harness/execution", min_length=1)
    surprise_topic: str = Field("harness/world_model/surprise", min_length=1)
    max_state_age: float = Field(1.0, gt=0.0, le=3600.0, description="s; older joint states are refused")
    max_candidates: int = Field(256, ge=1, le=4096)
    max_horizon: int = Field(64, ge=1, le=1000, description="model steps per candidate")
    auto_uncertainty: float = Field(0.02, ge=0.0, le=10.0, description="m of disagreement sent to physics (auto)")
    auto_margin: float = Field(0.1, ge=0.0, le=1.0, description="failure scores this close to the threshold go to physics (auto)")
    physics_max_candidates: int = Field(8, ge=0, le=256, description="physics cross-checks per request (auto)")
    uncertainty_penalty: float = Field(2.0, ge=0.0, le=1000.0)
    veto_threshold: float = Field(0.5, gt=0.0, le=1.0, description="used when use_calibrated_threshold is false")
    use_calibrated_threshold: bool = Field(True)
    surprise_floor: float = Field(0.01, gt=0.0, le=1.0, description="m added to the predicted uncertainty")
    surprise_threshold: float = Field(3.0, gt=0.0, le=1000.0)
    diagnostics_period: float = Field(1.0, gt=0.0, le=60.0, description="s")
    torch_threads: int = Field(1, ge=1, le=64)


def fact_dict(m) -> dict:
    p, q = m.pose.position, m.pose.orientation
    return dict(subject=m.subject, kind=m.kind, state=m.state, confidence=m.confidence, value=m.value,
                position=(p.x, p.y, p.z), quaternion=(q.x, q.y, q.z, q.w))


class WorldModelNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = prm = declare_and_load(self, WorldModelParameters, self._apply_parameters)
        import torch

        torch.set_num_threads(prm.torch_threads)
        description = load_robot_description(prm.robot)
        config = WorldModelConfig(robot=prm.robot, max_candidates=prm.max_candidates, max_horizon=prm.max_horizon,
                                  uncertainty_penalty=prm.uncertainty_penalty, veto_threshold=prm.veto_threshold,
                                  use_calibrated_threshold=prm.use_calibrated_threshold)
        model, meta, self.model_error = None, {}, ""
        if prm.backend != "physics":
            from harness_nodes.world_model.weights import WeightsError, load_model
            try:
                model, meta = load_model(prm.model_dir or None, expect={"robot": config.robot,
                                                                        "subjects": list(config.subjects),
                                                                        "step_time": config.step_time})
            except WeightsError as exc:
                if prm.backend == "learned":
                    raise
                self.model_error = str(exc)
                self.get_logger().warn(f"no learned backend, physics only: {exc}")

        def physics():
            from harness_nodes.world_model.modeling_physics import PhysicsBackend
            return PhysicsBackend(config, description)

        self.core = WorldModelCore(config, description, model, meta, physics, prm.backend, prm.auto_uncertainty,
                                   prm.auto_margin, prm.physics_max_candidates)
        self.surprise = SurpriseTracker(prm.surprise_floor, prm.surprise_threshold)
        # The core is used only by the service (its own mutually exclusive group); the surprise
        # tracker is shared with the subscriptions and held only for a few microseconds.
        self.lock = threading.Lock()
        self.latest_joint_state: tuple[JointState, float] | None = None
        self.latest_facts: list[dict] = []
        self.latencies: deque = deque(maxlen=500)
        self.backend_use: Counter = Counter()
        self.counts: Counter = Counter()
        self.last_message = ""
        work = MutuallyExclusiveCallbackGroup()
        io = MutuallyExclusiveCallbackGroup()
        self.create_service(EvaluateCandidates, prm.service, guarded_service(self, self._on_evaluate), callback_group=work)
        self.create_subscription(JointState, prm.joint_states_topic, guarded(self, self._on_joint_state),
                                 JOINT_STATE_QOS, callback_group=io)
        self.create_subscription(MemorySnapshot, prm.memory_topic, guarded(self, self._on_memory), SNAPSHOT_QOS,
                                 callback_group=io)
        self.create_subscription(ExecutionFeedback, prm.execution_topic, guarded(self, self._on_execution), RELIABLE,
                                 callback_group=io)
        self.surprise_pub = self.create_publisher(WorldModelSurprise, prm.surprise_topic, RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.create_timer(prm.diagnostics_period, guarded(self, self._publish_diagnostics), callback_group=io)
        self.get_logger().info(f"world model ready: backend {prm.backend}, "
                               f"{'learned ensemble loaded' if model is not None else 'physics only'}, "
                               f"veto threshold {self.core.threshold:.3f}, service {prm.service}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- subscriptions: store only
    def _apply_parameters(self, params: WorldModelParameters) -> None:
        """A validated `ros2 param set` of WorldModelParameters.DYNAMIC (read at every request)."""
        self.params = params

    def _on_joint_state(self, msg: JointState) -> None:
        self.latest_joint_state = (msg, self.now())

    def _on_memory(self, msg: MemorySnapshot) -> None:
        facts = [fact_dict(f) for f in msg.facts[:MAX_FACTS]]
        self.latest_facts = facts
        objects = {}
        for f in facts:
            if f["kind"] == 0 and f["state"] in (0, 1) and np.all(np.isfinite(f["position"])):
                objects[f["subject"]] = np.asarray(f["position"], dtype=float)
        with self.lock:
            found = self.surprise.observed(objects, to_seconds(msg.header.stamp))
        for s in found:
            out = WorldModelSurprise()
            out.header.stamp = self.get_clock().now().to_msg()
            out.header.frame_id = "world"
            out.chunk_id = s.chunk_id
            out.subjects = list(s.subjects)
            out.surprise = [float(v) for v in s.distance]
            out.normalized_surprise = [float(v) for v in s.normalized]
            out.missing = list(s.missing)
            out.overall, out.overall_normalized, out.surprising = float(s.overall), float(s.overall_normalized), s.surprising
            self.surprise_pub.publish(out)
            self.counts["surprises"] += 1

    def _on_execution(self, msg: ExecutionFeedback) -> None:
        if msg.status in (ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED):
            with self.lock:
                self.surprise.executed(msg.chunk_id, to_seconds(msg.header.stamp))

    # -- the service
    def _on_evaluate(self, request, response):
        t0 = time.perf_counter()
        self.counts["requests"] += 1
        js, age = request.joint_state, None
        if len(js.name) == 0 and self.latest_joint_state is not None:
            js, received = self.latest_joint_state
            age = self.now() - received
        elif len(js.name):
            stamp = to_seconds(js.header.stamp)
            age = self.now() - stamp if stamp > 0 else float("inf")
        facts = [fact_dict(f) for f in request.facts[:MAX_FACTS]] if len(request.facts) else list(self.latest_facts)
        candidates = [chunk_from_msg(c) for c in request.candidates]
        ev = self.core.evaluate(request.goal[:1000], list(js.name), list(js.position), facts, candidates,
                                state_age=age, max_state_age=self.params.max_state_age)
        if ev.success:
            predicted = [(c.chunk_id[:200], self._positions(request.goal, r.state), r.uncertainty)
                         for c, r in zip(candidates, ev.results) if r.backend != "rejected" and c.chunk_id]
            with self.lock:
                for chunk_id, positions, uncertainty in predicted:
                    self.surprise.predicted(chunk_id, positions, uncertainty)
        response.success, response.message, response.best_index = ev.success, ev.message[:1000], int(ev.best_index)
        stamp = self.get_clock().now().to_msg()
        for chunk, r in zip(request.candidates, ev.results):
            pred = RolloutPrediction()
            pred.header.stamp = stamp
            pred.header.frame_id = "world"
            pred.chunk_id = chunk.chunk_id[:200]
            pred.predicted_state = [float(v) for v in r.state]
            pred.predicted_reward = float(r.progress)
            pred.uncertainty = float(r.uncertainty)
            pred.failure_probability = float(r.failure_probability)
            pred.violations = [v[:MAX_MESSAGE] for v in r.violations]
            response.predictions.append(pred)
        dt = time.perf_counter() - t0
        self.latencies.append(dt)
        self.backend_use.update(ev.backend_use)
        self.counts["refused" if not ev.success else "answered"] += 1
        self.counts["rejected_candidates"] += sum(1 for r in ev.results if r.backend == "rejected")
        self.last_message = ev.message
        return response

    def _positions(self, goal: str, state: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted position of every present object, from a state vector of this goal's layout."""
        from harness_nodes.world_model.state import StateLayout, slot_order
        cfg = self.core.config
        layout = StateLayout(len(self.core.arm_joints), slot_order(cfg.subjects, self.core.target_of(goal)))
        out = {}
        for k, subject in enumerate(layout.slots):
            i = layout.slot(k)
            if state[i + 9] > 0.5:
                out[subject] = np.asarray(state[i:i + 3], dtype=float)
        return out

    def _publish_diagnostics(self) -> None:
        lat = np.array(self.latencies) * 1000.0 if self.latencies else np.zeros(1)
        values = {"requests": self.counts["requests"], "answered": self.counts["answered"],
                  "refused": self.counts["refused"], "rejected_candidates": self.counts["rejected_candidates"],
                  "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p95_ms": float(np.percentile(lat, 95)),
                  "backend_learned": self.backend_use["learned"], "backend_physics": self.backend_use["physics"],
                  "backend": self.params.backend, "learned_loaded": self.core.model is not None,
                  "veto_threshold": self.core.threshold, "surprises": self.counts["surprises"],
                  "callback_errors": sum(getattr(self, "callback_errors", Counter()).values())}
        level = DiagnosticStatus.WARN if self.model_error else DiagnosticStatus.OK
        status = diagnostic_status(level, STATUS_NAME, self.params.robot, self.model_error or self.last_message or "ready",
                                   values, float_format=".3f", max_text=500)
        publish_diagnostics(self.diag_pub, self.get_clock().now().to_msg(), [status])


def main(args=None) -> int:
    # The service works in its own callback group: a multi-threaded executor keeps the
    # subscriptions and diagnostics going while a batch is rolled out.
    return run_node(NODE_NAME, WorldModelNode, args,
                    executor=lambda context: MultiThreadedExecutor(num_threads=3, context=context))


if __name__ == "__main__":
    sys.exit(main())
