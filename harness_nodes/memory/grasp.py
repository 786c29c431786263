"""Grasp tracking of the memory tracker: which visual fact the closed gripper holds (`Held`), its
pose carried with the tool while held, and its release (placed: confidence `placed_confidence`;
slipped out: INVALID). `GraspTracking` is the part of `MemoryCore` that does it (a mixin over the
core's fact table, parameters and events). Pure."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from harness_nodes.common.geometry import matrix_to_quat, quat_to_matrix
from harness_nodes.memory.facts import EventType, Kind, State


@dataclass
class Held:
    fact_id: str
    offset: np.ndarray          # object position in the tool frame, m
    rot_offset: np.ndarray      # object rotation in the tool frame
    grip_width: float
    chunk_id: str


class GraspTracking:
    """Grasp, carry and release methods of MemoryCore (see core.py for the state they use)."""

    def _set_held_offset(self, obj_pos, obj_quat) -> None:
        if self.held is None or self.ee is None:
            return
        ee_pos, ee_rot, _ = self.ee
        self.held.offset = ee_rot.T @ (np.asarray(obj_pos, dtype=float) - ee_pos)
        self.held.rot_offset = ee_rot.T @ quat_to_matrix(obj_quat)

    def check_grasp(self, chunk_id: str, now: float) -> str | None:
        """After a chunk: if the fingers are closed on something (width between empty and open) and a
        visual fact is within `grasp_radius` of the tool, that object is now held. Returns its subject."""
        p = self.p
        if self.held is not None or self.ee is None:
            return None
        ee_pos, ee_rot, width = self.ee
        if not (p.gripper_empty_width < width < p.gripper_open_width):
            return None
        t = self.table
        cand = t.in_region(ee_pos, p.grasp_radius)
        cand = cand[(t.kind[cand] == Kind.VISUAL) & (t.state[cand] != State.CONTRADICTED)] if len(cand) else cand
        if not len(cand):
            return None
        best = int(cand[np.argmin(np.linalg.norm(t.pos[cand] - ee_pos, axis=1))])
        rec = t.records[best]
        self.held = Held(rec.fact_id, np.zeros(3), np.eye(3), width, chunk_id)
        self._set_held_offset(t.pos[best], rec.orientation)
        self.counters.grasps += 1
        before = float(t.confidence(best, now))
        self._carry(best, now, p.held_confidence)
        t.records[best].source = "gripper"
        t.records[best].value = json.dumps({"held": True, "grasped_by": chunk_id})
        self._emit(EventType.VERIFIED, rec.fact_id, rec.subject,
                   f"grasped after {chunk_id} (gripper {width * 1000:.1f} mm): pose follows the gripper",
                   before, p.held_confidence, now)
        return rec.subject

    def _carry(self, slot: int, now: float, confidence: float | None = None) -> None:
        ee_pos, ee_rot, _ = self.ee
        pos = ee_pos + ee_rot @ self.held.offset
        t = self.table
        old = t.pos[slot].copy()
        t.set_pose(slot, pos, matrix_to_quat(ee_rot @ self.held.rot_offset))
        if confidence is not None:
            t.set_confidence(np.array([slot]), np.array([confidence]), now)
            t.state[slot] = State.VALID
        self.dirty.add(t.records[slot].fact_id)
        if np.linalg.norm(pos - old) > self.p.latent_resolution / 2:
            self._changed_region([pos, old])

    def update_gripper(self, ee_position, ee_rotation, width: float, now: float, active_chunk: str = "") -> None:
        """From joint states: tool pose (FK) and finger width. Carries a held object; detects release."""
        p = self.p
        ee_position = np.asarray(ee_position, dtype=float)
        ee_rotation = np.asarray(ee_rotation, dtype=float).reshape(3, 3)
        if not (np.all(np.isfinite(ee_position)) and np.all(np.isfinite(ee_rotation)) and math.isfinite(width)):
            return
        self.ee = (ee_position, ee_rotation, float(width))
        if self.held is None:
            return
        slot = self.table.slot_of.get(self.held.fact_id)
        if slot is None:
            self.held = None
            return
        if width > self.held.grip_width + p.release_hysteresis or width >= p.gripper_open_width:
            self.release(now, active_chunk)
            return
        if width <= p.gripper_empty_width:        # slipped out: closed on nothing
            self.release(now, active_chunk, slipped=True)
            return
        self._carry(slot, now)

    def release(self, now: float, active_chunk: str = "", slipped: bool = False) -> None:
        if self.held is None:
            return
        p = self.p
        slot = self.table.slot_of.get(self.held.fact_id)
        held, self.held = self.held, None
        self.counters.releases += 1
        if slot is None:
            return
        t = self.table
        rec = t.records[slot]
        before = float(t.confidence(slot, now))
        if slipped:
            t.set_confidence(np.array([slot]), np.array([0.0]), now)
            t.state[slot] = State.INVALID
            rec.invalidated_by = f"slipped from the gripper ({held.chunk_id})"
            rec.value = json.dumps({"held": False, "slipped": True})
            self._emit(EventType.INVALIDATED, rec.fact_id, rec.subject, rec.invalidated_by, before, 0.0, now)
        else:
            conf = p.placed_confidence
            t.set_confidence(np.array([slot]), np.array([conf]), now)
            t.state[slot] = State.VALID if conf >= p.stale_threshold else State.STALE
            rec.value = json.dumps({"held": False, "released_by": active_chunk or held.chunk_id})
            if active_chunk:
                self.exempt[rec.fact_id] = active_chunk
            if t.state[slot] == State.STALE:
                self._emit(EventType.STALE, rec.fact_id, rec.subject, "released; where it lands must be seen",
                           before, conf, now)
        self.dirty.add(rec.fact_id)
        self._changed_region([t.pos[slot]])
