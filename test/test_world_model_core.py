"""World model without ROS: the state vector, candidate stepping and rejection, selection and
conformal calibration, tiny training and the weights files, the physics backend's veto, backend
choice, surprise."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.router.validation import ChunkInput, Rejection
from harness_nodes.world_model.actions import ChunkStepper
from harness_nodes.world_model.configuration_world_model import WorldModelConfig
from harness_nodes.world_model.core import WorldModelCore
from harness_nodes.world_model.modeling_ensemble import EnsembleShape, WorldModelEnsemble
from harness_nodes.world_model.selection import cem_refine, select
from harness_nodes.world_model.state import (Belief, ObjectBelief, StateLayout, build_state, objects_from_facts,
                                             slot_order)
from harness_nodes.world_model.surprise import SurpriseTracker
from harness_nodes.world_model.training import auroc, conformal_threshold, train
from harness_nodes.world_model.weights import TRAIN_COMMAND, WeightsError, load_model, save_model

torch.set_num_threads(1)      # tiny matmuls: more threads only contend (10x slower on a loaded 2-core box)
DOWN = [1.0, 0.0, 0.0, 0.0]   # tool pointing down (x, y, z, w)
CONFIG = WorldModelConfig()
DESC = load_robot_description("panda")
HOME = np.array(DESC.arm.home)
SUBJECT_XYZ = {"red_cube": (0.42, 0.06, 0.025), "green_cube": (0.56, 0.10, 0.025), "blue_cube": (0.45, 0.22, 0.025),
               "tray": (0.5, -0.18, 0.0042), "obstacle": (0.5, -0.01, 0.12)}


def fact(subject, xyz, confidence=0.9, state=0, kind=0, value=""):
    return dict(subject=subject, kind=kind, state=state, position=xyz, quaternion=(0, 0, 0, 1),
                confidence=confidence, value=value)


FACTS = [fact(s, xyz) for s, xyz in SUBJECT_XYZ.items()]


def fk(q):
    from harness_nodes.common.kinematics import ArmKinematics
    m = ArmKinematics.from_description(DESC).fk(q)
    return m.translation.copy(), m.rotation.copy()


def ee_chunk(name, points, times=None, gripper=0, space=0):
    times = times or [float(i + 1) for i in range(len(points))]
    return ChunkInput(chunk_id=name, space=space, ee_positions=points, ee_orientations=[DOWN] * len(points),
                      ee_times=times, gripper_command=gripper)


# -- state
def test_state_puts_the_target_first_and_reads_confidence_and_held_from_facts():
    facts = [fact("green_cube", (0.5, 0.1, 0.03), 0.7, value=json.dumps({"held": True})),
             fact("red_cube", (0.4, 0.0, 0.03), 0.2), fact("red_cube", (0.41, 0.0, 0.03), 0.8),
             fact("blue_cube", (0.4, 0.2, 0.03), state=2),          # invalid: ignored
             fact("tray", (math.nan, 0, 0)),                         # non-finite: ignored
             fact("obstacle", (0.5, 0.0, 0.1), kind=1)]              # not visual: ignored
    objects = objects_from_facts(facts)
    assert set(objects) == {"green_cube", "red_cube"}
    assert objects["red_cube"].confidence == pytest.approx(0.8) and objects["green_cube"].held
    layout = StateLayout(7, slot_order(CONFIG.subjects, "green_cube"))
    s = build_state(Belief(HOME, 0.08, objects), layout, fk)
    assert s.shape == (layout.dim,) and len(layout.names()) == layout.dim
    i0, i1 = layout.slot(0), layout.slot(1)
    assert layout.slots[0] == "green_cube" and s[i0 + 8] == 1.0 and s[i0 + 7] == pytest.approx(0.7)
    assert s[i1:i1 + 3] == pytest.approx([0.41, 0.0, 0.03]) and s[i1 + 9] == 1.0
    assert s[layout.slot(2) + 9] == 0.0                                # blue cube absent
    assert s[layout.ee_position] == pytest.approx(fk(HOME)[0])
    with pytest.raises(ValueError):
        build_state(Belief(np.full(7, np.nan), 0.08, {}), layout, fk)


# -- stepping and rejection
def test_chunks_are_stepped_at_the_model_rate_in_every_space():
    stepper = ChunkStepper(CONFIG, DESC, fk)
    plan = stepper.plan(ee_chunk("a", [[0.5, 0.0, 0.3]], [1.0], gripper=2), HOME)
    assert plan.steps == 4 + CONFIG.gripper_steps
    assert plan.actions[3, :3] == pytest.approx([0.5, 0.0, 0.3]) and plan.actions[-1, 10] == 1.0
    start = fk(HOME)[0]
    delta = stepper.plan(ee_chunk("d", [[0.0, 0.0, -0.1]], [0.5], space=2), HOME)
    assert delta.actions[-1, :3] == pytest.approx(start + [0, 0, -0.1])
    joint = stepper.plan(ChunkInput(chunk_id="j", space=1, joint_names=["panda_joint1"], joint_positions=[[0.5]],
                                    joint_times=[1.0]), HOME)
    assert joint.joint_targets.shape == (4, 7) and joint.joint_targets[-1, 0] == pytest.approx(0.5)
    assert joint.actions[-1, :3] == pytest.approx(fk(joint.joint_targets[-1])[0])


@pytest.mark.parametrize("chunk, words", [
    (ee_chunk("nan", [[math.nan, 0.0, 0.3]]), "non-finite"),
    (ChunkInput(chunk_id="dims", space=0, ee_positions=[[0.5, 0.0]], ee_orientations=[DOWN], ee_times=[1.0]), "ee_poses"),
    (ChunkInput(chunk_id="joint", space=1, joint_names=["elbow"], joint_positions=[[0.1]], joint_times=[1.0]), "unknown joint"),
    (ee_chunk("long", [[0.5, 0.0, 0.3]], [1e6]), "duration"),
    (ee_chunk("horizon", [[0.5, 0.0, 0.3]], [CONFIG.max_horizon * CONFIG.step_time - 0.1], gripper=2), "horizon"),
    (ee_chunk("", [[0.5, 0.0, 0.3]]), "chunk_id"),
])
def test_bad_candidates_are_rejected_with_a_reason(chunk, words):
    result = ChunkStepper(CONFIG, DESC, fk).plan(chunk, HOME)
    assert isinstance(result, Rejection) and words in result.reason


# -- selection and calibration
def test_selection_vetoes_and_takes_the_best_of_the_rest():
    sel = select([0.9, 0.8, 0.5, 0.99], [0.0, 0.01, 0.0, 0.0], [0.6, 0.1, 0.1, 0.1], [[], [], [], ["table"]], 0.5, 2.0)
    assert sel.best_index == 1 and sel.vetoed.tolist() == [True, False, False, True]
    assert "threshold" in sel.reasons[0] and "table" in sel.reasons[3]
    assert select([0.5], [0.0], [0.9], [[]], 0.5, 1.0).best_index == -1


def test_conformal_threshold_keeps_false_vetoes_within_alpha():
    rng = np.random.default_rng(0)
    calib, fresh = rng.beta(2, 8, 400), rng.beta(2, 8, 20000)
    t = conformal_threshold(calib, 0.05)
    assert (fresh > t).mean() <= 0.065          # 0.05 in expectation; finite-sample slack
    assert auroc(np.r_[np.zeros(10), np.ones(10)], np.r_[np.zeros(10), np.ones(10)]) == 1.0
    assert auroc(np.ones(6), np.r_[np.zeros(3), np.ones(3)]) == 0.5


def test_cem_refinement_improves_on_the_proposals():
    goal = np.array([0.5, 0.1, 0.3])
    proposals = np.zeros((8, 4, 12))
    proposals[..., :3] = goal + np.random.default_rng(1).normal(0, 0.1, (8, 1, 3))

    def evaluate(a):
        return -np.linalg.norm(a[:, -1, :3] - goal, axis=1), np.zeros(len(a), dtype=bool)
    best0 = evaluate(proposals)[0].max()
    _, value = cem_refine(evaluate, proposals, iterations=4, samples=64, elites=4)
    assert value > best0


# -- tiny training and weights
def tiny_data(n=600, seed=0, episode_length=10):
    """Synthetic episodes: the tool moves to each step's target; targets below -0.1 m 'collide'."""
    rng = np.random.default_rng(seed)
    layout = StateLayout(7, slot_order(CONFIG.subjects, "red_cube"))
    s = np.zeros((n, layout.dim))
    a = rng.normal(0, 0.1, (n, 12))
    nxt = np.zeros_like(s)
    for i in range(n):
        s[i] = rng.normal(0, 0.1, layout.dim) if i % episode_length == 0 else nxt[i - 1]
        nxt[i] = s[i]
        nxt[i, layout.ee_position] = a[i, :3]
    flags = np.zeros((n, 4))
    flags[:, 1] = a[:, 2] < -0.1
    return {"states": s, "actions": a, "next_states": nxt, "flags": flags,
            "episode": np.arange(n) // episode_length}, layout


@pytest.fixture(scope="module")
def tiny_model():
    data, _ = tiny_data()
    model, fit = train(data, EnsembleShape(7, len(CONFIG.subjects), members=5, hidden=32), seed=0,
                       iterations=150, show_progress=False, unroll=2)
    return model, fit, data


def test_tiny_training_learns_and_the_ensemble_rolls_out_batches(tiny_model):
    model, fit, data = tiny_model
    assert fit["final_state_loss"] < 0.9          # below the variance of the normalised target (1.0)
    out = model.rollout(torch.as_tensor(data["states"][0], dtype=torch.float32),
                        torch.as_tensor(data["actions"][:16], dtype=torch.float32).unsqueeze(1).expand(16, 3, 12),
                        torch.tensor([1, 2, 3] * 5 + [3]))
    assert out["state"].shape == (16, model.shape.state_dim) and out["member_states"].shape[0] == 5
    assert torch.all(out["uncertainty"] >= 0) and torch.all((out["failure_probability"] >= 0) & (out["failure_probability"] <= 1))
    low = torch.zeros(2, 1, 12)
    low[0, 0, 2], low[1, 0, 2] = -0.4, 0.4
    p = model.rollout(torch.zeros(model.shape.state_dim), low)["flag_probability"][:, 1]
    assert p[0] > p[1]                              # learned the low-target collision flag


def test_weights_roundtrip_and_clear_errors(tiny_model, tmp_path):
    model, _, data = tiny_model
    with pytest.raises(WeightsError, match="missing.*" + TRAIN_COMMAND.split()[-1]):
        load_model(tmp_path / "nothing")
    save_model(model, tmp_path, {"robot": "panda", "seed": 0})
    loaded, meta = load_model(tmp_path, expect={"robot": "panda"})
    x = torch.as_tensor(data["states"][:4], dtype=torch.float32).unsqueeze(0).expand(5, 4, -1)
    a = torch.as_tensor(data["actions"][:4], dtype=torch.float32)
    assert torch.allclose(model.next(x.clone(), a)[0], loaded.next(x.clone(), a)[0])
    with pytest.raises(WeightsError, match="robot"):
        load_model(tmp_path, expect={"robot": "xarm6"})
    weights = tmp_path / "ensemble.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(WeightsError, match="checksum"):
        load_model(tmp_path)


def test_default_weights_load_and_match_the_configuration():
    model, meta = load_model(expect={"robot": CONFIG.robot, "subjects": list(CONFIG.subjects),
                                     "step_time": CONFIG.step_time})
    assert model.shape.members >= 5 and 0 < meta["veto_threshold"] <= 1 and "command" in meta


# -- the core: per-candidate rejection, state age, physics veto, backend choice
@pytest.fixture(scope="module")
def physics_core():
    from harness_nodes.world_model.modeling_physics import PhysicsBackend
    core = WorldModelCore(CONFIG, DESC, physics_factory=lambda: PhysicsBackend(CONFIG, DESC), backend="physics")
    yield core
    if core._physics is not None:
        core._physics.close()


def knock_and_safe():
    ox, oy, _ = SUBJECT_XYZ["obstacle"]
    knock = ee_chunk("knock", [[ox, oy + 0.15, 0.1], [ox, oy - 0.12, 0.1]])
    safe = ee_chunk("safe", [[ox, oy + 0.15, 0.45], [ox, oy - 0.12, 0.45]])
    return knock, safe


def test_physics_backend_vetoes_the_candidate_that_knocks_the_obstacle(physics_core):
    knock, safe = knock_and_safe()
    bad = ee_chunk("bad", [[math.nan, 0, 0]])
    names = list(DESC.arm.joint_names) + list(DESC.gripper.joint_names)
    q = list(HOME) + [0.04, 0.04]
    ev = physics_core.evaluate("put red_cube in the tray", names, q, FACTS, [knock, safe, bad])
    assert ev.success and ev.best_index == 1, [r.violations for r in ev.results]
    assert ev.results[0].failure_probability == 1.0 and any("obstacle" in v or "collision" in v or "disturbed" in v
                                                            for v in ev.results[0].violations)
    assert ev.results[2].backend == "rejected" and "non-finite" in ev.results[2].violations[0]
    assert ev.backend_use["physics"] == 2


def test_whole_request_refusals(physics_core):
    names = list(DESC.arm.joint_names)
    ev = physics_core.evaluate("", names, list(HOME), FACTS, [])
    assert not ev.success and "empty batch" in ev.message
    ev = physics_core.evaluate("", names, list(HOME), FACTS, [knock_and_safe()[1]], state_age=2.0, max_state_age=0.5)
    assert not ev.success and "too old" in ev.message
    ev = physics_core.evaluate("", names[:3], list(HOME)[:3], FACTS, [knock_and_safe()[1]])
    assert not ev.success and "lacks arm joints" in ev.message


def test_batches_over_the_maximum_reject_the_excess(tiny_model):
    model, _, _ = tiny_model
    core = WorldModelCore(CONFIG.model_copy(update={"max_candidates": 3}), DESC, model, {"veto_threshold": 1.0},
                          backend="learned")
    chunks = [ee_chunk(f"c{i}", [[0.5, 0.0, 0.3 + 0.01 * i]]) for i in range(5)]
    ev = core.evaluate("", list(DESC.arm.joint_names), list(HOME), FACTS, chunks)
    assert [r.backend for r in ev.results] == ["learned"] * 3 + ["rejected"] * 2
    assert "max_candidates" in ev.results[4].violations[0] and 0 <= ev.best_index < 3


def test_auto_backend_sends_uncertain_candidates_to_physics(tiny_model):
    from harness_nodes.world_model.modeling_physics import PhysicsBackend
    model, _, _ = tiny_model
    chunks = [ee_chunk(f"c{i}", [[0.5, 0.0, 0.3 + 0.02 * i]]) for i in range(4)]
    names, q = list(DESC.arm.joint_names), list(HOME)
    physics = PhysicsBackend(CONFIG, DESC)
    try:
        sure = WorldModelCore(CONFIG, DESC, model, {"veto_threshold": 0.99}, lambda: physics, "auto",
                              auto_uncertainty=1e9, auto_margin=0.0)
        assert sure.evaluate("", names, q, FACTS, chunks).backend_use == {"learned": 4}
        # unsure about all: the one it would choose is replayed in physics before it is chosen
        doubt = WorldModelCore(CONFIG, DESC, model, {"veto_threshold": 0.99}, lambda: physics, "auto",
                               auto_uncertainty=0.0, auto_margin=0.0, physics_max_candidates=2)
        ev = doubt.evaluate("", names, q, FACTS, chunks)
        assert ev.backend_use["learned"] == 4 and 1 <= ev.backend_use["physics"] <= 2
        assert ev.best_index >= 0 and ev.results[ev.best_index].backend == "physics"
        assert [r.backend for r in ev.results].count("physics") == ev.backend_use["physics"]
        # the ensemble vetoes everything (threshold 0): its most promising doubtful candidate is
        # replayed, passes in physics (a free motion) and is chosen; the others are not replayed
        strict = WorldModelCore(CONFIG, DESC, model, {"veto_threshold": 0.0}, lambda: physics, "auto",
                                auto_uncertainty=0.0, auto_margin=0.0, physics_max_candidates=3)
        learned = WorldModelCore(CONFIG, DESC, model, {"veto_threshold": 0.0}, None, "learned")
        assert learned.evaluate("", names, q, FACTS, chunks).best_index == -1
        ev = strict.evaluate("", names, q, FACTS, chunks)
        assert ev.backend_use["physics"] == 1 and ev.results[ev.best_index].backend == "physics"
    finally:
        physics.close()


# -- surprise
def test_surprise_compares_prediction_with_what_memory_reports_after_execution():
    tracker = SurpriseTracker(floor=0.01, threshold=3.0)
    tracker.predicted("c1", {"red_cube": np.array([0.5, 0.0, 0.03]), "green_cube": np.array([0.6, 0.1, 0.03])}, 0.0)
    assert tracker.observed({"red_cube": np.zeros(3)}, 5.0) == []         # not executed yet
    assert tracker.executed("c1", 10.0) and not tracker.executed("unknown", 10.0)
    assert tracker.observed({"red_cube": np.array([0.5, 0.0, 0.03])}, 9.0) == []   # snapshot from before
    (s,) = tracker.observed({"red_cube": np.array([0.5, 0.1, 0.03])}, 10.5)
    assert s.subjects == ["red_cube"] and s.distance[0] == pytest.approx(0.1)
    assert s.missing == ["green_cube"] and s.surprising and s.overall_normalized == pytest.approx(10.0)
