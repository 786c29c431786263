"""Latent cache: model-internal encodings (the embodied analogue of an LLM's KV cache) keyed by
camera, model and a quantised scene region. An entry is dropped when a fact inside its region
changes (`invalidate_points`), so a stale encoding is never served; an encoding of frames captured
before the last change in its region (a store still on its way when the region changed) is refused
(`StaleEncoding`): the last `CHANGES_KEPT` changes are remembered with their times. Bounded by entries and bytes
(least recently used dropped first). Hit and miss counts are kept for diagnostics.

Pure and in memory. For persistence it records what changed since the last write (`pending()`:
entries stored, entries dropped, recency of entries fetched) and rebuilds itself from persisted
entries (`restore()`), checking them as `store()` checks new ones and applying the same bounds.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

MAX_CELL_INDEX = 2 ** 52     # quantised region indices stay exact integers below this
CHANGES_KEPT = 4096          # region changes remembered (point, time) to refuse encodings older than them
CLOCK_JUMP_BACK = 1.0        # s: a change this much older than the newest one means the clock was reset


class StaleEncoding(ValueError):
    """The encoding's frames were captured before a change inside its region."""


@dataclass
class LatentEntry:
    entry_id: str
    camera: str
    model: str
    center: tuple
    radius: float
    stamp: float
    shape: tuple
    data: np.ndarray          # float32, flat
    used: int = 0             # recency: larger = used more recently (orders eviction across restarts)


class LatentCache:
    def __init__(self, resolution: float = 0.05, max_entries: int = 1000, max_bytes: int = 64 << 20):
        self.resolution = float(resolution)
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[str, LatentEntry] = OrderedDict()   # least recently used first
        self.hits = 0
        self.misses = 0
        self.dropped = 0
        self.bytes = 0
        self.evicted: list[str] = []      # keys evicted for size (drained by the caller)
        self._changed: set[str] = set()   # stored or dropped since the last persisted write
        self._touched: set[str] = set()   # fetched (recency changed) since the last persisted write
        self._tick = 0
        self.changes: deque = deque(maxlen=CHANGES_KEPT)   # (point (3,), time of the change), oldest first
        self.refused_stale = 0

    def key(self, camera: str, model: str, center, radius: float) -> str:
        """The entry id of a region. Raises ValueError for a centre or radius that is not finite or
        so far out that its quantised cell index is not an exact integer."""
        r = self.resolution
        cells = [float(v) / r for v in (*center, radius)]
        if len(cells) != 4 or not all(math.isfinite(c) and abs(c) < MAX_CELL_INDEX for c in cells):
            raise ValueError(f"region centre and radius must be finite and within +-{MAX_CELL_INDEX * r:.3g} m")
        q = [int(math.floor(c + 0.5)) for c in cells]
        return f"{camera}|{model}|{q[0]},{q[1]},{q[2]}|{q[3]}"

    def _use(self) -> int:
        self._tick += 1
        return self._tick

    def _check(self, camera: str, model: str, center, radius: float, shape, data) -> tuple[tuple, np.ndarray]:
        data = np.asarray(data, dtype=np.float32).ravel()
        shape = tuple(int(s) for s in shape)
        if not camera or not model:
            raise ValueError("camera and model must be non-empty")
        if len(center) != 3:
            raise ValueError("region centre must have 3 coordinates")
        if not (math.isfinite(radius) and radius > 0) or not all(math.isfinite(float(v)) for v in center):
            raise ValueError("region centre must be finite and radius > 0")
        self.key(camera, model, center, radius)     # in range
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape {shape[:8]}: needs at least one dimension, each >= 1")
        elements = math.prod(shape)           # Python integers: [65536] * 4 does not wrap to 0
        if elements != data.size:
            raise ValueError(f"shape {shape[:8]} has {elements} elements, data has {data.size}")
        if data.nbytes > self.max_bytes:
            raise ValueError(f"encoding of {data.nbytes} bytes exceeds the cache's {self.max_bytes}")
        if not np.all(np.isfinite(data)):
            raise ValueError("encoding has NaN or inf values")
        return shape, data

    def store(self, camera: str, model: str, center, radius: float, stamp: float, shape, data) -> str:
        shape, data = self._check(camera, model, center, radius, shape, data)
        k = self.key(camera, model, center, radius)
        changed = self.changed_after(center, radius, stamp) if stamp > 0 else None   # 0: capture time unknown
        if changed is not None:
            self.refused_stale += 1
            raise StaleEncoding(f"the region changed at {changed:.3f} s, after these frames were captured "
                                f"({float(stamp):.3f} s): encode the current frames")
        self._drop(k)
        self._add(LatentEntry(k, camera, model, tuple(float(v) for v in center), float(radius), float(stamp),
                              shape, data, self._use()))
        return k

    def _add(self, e: LatentEntry) -> None:
        self.entries[e.entry_id] = e
        self.bytes += e.data.nbytes
        self._changed.add(e.entry_id)
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            k = next(iter(self.entries))
            self._drop(k)
            self.evicted.append(k)

    def fetch(self, camera: str, model: str, center, radius: float) -> LatentEntry | None:
        k = self.key(camera, model, center, radius)
        e = self.entries.get(k)
        if e is None:
            self.misses += 1
            return None
        self.entries.move_to_end(k)
        e.used = self._use()
        self._touched.add(k)
        self.hits += 1
        return e

    def _drop(self, k: str) -> bool:
        e = self.entries.pop(k, None)
        if e is None:
            return False
        self.bytes -= e.data.nbytes
        self._changed.add(k)
        self._touched.discard(k)
        return True

    def changed_after(self, center, radius: float, stamp: float) -> float | None:
        """Time of the newest remembered change inside the region later than `stamp`, else None."""
        c, r2 = np.asarray(center, dtype=float), float(radius) ** 2
        later = [(p, when) for p, when in self.changes if when > stamp]
        hits = [when for p, when in later if float(np.sum((p - c) ** 2)) <= r2]
        return max(hits) if hits else None

    def invalidate_points(self, points, now: float | None = None) -> list[str]:
        """Drop every entry whose region contains one of `points` (N,3); with `now`, remember the
        change so that encodings captured before it are refused. Returns dropped ids."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts) & (np.abs(pts) < 1e12), axis=1)]
        if now is not None and math.isfinite(now):
            if self.changes and now < self.changes[-1][1] - CLOCK_JUMP_BACK:
                self.changes.clear()     # the clock went back (a restarted sim clock): older times mean nothing
            self.changes.extend((p.copy(), float(now)) for p in pts)
        if not len(pts) or not self.entries:
            return []
        dropped = []
        for k, e in list(self.entries.items()):
            d2 = np.sum((pts - e.center) ** 2, axis=1)
            if np.any(d2 <= e.radius * e.radius):
                self._drop(k)
                dropped.append(k)
        self.dropped += len(dropped)
        return dropped

    # ------------------------------------------------------------------ persistence
    def pending(self) -> tuple[list[LatentEntry], list[str], list[tuple[int, str]]]:
        """What to write so the persisted entries equal these: (entries to upsert, ids to delete,
        (recency, id) of entries only fetched). Call `written()` once it is committed."""
        upserts = [self.entries[k] for k in self._changed if k in self.entries]
        deleted = [k for k in self._changed if k not in self.entries]
        used = [(self.entries[k].used, k) for k in self._touched if k in self.entries and k not in self._changed]
        return upserts, deleted, used

    def written(self) -> None:
        self._changed.clear()
        self._touched.clear()

    def restore(self, entries: list[LatentEntry], bad_ids=()) -> list[str]:
        """Fill an empty cache from persisted entries (any order; recency from `used`). An entry
        that fails the checks of `store()` or whose id is not its key at this resolution is left
        out; the bounds evict the least recently used. Left-out, evicted and `bad_ids` are pending
        deletion. Returns the ids left out or evicted."""
        out = [str(b) for b in bad_ids]
        for e in sorted(entries, key=lambda e: e.used):
            try:
                shape, data = self._check(e.camera, e.model, e.center, e.radius, e.shape, e.data)
                if self.key(e.camera, e.model, e.center, e.radius) != e.entry_id or not math.isfinite(e.stamp):
                    raise ValueError("key or stamp does not match")
            except (ValueError, TypeError):
                out.append(e.entry_id)
                continue
            self._drop(e.entry_id)
            self._add(LatentEntry(e.entry_id, e.camera, e.model, tuple(float(v) for v in e.center), float(e.radius),
                                  float(e.stamp), shape, data, int(e.used)))
            self._tick = max(self._tick, int(e.used))
        out += self.evicted
        self.evicted = []
        self._changed = set(out) - set(self.entries)     # restored entries are already persisted
        self._touched.clear()
        return out
