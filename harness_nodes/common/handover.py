"""A lock a busy loop shares fairly with callbacks.

CPython locks are not fair: a thread that releases a lock and takes it again at once (a physics
loop running behind real time never sleeps between steps) nearly always wins against a thread
that was already waiting, so a service or subscription callback can wait seconds for its turn.
`HandoverLock` counts the callbacks waiting; the loop calls `yield_to_waiters()` after each
release and lets them in before it takes the lock again."""
from __future__ import annotations

import threading
import time


class HandoverLock:
    """Re-entrant lock: callbacks use `with lock:`; the loop uses `with lock.loop():` and then
    `lock.yield_to_waiters()` outside it."""

    def __init__(self, max_yield: float = 0.05):
        self._lock = threading.RLock()
        self._count = threading.Lock()
        self._waiting = 0
        self.max_yield = max_yield

    def __enter__(self) -> "HandoverLock":
        with self._count:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._count:
                self._waiting -= 1
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def loop(self):
        """The loop's own hold: not counted as a waiter."""
        return self._lock

    @property
    def waiting(self) -> int:
        return self._waiting

    def yield_to_waiters(self) -> bool:
        """Called by the loop with the lock released: wait (at most `max_yield` s) until every
        callback waiting at this moment has had its turn. Returns whether anyone was waiting."""
        if self._waiting == 0:
            return False
        deadline = time.monotonic() + self.max_yield
        while self._waiting > 0 and time.monotonic() < deadline:
            time.sleep(0.0002)
        return True
