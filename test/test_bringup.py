"""The pip-only bringup: starts the `sim` stack as separate processes, forwards signals, stops the
stack when a node dies, leaves no orphans."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sensor_msgs.msg import JointState

from conftest import REPO, ros_env, spin_until
from harness_nodes.bringup.stack import load_stack_description

pytestmark = pytest.mark.integration


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    """Poll a process-table condition (no ROS to spin) until true or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.fixture
def bringup(domain_id, tmp_path):
    log = open(tmp_path / "bringup.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness_nodes.bringup.cli", "sim", "--use-sim-time",
         "-p", "sim.real_time_factor:=1.0", "-p", "sim.cameras:=[scene]"],
        env=ros_env(domain_id), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = tmp_path / "bringup.log"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    log.close()


def wait_for_joint_states(ros_node) -> list:
    received = []
    ros_node.create_subscription(JointState, "/joint_states", received.append, 10)
    assert spin_until(ros_node, lambda: len(received) > 3, timeout=45.0), "no /joint_states from the stack"
    return received


def test_sigterm_stops_every_node_cleanly(bringup, ros_node):
    wait_for_joint_states(ros_node)
    kids = children_of(bringup.pid)
    assert len(kids) == len(load_stack_description().stack("sim").nodes), "one process per node"
    bringup.send_signal(signal.SIGTERM)
    assert bringup.wait(20) == 0
    assert wait_until(lambda: not any(alive(k) for k in kids), 5.0), "node processes outlived the bringup"


def test_a_dying_node_stops_the_stack_with_an_error(bringup, ros_node):
    wait_for_joint_states(ros_node)
    kids = children_of(bringup.pid)
    router = next(k for k in kids if "controller_router" in Path(f"/proc/{k}/cmdline").read_text())
    os.kill(router, signal.SIGKILL)
    assert bringup.wait(20) != 0
    log = bringup.log_path.read_text()
    assert "'controller_router' exited" in log and "robots: panda, xarm6" in log
    assert wait_until(lambda: not any(alive(k) for k in kids), 5.0), "node processes outlived the bringup"


def test_unknown_stack_is_refused(domain_id):
    result = subprocess.run([sys.executable, "-m", "harness_nodes.bringup.cli", "nope"],
                            env=ros_env(domain_id), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown stack 'nope'" in result.stderr


@pytest.mark.timeout(150)
def test_a_namespaced_stack_keeps_its_names_under_the_namespace(domain_id, tmp_path, ros_node):
    """Two arms on one machine: with --namespace left every topic and service of the stack is
    under /left except the global ones (/tf, /tf_static, /clock, /diagnostics, /rosout, parameter
    events), so a second stack under another namespace does not cross-talk with its topics."""
    log = open(tmp_path / "bringup.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness_nodes.bringup.cli", "sim", "--use-sim-time", "--namespace", "left",
         "-p", "sim.cameras:=[scene]"],
        env=ros_env(domain_id), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        received = []
        ros_node.create_subscription(JointState, "/left/joint_states", received.append, 10)
        assert spin_until(ros_node, lambda: len(received) > 3, timeout=60.0), \
            (tmp_path / "bringup.log").read_text()[-3000:]
        stack_nodes = {(n.name, "/left") for n in load_stack_description().stack("sim").nodes}
        expected = {"/left/joint_states", "/left/robot_description", "/left/harness/command",
                    "/left/harness/execution", "/left/arm_controller/joint_trajectory", "/left/harness/memory"}
        assert spin_until(ros_node, lambda: stack_nodes <= set(ros_node.get_node_names_and_namespaces())
                          and expected <= {t for t, _ in ros_node.get_topic_names_and_types()}
                          and "/left/harness/memory/query" in {s for s, _ in ros_node.get_service_names_and_types()},
                          60.0), (tmp_path / "bringup.log").read_text()[-3000:]
        global_names = {"/tf", "/tf_static", "/clock", "/diagnostics", "/rosout", "/parameter_events"}
        topics = {t for t, _ in ros_node.get_topic_names_and_types()}
        assert not {t for t in topics if not t.startswith("/left/")} - global_names
        services = {s for s, _ in ros_node.get_service_names_and_types()}
        ours = {s for s in services if not s.startswith("/test_client/")}
        assert "/left/sim/control" in ours and "/left/controller_router/switch_controller" in ours
        assert not {s for s in ours if not s.startswith("/left/")}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
