"""Shared fixtures: every integration test gets its own ROS_DOMAIN_ID (discovery limited to
localhost), real nodes started as separate processes, and an rclpy node in the test process,
all bounded in time and torn down whatever happens."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest

from harness_nodes.bringup.stack import ros_value

REPO = Path(__file__).resolve().parents[1]
_domain_counter = itertools.count()


def _domain_range() -> tuple[int, int]:
    """Domains this run may use: HARNESS_TEST_DOMAINS="lo-hi" (inclusive) keeps concurrent runs of
    the suite (several checkouts on one machine) apart; default 1-200 (Fast DDS allows 0..232)."""
    spec = os.environ.get("HARNESS_TEST_DOMAINS", "1-200")
    lo, _, hi = spec.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if not 0 <= lo <= hi <= 232:
        raise ValueError(f"HARNESS_TEST_DOMAINS={spec!r}: want lo-hi within 0..232")
    return lo, hi


def _next_domain_id() -> int:
    # Distinct per test in this run, spread by pid so parallel runs rarely collide.
    lo, hi = _domain_range()
    return lo + (os.getpid() * 7 + next(_domain_counter)) % (hi - lo + 1)


def ros_env(domain_id: int) -> dict:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION=env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    return env


class NodeProcess:
    """A harness node run as its own process: `python -m <module> --ros-args ...`."""

    def __init__(self, module: str, domain_id: int, params_file: str | None = None,
                 overrides: dict | None = None, log_dir: Path | None = None):
        args = [sys.executable, "-m", module, "--ros-args"]
        if params_file:
            args += ["--params-file", str(REPO / "config" / params_file)]
        for key, value in (overrides or {}).items():
            args += ["-p", f"{key}:={ros_value(value)}"]
        self.module = module
        self.log_path = (log_dir or Path(tempfile.gettempdir())) / f"{module.replace('.', '_')}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, env=ros_env(domain_id), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(autouse=True)
def private_ros_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own ROS_HOME (memory stores, per-run directories, logs), inherited by
    the nodes it starts: no test reads or writes the user's $ROS_HOME."""
    home = tmp_path_factory.mktemp("ros_home")
    monkeypatch.setenv("ROS_HOME", str(home))
    return home


@pytest.fixture
def domain_id() -> int:
    return _next_domain_id()


@pytest.fixture
def start_node(domain_id, tmp_path):
    """Start harness nodes as processes on this test's domain; all are stopped at teardown."""
    started: list[NodeProcess] = []

    def _start(module: str, params_file: str | None = None, **overrides) -> NodeProcess:
        node = NodeProcess(module, domain_id, params_file, overrides, log_dir=tmp_path)
        started.append(node)
        return node

    yield _start
    for node in reversed(started):
        node.stop()


@pytest.fixture
def ros_node(domain_id):
    """An rclpy node in the test process, on this test's domain, with its own context."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.executor_for_test = executor
    yield node
    executor.shutdown()
    # Action clients are not destroyed with their node; finalised later by the garbage collector,
    # after this context shut down, Fast DDS can wait forever inside another test's spin.
    from rclpy.action import ActionClient, ActionServer

    for waitable in list(node.waitables):
        if isinstance(waitable, (ActionClient, ActionServer)):
            waitable.destroy()
    node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(node, predicate, timeout: float, step: float = 0.05) -> bool:
    """Spin the test node until `predicate()` is true or `timeout` s pass; returns the predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        node.executor_for_test.spin_once(timeout_sec=step)
    return bool(predicate())


def matched(*endpoints) -> bool:
    """True when every publisher has a matched subscription and every subscription a matched
    publisher. Each side matches on its own schedule, so wait for the side whose messages matter."""
    for e in endpoints:
        count = e.get_subscription_count() if hasattr(e, "get_subscription_count") else e.get_publisher_count()
        if count == 0:
            return False
    return True
