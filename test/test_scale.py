"""The scale-out module (harness_nodes/scale): domain pool without collisions, results in order,
exceptions, crashes and timeouts captured as results, bad settings refused (no ROS needed)."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from harness_nodes.scale import DomainPool, DomainPoolError, ScaleOutError, parse_domain_range, run_jobs, summary
from harness_nodes.scale.isolated import _alive
from scale_jobs import SleepSpec, fail_some, hang_with_grandchild, report_domain


def test_domain_pool_hands_out_no_id_twice_under_concurrency():
    pool = DomainPool(range(141, 145))
    in_use: set[int] = set()
    lock = threading.Lock()
    collisions, handed = [], []

    def worker():
        for _ in range(200):
            d = pool.acquire(timeout=5)
            with lock:
                if d in in_use:
                    collisions.append(d)
                in_use.add(d)
                handed.append(d)
            time.sleep(0.0005)
            with lock:
                in_use.discard(d)
            pool.release(d)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not collisions
    assert len(handed) == 12 * 200 and set(handed) == set(range(141, 145))   # all recycled
    assert pool.available == 4


def test_domain_pool_refuses_misuse_and_quarantines():
    pool = DomainPool([150, 151])
    a = pool.acquire()
    with pytest.raises(DomainPoolError, match="not handed out"):
        pool.release(151)
    with pytest.raises(DomainPoolError, match="not one of this pool"):
        pool.release(7)
    pool.release(a)
    with pytest.raises(DomainPoolError, match="not handed out"):
        pool.release(a)
    a, b = pool.acquire(), pool.acquire()
    with pytest.raises(DomainPoolError, match="within 0.05 s"):
        pool.acquire(timeout=0.05)
    pool.quarantine(a)
    pool.release(b)
    assert pool.acquire() == b and pool.quarantined == {a}
    pool.quarantine(b)
    with pytest.raises(DomainPoolError, match="quarantined"):
        pool.acquire(timeout=1)
    for bad in ([], [1, 1], [300]):
        with pytest.raises(ValueError):
            DomainPool(bad)
    assert parse_domain_range("141-200") == range(141, 201)
    for bad in ("141", "a-b", "200-141", "0-300"):
        with pytest.raises(ValueError):
            parse_domain_range(bad)


def test_concurrent_jobs_never_share_a_domain_and_results_keep_the_specs_order():
    specs = [SleepSpec(i, seconds=0.4 if i % 2 else 0.1) for i in range(6)]
    results = run_jobs(report_domain, specs, workers=2, domains=[160, 161], timeout=30, progress=False)
    assert [r.spec for r in results] == specs and [r.index for r in results] == list(range(6))
    assert all(r.ok for r in results), [r.error for r in results]
    values = [r.value for r in results]
    for v, r in zip(values, results):
        assert v["env_domain"] == v["spec_domain"] == r.domain_id   # environment and spec agree
    for a in values:
        for b in values:
            overlap = a is not b and a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlap and a["env_domain"] == b["env_domain"]), (a, b)
    assert {v["env_domain"] for v in values} == {160, 161}      # recycled: 6 jobs on 2 ids
    assert len({v["pid"] for v in values}) == 6                 # a process of its own per job
    assert any(a["start"] < b["end"] and b["start"] < a["end"]  # and they did run in parallel
               for a in values for b in values if a is not b)


def test_an_exception_and_a_crash_are_results_and_the_other_jobs_finish():
    results = run_jobs(fail_some, [SleepSpec(i) for i in range(4)], workers=2, domains=[162, 163],
                       timeout=30, progress=False)
    assert [r.status for r in results] == ["ok", "error", "crashed", "ok"]
    assert [results[0].value, results[3].value] == [0, 30]
    assert "ValueError: job 1 refuses" in results[1].error
    assert "exit code 3" in results[2].error
    assert summary(results)["ok"] == 2


def test_a_job_past_its_time_is_stopped_with_every_process_it_started(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    start = time.monotonic()
    [result] = run_jobs(hang_with_grandchild, [SleepSpec(0, pid_file=str(pid_file))], workers=1,
                        domains=[164], timeout=3.0, progress=False)
    assert result.status == "timeout" and "3.0 s" in result.error
    assert time.monotonic() - start < 20
    grandchild = int(pid_file.read_text())
    assert not _alive(grandchild)       # its own session did not save it


def test_bad_settings_are_refused_with_the_choices():
    with pytest.raises(ScaleOutError, match=r"unknown backend 'dask'; known: \['local', 'ray'\]"):
        run_jobs(report_domain, [SleepSpec(0)], backend="dask", progress=False)
    with pytest.raises(ScaleOutError, match="workers must be >= 1"):
        run_jobs(report_domain, [SleepSpec(0)], workers=0, progress=False)
    with pytest.raises(ScaleOutError, match="timeout must be > 0"):
        run_jobs(report_domain, [SleepSpec(0)], timeout=-1, progress=False)
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \[.wrokers.\]"):
        run_jobs(report_domain, [SleepSpec(0)], wrokers=2)


def test_an_unreachable_ray_address_is_a_clear_error_at_once():
    pytest.importorskip("ray")
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ScaleOutError, match=f"cannot reach the Ray cluster at '127.0.0.1:{port}'"):
        run_jobs(report_domain, [SleepSpec(0)], backend="ray", ray_address=f"127.0.0.1:{port}", progress=False)
    with pytest.raises(ScaleOutError, match="want host:port"):
        run_jobs(report_domain, [SleepSpec(0)], backend="ray", ray_address="not an address", progress=False)
    assert time.monotonic() - start < 15


def test_generation_with_an_unreachable_ray_cluster_exits_with_the_address(tmp_path, capsys):
    pytest.importorskip("ray")
    from harness_nodes.dataset import generate as gen

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert gen.main(["--ray", f"127.0.0.1:{port}", "--out", str(tmp_path), "--quiet"]) == 1
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_failed_generation_episode_stops_its_split_before_anything_is_written(tmp_path, monkeypatch):
    from harness_nodes.dataset import generate as gen

    def spec_for(seed, robot, split, perturb=True):   # seed 10001 names a robot that does not exist
        return gen.EpisodeSpec(seed=seed, robot="no_such_robot" if seed == 10_001 else robot, max_steps=2)

    monkeypatch.setattr(gen, "spec_for", spec_for)
    with pytest.raises(gen.GenerationError, match=r"1 of 3 panda/train episodes failed \(seeds \[10001\]\)"):
        gen.generate(tmp_path, "panda", "train", episodes=3, workers=2, progress=False)
    assert not (tmp_path / "panda_train").exists()


def test_an_interrupted_run_leaves_no_job_process_behind(tmp_path):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    pid_file = tmp_path / "grandchild.pid"
    driver = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
         "from harness_nodes.scale import run_jobs; from scale_jobs import SleepSpec, hang_with_grandchild;"
         "run_jobs(hang_with_grandchild, [SleepSpec(0, pid_file=sys.argv[2])], workers=1, domains=[165],"
         " timeout=120, progress=False)", str(Path(__file__).parent), str(pid_file)],
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read()
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    driver.send_signal(signal.SIGINT)
    assert driver.wait(30) != 0
    assert b"KeyboardInterrupt" in driver.stderr.read()
    assert not _alive(grandchild)


def test_a_result_that_cannot_be_pickled_is_an_error_result():
    from scale_jobs import unpicklable

    [result] = run_jobs(unpicklable, [SleepSpec(0)], workers=1, domains=[166], timeout=30, progress=False)
    assert result.status == "error" and "could not be sent back" in result.error


def test_scale_and_benchmark_modules_never_import_rclpy():
    import re
    from pathlib import Path

    import harness_nodes.benchmark as benchmark
    import harness_nodes.scale as scale

    for package in (scale, benchmark):
        for path in Path(package.__file__).parent.glob("*.py"):
            assert not re.search(r"^\s*(import|from)\s+rclpy", path.read_text(), re.M), path
