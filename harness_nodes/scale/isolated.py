"""One job in a child process of its own: its ROS domain in the environment (and in the spec's
`domain_id` field when it has one), a bounded run time, and afterwards the whole process tree it
started is stopped, whatever happened. An exception, a crash of the child or a timeout comes back
as an outcome, never as an exception in the caller."""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

OK, ERROR, TIMEOUT, CRASHED = "ok", "error", "timeout", "crashed"
STOP_GRACE = 5.0        # s between SIGTERM and SIGKILL for the job's processes
POLL_PERIOD = 0.5       # s between liveness checks of the child while waiting for its answer


@dataclass
class Outcome:
    status: str                 # ok | error | timeout | crashed
    value: Any = None
    error: str = ""
    wall_time_s: float = 0.0
    host: str = ""
    clean: bool = True          # every process of the job was seen to end


def with_domain(spec: Any, domain_id: int) -> Any:
    """The spec with its `domain_id` field set, if it is a dataclass with such a field left None."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type) and \
            any(f.name == "domain_id" for f in dataclasses.fields(spec)) and spec.domain_id is None:
        return dataclasses.replace(spec, domain_id=domain_id)
    return spec


_live: set = set()              # children running now (stopped all at once on an interrupt)
_live_lock = threading.Lock()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)   # unwinds: the job's finally blocks stop what it started


def _die_with_parent() -> None:
    """Linux: SIGTERM to this process when the process that started it ends (an interrupted
    driver, a lost Ray worker), so no job outlives its run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_main(conn, fn: Callable, spec: Any, domain_id: int) -> None:
    try:
        os.setsid()   # its own process group: the job's processes can be signalled together
    except OSError:
        pass
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _die_with_parent()
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        message = (OK, fn(with_domain(spec, domain_id)))
    except BaseException:   # noqa: BLE001 - everything the job raises is its result
        message = (ERROR, traceback.format_exc())
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError):
        pass   # the run stopped waiting (timeout): nobody is listening any more
    except Exception:   # noqa: BLE001 - e.g. a value that cannot be pickled
        conn.send((ERROR, "the job's result could not be sent back:\n" + traceback.format_exc()))
    conn.close()


def run_isolated(fn: Callable, spec: Any, domain_id: int, timeout: float | None = None,
                 start_method: str = "forkserver") -> Outcome:
    """Run fn(spec) in a child process on ROS domain `domain_id`, for at most `timeout` s."""
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload([getattr(fn, "__module__", "") or "harness_nodes.scale"])
    receiver, sender = ctx.Pipe(duplex=False)
    start = time.monotonic()
    child = ctx.Process(target=_child_main, args=(sender, fn, spec, domain_id), name=f"job-domain-{domain_id}")
    with _live_lock:   # started and registered at once: an interrupt in between would miss it
        child.start()
        _live.add(child)
    sender.close()
    deadline = None if timeout is None else start + timeout
    status, payload = TIMEOUT, None
    try:
        while True:
            wait = POLL_PERIOD if deadline is None else min(POLL_PERIOD, deadline - time.monotonic())
            if wait <= 0:
                break
            if receiver.poll(wait):
                try:
                    status, payload = receiver.recv()
                except EOFError:
                    status = CRASHED
                break
            if not child.is_alive() and not receiver.poll(0):
                status = CRASHED
                break
    finally:
        receiver.close()
        clean = stop_tree(child)
        with _live_lock:
            _live.discard(child)
    wall = time.monotonic() - start
    host = socket.gethostname()
    if status == OK:
        return Outcome(OK, payload, "", wall, host, clean)
    if status == ERROR:
        return Outcome(ERROR, None, payload, wall, host, clean)
    if status == CRASHED:
        return Outcome(CRASHED, None, f"the job's process died (exit code {child.exitcode})", wall, host, clean)
    return Outcome(TIMEOUT, None, f"no result within {timeout} s: the job's processes were stopped", wall, host,
                   clean)


def stop_all() -> None:
    """Stop every job child of this process and its processes (on an interrupt of the run)."""
    with _live_lock:
        children = list(_live)
    for child in children:
        stop_tree(child)


def stop_tree(child) -> bool:
    """Stop the child, its process group and every descendant (SIGTERM, then SIGKILL after
    STOP_GRACE); True when all of them are gone."""
    pids = {child.pid, *descendants(child.pid)} if child.pid else set()
    child.join(0.2)   # a job that finished exits by itself
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = {p for p in pids if _alive(p)} | ({child.pid} if child.is_alive() else set())
        if not alive and not _group_alive(child.pid):
            break
        _signal_group(child.pid, sig)
        for pid in alive:
            _signal(pid, sig)
        end = time.monotonic() + (STOP_GRACE if sig == signal.SIGTERM else 1.0)
        while time.monotonic() < end:
            child.join(0.05)
            if not child.is_alive() and not any(_alive(p) for p in pids) and not _group_alive(child.pid):
                break
    child.join(1.0)
    return not child.is_alive() and not any(_alive(p) for p in pids) and not _group_alive(child.pid)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = defaultdict(list)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[ppid].append(int(entry))
    found, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"   # a zombie has ended
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return not os.path.isdir("/proc")


def _group_alive(pgid: int | None) -> bool:
    """A process of group `pgid` (the job's own, made by setsid) is still running."""
    return bool(pgid) and any(_alive(p) for p in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    members.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return members


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid: int | None, sig: int) -> None:
    if pgid:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
