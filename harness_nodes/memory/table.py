"""Columnar fact table with a uniform spatial grid: the hot numeric fields of every fact live in
numpy arrays (position, confidence and the time it refers to, half-life, state, kind), the rest in
per-slot records. Region queries visit only the grid cells the sphere's bounding box overlaps and
filter the candidates with one vectorised distance test, so they cost O(facts nearby), not
O(facts held); each cell's slots are also kept as a numpy array, rebuilt lazily after the cell
changes, so gathering candidates is one concatenation. Confidence decays lazily:
c(t) = c0 * 2^(-(t - t0) / half_life). `facts()` builds the Fact objects of many slots at once
(decay, positions, kinds and states converted in one vectorised pass each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness_nodes.memory.facts import Fact, Kind, State

_OFFSET = 1 << 20          # grid index offset (cells), keys packed into one int
_SPAN = 1 << 21
_KINDS = {int(k): k for k in Kind}
_STATES = {int(s): s for s in State}


@dataclass(slots=True)
class _Record:
    fact_id: str
    subject: str
    value: str
    orientation: tuple
    covariance: tuple
    first_seen: float
    last_verified: float
    source: str
    camera: str
    invalidated_by: str


class FactTable:
    """Facts by slot. Not thread-safe; one owner (the core)."""

    def __init__(self, cell_size: float = 0.1, capacity: int = 1024):
        if not cell_size > 0:
            raise ValueError("cell_size must be > 0")
        self.cell = float(cell_size)
        self._cap = 0
        self.pos = np.empty((0, 3))
        self.conf = np.empty(0)
        self.conf_t = np.empty(0)
        self.half_life = np.empty(0)      # s; inf = never decays
        self.state = np.empty(0, dtype=np.uint8)
        self.kind = np.empty(0, dtype=np.uint8)
        self.alive = np.empty(0, dtype=bool)
        self.dirty = np.empty(0, dtype=bool)
        self.records: list[_Record | None] = []
        self.slot_of: dict[str, int] = {}
        self.by_subject: dict[str, set[int]] = {}
        self.grid: dict[int, set[int]] = {}
        self._cell_slots: dict[int, np.ndarray] = {}   # grid cell -> its slots as an array (lazy cache)
        self.cell_of: list[int | None] = []
        self._free: list[int] = []
        self._n = 0                        # slots in use (high-water mark)
        self._grow(capacity)

    # ------------------------------------------------------------------ storage
    def _grow(self, capacity: int) -> None:
        old = self._cap
        capacity = max(capacity, 16)

        def grow(a, fill, shape=None):
            b = np.full((capacity,) + a.shape[1:], fill, dtype=a.dtype)
            b[:old] = a[:old]
            return b
        self.pos = grow(self.pos, np.nan)
        self.conf = grow(self.conf, 0.0)
        self.conf_t = grow(self.conf_t, 0.0)
        self.half_life = grow(self.half_life, np.inf)
        self.state = grow(self.state, 0)
        self.kind = grow(self.kind, 0)
        self.alive = grow(self.alive, False)
        self.dirty = grow(self.dirty, False)     # changed since the last flush (vectorised paths)
        self.records.extend([None] * (capacity - old))
        self.cell_of.extend([None] * (capacity - old))
        self._cap = capacity

    def __len__(self) -> int:
        return len(self.slot_of)

    def __contains__(self, fact_id: str) -> bool:
        return fact_id in self.slot_of

    def _key(self, p) -> int | None:
        if not (math.isfinite(p[0]) and math.isfinite(p[1]) and math.isfinite(p[2])):
            return None
        c = self.cell
        return ((int(math.floor(p[0] / c)) + _OFFSET)
                + (int(math.floor(p[1] / c)) + _OFFSET) * _SPAN
                + (int(math.floor(p[2] / c)) + _OFFSET) * _SPAN * _SPAN)

    def _place(self, slot: int) -> None:
        key = self._key(self.pos[slot])
        old = self.cell_of[slot]
        if key == old:
            return
        if old is not None:
            self._cell_slots.pop(old, None)
            cell = self.grid.get(old)
            if cell is not None:
                cell.discard(slot)
                if not cell:
                    del self.grid[old]
        if key is not None:
            self._cell_slots.pop(key, None)
            self.grid.setdefault(key, set()).add(slot)
        self.cell_of[slot] = key

    # ------------------------------------------------------------------ write
    def put(self, fact: Fact, half_life: float, conf_time: float) -> int:
        """Insert or replace a fact; `fact.confidence` is the confidence at `conf_time`."""
        slot = self.slot_of.get(fact.fact_id)
        if slot is None:
            if self._free:
                slot = self._free.pop()
            else:
                if self._n >= self._cap:
                    self._grow(self._cap * 2)
                slot = self._n
                self._n += 1
            self.slot_of[fact.fact_id] = slot
            self.by_subject.setdefault(fact.subject, set()).add(slot)
        else:
            old = self.records[slot]
            if old.subject != fact.subject:
                self._unsubject(slot, old.subject)
                self.by_subject.setdefault(fact.subject, set()).add(slot)
        self.pos[slot] = fact.position
        self.conf[slot] = min(1.0, max(0.0, float(fact.confidence)))
        self.conf_t[slot] = conf_time
        self.half_life[slot] = half_life if half_life > 0 else np.inf
        self.state[slot] = int(fact.state)
        self.kind[slot] = int(fact.kind)
        self.alive[slot] = True
        self.records[slot] = _Record(fact.fact_id, fact.subject, fact.value,
                                     tuple(float(v) for v in fact.orientation),
                                     tuple(float(v) for v in fact.covariance), fact.first_seen, fact.last_verified,
                                     fact.source, fact.camera, fact.invalidated_by)
        self._place(slot)
        return slot

    def _unsubject(self, slot: int, subject: str) -> None:
        s = self.by_subject.get(subject)
        if s is not None:
            s.discard(slot)
            if not s:
                del self.by_subject[subject]

    def remove(self, fact_id: str) -> bool:
        slot = self.slot_of.pop(fact_id, None)
        if slot is None:
            return False
        self._unsubject(slot, self.records[slot].subject)
        self.pos[slot] = np.nan
        self._place(slot)
        self.alive[slot] = False
        self.dirty[slot] = False
        self.records[slot] = None
        self._free.append(slot)
        return True

    def set_pose(self, slot: int, position, orientation=None, covariance=None) -> None:
        self.pos[slot] = position
        rec = self.records[slot]
        if orientation is not None:
            rec.orientation = tuple(float(v) for v in orientation)
        if covariance is not None:
            rec.covariance = tuple(float(v) for v in covariance)
        self._place(slot)

    def set_confidence(self, slots, values, now: float) -> None:
        self.conf[slots] = np.clip(values, 0.0, 1.0)
        self.conf_t[slots] = now
        self.dirty[slots] = True

    def dirty_slots(self) -> np.ndarray:
        return np.flatnonzero(self.dirty[:self._n])

    # ------------------------------------------------------------------ read
    def confidence(self, slots, now: float) -> np.ndarray:
        """Decayed confidence of `slots` at `now`."""
        age = np.maximum(0.0, now - self.conf_t[slots])
        return self.conf[slots] * np.exp2(-age / self.half_life[slots])

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.alive[:self._n])

    def in_region(self, center, radius: float) -> np.ndarray:
        """Slots whose position lies within `radius` of `center` (grid + one vectorised test)."""
        c = self.cell
        cx, cy, cz = (float(v) for v in center)
        bounds = [(v - radius) / c for v in (cx, cy, cz)] + [(v + radius) / c for v in (cx, cy, cz)]
        if not all(math.isfinite(b) and abs(b) < _OFFSET for b in bounds):
            return self.in_region_brute(center, radius)     # beyond the grid (or not finite): no cells
        lo = [int(math.floor((v - radius) / c)) + _OFFSET for v in (cx, cy, cz)]
        hi = [int(math.floor((v + radius) / c)) + _OFFSET for v in (cx, cy, cz)]
        cells = (hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1)
        if cells > max(64, len(self.grid)):
            return self.in_region_brute(center, radius)
        grid = self.grid
        arrays = self._cell_slots
        found = []
        for kz in range(lo[2], hi[2] + 1):
            bz = kz * _SPAN * _SPAN
            for ky in range(lo[1], hi[1] + 1):
                by = bz + ky * _SPAN
                for kx in range(lo[0], hi[0] + 1):
                    key = by + kx
                    a = arrays.get(key)
                    if a is None:
                        s = grid.get(key)
                        if not s:
                            continue
                        # Same order as iterating the set: it does not change while the array is cached.
                        a = arrays[key] = np.fromiter(s, dtype=np.intp, count=len(s))
                    found.append(a)
        if not found:
            return np.empty(0, dtype=np.intp)
        cand = found[0] if len(found) == 1 else np.concatenate(found)
        d = self.pos[cand] - (cx, cy, cz)
        return cand[np.einsum("ij,ij->i", d, d) <= radius * radius]

    def in_region_brute(self, center, radius: float) -> np.ndarray:
        """Reference implementation: one distance test over every slot."""
        d = self.pos[:self._n] - np.asarray(center, dtype=float)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.flatnonzero(np.einsum("ij,ij->i", d, d) <= radius * radius)

    def slots_of_subject(self, subject: str) -> np.ndarray:
        return np.fromiter(self.by_subject.get(subject, ()), dtype=np.intp)

    def fact(self, slot: int, now: float) -> Fact:
        rec = self.records[slot]
        return Fact(fact_id=rec.fact_id, kind=Kind(int(self.kind[slot])), subject=rec.subject, value=rec.value,
                    position=tuple(float(v) for v in self.pos[slot]), orientation=rec.orientation,
                    covariance=rec.covariance, confidence=float(self.confidence(slot, now)),
                    first_seen=rec.first_seen, last_verified=rec.last_verified, source=rec.source,
                    camera=rec.camera, state=State(int(self.state[slot])), invalidated_by=rec.invalidated_by)

    def facts(self, slots, now: float, confidence=None) -> list[Fact]:
        """`[self.fact(s, now) for s in slots]`, with the numeric work done once for all slots:
        decayed confidence (or `confidence`, already computed for these slots at `now`), positions,
        kinds and states each converted in one vectorised pass."""
        slots = np.asarray(slots, dtype=np.intp).reshape(-1)
        if not len(slots):
            return []
        conf = self.confidence(slots, now) if confidence is None else np.asarray(confidence, dtype=float)
        kinds = [_KINDS[k] if k in _KINDS else Kind(k) for k in self.kind[slots].tolist()]   # Kind(k) raises
        states = [_STATES[s] if s in _STATES else State(s) for s in self.state[slots].tolist()]
        recs = self.records
        positions = zip(*self.pos[slots].T.tolist())         # (x, y, z) tuples of Python floats
        return [Fact(r.fact_id, k, r.subject, r.value, p, r.orientation, r.covariance, c, r.first_seen,
                     r.last_verified, r.source, r.camera, st, r.invalidated_by)
                for r, k, p, c, st in zip(map(recs.__getitem__, slots.tolist()), kinds, positions,
                                          conf.tolist(), states)]

    def get(self, fact_id: str, now: float) -> Fact | None:
        slot = self.slot_of.get(fact_id)
        return None if slot is None else self.fact(slot, now)
