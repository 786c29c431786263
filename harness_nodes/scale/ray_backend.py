"""The `ray` backend of run_jobs: each job is a Ray task (one CPU) that runs the job in a child
process exactly as the local backend does (`isolated.run_isolated`: its domain, its time bound,
its process tree stopped), so the job code does not know where it runs.

Connection: `ray_address=None` (or "local") starts a Ray instance on this machine with
`num_cpus=workers`, shut down at the end; any other address ("host:port", "ray://host:port",
"auto") connects to a running cluster (then `workers=None` means the cluster's CPUs) and only
disconnects at the end. A host:port that does not answer is refused at once with its address.

Domain ids: handed out by the driver's DomainPool when a task is submitted and taken back when its
result is in, with at most len(pool) tasks in flight, so no two running tasks share an id - across
the whole cluster, hence on every node. A task that does not answer RAY_BACKSTOP s after its own
time bound is cancelled (force) and its id quarantined, since its processes may still run.
"""
from __future__ import annotations

import re
import socket
import time
from contextlib import contextmanager

from harness_nodes.scale.domains import DomainPool
from harness_nodes.scale.isolated import CRASHED, ERROR, TIMEOUT, Outcome, run_isolated
from harness_nodes.scale.jobs import JobResult, RunSettings, ScaleOutError, note, progress_bar, to_result

RAY_BACKSTOP = 120.0        # s past the job's own time bound (queueing, process start, shipping results)
CONNECT_TIMEOUT = 5.0       # s for the reachability check of a cluster address
LOCAL_ADDRESSES = (None, "", "local")


def run_ray_job(fn, spec, domain_id: int, timeout: float | None, start_method: str) -> Outcome:
    """The body of one Ray task (module level, so Ray ships it by reference)."""
    return run_isolated(fn, spec, domain_id, timeout, start_method)


def connect(address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray; True when this call did (then ray.shutdown() undoes it: it stops a local
    instance and only disconnects from a cluster); False when Ray was initialised already."""
    try:
        import ray
    except ImportError as exc:
        raise ScaleOutError("the ray backend needs the `ray` package (pinned in requirements.txt; "
                            "`make setup` installs it)") from exc
    if ray.is_initialized():
        return False
    local = address in LOCAL_ADDRESSES
    if not local:
        check_reachable(address)
    try:
        if local:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:   # noqa: BLE001 - Ray raises several types; all mean the same here
        where = "a local Ray instance" if local else f"the Ray cluster at {address!r}"
        raise ScaleOutError(f"cannot start or reach {where}: {exc}") from exc
    return True


@contextmanager
def ray_session(address: str | None, num_cpus: int | None):
    """Ray for several run_jobs calls in a row: started or joined once, shut down (a local instance)
    or disconnected at the end; the calls inside find it initialised and leave it as it is."""
    started = connect(address, num_cpus)
    try:
        yield
    finally:
        import ray

        if started:
            ray.shutdown()


def check_reachable(address: str) -> None:
    """A host:port address must accept a TCP connection within CONNECT_TIMEOUT s ("auto" and
    other forms are left to Ray)."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if address.strip() == "auto":
        return
    if not match:
        raise ScaleOutError(f"Ray address {address!r}: want host:port, ray://host:port, auto or local")
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ScaleOutError(f"cannot reach the Ray cluster at {address!r} ({host}:{port}): {exc}") from exc


def run_on_ray(fn, specs: list, settings: RunSettings, pool: DomainPool) -> list[JobResult]:
    import ray

    started = connect(settings.ray_address, settings.workers)
    try:
        workers = settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        concurrency = min(workers, len(pool), len(specs))
        task = ray.remote(num_cpus=1, max_retries=0)(run_ray_job)
        results: list[JobResult | None] = [None] * len(specs)
        pending: dict = {}          # ref -> (index, domain, submitted at)
        next_index = 0
        bar = progress_bar(len(specs), settings)
        while next_index < len(specs) or pending:
            if not pending and not pool.available:   # every id quarantined: the rest cannot start
                for index in range(next_index, len(specs)):
                    results[index] = JobResult(index, specs[index], ERROR, error=(
                        f"not started: every ROS domain id is quarantined {sorted(pool.quarantined)}"))
                    note(bar, results[index])
                break
            while next_index < len(specs) and len(pending) < concurrency and pool.available:
                domain = pool.acquire()
                ref = task.remote(fn, specs[next_index], domain, settings.timeout, settings.start_method)
                pending[ref] = (next_index, domain, time.monotonic())
                next_index += 1
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                index, domain, submitted = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:   # noqa: BLE001 - worker died, node lost, ...
                    # An error raised inside the task (e.g. its arguments could not be unpickled)
                    # left no job process behind; a lost worker or node may have.
                    outcome = Outcome(CRASHED, error=f"the Ray task failed: {exc}",
                                      wall_time_s=time.monotonic() - submitted,
                                      clean=isinstance(exc, ray.exceptions.RayTaskError))
                (pool.release if outcome.clean else pool.quarantine)(domain)
                results[index] = to_result(index, specs[index], domain, outcome)
                note(bar, results[index])
            if settings.timeout is not None:
                for ref, (index, domain, submitted) in list(pending.items()):
                    if time.monotonic() - submitted > settings.timeout + RAY_BACKSTOP:
                        ray.cancel(ref, force=True)
                        pending.pop(ref)
                        pool.quarantine(domain)
                        results[index] = JobResult(index, specs[index], TIMEOUT, error=(
                            f"the Ray task gave no answer within {settings.timeout} s + {RAY_BACKSTOP} s; cancelled"),
                            domain_id=domain, wall_time_s=time.monotonic() - submitted)
                        note(bar, results[index])
        bar.close()
        return results   # type: ignore[return-value]
    finally:
        if started:
            ray.shutdown()
