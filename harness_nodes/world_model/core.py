"""The world-model server's core, without ROS: belief from the request, candidate validation and
stepping, the learned and physics backends, backend choice, selection.

The node converts the EvaluateCandidates request into plain data (joint names and positions, fact
dicts, `ChunkInput`s, the joint state's age), calls `evaluate()` and copies the `Evaluation` into
the response. Bad candidates are rejected one by one with a reason; the others are evaluated.
Backend `auto`: the ensemble rolls out every candidate; physics replays only where the choice
depends on a candidate the ensemble is unsure about (the would-be choice, or when it vetoes all,
its most promising doubtful candidates), so a usual request costs one physics replay, not N.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from harness_nodes.router.validation import ChunkInput, Rejection
from harness_nodes.world_model.actions import ACTION_DIM, ChunkStepper, StepPlan
from harness_nodes.world_model.configuration_world_model import WorldModelConfig
from harness_nodes.world_model.modeling_ensemble import FAILURE_FLAGS, WorldModelEnsemble
from harness_nodes.world_model.selection import select
from harness_nodes.world_model.state import Belief, StateLayout, build_state, objects_from_facts, slot_order
from harness_nodes.world_model.training import failure_score

BACKENDS = ("learned", "physics", "auto")


@dataclass
class CandidateResult:
    state: np.ndarray
    progress: float = 0.0
    uncertainty: float = 0.0
    failure_probability: float = 1.0
    violations: list[str] = field(default_factory=list)
    backend: str = "none"            # learned, physics, rejected
    failure_score: float = 1.0


@dataclass
class Evaluation:
    success: bool
    message: str
    results: list[CandidateResult] = field(default_factory=list)
    best_index: int = -1
    backend_use: Counter = field(default_factory=Counter)
    seconds: float = 0.0


class WorldModelCore:
    def __init__(self, config: WorldModelConfig, description, model: WorldModelEnsemble | None = None,
                 model_meta: dict | None = None, physics_factory: Callable[[], object] | None = None,
                 backend: str = "auto", auto_uncertainty: float = 0.02, auto_margin: float = 0.1,
                 physics_max_candidates: int = 8):
        if backend not in BACKENDS:
            raise ValueError(f"backend '{backend}' is not one of {BACKENDS}")
        if backend == "learned" and model is None:
            raise ValueError("backend 'learned' needs model weights")
        from harness_nodes.common.kinematics import ArmKinematics
        self.config = config
        self.description = description
        self.kin = ArmKinematics.from_description(description)
        self.stepper = ChunkStepper(config, description, self.fk)
        self.model, self.meta = model, model_meta or {}
        self.physics_factory = physics_factory
        self._physics = None
        self.backend = backend
        self.auto_uncertainty, self.auto_margin = auto_uncertainty, auto_margin
        self.physics_max_candidates = physics_max_candidates
        self.arm_joints = list(description.arm.joint_names)
        self.finger_joints = list(description.gripper.joint_names)

    @property
    def threshold(self) -> float:
        if self.config.use_calibrated_threshold and "veto_threshold" in self.meta:
            return float(self.meta["veto_threshold"])
        return self.config.veto_threshold

    def fk(self, q):
        m = self.kin.fk(q)
        return m.translation.copy(), m.rotation.copy()

    @property
    def physics(self):
        if self._physics is None:
            if self.physics_factory is None:
                raise RuntimeError("no physics backend configured")
            self._physics = self.physics_factory()
        return self._physics

    # -- request -> belief
    def target_of(self, goal: str) -> str:
        cubes = [s for s in self.config.subjects if s not in (self.config.tray_subject,)]
        named = [s for s in cubes if s in (goal or "")]
        return named[0] if named else self.config.default_target

    def belief(self, joint_names: Sequence[str], joint_positions: Sequence[float],
               facts: Sequence[dict]) -> Belief | str:
        if len(joint_names) != len(joint_positions):
            return f"joint_state has {len(joint_names)} names but {len(joint_positions)} positions"
        q = dict(zip(joint_names, joint_positions))
        missing = [n for n in self.arm_joints if n not in q]
        if missing:
            return f"joint_state lacks arm joints {missing}"
        arm = np.array([q[n] for n in self.arm_joints], dtype=float)
        if not np.all(np.isfinite(arm)):
            return "joint_state has non-finite arm positions"
        grip = self.description.gripper
        fingers = [q[n] for n in self.finger_joints if n in q]
        width = float(grip.width_from_joints(fingers)) if len(fingers) == len(self.finger_joints) \
            and all(math.isfinite(f) for f in fingers) else grip.max_width
        return Belief(arm, width, objects_from_facts(facts, self.config.min_confidence))

    # -- evaluation
    def evaluate(self, goal: str, joint_names: Sequence[str], joint_positions: Sequence[float],
                 facts: Sequence[dict], candidates: Sequence[ChunkInput], state_age: float | None = None,
                 max_state_age: float = math.inf, backend: str | None = None) -> Evaluation:
        t0 = time.perf_counter()
        backend = backend or self.backend
        if not candidates:
            return Evaluation(False, "empty batch: no candidates to evaluate")
        if state_age is not None and not (state_age <= max_state_age):
            return Evaluation(False, f"state too old: joint state is {state_age:.3f} s old, the budget is "
                                     f"{max_state_age:.3f} s; send a fresh state")
        belief = self.belief(joint_names, joint_positions, facts)
        if isinstance(belief, str):
            return Evaluation(False, f"bad state: {belief}")
        layout = StateLayout(len(self.arm_joints), slot_order(self.config.subjects, self.target_of(goal)))
        start = build_state(belief, layout, self.fk)
        results: list[CandidateResult | None] = [None] * len(candidates)
        plans: dict[int, StepPlan] = {}
        for i, chunk in enumerate(candidates):
            if i >= self.config.max_candidates:
                results[i] = self._rejected(start, f"batch of {len(candidates)} exceeds max_candidates "
                                                   f"{self.config.max_candidates}")
                continue
            try:
                plan = self.stepper.plan(chunk, belief.arm_positions)
            except (ValueError, TypeError, OverflowError) as exc:
                plan = Rejection(1, f"malformed candidate: {exc}")
            if isinstance(plan, Rejection):
                results[i] = self._rejected(start, plan.reason)
            else:
                plans[i] = plan
        use = Counter()
        if plans:
            if backend == "physics" or self.model is None:
                for i, r in zip(plans, self._physics_results(belief, [plans[i] for i in plans], layout)):
                    results[i] = r
                use["physics"] += len(plans)
            else:
                for i, r in zip(plans, self._learned_results(start, [plans[i] for i in plans])):
                    results[i] = r
                use["learned"] += len(plans)
                if backend == "auto" and self.physics_factory is not None:
                    replays = self._cross_check(belief, plans, results, layout)
                    if replays:
                        use["physics"] += replays
        sel = self._select(results)
        for r, why in zip(results, sel.reasons):
            if why and not r.violations:
                r.violations.append(f"vetoed: {why}")
        n_ok = len(plans)
        msg = f"{n_ok} of {len(candidates)} candidates evaluated ({dict(use)})"
        if sel.best_index < 0:
            msg += "; every candidate vetoed or rejected"
        return Evaluation(True, msg, results, sel.best_index, use, time.perf_counter() - t0)

    def _select(self, results: list[CandidateResult]):
        return select([r.progress for r in results], [r.uncertainty for r in results],
                      [r.failure_score for r in results], [r.violations for r in results],
                      self.threshold, self.config.uncertainty_penalty, [r.failure_probability for r in results])

    def _doubtful(self, r: CandidateResult) -> bool:
        return r.uncertainty > self.auto_uncertainty or abs(r.failure_score - self.threshold) < self.auto_margin

    def _cross_check(self, belief: Belief, plans: dict[int, StepPlan], results: list, layout) -> int:
        """Physics where the decision depends on it (auto): while the candidate the ensemble would
        choose is one it is unsure about, replay it in physics and choose again; when the ensemble
        vetoes everything, replay its doubtful vetoed candidates (most progress first) until one
        passes. At most `physics_max_candidates` replays; returns how many ran."""
        checked: set[int] = set()
        while len(checked) < self.physics_max_candidates:
            best = self._select(results).best_index
            if best >= 0:
                if best in checked or not self._doubtful(results[best]):
                    break
                i = best
            else:
                left = [j for j in plans if j not in checked and self._doubtful(results[j])]
                if not left:
                    break
                i = max(left, key=lambda j: results[j].progress)
            (r,) = self._physics_results(belief, [plans[i]], layout)
            r.uncertainty = results[i].uncertainty
            results[i] = r
            checked.add(i)
        return len(checked)

    def _rejected(self, start: np.ndarray, reason: str) -> CandidateResult:
        return CandidateResult(start.copy(), 0.0, 0.0, 1.0, [f"rejected: {reason}"], "rejected", 1.0)

    def _learned_results(self, start: np.ndarray, plans: list[StepPlan]) -> list[CandidateResult]:
        h = max(p.steps for p in plans)
        actions = np.zeros((len(plans), h, ACTION_DIM), dtype=np.float32)
        for k, p in enumerate(plans):
            actions[k, :p.steps] = p.actions
            actions[k, p.steps:] = p.actions[-1]
        steps = torch.as_tensor([p.steps for p in plans])
        out = self.model.rollout(torch.as_tensor(start, dtype=torch.float32), torch.as_tensor(actions), steps)
        score = failure_score(out).numpy()
        results = []
        for k, p in enumerate(plans):
            violations = list(p.violations)
            if score[k] > self.threshold:
                violations += [f"predicted {name} (p={float(out['flag_probability'][k, j]):.2f})"
                               for j, name in enumerate(FAILURE_FLAGS) if out["flag_probability"][k, j] > 0.5]
            results.append(CandidateResult(out["state"][k].numpy().astype(float), float(out["progress"][k]),
                                           float(out["uncertainty"][k]), float(out["failure_probability"][k]),
                                           violations, "learned", float(score[k])))
        return results

    def _physics_results(self, belief: Belief, plans: list[StepPlan], layout: StateLayout) -> list[CandidateResult]:
        results = []
        for p, r in zip(plans, self.physics.evaluate(belief, plans, layout)):
            violations = list(p.violations) + [f"{name} in the physics rollout"
                                               for name, hit in zip(FAILURE_FLAGS, r["flags"]) if hit]
            results.append(CandidateResult(r["state"], r["progress"], 0.0, r["failure_probability"], violations,
                                           "physics", r["failure_probability"]))
        return results
