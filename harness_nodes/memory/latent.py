"""Latent cache: model-internal encodings (the embodied analogue of an LLM's KV cache) keyed by
camera, model and a quantised scene region. An entry is dropped when a fact inside its region
changes (`invalidate_points`), so a stale encoding is never served. Bounded by entries and bytes
(least recently used dropped first). Hit and miss counts are kept for diagnostics.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


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


class LatentCache:
    def __init__(self, resolution: float = 0.05, max_entries: int = 1000, max_bytes: int = 64 << 20):
        self.resolution = float(resolution)
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[str, LatentEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.dropped = 0
        self.bytes = 0

    def key(self, camera: str, model: str, center, radius: float) -> str:
        r = self.resolution
        q = [int(math.floor(float(v) / r + 0.5)) for v in center]
        return f"{camera}|{model}|{q[0]},{q[1]},{q[2]}|{int(math.floor(float(radius) / r + 0.5))}"

    def store(self, camera: str, model: str, center, radius: float, stamp: float, shape, data) -> str:
        data = np.asarray(data, dtype=np.float32).ravel()
        shape = tuple(int(s) for s in shape)
        if not camera or not model:
            raise ValueError("camera and model must be non-empty")
        if not (math.isfinite(radius) and radius > 0) or not all(math.isfinite(float(v)) for v in center):
            raise ValueError("region centre must be finite and radius > 0")
        if int(np.prod(shape)) != data.size:
            raise ValueError(f"shape {shape} has {int(np.prod(shape))} elements, data has {data.size}")
        if data.nbytes > self.max_bytes:
            raise ValueError(f"encoding of {data.nbytes} bytes exceeds the cache's {self.max_bytes}")
        if not np.all(np.isfinite(data)):
            raise ValueError("encoding has NaN or inf values")
        k = self.key(camera, model, center, radius)
        self._drop(k)
        self.entries[k] = LatentEntry(k, camera, model, tuple(float(v) for v in center), float(radius),
                                      float(stamp), shape, data)
        self.bytes += data.nbytes
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))
        return k

    def fetch(self, camera: str, model: str, center, radius: float) -> LatentEntry | None:
        k = self.key(camera, model, center, radius)
        e = self.entries.get(k)
        if e is None:
            self.misses += 1
            return None
        self.entries.move_to_end(k)
        self.hits += 1
        return e

    def _drop(self, k: str) -> bool:
        e = self.entries.pop(k, None)
        if e is None:
            return False
        self.bytes -= e.data.nbytes
        return True

    def invalidate_points(self, points) -> list[str]:
        """Drop every entry whose region contains one of `points` (N,3). Returns dropped ids."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
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
