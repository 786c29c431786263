"""Training and measurement of the latent-action models (pure torch + numpy, no ROS).

`FramePairs` turns LeRobot datasets into (o_t, o_t+k) pairs with their labels (used only where a
function says so); `train_latent_action_model` uses frames only; `train_decoder` uses the labels
of a small labelled subset; `train_policy` clones the latent codes the LAM assigns to successful
demonstrations (no action labels). The metric functions are what the benchmark reports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness_nodes.dataset.features import CUBE_IDS
from harness_nodes.dataset.lerobot import LeRobotDataset, image_key
from harness_nodes.latent_policy.configuration_latent_action import DecoderConfig, LatentActionConfig, PolicyConfig
from harness_nodes.latent_policy.modeling_latent_action import (ActionDecoder, LatentActionModel, LatentPolicy,
                                                                frames_to_tensor)


@dataclass
class FramePairs:
    frames: np.ndarray        # (N, H, W, 3 * cameras) uint8, every frame
    before: np.ndarray        # (P,) frame index of o_t
    after: np.ndarray         # (P,) frame index of o_t+k
    states: np.ndarray        # (P, state_dim) at t
    actions: np.ndarray       # (P, k, action_dim) from t
    phases: np.ndarray        # (P,)
    goals: np.ndarray         # (P,) index into CUBE_IDS
    targets: np.ndarray       # (P, 3) target position at t
    episode: np.ndarray       # (P,) episode number
    success: np.ndarray       # (P,) bool, the episode's outcome
    progress: np.ndarray      # (P,) t / episode length

    def __len__(self) -> int:
        return len(self.before)

    def subset(self, mask: np.ndarray) -> "FramePairs":
        keep = np.asarray(mask)
        return FramePairs(self.frames, *(getattr(self, f)[keep] for f in (
            "before", "after", "states", "actions", "phases", "goals", "targets", "episode", "success", "progress")))

    @staticmethod
    def concat(parts: list["FramePairs"]) -> "FramePairs":
        offsets = np.cumsum([0] + [len(p.frames) for p in parts[:-1]])
        eps = np.cumsum([0] + [int(p.episode.max()) + 1 if len(p) else 0 for p in parts[:-1]])
        return FramePairs(np.concatenate([p.frames for p in parts]),
                          np.concatenate([p.before + o for p, o in zip(parts, offsets)]),
                          np.concatenate([p.after + o for p, o in zip(parts, offsets)]),
                          *(np.concatenate([getattr(p, f) for p in parts]) for f in (
                              "states", "actions", "phases", "goals", "targets")),
                          np.concatenate([p.episode + e for p, e in zip(parts, eps)]),
                          np.concatenate([p.success for p in parts]),
                          np.concatenate([p.progress for p in parts]))


def stacked_frames(dataset: LeRobotDataset, cameras) -> np.ndarray:
    return np.concatenate([dataset.video(image_key(c)) for c in cameras], axis=-1)


def load_pairs(dataset: LeRobotDataset, k: int, cameras) -> FramePairs:
    frames = stacked_frames(dataset, cameras)
    cols = dataset.columns
    goal_of_task = {i: CUBE_IDS.index(t.split()[1]) for i, t in dataset.tasks.items()}
    before, after = [], []
    for sl in dataset.episode_slices():
        for t in range(sl.start, sl.stop - k):
            before.append(t)
            after.append(t + k)
    before, after = np.array(before, dtype=int), np.array(after, dtype=int)
    actions = np.stack([cols["action"][before + j] for j in range(k)], axis=1)
    lengths = np.array([ep["length"] for ep in dataset.episodes])
    ep_success = np.array([bool(ep.get("success", True)) for ep in dataset.episodes])
    episode = cols["episode_index"][before]
    return FramePairs(frames, before, after, cols["observation.state"][before].astype(np.float32),
                      actions.astype(np.float32), cols["phase_index"][before].astype(int),
                      np.array([goal_of_task[int(i)] for i in cols["task_index"][before]]),
                      cols["observation.target_position"][before].astype(np.float32), episode,
                      ep_success[episode], cols["frame_index"][before] / lengths[episode])


def _batches(n: int, batch: int, steps: int, rng: np.random.Generator):
    for _ in range(steps):
        yield rng.integers(0, n, size=min(batch, n))


def _bar(total: int, label: str, enabled: bool):
    import sys

    from tqdm import tqdm
    return tqdm(total=total, desc=label, disable=not enabled, file=sys.stderr, leave=False)


def train_latent_action_model(pairs: FramePairs, config: LatentActionConfig, steps: int, seed: int,
                              batch: int = 64, lr: float = 1e-3, progress: bool = False,
                              labelled: FramePairs | None = None,
                              label_batch: int = 16) -> tuple[LatentActionModel, dict]:
    """Reconstruction of the later frame through the quantised inverse-dynamics code, on the frames
    of `pairs` (no labels); with `labelled` (a small share with actions), each step also fits the
    code's linear read-out of the recorded tool motion on a batch of those."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LatentActionModel(config)
    use_labels = labelled is not None and len(labelled) > 0 and config.label_weight > 0
    if use_labels:
        motion = torch.as_tensor(labelled.actions[..., :config.label_dim])
        model.label_scale.copy_(motion.reshape(-1, config.label_dim).std(0) + 1e-4)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"step": [], "usage": [], "perplexity": [], "recon": [], "restarts": 0}
    window_codes = []
    bar = _bar(steps, "latent action model", progress)
    model.train()
    for step, idx in enumerate(_batches(len(pairs), batch, steps, rng), start=1):
        before = frames_to_tensor(pairs.frames[pairs.before[idx]])
        after = frames_to_tensor(pairs.frames[pairs.after[idx]])
        loss, info = model.loss(before, after)
        if use_labels:
            li = rng.integers(0, len(labelled), size=min(label_batch, len(labelled)))
            label = model.label_loss(frames_to_tensor(labelled.frames[labelled.before[li]]),
                                     frames_to_tensor(labelled.frames[labelled.after[li]]), motion[li])
            loss = loss + config.label_weight * label
            info["label"] = float(label.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        window_codes.append(info["codes"].flatten())
        if step % config.dead_code_window == 0:
            codes = torch.cat(window_codes)
            usage, perplexity = code_statistics(codes.numpy(), config.codebook_size)
            history["step"].append(step)
            history["usage"].append(usage)
            history["perplexity"].append(perplexity)
            history["recon"].append(info["recon"])
            window_codes = []
            if step < int(0.9 * steps):   # restarts stop before the end so the final codes settle
                history["restarts"] += model.quantizer.restart_dead(info["z"].reshape(-1, config.code_dim),
                                                                    config.dead_code_min_fraction)
            else:
                model.quantizer.usage.zero_()
        bar.update(1)
        bar.set_postfix(recon=f"{info['recon']:.4f}", **({"label": f"{info['label']:.3f}"} if use_labels else {}))
    bar.close()
    model.eval()
    return model, history


def code_statistics(codes: np.ndarray, codebook_size: int) -> tuple[float, float]:
    """(fraction of codes used, perplexity of the code histogram)."""
    counts = np.bincount(np.asarray(codes).reshape(-1), minlength=codebook_size).astype(float)
    if counts.sum() == 0:
        return 0.0, 0.0
    prob = counts / counts.sum()
    nz = prob[prob > 0]
    return float((counts > 0).mean()), float(math.exp(-(nz * np.log(nz)).sum()))


@torch.no_grad()
def infer_latents(model: LatentActionModel, pairs: FramePairs, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Quantised latents (P, T * D) and codes (P, T) of every pair."""
    qs, cs = [], []
    for s in range(0, len(pairs), batch):
        sl = slice(s, s + batch)
        q, codes, _ = model.encode(frames_to_tensor(pairs.frames[pairs.before[sl]]),
                                   frames_to_tensor(pairs.frames[pairs.after[sl]]))
        qs.append(q.flatten(1).numpy())
        cs.append(codes.numpy())
    return np.concatenate(qs), np.concatenate(cs)


@torch.no_grad()
def lapa_check(model: LatentActionModel, pairs: FramePairs, batch: int = 256) -> dict:
    """Fraction of pairs whose predicted later frame is closer to o_t+k than to o_t (and mean errors)."""
    closer, err_after, err_before = [], [], []
    for s in range(0, len(pairs), batch):
        sl = slice(s, s + batch)
        before = frames_to_tensor(pairs.frames[pairs.before[sl]])
        after = frames_to_tensor(pairs.frames[pairs.after[sl]])
        q, _, _ = model.encode(before, after)
        pred = model.predict(before, q)
        ea = ((pred - model.small(after)) ** 2).flatten(1).mean(1)
        eb = ((pred - model.small(before)) ** 2).flatten(1).mean(1)
        closer.append((ea < eb).numpy())
        err_after.append(ea.numpy())
        err_before.append(eb.numpy())
    return {"lapa_closer_fraction": float(np.concatenate(closer).mean()),
            "prediction_mse_to_later": float(np.concatenate(err_after).mean()),
            "prediction_mse_to_earlier": float(np.concatenate(err_before).mean())}


def chunk_targets(pairs: FramePairs) -> tuple[np.ndarray, np.ndarray]:
    """(P, k, 4) displacement/yaw per step and (P, k) gripper state."""
    return pairs.actions[..., :-1], pairs.actions[..., -1]


# Smallest standard deviation used to normalise proprioception (m, m, m, rad, m): a labelled set of
# one or two episodes barely varies in some dimensions, and dividing by that blows up new states.
STATE_STD_FLOOR = np.array([0.05, 0.05, 0.05, 0.1, 0.01], dtype=np.float32)


def state_std(states: np.ndarray) -> torch.Tensor:
    floor = STATE_STD_FLOOR[:states.shape[1]] if states.shape[1] <= len(STATE_STD_FLOOR) else 1e-3
    return torch.as_tensor(np.maximum(states.std(0), floor).astype(np.float32))


def train_decoder(latents: np.ndarray, pairs: FramePairs, config: DecoderConfig, steps: int, seed: int,
                  batch: int = 128, lr: float = 2e-3, progress: bool = False) -> ActionDecoder:
    """Labelled pairs: (latent, state, belief about the target) -> the k recorded actions."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ActionDecoder(config)
    motion, grip = chunk_targets(pairs)
    model.state_mean.copy_(torch.as_tensor(pairs.states.mean(0)))
    model.state_std.copy_(state_std(pairs.states))
    model.action_scale.copy_(torch.as_tensor(np.abs(motion).reshape(-1, motion.shape[-1]).std(0) + 1e-4))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    lat, st = torch.as_tensor(latents), torch.as_tensor(pairs.states)
    bl = torch.as_tensor(belief_vectors(pairs.targets))
    mo, gr = torch.as_tensor(motion), torch.as_tensor(grip)
    bar = _bar(steps, f"decoder {config.embodiment}", progress)
    model.train()
    for idx in _batches(len(pairs), batch, steps, rng):
        pred, logit = model(lat[idx], st[idx], bl[idx])
        loss = F.mse_loss(pred / model.action_scale, mo[idx] / model.action_scale) + \
            F.binary_cross_entropy_with_logits(logit, gr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update(1)
    bar.close()
    model.eval()
    return model


def belief_vectors(targets: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    known = np.ones(len(targets), dtype=np.float32) if known is None else known.astype(np.float32)
    return np.concatenate([targets * known[:, None], known[:, None]], axis=1).astype(np.float32)


def goal_vectors(goals: np.ndarray, n: int = len(CUBE_IDS)) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[goals]


def train_policy(pairs: FramePairs, codes: np.ndarray, config: PolicyConfig, steps: int, seed: int,
                 batch: int = 64, lr: float = 1e-3, progress: bool = False) -> LatentPolicy:
    """Behaviour cloning in latent space: predict the LAM's codes of the demonstrations."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LatentPolicy(config)
    model.state_mean.copy_(torch.as_tensor(pairs.states.mean(0)))
    model.state_std.copy_(state_std(pairs.states))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    st, gl = torch.as_tensor(pairs.states), torch.as_tensor(goal_vectors(pairs.goals))
    bl = torch.as_tensor(belief_vectors(pairs.targets))
    cd = torch.as_tensor(codes, dtype=torch.long)
    bar = _bar(steps, "policy", progress)
    model.train()
    for idx in _batches(len(pairs), batch, steps, rng):
        logits = model(frames_to_tensor(pairs.frames[pairs.before[idx]]), st[idx], gl[idx], bl[idx])
        loss = F.cross_entropy(logits.reshape(-1, config.codebook_size), cd[idx].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update(1)
    bar.close()
    model.eval()
    return model


@torch.no_grad()
def policy_latents(lam: LatentActionModel, policy: LatentPolicy, pairs: FramePairs, batch: int = 256) -> np.ndarray:
    """(P, T * D): the quantised latent of the policy's most likely code for each pair's o_t."""
    codes = []
    for s in range(0, len(pairs), batch):
        sl = slice(s, s + batch)
        logits = policy(frames_to_tensor(pairs.frames[pairs.before[sl]]), torch.as_tensor(pairs.states[sl]),
                        torch.as_tensor(goal_vectors(pairs.goals[sl])), torch.as_tensor(belief_vectors(pairs.targets[sl])))
        codes.append(logits.argmax(-1))
    return lam.quantizer.lookup(torch.cat(codes)).flatten(1).numpy()


def r2_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Coefficient of determination over all output dimensions (variance-weighted)."""
    pred, true = np.asarray(pred).reshape(len(true), -1), np.asarray(true).reshape(len(true), -1)
    ss_res = ((pred - true) ** 2).sum()
    ss_tot = ((true - true.mean(0)) ** 2).sum()
    return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


def fit_linear_probe(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return np.linalg.solve(xa.T @ xa + ridge * np.eye(xa.shape[1]), xa.T @ y.reshape(len(y), -1))


def apply_linear_probe(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1) @ w
