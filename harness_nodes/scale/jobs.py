"""Independent jobs (one picklable function, a list of specs) run in parallel: in child processes
of this machine (`local`) or as tasks of a Ray cluster (`ray`), the job code the same for both.

Every running job has a ROS domain id no other running job has: the driver holds one DomainPool,
gives a job an id when it starts and takes it back when its result (or failure) is in, and never
keeps more jobs in flight than there are ids. Ids are therefore unique across everything running
at once - on a Ray cluster across all nodes, so in particular on each node. An id whose job's
processes could not be confirmed gone is quarantined, not reused.

Each job runs in a child process (`isolated.run_isolated`): a bounded time, its whole process tree
stopped afterwards, exceptions, crashes and timeouts returned as results. Results come back in the
order of the specs, whatever order the jobs finish in.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

from harness_nodes.scale.domains import DomainPool, DomainPoolError, default_domains
from harness_nodes.scale.isolated import CRASHED, ERROR, OK, TIMEOUT, Outcome, run_isolated, stop_all

BACKENDS = ("local", "ray")


class ScaleOutError(RuntimeError):
    """Bad settings of a run: unknown backend, no workers, a Ray cluster that cannot be reached."""


@dataclass
class JobResult:
    index: int                  # position of the spec in the list given
    spec: Any
    status: str                 # ok | error | timeout | crashed
    value: Any = None           # what the job function returned (status ok)
    error: str = ""             # traceback or reason (otherwise)
    domain_id: int | None = None
    wall_time_s: float = 0.0
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class RunSettings:
    backend: str = "local"
    workers: int | None = 2             # jobs in flight at once (None: this machine's / the Ray cluster's CPUs)
    timeout: float | None = None        # s per job, from its start
    domains: Iterable[int] | None = None   # ROS domain ids to hand out (default: default_domains())
    ray_address: str | None = None      # None: start a local Ray instance; else a cluster address
    start_method: str = "forkserver"    # how a job's child process is started
    progress: bool = True
    label: str = "jobs"


def run_jobs(fn: Callable[[Any], Any], specs: Sequence[Any], settings: RunSettings | None = None,
             **overrides) -> list[JobResult]:
    """Run fn(spec) for every spec; one JobResult per spec, in the specs' order.

    `fn` must be importable by name (a module-level function, not one of `__main__`), as must the
    specs' types, since both are pickled to the job's process (and to the Ray cluster's nodes). As
    with multiprocessing, a script that calls this needs the `if __name__ == "__main__":` guard: a
    job's process imports the main module again."""
    unknown = [k for k in overrides if k not in RunSettings.__dataclass_fields__]
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; known: {list(RunSettings.__dataclass_fields__)}")
    settings = replace(settings or RunSettings(), **overrides)
    if settings.backend not in BACKENDS:
        raise ScaleOutError(f"unknown backend {settings.backend!r}; known: {list(BACKENDS)}")
    if settings.workers is not None and settings.workers < 1:
        raise ScaleOutError(f"workers must be >= 1, got {settings.workers}")
    if settings.timeout is not None and not settings.timeout > 0:
        raise ScaleOutError(f"timeout must be > 0 s, got {settings.timeout}")
    specs = list(specs)
    pool = DomainPool(default_domains() if settings.domains is None else settings.domains)
    if not specs:
        return []
    if settings.backend == "ray":
        from harness_nodes.scale.ray_backend import run_on_ray

        return run_on_ray(fn, specs, settings, pool)
    return _run_local(fn, specs, settings, pool)


def _run_local(fn, specs: list, settings: RunSettings, pool: DomainPool) -> list[JobResult]:
    concurrency = min(settings.workers or os.cpu_count() or 1, len(pool), len(specs))
    results: list[JobResult | None] = [None] * len(specs)

    def job(index: int) -> JobResult:
        try:
            domain = pool.acquire()
        except DomainPoolError as exc:
            return JobResult(index, specs[index], ERROR, error=f"not started: {exc}")
        outcome = run_isolated(fn, specs[index], domain, settings.timeout, settings.start_method)
        (pool.release if outcome.clean else pool.quarantine)(domain)
        return to_result(index, specs[index], domain, outcome)

    bar = progress_bar(len(specs), settings)
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="job")
    try:
        futures = {executor.submit(job, i) for i in range(len(specs))}
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results[result.index] = result
                note(bar, result)
    except BaseException:   # Ctrl-C: no job keeps running (they are in sessions of their own)
        executor.shutdown(wait=False, cancel_futures=True)
        stop_all()
        raise
    finally:
        executor.shutdown(wait=True)
        bar.close()
    return results   # type: ignore[return-value]


def to_result(index: int, spec: Any, domain: int | None, outcome: Outcome) -> JobResult:
    return JobResult(index, spec, outcome.status, outcome.value, outcome.error, domain, outcome.wall_time_s,
                     outcome.host)


def progress_bar(total: int, settings: RunSettings):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=settings.label, unit="job", disable=not settings.progress, file=sys.stderr)
    bar.failed = 0
    return bar


def note(bar, result: JobResult) -> None:
    if not result.ok:
        bar.failed += 1
        bar.set_postfix(failed=bar.failed, refresh=False)
    bar.update(1)


def summary(results: Sequence[JobResult]) -> dict:
    """Counts per status and the total wall time the jobs took (their sum, not the run's)."""
    counts = {s: 0 for s in (OK, ERROR, TIMEOUT, CRASHED)}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {"jobs": len(results), **counts, "job_seconds": round(sum(r.wall_time_s for r in results), 1)}


def failures(results: Sequence[JobResult]) -> list[JobResult]:
    return [r for r in results if not r.ok]
