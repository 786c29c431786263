"""The world model's compact state: one float vector built from what the harness believes.

Layout (robot with n arm joints, K object slots; units m and rad):

    [ q_1..q_n | gripper_width | ee_x ee_y ee_z | ee_R[:,0] ee_R[:,1] |
      per slot k: x y z | qx qy qz qw | confidence | held | present ]

* joint positions and gripper width come from the joint state; the end-effector pose is their
  forward kinematics (rotation as its first two columns: continuous, unlike a quaternion);
* object slots come from memory facts (visual, not invalid or contradicted), the most confident
  fact per subject; slot 0 is the task's target, then the configured subjects in order; a subject
  memory does not hold has `present = 0` and zeros elsewhere;
* quaternions are sign-normalised (qw >= 0) so one orientation has one encoding.

Never built from simulator ground truth at run time (training data may use it as labels).
Pure: numpy only.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

OBJECT_FIELDS = 10          # x y z qx qy qz qw confidence held present
EE_FIELDS = 9               # position + two rotation columns
VISUAL_KIND = 0             # MemoryFact.KIND_VISUAL
USABLE_STATES = (0, 1)      # MemoryFact.STATE_VALID, STATE_STALE (its confidence already says how stale)


@dataclass(frozen=True)
class ObjectBelief:
    position: np.ndarray        # (3,) m
    quaternion: np.ndarray      # (4,) x y z w
    confidence: float = 1.0
    held: bool = False


@dataclass
class Belief:
    """What the harness believes: the arm's joints and gripper, and the objects memory holds."""
    arm_positions: np.ndarray                       # (n,) rad, description order
    gripper_width: float                            # m
    objects: dict[str, ObjectBelief] = field(default_factory=dict)


@dataclass(frozen=True)
class StateLayout:
    """Index arithmetic of the state vector for one robot and one slot order."""
    n_joints: int
    slots: tuple[str, ...]          # subject of each object slot, slot 0 = target

    @property
    def robot_dim(self) -> int:
        return self.n_joints + 1 + EE_FIELDS

    @property
    def dim(self) -> int:
        return self.robot_dim + OBJECT_FIELDS * len(self.slots)

    @property
    def width_index(self) -> int:
        return self.n_joints

    @property
    def ee_position(self) -> slice:
        return slice(self.n_joints + 1, self.n_joints + 4)

    @property
    def ee_rotation(self) -> slice:
        return slice(self.n_joints + 4, self.n_joints + 10)

    def slot(self, k: int) -> int:
        return self.robot_dim + OBJECT_FIELDS * k

    def object_position_index(self) -> np.ndarray:
        """(K, 3) indices of every slot's position."""
        return np.array([[self.slot(k) + i for i in range(3)] for k in range(len(self.slots))])

    def field_index(self, offset: int) -> np.ndarray:
        """(K,) index of one per-slot field: 7 confidence, 8 held, 9 present."""
        return np.array([self.slot(k) + offset for k in range(len(self.slots))])

    def names(self) -> list[str]:
        """A name per state entry (for metadata and debugging)."""
        out = [f"q{i}" for i in range(self.n_joints)] + ["gripper_width", "ee_x", "ee_y", "ee_z"]
        out += [f"ee_r{r}{c}" for c in range(2) for r in range(3)]
        for s in self.slots:
            out += [f"{s}.{f}" for f in ("x", "y", "z", "qx", "qy", "qz", "qw", "confidence", "held", "present")]
        return out


def slot_order(subjects: Sequence[str], target: str) -> tuple[str, ...]:
    """Target first, then the other subjects in their configured order."""
    if target not in subjects:
        raise ValueError(f"target '{target}' is not one of the state's subjects {list(subjects)}")
    return (target, *[s for s in subjects if s != target])


def canonical_quaternion(q: Sequence[float]) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    n = float(np.linalg.norm(q))
    q = q / n if n > 1e-9 else np.array([0.0, 0.0, 0.0, 1.0])
    return -q if q[3] < 0 else q


def build_state(belief: Belief, layout: StateLayout,
                ee_pose: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The state vector of a belief; `ee_pose(arm_q) -> (position, rotation matrix)` is the FK."""
    q = np.asarray(belief.arm_positions, dtype=float)
    if q.shape != (layout.n_joints,) or not np.all(np.isfinite(q)):
        raise ValueError(f"arm positions must be {layout.n_joints} finite values")
    if not math.isfinite(belief.gripper_width):
        raise ValueError("gripper width is not finite")
    s = np.zeros(layout.dim)
    s[:layout.n_joints] = q
    s[layout.width_index] = belief.gripper_width
    pos, rot = ee_pose(q)
    s[layout.ee_position] = pos
    s[layout.ee_rotation] = np.asarray(rot)[:, :2].T.reshape(-1)
    for k, subject in enumerate(layout.slots):
        obj = belief.objects.get(subject)
        if obj is None:
            continue
        i = layout.slot(k)
        s[i:i + 3] = obj.position
        s[i + 3:i + 7] = canonical_quaternion(obj.quaternion)
        s[i + 7] = float(np.clip(obj.confidence, 0.0, 1.0))
        s[i + 8] = 1.0 if obj.held else 0.0
        s[i + 9] = 1.0
    return s


def objects_from_facts(facts: Sequence[dict], min_confidence: float = 0.0) -> dict[str, ObjectBelief]:
    """The most confident usable visual fact per subject. A fact is a dict with subject, kind,
    state, position (3), quaternion (4), confidence and value (JSON text, may say {"held": true}).
    Facts with non-finite poses are skipped (memory never stores them; a request might carry them)."""
    best: dict[str, tuple[float, ObjectBelief]] = {}
    for f in facts:
        if f.get("kind") != VISUAL_KIND or f.get("state") not in USABLE_STATES:
            continue
        conf = float(f.get("confidence", 0.0))
        pos = np.asarray(f.get("position"), dtype=float)
        quat = np.asarray(f.get("quaternion"), dtype=float)
        if not (math.isfinite(conf) and conf >= min_confidence and pos.shape == (3,) and quat.shape == (4,)
                and np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-6):
            continue
        held = False
        try:
            held = bool(json.loads(f.get("value") or "{}").get("held", False))
        except (ValueError, AttributeError):
            pass
        subject = str(f.get("subject", ""))
        if subject not in best or conf > best[subject][0]:
            best[subject] = (conf, ObjectBelief(pos, canonical_quaternion(quat), min(conf, 1.0), held))
    return {s: b for s, (_, b) in best.items()}
