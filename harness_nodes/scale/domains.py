"""ROS domain ids for concurrent jobs: a pool that hands each running job an id no other running
job has, and takes it back when the job's processes are gone."""
from __future__ import annotations

import os
import threading
from typing import Iterable

# 0..101 are the ids whose DDS ports stay below Linux's ephemeral port range; 42 is the demo's.
DEFAULT_DOMAINS = range(60, 102)
DOMAINS_ENV = "HARNESS_DOMAINS"
MAX_DOMAIN_ID = 232


class DomainPoolError(RuntimeError):
    """A domain handed back twice, one the pool never had, or no id left to hand out."""


def parse_domain_range(text: str) -> range:
    """`lo-hi` (inclusive) -> range; ids must lie in 0..232 (ROS 2 on Linux)."""
    try:
        lo, hi = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"domain range {text!r}: want lo-hi, e.g. 60-101") from None
    if not 0 <= lo <= hi <= MAX_DOMAIN_ID:
        raise ValueError(f"domain range {text!r}: want 0 <= lo <= hi <= {MAX_DOMAIN_ID}")
    return range(lo, hi + 1)


def default_domains() -> range:
    """$HARNESS_DOMAINS (lo-hi) if set, else DEFAULT_DOMAINS."""
    text = os.environ.get(DOMAINS_ENV)
    return parse_domain_range(text) if text else DEFAULT_DOMAINS


class DomainPool:
    """Thread-safe pool of ROS domain ids. `acquire` blocks until an id is free (bounded by
    `timeout`), `release` returns it; `quarantine` keeps an id out for good (its job's processes
    could not be confirmed gone, so reusing it could mix two jobs' DDS traffic)."""

    def __init__(self, domains: Iterable[int]):
        ids = list(domains)
        if not ids:
            raise ValueError("no ROS domain ids to hand out")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ROS domain ids")
        bad = [d for d in ids if not 0 <= d <= MAX_DOMAIN_ID]
        if bad:
            raise ValueError(f"ROS domain ids outside 0..{MAX_DOMAIN_ID}: {bad}")
        self._all = frozenset(ids)
        self._free = list(reversed(ids))   # pop() hands out the lowest first
        self._busy: set[int] = set()
        self._quarantined: set[int] = set()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._all)

    @property
    def available(self) -> int:
        with self._cond:
            return len(self._free)

    @property
    def quarantined(self) -> frozenset[int]:
        with self._cond:
            return frozenset(self._quarantined)

    def acquire(self, timeout: float | None = None) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: self._free or self._exhausted(), timeout):
                raise DomainPoolError(f"no free ROS domain id within {timeout} s "
                                      f"({len(self._busy)} in use)")
            if not self._free:
                raise DomainPoolError("every ROS domain id is quarantined")
            domain = self._free.pop()
            self._busy.add(domain)
            return domain

    def release(self, domain: int) -> None:
        with self._cond:
            self._take_back(domain)
            self._free.append(domain)
            self._cond.notify()

    def quarantine(self, domain: int) -> None:
        with self._cond:
            self._take_back(domain)
            self._quarantined.add(domain)
            self._cond.notify_all()   # waiters learn when nothing is left to wait for

    def _exhausted(self) -> bool:
        return len(self._quarantined) == len(self._all)

    def _take_back(self, domain: int) -> None:
        if domain not in self._all:
            raise DomainPoolError(f"ROS domain {domain} is not one of this pool's")
        if domain not in self._busy:
            raise DomainPoolError(f"ROS domain {domain} was not handed out")
        self._busy.remove(domain)
