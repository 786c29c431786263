"""A dependency-free progress bar for the data and training commands (stderr, one line)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, width: int = 30, stream=sys.stderr):
        self.total, self.label, self.width, self.stream = max(1, int(total)), label, width, stream
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if now - self._last < 0.2 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total
        bar = "#" * int(frac * self.width)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {self.done}/{self.total} "
                          f"{elapsed:5.0f}s eta {eta:4.0f}s {note}   ")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
