"""Latent-action training (tiny, seconds), weights on disk, and the pure policy core (no ROS)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from harness_nodes.dataset.generate import generate, spec_for
from harness_nodes.latent_policy.configuration_latent_action import LatentActionConfig
from harness_nodes.latent_policy.core import LatentPolicyCore, ObservationError, crop_to_fov, parse_goal
from harness_nodes.latent_policy.modeling_latent_action import LatentActionModel, frames_to_tensor
from harness_nodes.latent_policy.train import train_all
from harness_nodes.latent_policy.training import code_statistics
from harness_nodes.latent_policy.weights import TRAIN_COMMAND, WeightsError

TINY = LatentActionConfig(width=8, feature_dim=32, code_dim=4)
torch.set_num_threads(1)   # as the training command does: two spinning OpenMP threads crawl on a loaded machine


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import harness_nodes.dataset.generate as gen

    root = tmp_path_factory.mktemp("latent")
    original = gen.spec_for
    gen.spec_for = lambda seed, robot, split, perturb=True: original(seed, robot, split, perturb).__class__(
        seed=seed, robot=robot, max_steps=6)
    try:
        generate(root / "data", "panda", "train", episodes=2, workers=1, progress=False)
        generate(root / "data", "xarm6", "train", episodes=1, workers=1, progress=False)
    finally:
        gen.spec_for = original
    result = train_all(root / "data", root / "models", seed=3, lam_steps=60, policy_steps=20, decoder_steps=20,
                       label_fraction=0.5, config=TINY.model_copy(update={"dead_code_window": 10}),
                       progress=False, command="tiny test training")
    return root / "models", result


def test_training_writes_safetensors_with_metadata(tiny_models):
    models, result = tiny_models
    meta = json.loads((models / "metadata.json").read_text())
    assert meta["seed"] == 3 and meta["command"] == "tiny test training"
    assert set(meta["files"]) == {"latent_action_model", "decoder_panda", "decoder_xarm6", "policy"}
    for name, entry in meta["files"].items():
        assert (models / entry["file"]).is_file() and len(entry["sha256"]) == 64
    for key in ("train_code_usage", "train_perplexity", "train_lapa_closer_fraction", "dead_code_restarts"):
        assert key in meta["metrics"]
    assert meta["data"]["panda_train"]["episodes"] == 2
    # no pickle anywhere: the weight files are safetensors (8-byte header length + JSON header)
    raw = (models / "policy.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8:8 + header_len])


def test_core_proposes_distinct_decoded_candidates_and_caches(tiny_models):
    models, _ = tiny_models
    core = LatentPolicyCore(models, "panda")
    rng = np.random.default_rng(0)
    frames = {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in ("scene", "wrist")}
    state = [0.4, 0.0, 0.4, 0.0, 0.08]
    first = core.propose(frames, state, "put red_cube in tray", [0.45, 0.05, 0.025], num_candidates=5)
    assert len(first.candidates) == 5 and not first.cache_hit
    assert len({tuple(c.codes) for c in first.candidates}) == 5
    lps = [c.log_prob for c in first.candidates]
    assert lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
    for c in first.candidates:
        assert c.displacements.shape == (TINY.frame_interval, 4) and np.all(np.isfinite(c.displacements))
        assert np.all(np.abs(c.displacements[:, :3]) <= 0.03 + 1e-6)
        assert c.grip_open.shape == (TINY.frame_interval,)
    second = core.propose(frames, state, "put red_cube in tray", None, num_candidates=3, rng=rng)
    assert second.cache_hit and core.cache.hits == 1 and core.cache.misses == 1
    frames["scene"] = frames["scene"].copy()
    frames["scene"][0, 0, 0] ^= 1
    assert not core.propose(frames, state, "put red_cube in tray", None, 1).cache_hit


@pytest.mark.parametrize("goal,reason", [("put purple_cube in tray", "known objects"), ("", "known objects"),
                                         ("put red_cube and blue_cube in tray", "several")])
def test_goal_naming_unknown_object_is_rejected_with_the_known_ones(goal, reason):
    with pytest.raises(ObservationError, match=reason) as err:
        parse_goal(goal, ("red_cube", "green_cube", "blue_cube"))
    assert "red_cube" in str(err.value)


def test_bad_observations_are_rejected_with_a_reason(tiny_models):
    core = LatentPolicyCore(tiny_models[0], "panda")
    good = {c: np.zeros((64, 64, 3), np.uint8) for c in ("scene", "wrist")}
    state = [0.4, 0.0, 0.4, 0.0, 0.08]
    cases = [({"scene": good["scene"]}, state, None, "wrist"),
             ({**good, "scene": np.zeros((32, 64, 3), np.uint8)}, state, None, "shape"),
             ({**good, "wrist": np.full((64, 64, 3), np.nan)}, state, None, "non-finite"),
             (good, [0.4, np.nan, 0.4, 0.0, 0.08], None, "NaN"),
             (good, [0.4, 0.0], None, "shape"),
             (good, [1e308, 0.0, 0.4, 0.0, 0.08], None, "outside"),
             (good, state, [np.inf, 0, 0], "belief")]
    for frames, st, belief, reason in cases:
        with pytest.raises(ObservationError, match=reason):
            core.propose(frames, st, "put red_cube in tray", belief, 2)
    with pytest.raises(ObservationError, match="num_candidates"):
        core.propose(good, state, "put red_cube in tray", None, 0)


def test_missing_or_corrupt_weights_name_the_file_and_the_command(tiny_models, tmp_path):
    models, _ = tiny_models
    broken = tmp_path / "weights"
    shutil.copytree(models, broken)
    raw = bytearray((broken / "policy.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (broken / "policy.safetensors").write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="policy.safetensors.*corrupt.*tiny test training"):
        LatentPolicyCore(broken, "panda")
    (broken / "policy.safetensors").unlink()
    with pytest.raises(WeightsError, match="policy.safetensors is missing"):
        LatentPolicyCore(broken, "panda")
    with pytest.raises(WeightsError, match=f"metadata.json is missing.*{TRAIN_COMMAND}"):
        LatentPolicyCore(tmp_path / "nowhere", "panda")
    (broken / "metadata.json").write_text("{not json")
    with pytest.raises(WeightsError, match="corrupt"):
        LatentPolicyCore(broken, "panda")


def test_dead_code_restart_moves_unused_codes_onto_encoder_outputs():
    torch.manual_seed(0)
    model = LatentActionModel(TINY)
    vq = model.quantizer
    vq.usage[:] = 0
    vq.usage[0] = 100.0               # only code 0 used: every other code is dead
    candidates = torch.randn(32, TINY.code_dim) + 10.0
    moved = vq.restart_dead(candidates, 0.02)
    assert moved == TINY.codebook_size - 1
    assert torch.all(vq.codebook[1:].mean(1) > 5.0) and float(vq.usage.sum()) == 0.0


def test_code_statistics():
    assert code_statistics(np.zeros(10, int), 8) == (0.125, 1.0)
    usage, perplexity = code_statistics(np.arange(8).repeat(3), 8)
    assert usage == 1.0 and abs(perplexity - 8.0) < 1e-9


def test_forward_model_shapes():
    model = LatentActionModel(TINY)
    x = frames_to_tensor(np.zeros((2, 64, 64, 6), np.uint8))
    q, codes, _ = model.encode(x, x)
    assert codes.shape == (2, TINY.num_tokens)
    assert model.predict(x, q).shape == (2, 6, TINY.prediction_size, TINY.prediction_size)


def test_crop_to_fov_takes_the_centre_square():
    img = np.zeros((240, 320, 3), np.uint8)
    img[100:140, 140:180] = 255
    out = crop_to_fov(img, fy=207.8, fov_deg=60.0, size=64)
    assert out.shape == (64, 64, 3) and out[32, 32].max() == 255 and out[0, 0].max() == 0


def test_policy_rollout_in_the_world_executes_decoded_chunks(tiny_models):
    from harness_nodes.latent_policy.rollout import run_policy_episode

    core = LatentPolicyCore(tiny_models[0], "panda")
    result = run_policy_episode(core, "panda", seed=5, max_chunks=2, target="red_cube")
    assert result["chunks"] == 2 and result["success"] is False and result["target"] == "red_cube"
    assert core.cache.misses == 2      # the arm moved between the two observations: no stale reuse


def _synthetic_pairs(n: int, seed: int):
    """Pairs whose frames show a bright square that moves by the recorded tool motion, with the
    expert's rule for the action: step towards the target (at most MAX_STEP per step)."""
    from harness_nodes.dataset.features import MAX_STEP
    from harness_nodes.latent_policy.training import FramePairs

    rng = np.random.default_rng(seed)
    tool = rng.uniform([0.3, -0.2, 0.05], [0.6, 0.2, 0.3], (n, 3)).astype(np.float32)
    target = rng.uniform([0.3, -0.2, 0.025], [0.6, 0.2, 0.03], (n, 3)).astype(np.float32)
    offset = target - tool
    step = offset * np.minimum(1.0, MAX_STEP / np.linalg.norm(offset, axis=1, keepdims=True))
    actions = np.zeros((n, 2, 5), np.float32)
    actions[:, :, :3] = step[:, None, :]
    actions[:, :, 4] = 1.0
    frames = np.zeros((2 * n, 64, 64, 6), np.uint8)
    for i in range(n):
        for j, p in enumerate((tool[i], tool[i] + 2 * step[i])):
            r, c = int(32 + (p[0] - 0.45) * 80), int(32 + p[1] * 80)
            frames[2 * i + j, r - 3:r + 3, c - 3:c + 3, :] = 255
    states = np.concatenate([tool, np.zeros((n, 1)), np.full((n, 1), 0.08)], axis=1).astype(np.float32)
    idx = np.arange(n)
    return FramePairs(frames, 2 * idx, 2 * idx + 1, states, actions, np.zeros(n, int), np.zeros(n, int), target,
                      idx, np.ones(n, bool), np.zeros(n))


def test_decoder_steers_by_the_belief_the_code_alone_cannot_give():
    """The same latent decodes to a step towards wherever memory believes the target is."""
    from harness_nodes.latent_policy.configuration_latent_action import DecoderConfig
    from harness_nodes.latent_policy.training import belief_vectors, train_decoder

    pairs = _synthetic_pairs(400, 0)
    latents = np.zeros((len(pairs), 12), np.float32)          # one code for every pair: "approach"
    decoder = train_decoder(latents, pairs, DecoderConfig(latent_dim=12, chunk=2, hidden=64), 600, 0)
    test = _synthetic_pairs(100, 1)
    with torch.no_grad():
        motion, _ = decoder(torch.zeros(100, 12), torch.as_tensor(test.states),
                            torch.as_tensor(belief_vectors(test.targets)))
    true = test.actions[:, 0, :3]
    cosine = (motion[:, 0, :3].numpy() * true).sum(1) / (np.linalg.norm(true, axis=1) *
                                                          np.linalg.norm(motion[:, 0, :3].numpy(), axis=1) + 1e-9)
    assert np.median(cosine) > 0.9


def test_labelled_share_teaches_the_code_the_tool_motion():
    """With a few labelled pairs, a linear probe reads the (visible, x-y) motion from the code
    better than from a code trained on the same frames alone."""
    from harness_nodes.latent_policy.training import (apply_linear_probe, fit_linear_probe, infer_latents, r2_score,
                                                      train_latent_action_model)

    pairs = _synthetic_pairs(200, 2)
    config = LatentActionConfig(width=4, feature_dim=16, code_dim=4, codebook_size=8, dead_code_window=25,
                                prediction_size=16)
    labelled = pairs.subset(np.arange(len(pairs)) < 20)        # 10 % labelled
    motion = pairs.actions[:, 0, :2]
    scores = {}
    for name, share in (("frames only", None), ("labelled", labelled)):
        model, _ = train_latent_action_model(pairs, config, 150, 0, batch=16, labelled=share)
        q, _ = infer_latents(model, pairs)
        scores[name] = r2_score(apply_linear_probe(fit_linear_probe(q, motion), q), motion)
    assert scores["labelled"] > scores["frames only"] + 0.1, scores
