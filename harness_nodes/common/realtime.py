"""Real-time scheduling for a node process: SCHED_FIFO on every thread it has (the executor and
the middleware's receive threads) and on the threads it starts later, the way ros2_control's
controller manager asks for a priority and carries on, with a warning, where it is not allowed."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulingResult:
    applied: bool
    priority: int           # SCHED_FIFO priority asked for; 0 = normal scheduling
    threads: int            # threads switched
    message: str


def thread_ids() -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:          # no procfs: only the calling thread
        return [0]


def apply_realtime_priority(priority: int) -> SchedulingResult:
    """Switch every thread of this process to SCHED_FIFO at `priority` (1..98); 0 does nothing.

    Threads created afterwards inherit the policy from their creator. Needs CAP_SYS_NICE or an
    `rtprio` limit (`/etc/security/limits.conf`); without it nothing changes and the message says why."""
    if priority == 0:
        return SchedulingResult(False, 0, 0, "normal scheduling (realtime_priority 0)")
    if not 1 <= priority <= 98:
        raise ValueError(f"realtime priority must be in 1..98, got {priority}")
    if not hasattr(os, "sched_setscheduler"):
        return SchedulingResult(False, priority, 0, "SCHED_FIFO is not available on this platform")
    param = os.sched_param(priority)
    switched = 0
    for tid in thread_ids():
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
            switched += 1
        except ProcessLookupError:      # a thread that ended meanwhile
            continue
        except PermissionError:
            return SchedulingResult(
                False, priority, switched,
                f"SCHED_FIFO {priority} not permitted (needs CAP_SYS_NICE or an rtprio limit >= {priority}); "
                "running with normal scheduling, expect more jitter under CPU load")
    return SchedulingResult(True, priority, switched, f"SCHED_FIFO priority {priority} on {switched} thread(s)")
