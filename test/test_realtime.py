"""Real-time scheduling of a node process (harness_nodes/common/realtime.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness_nodes.common import realtime
from harness_nodes.common.realtime import apply_realtime_priority

REPO = Path(__file__).resolve().parents[1]


def test_priority_zero_leaves_scheduling_alone():
    before = os.sched_getscheduler(0)
    result = apply_realtime_priority(0)
    assert not result.applied and result.threads == 0
    assert os.sched_getscheduler(0) == before


@pytest.mark.parametrize("priority", [-1, 99, 1000])
def test_out_of_range_priority_is_an_error(priority):
    with pytest.raises(ValueError, match="1..98"):
        apply_realtime_priority(priority)


def test_not_permitted_says_why_and_changes_nothing(monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(realtime.os, "sched_setscheduler", refuse)
    result = apply_realtime_priority(50)
    assert not result.applied and "CAP_SYS_NICE" in result.message and "rtprio" in result.message


def test_every_thread_and_later_threads_are_switched_or_the_reason_is_given():
    # In a child process: the test runner itself must not become a real-time process.
    code = """
import json, os, threading, time
from harness_nodes.common.realtime import apply_realtime_priority, thread_ids
stop = threading.Event()
early = threading.Thread(target=stop.wait); early.start()
r = apply_realtime_priority(10)
late = threading.Thread(target=stop.wait); late.start()
policies = [os.sched_getscheduler(t) for t in thread_ids()]
stop.set(); early.join(); late.join()
print(json.dumps({"applied": r.applied, "threads": r.threads, "message": r.message, "policies": policies,
                  "fifo": os.SCHED_FIFO}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    if r["applied"]:
        assert r["threads"] == 2 and len(r["policies"]) == 3            # main + early switched, late inherits
        assert set(r["policies"]) == {r["fifo"]}
    else:
        assert "not permitted" in r["message"] and set(r["policies"]) != {r["fifo"]}
