"""Latent policy core (pure: no rclpy): validates an observation, encodes its frames (with a cache
that reuses the encoding while the frames are unchanged), asks the policy for a distribution over
latent actions, takes N distinct ones and decodes each into an end-effector-delta action chunk
with the embodiment's decoder.

Frames are what the models were trained on: 64x64 RGB per camera, the scene camera at a 45 deg and
the wrist camera at a 60 deg vertical field of view. `crop_to_fov` turns a sim or real camera image
(any size, known focal length) into that.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness_nodes.dataset.features import CAMERA_KEYS, CONTROL_RATE, IMAGE_SIZE, MAX_STEP, MAX_YAW_STEP, SCENE_FOV_DEG
from harness_nodes.latent_policy.configuration_latent_action import DecoderConfig, LatentActionConfig, PolicyConfig
from harness_nodes.latent_policy.modeling_latent_action import ActionDecoder, LatentActionModel, LatentPolicy
from harness_nodes.latent_policy.training import belief_vectors, goal_vectors
from harness_nodes.latent_policy.weights import load_model, read_metadata

CAMERA_FOV_DEG = {"scene": SCENE_FOV_DEG, "wrist": 60.0}


class ObservationError(ValueError):
    """An observation the policy refuses; the message is the reason given to the caller."""


@dataclass
class Candidate:
    codes: list[int]
    embedding: np.ndarray          # (T * D,) quantised latent
    log_prob: float
    displacements: np.ndarray      # (H, 4): dx, dy, dz, dyaw per control step
    grip_open: np.ndarray          # (H,) probability the gripper should be open after each step

    def cumulative(self) -> np.ndarray:
        """(H, 4): each point relative to the chunk's start (the router's delta convention)."""
        return np.cumsum(self.displacements, axis=0)


@dataclass
class Proposal:
    candidates: list[Candidate]
    cache_hit: bool
    seconds: float
    features: torch.Tensor | None = None    # the frames' encoding the candidates came from


@dataclass
class EncodingCache:
    """LRU of frame encodings keyed by a digest of the frames."""
    capacity: int = 64
    entries: OrderedDict = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0

    def get(self, key: str):
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return value

    def invalidate(self, key: str) -> bool:
        return self.entries.pop(key, None) is not None

    def put(self, key: str, value) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


def crop_to_fov(image: np.ndarray, fy: float, fov_deg: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """Centre square of `image` spanning `fov_deg` (vertical = horizontal) at focal length fy
    pixels, resized to size x size (area averaging)."""
    import cv2

    h, w = image.shape[:2]
    side = int(round(2.0 * fy * math.tan(math.radians(fov_deg) / 2.0)))
    side = max(1, min(side, h, w))
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = image[y0:y0 + side, x0:x0 + side]
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


def parse_goal(goal: str, known: tuple[str, ...]) -> str:
    """The one known object the goal names, e.g. 'put red_cube in tray' -> 'red_cube'."""
    if not isinstance(goal, str) or not goal.strip():
        raise ObservationError(f"empty goal; name one of the known objects {list(known)}")
    if len(goal) > 256:
        raise ObservationError(f"goal is {len(goal)} characters (at most 256); name one of {list(known)}")
    words = goal.replace(",", " ").split()
    named = [obj for obj in known if obj in words]
    if len(named) != 1:
        unknown = [w for w in words if "_" in w and w not in known]
        what = f"unknown object(s) {unknown[:3]}" if unknown else ("no known object" if not named else
                                                                     f"several objects {named}")
        raise ObservationError(f"goal '{goal[:80]}' names {what}; known objects: {list(known)}")
    return named[0]


class LatentPolicyCore:
    """Loads the models once; `propose()` is called from one worker thread at a time."""

    def __init__(self, model_dir: str | Path, embodiment: str = "panda", cache_size: int = 64):
        self.model_dir = Path(model_dir)
        self.metadata = read_metadata(self.model_dir)
        self.lam = load_model(self.model_dir, "latent_action_model",
                              lambda c: LatentActionModel(LatentActionConfig(**c)))
        self.policy = load_model(self.model_dir, "policy", lambda c: LatentPolicy(PolicyConfig(**c)))
        self.decoder = load_model(self.model_dir, f"decoder_{embodiment}", lambda c: ActionDecoder(DecoderConfig(**c)))
        self.embodiment = embodiment
        self.config = self.lam.config
        self.objects = tuple(self.policy.config.objects)
        self.cache = EncodingCache(cache_size)
        self.model_id = f"latent_policy/{embodiment}/{self.metadata['files']['policy']['sha256'][:12]}"
        torch.set_num_threads(1)

    # -- inputs
    def validate_frames(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        """(H, W, 3 * cameras) uint8 from per-camera frames, or ObservationError with the reason."""
        size = self.config.image_size
        out = []
        for cam in self.config.cameras:
            f = frames.get(cam)
            if f is None:
                raise ObservationError(f"no '{cam}' camera frame yet (cameras needed: {list(self.config.cameras)})")
            f = np.asarray(f)
            if f.shape != (size, size, 3):
                raise ObservationError(f"'{cam}' frame has shape {f.shape}, expected {(size, size, 3)}")
            if f.dtype != np.uint8:
                if not np.all(np.isfinite(f)):
                    raise ObservationError(f"'{cam}' frame has non-finite values")
                raise ObservationError(f"'{cam}' frame has dtype {f.dtype}, expected uint8")
            out.append(f)
        return np.concatenate(out, axis=-1)

    def validate_state(self, state) -> np.ndarray:
        s = np.asarray(state, dtype=float)
        if s.shape != (self.decoder.config.state_dim,):
            raise ObservationError(f"proprioception has shape {s.shape}, expected ({self.decoder.config.state_dim},)")
        if not np.all(np.isfinite(s)):
            raise ObservationError("proprioception has NaN or infinite values")
        if np.any(np.abs(s[:3]) > 3.0):
            raise ObservationError(f"tool position {np.round(s[:3], 3).tolist()} m is outside the reachable cell")
        return s.astype(np.float32)

    def validate_belief(self, belief) -> np.ndarray:
        if belief is None:
            return np.zeros(4, dtype=np.float32)
        b = np.asarray(belief, dtype=float)
        if b.shape != (3,) or not np.all(np.isfinite(b)) or np.any(np.abs(b) > 3.0):
            raise ObservationError(f"target belief {b.tolist()[:6]} is not a finite position in the cell")
        return belief_vectors(b[None].astype(np.float32))[0]

    # -- inference
    def encode(self, stacked: np.ndarray, cache_key: str | None = None) -> tuple[torch.Tensor, bool]:
        """The frames' encoding, reused from the cache under `cache_key` (the caller vouches the scene
        is unchanged under it) or, without one, under a digest of the frames themselves."""
        key = cache_key or hashlib.blake2b(stacked.tobytes(), digest_size=16).hexdigest()
        cached = self.cache.get(key)
        if cached is not None:
            return cached, True
        with torch.no_grad():
            x = torch.as_tensor(stacked).permute(2, 0, 1).unsqueeze(0).float() / 255.0
            features = self.policy.encode(x)
        self.cache.put(key, features)
        return features, False

    def distribution(self, features: torch.Tensor, state: np.ndarray, goal_index: int, belief: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.policy.logits(features, torch.as_tensor(state)[None],
                                        torch.as_tensor(goal_vectors(np.array([goal_index]), len(self.objects))),
                                        torch.as_tensor(belief)[None])
        return torch.log_softmax(logits[0], dim=-1).numpy()      # (T, K)

    def top_codes(self, log_probs: np.ndarray, n: int, rng: np.random.Generator | None,
                  temperature: float = 1.0) -> list[tuple[list[int], float]]:
        """N distinct code tuples: the most likely (rng None) or sampled without replacement
        (Gumbel top-k over the joint distribution of the tokens)."""
        t, k = log_probs.shape
        combos = self._combos(t, k)
        joint = log_probs[np.arange(t)[None, :], combos].sum(axis=1)
        score = joint / max(temperature, 1e-3)
        if rng is not None:
            score = score + rng.gumbel(size=score.shape)
        order = np.argsort(-score)[:n]
        return [(combos[i].tolist(), float(joint[i])) for i in order]

    def _combos(self, t: int, k: int) -> np.ndarray:
        """Every code tuple, (K^T, T), built once."""
        if getattr(self, "_combo_table", None) is None or self._combo_table.shape != (k ** t, t):
            grids = np.meshgrid(*[np.arange(k)] * t, indexing="ij")
            self._combo_table = np.stack([g.reshape(-1) for g in grids], axis=1)
        return self._combo_table

    def decode(self, codes: list[list[int]], state: np.ndarray,
               belief: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        n = len(codes)
        with torch.no_grad():
            latent = self.lam.quantizer.lookup(torch.as_tensor(codes)).flatten(1)
            motion, grip_logit = self.decoder(latent, torch.as_tensor(state)[None].expand(n, -1),
                                              torch.as_tensor(belief)[None].expand(n, -1))
        motion = motion.numpy()
        motion[..., :3] = np.clip(motion[..., :3], -MAX_STEP, MAX_STEP)
        motion[..., 3] = np.clip(motion[..., 3], -MAX_YAW_STEP, MAX_YAW_STEP)
        return [(latent[i].numpy(), motion[i], torch.sigmoid(grip_logit[i]).numpy()) for i in range(len(codes))]

    def propose(self, frames: dict[str, np.ndarray], state, goal: str, belief=None, num_candidates: int = 4,
                rng: np.random.Generator | None = None, cache_key: str | None = None) -> Proposal:
        """Validated inputs -> N distinct decoded candidates, best first. Raises ObservationError."""
        start = time.perf_counter()
        if not 1 <= int(num_candidates) <= 64:
            raise ObservationError(f"num_candidates {num_candidates}: want 1..64")
        target = parse_goal(goal, self.objects)
        stacked = self.validate_frames(frames)
        s = self.validate_state(state)
        b = self.validate_belief(belief)
        features, hit = self.encode(stacked, cache_key)
        log_probs = self.distribution(features, s, self.objects.index(target), b)
        chosen = self.top_codes(log_probs, int(num_candidates), rng)
        decoded = self.decode([c for c, _ in chosen], s, b)
        cands = [Candidate(codes, emb, lp, motion, grip) for (codes, lp), (emb, motion, grip) in zip(chosen, decoded)]
        return Proposal(cands, hit, time.perf_counter() - start, features)

    @property
    def chunk_duration(self) -> float:
        return 1.0 / CONTROL_RATE


def camera_keys() -> tuple[str, ...]:
    return CAMERA_KEYS
