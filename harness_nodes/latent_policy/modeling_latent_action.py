"""The latent-action networks (torch, CPU-sized, 64x64 frames):

* `LatentActionModel`: inverse dynamics (o_t, o_t+k) -> `num_tokens` discrete codes from a shared
  codebook (vector quantisation, straight-through gradients, dead-code restarts), and a forward
  model predicting the later frame (downsampled) from the earlier one and the quantised code.
  Trained on frames, plus (LAOM's lesson) a small labelled share whose tool displacement a linear
  head reads from the encoder's output, so the codes keep the action and drop camera motion.
* `ActionDecoder`: one per embodiment, (quantised latent, proprioception, memory's belief about the
  target) -> an action chunk of end-effector deltas and a gripper state. The latent says what kind
  of motion to make; the target's offset from the tool (what memory believes, never ground truth
  at run time) says where, which an 8-entry code alone cannot say to the centimetre.
* `LatentPolicy`: (frames, proprioception, goal object, memory's belief about the target) -> a
  factorised categorical distribution over the codes of each token.

Frames enter as float tensors (B, 3 * cameras, H, W) in [0, 1], cameras stacked on channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness_nodes.latent_policy.configuration_latent_action import DecoderConfig, LatentActionConfig, PolicyConfig


# metres: the tool-to-target offset enters the networks in units of this (the table is ~0.5 m across)
OFFSET_SCALE = 0.1


def belief_inputs(belief: torch.Tensor, state: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, 7): the target position normalised like the tool position, the known flag, and the
    target's offset from the tool; zeros where memory knows nothing (known = 0)."""
    known = belief[:, 3:4]
    absolute = (belief[:, :3] - mean[:3]) / std[:3] * known
    offset = torch.clamp((belief[:, :3] - state[:, :3]) / OFFSET_SCALE, -10.0, 10.0) * known
    return torch.cat([absolute, known, offset], dim=1)


BELIEF_INPUTS = 7


class FrameEncoder(nn.Module):
    """Four stride-2 convolutions and a linear layer: (B, C, 64, 64) -> (B, feature_dim)."""

    def __init__(self, in_channels: int, width: int, feature_dim: int, image_size: int):
        super().__init__()
        w = width
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.ReLU())
        side = image_size // 16
        self.fc = nn.Linear(2 * w * side * side, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.conv(x).flatten(1)))


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation of (B, T, D) vectors against one codebook, with usage counts for
    dead-code restarts."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) * 0.5)
        self.register_buffer("usage", torch.zeros(codebook_size))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = z.reshape(-1, z.shape[-1])
        dist = torch.cdist(flat, self.codebook)
        codes = dist.argmin(dim=1)
        q = self.codebook[codes].view_as(z)
        if self.training:
            self.usage += torch.bincount(codes, minlength=self.codebook.shape[0]).float()
        return q, codes.view(z.shape[:-1]), flat

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook[codes]

    @torch.no_grad()
    def restart_dead(self, candidates: torch.Tensor, min_fraction: float) -> int:
        """Move codes used less than `min_fraction` of uniform since the last call onto random
        encoder outputs (`candidates`, (N, D)); reset the counts. Returns how many moved."""
        k = self.codebook.shape[0]
        total = float(self.usage.sum())
        dead = (self.usage < min_fraction * total / k).nonzero().flatten() if total > 0 else torch.empty(0, dtype=torch.long)
        if len(dead) and len(candidates):
            pick = torch.randint(len(candidates), (len(dead),))
            self.codebook.data[dead] = candidates[pick] + 0.01 * torch.randn(len(dead), candidates.shape[1])
        self.usage.zero_()
        return int(len(dead))


class LatentActionModel(nn.Module):
    def __init__(self, config: LatentActionConfig):
        super().__init__()
        self.config = config
        c = config
        self.idm = FrameEncoder(3 * c.in_channels, c.width, c.feature_dim, c.image_size)
        self.to_tokens = nn.Linear(c.feature_dim, c.num_tokens * c.code_dim)
        self.quantizer = VectorQuantizer(c.codebook_size, c.code_dim)
        self.context = FrameEncoder(c.in_channels, c.width, c.feature_dim, c.image_size)
        side = c.prediction_size // 8
        self._side = side
        self.fuse = nn.Sequential(nn.Linear(c.feature_dim + c.latent_dim, 256), nn.ReLU(),
                                  nn.Linear(256, 64 * side * side), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, c.in_channels, 4, 2, 1))
        # the forward model starts as "nothing changes" (copy o_t) and learns the change from there
        nn.init.zeros_(self.deconv[-1].weight)
        nn.init.zeros_(self.deconv[-1].bias)
        # linear read-out of the chunk's tool motion from the inverse-dynamics output (labelled share only)
        self.action_head = nn.Linear(c.latent_dim, c.frame_interval * c.label_dim)
        self.register_buffer("label_scale", torch.ones(c.label_dim))

    def encode(self, before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inverse dynamics: (quantised latent (B, T, D), codes (B, T), pre-quantisation (B, T, D))."""
        h = self.idm(torch.cat([before, after, after - before], dim=1))
        z = self.to_tokens(h).view(len(before), self.config.num_tokens, self.config.code_dim)
        q, codes, _ = self.quantizer(z)
        return q, codes, z

    def small(self, frames: torch.Tensor) -> torch.Tensor:
        return F.interpolate(frames, size=self.config.prediction_size, mode="area")

    def predict(self, before: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Forward model: the later frame (prediction_size square) from the earlier one and a latent."""
        h = self.fuse(torch.cat([self.context(before), latent.flatten(1)], dim=1))
        h = h.view(len(before), 64, self._side, self._side)
        return self.small(before) + self.deconv(h)

    def loss(self, before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, dict]:
        q, codes, z = self.encode(before, after)
        straight = z + (q - z).detach()
        pred = self.predict(before, straight)
        target = self.small(after)
        # most pixels do not change between o_t and o_t+k: weight the ones that do
        weight = 1.0 + 20.0 * (target - self.small(before)).abs().mean(dim=1, keepdim=True)
        recon = (weight * (pred - target) ** 2).mean()
        vq = F.mse_loss(q, z.detach()) + self.config.commitment * F.mse_loss(z, q.detach())
        return recon + vq, {"recon": float(recon.detach()), "vq": float(vq.detach()), "codes": codes, "z": z.detach()}

    def label_loss(self, before: torch.Tensor, after: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Labelled pairs: the linear read-out vs the recorded motion (B, k, label_dim)."""
        # read from the encoder's output before quantisation: pulling the quantised codes towards
        # the labels instead collapses the codebook onto a few entries
        _, _, z = self.encode(before, after)
        pred = self.action_head(z.flatten(1)).view(len(before), self.config.frame_interval, -1)
        return F.mse_loss(pred, motion / self.label_scale)


class ActionDecoder(nn.Module):
    """(latent (B, latent_dim), state (B, state_dim), belief (B, 4)) -> (chunk (B, H, action_dim - 1),
    grip logit (B, H))."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.net = nn.Sequential(nn.Linear(c.latent_dim + c.state_dim + BELIEF_INPUTS, c.hidden), nn.ReLU(),
                                 nn.Linear(c.hidden, c.hidden), nn.ReLU(),
                                 nn.Linear(c.hidden, c.chunk * c.action_dim))
        self.register_buffer("state_mean", torch.zeros(c.state_dim))
        self.register_buffer("state_std", torch.ones(c.state_dim))
        self.register_buffer("action_scale", torch.ones(c.action_dim - 1))

    def forward(self, latent: torch.Tensor, state: torch.Tensor, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = (state - self.state_mean) / self.state_std
        b = belief_inputs(belief, state, self.state_mean, self.state_std)
        out = self.net(torch.cat([latent, s, b], dim=1)).view(len(latent), self.config.chunk, self.config.action_dim)
        return out[..., :-1] * self.action_scale, out[..., -1]


class LatentPolicy(nn.Module):
    """Logits (B, num_tokens, codebook_size) of the latent action to take next."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = FrameEncoder(c.in_channels, c.width, c.feature_dim, c.image_size)
        cond = c.state_dim + len(c.objects) + BELIEF_INPUTS
        self.head = nn.Sequential(nn.Linear(c.feature_dim + cond, c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, c.num_tokens * c.codebook_size))
        self.register_buffer("state_mean", torch.zeros(c.state_dim))
        self.register_buffer("state_std", torch.ones(c.state_dim))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def logits(self, features: torch.Tensor, state: torch.Tensor, goal: torch.Tensor,
               belief: torch.Tensor) -> torch.Tensor:
        s = (state - self.state_mean) / self.state_std
        b = belief_inputs(belief, state, self.state_mean, self.state_std)
        out = self.head(torch.cat([features, s, goal, b], dim=1))
        return out.view(len(features), self.config.num_tokens, self.config.codebook_size)

    def forward(self, frames, state, goal, belief) -> torch.Tensor:
        return self.logits(self.encode(frames), state, goal, belief)


def frames_to_tensor(frames) -> torch.Tensor:
    """uint8 (B, H, W, 3 * cameras) or (H, W, 3 * cameras) -> float (B, C, H, W) in [0, 1]."""
    t = torch.as_tensor(frames)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).float() / 255.0
