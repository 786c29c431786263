"""The learned backend: an ensemble of small MLPs over the compact state (state.py) and per-step
actions (actions.py), evaluated for every member and every candidate in one batched forward.

    encode(state, action)  -> features (normalised state, tool target relative to the tool,
                              objects relative to the tool)
    next(states, action)   -> next states (each member rolls its own trajectory) + failure logits
    progress(states)       -> task progress in 0..1, a function of the state (target held, near or
                              in the tray)
    rollout(state, actions) -> end states, progress, failure probability and disagreement for N
                              candidates of H steps

Members differ by initialisation and bootstrap batches; their disagreement is the uncertainty.
Torch, CPU; no ROS.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from harness_nodes.world_model.state import OBJECT_FIELDS, StateLayout

FAILURE_FLAGS = ("dropped", "collision", "disturbed", "unreachable")
TRAY_INSIDE = 0.1          # m from the tray centre (x and y) counted as inside
TRAY_INSIDE_HEIGHT = 0.06  # m above the tray base
PROGRESS_REACH = 0.4       # m over which approaching the target earns progress


@dataclass(frozen=True)
class EnsembleShape:
    n_joints: int
    n_slots: int
    action_dim: int = 12
    members: int = 5
    hidden: int = 128
    layers: int = 2
    tray_slot: int = 3

    @property
    def state_dim(self) -> int:
        return StateLayout(self.n_joints, tuple(str(i) for i in range(self.n_slots))).dim

    @property
    def feature_dim(self) -> int:
        return self.state_dim + self.action_dim + 3 * self.n_slots

    def to_dict(self) -> dict:
        return asdict(self)


def task_progress(states: torch.Tensor, layout: StateLayout, tray_slot: int) -> torch.Tensor:
    """Progress (...,) in 0..1 of the pick-and-place task a state shows: approach the target (slot
    0), hold it, carry it over the tray, leave it in the tray."""
    s = torch.as_tensor(states, dtype=torch.float32)
    target = s[..., layout.slot(0):layout.slot(0) + 3]
    held = s[..., layout.slot(0) + 8].clamp(0, 1)
    tray = s[..., layout.slot(tray_slot):layout.slot(tray_slot) + 3]
    ee = s[..., layout.ee_position]
    d_tray = torch.linalg.norm(target[..., :2] - tray[..., :2], dim=-1)
    reach = 0.3 * (1 - (torch.linalg.norm(ee - target, dim=-1) / PROGRESS_REACH).clamp(0, 1))
    carry = 0.4 + 0.5 * (1 - (d_tray / PROGRESS_REACH).clamp(0, 1))
    inside = ((target[..., :2] - tray[..., :2]).abs().amax(-1) < TRAY_INSIDE) & \
             (target[..., 2] < tray[..., 2] + TRAY_INSIDE_HEIGHT) & (held < 0.5)
    return torch.where(inside, torch.ones_like(reach), held * carry + (1 - held) * reach)


class MemberLinear(nn.Module):
    """One linear layer per member: x (E, N, in) -> (E, N, out) in a single batched matmul."""

    def __init__(self, members: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(members, d_in, d_out) * (2.0 / d_in) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(members, 1, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class WorldModelEnsemble(nn.Module):
    def __init__(self, shape: EnsembleShape):
        super().__init__()
        self.shape = shape
        self.layout = StateLayout(shape.n_joints, tuple(str(i) for i in range(shape.n_slots)))
        dims = [shape.feature_dim] + [shape.hidden] * shape.layers
        self.body = nn.ModuleList(MemberLinear(shape.members, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = MemberLinear(shape.members, shape.hidden, shape.state_dim + len(FAILURE_FLAGS))
        for name, dim in (("feature", shape.feature_dim), ("delta", shape.state_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        lay = self.layout
        self.register_buffer("object_xyz", torch.as_tensor(lay.object_position_index()).reshape(-1))
        # entries the model never changes: confidence and presence of each slot
        keep = torch.zeros(shape.state_dim, dtype=torch.bool)
        keep[torch.as_tensor(lay.field_index(7))] = True
        keep[torch.as_tensor(lay.field_index(9))] = True
        self.register_buffer("kept", keep)

    # -- the four methods
    def encode(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """states (..., D), actions (..., A) -> normalised features (..., F)."""
        ee = states[..., self.layout.ee_position]
        rel_action = torch.cat([actions[..., :3] - ee, actions[..., 3:]], dim=-1)
        objects = states[..., self.object_xyz].unflatten(-1, (self.shape.n_slots, 3))
        rel_objects = (objects - ee.unsqueeze(-2)).flatten(-2)
        x = torch.cat([states, rel_action, rel_objects], dim=-1)
        return (x - self.feature_mean) / self.feature_std

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (E, N, F) -> normalised state deltas (E, N, D), failure logits (E, N, 4)."""
        h = features
        for layer in self.body:
            h = torch.relu(layer(h))
        out = self.head(h)
        return out[..., :self.shape.state_dim], out[..., self.shape.state_dim:]

    def next(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states (E, N, D), actions (N, A) -> next states (E, N, D), failure logits (E, N, 4)."""
        delta, logits = self(self.encode(states, actions.expand(states.shape[0], -1, -1)))
        delta = delta * self.delta_std + self.delta_mean
        nxt = torch.where(self.kept, states, states + delta)
        held = self.layout.field_index(8)
        nxt[..., held] = nxt[..., held].clamp(0.0, 1.0)
        return nxt, logits

    def progress(self, states: torch.Tensor) -> torch.Tensor:
        """Task progress (...,) in 0..1 of predicted states."""
        return task_progress(states, self.layout, self.shape.tray_slot)

    @torch.no_grad()
    def rollout(self, state: torch.Tensor, actions: torch.Tensor, steps: torch.Tensor | None = None) -> dict:
        """state (D,), actions (N, H, A) (padded), steps (N,) valid steps per candidate (default H).
        Returns per candidate: end state (N, D, member mean), progress (N,), failure probability
        (N,), failure std across members (N,), uncertainty (N,) in m, per-flag probability (N, 4),
        and the end state of each member (E, N, D). A rollout's failure probability is, per member,
        the largest per-step flag probability (the per-step heads are trained with up-weighted
        failures, so compounding them over steps would saturate), averaged over members."""
        n, h, _ = actions.shape
        e = self.shape.members
        steps = torch.full((n,), h) if steps is None else steps
        s = state.expand(e, n, -1).clone()
        flag_p = torch.zeros(e, n, len(FAILURE_FLAGS))
        for t in range(h):
            nxt, logits = self.next(s, actions[:, t])
            active = (t < steps).view(1, n, 1)
            s = torch.where(active, nxt, s)
            flag_p = torch.maximum(flag_p, torch.sigmoid(logits) * active)
        fail_member = flag_p.amax(-1)                           # (E, N): the likeliest failure of any step
        xyz = s[..., self.object_xyz].unflatten(-1, (self.shape.n_slots, 3))
        present = s[0][..., self.layout.field_index(9)]         # (N, K)
        spread = xyz.std(0).norm(dim=-1)                        # (N, K)
        ee_spread = s[..., self.layout.ee_position].std(0).norm(dim=-1)
        uncertainty = torch.maximum((spread * present).amax(-1), ee_spread)
        return {"state": s.mean(0), "member_states": s, "progress": self.progress(s).mean(0),
                "failure_probability": fail_member.mean(0), "failure_std": fail_member.std(0),
                "flag_probability": flag_p.mean(0), "uncertainty": uncertainty}
