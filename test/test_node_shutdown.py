"""Going down cleanly (issue 8): every node, run as its own process in its own process group (as
under `ros2 launch`, whose Ctrl-C reaches the whole group and is followed by launch's own SIGINT),
exits 0 without a traceback on one SIGINT, on two SIGINTs in quick succession and on SIGTERM; the
memory tracker's store is complete and consistent afterwards."""
from __future__ import annotations

import signal
import sqlite3

import pytest

from conftest import spin_until
from harness_nodes.memory.persistence import SqliteStore

pytestmark = pytest.mark.integration
# (signal, wall s after the previous one): Ctrl-C reaches the group, launch's own SIGINT follows within
# milliseconds, or later, while the node is already cleaning up or the interpreter finalising.
SIGNALS = {"SIGINT": [(signal.SIGINT, 0.0)],
           "SIGINT,SIGINT": [(signal.SIGINT, 0.0), (signal.SIGINT, 0.05)],
           "SIGINT,late SIGINT": [(signal.SIGINT, 0.0), (signal.SIGINT, 0.4)],
           "SIGTERM": [(signal.SIGTERM, 0.0)]}
ESCAPED = ("Traceback", "KeyboardInterrupt", "RCLError", "context is not valid", "ExternalShutdownException",
           "never retrieved")


def _up(ros_node, process, name: str, timeout: float = 40.0) -> None:
    assert spin_until(ros_node, lambda: name in ros_node.get_node_names() or not process.alive(), timeout), \
        f"{name} did not come up:\n{process.log()[-3000:]}"
    assert process.alive(), process.log()[-3000:]


def _signal_and_wait(process, signals: list[tuple[int, float]], timeout: float = 20.0) -> int:
    import os
    import time
    for sig, delay in signals:       # to the whole group (the render worker included), as a terminal does
        time.sleep(delay)            # the scenario's timing between the signals, not a wait for a condition
        if process.proc.poll() is None:
            os.killpg(process.proc.pid, sig)
    return process.proc.wait(timeout)


def _assert_clean(process, code: int) -> None:
    log = process.log()
    assert code == 0, f"exit code {code}:\n{log[-3000:]}"
    for needle in ESCAPED:
        assert needle not in log, f"'{needle}' in the log:\n{log[-3000:]}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", list(SIGNALS))
def test_memory_tracker_exits_0_with_its_store_consistent(start_node, ros_node, tmp_path, signals):
    from robot_harness.msg import MemoryFact
    from robot_harness.srv import AssertFact
    db = tmp_path / "m.sqlite"
    node = start_node("harness_nodes.memory.node", "memory.yaml", db_path=str(db), cameras=["scene"])
    _up(ros_node, node, "memory_tracker")
    client = ros_node.create_client(AssertFact, "/harness/memory/assert")
    assert client.wait_for_service(timeout_sec=20.0)
    for k in range(5):
        fact = MemoryFact(kind=MemoryFact.KIND_TEXT, subject=f"note{k}", value='"keep me"', confidence=1.0)
        fact.pose.orientation.w = 1.0
        future = client.call_async(AssertFact.Request(fact=fact))
        assert spin_until(ros_node, future.done, 10.0) and future.result().success
    _assert_clean(node, _signal_and_wait(node, SIGNALS[signals]))
    assert "closed (5 fact(s))" in node.log()
    conn = sqlite3.connect(str(db))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = SqliteStore(db)
    assert sorted(f.subject for f, _ in store.load()) == [f"note{k}" for k in range(5)]
    store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", list(SIGNALS))
def test_sim_exits_0_with_its_physics_thread_and_render_worker_stopped(start_node, ros_node, signals):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    images = []
    ros_node.create_subscription(Image, "/cameras/scene/image_raw", images.append, qos_profile_sensor_data)
    node = start_node("harness_nodes.sim.node", "sim.yaml", cameras=["scene"], camera_rate=30.0, gui=False)
    _up(ros_node, node, "sim")
    assert spin_until(ros_node, lambda: len(images) >= 2, 40.0), "the render worker is not rendering"
    _assert_clean(node, _signal_and_wait(node, SIGNALS[signals]))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", list(SIGNALS))
def test_perception_exits_0(start_node, ros_node, signals):
    node = start_node("harness_nodes.perception.node", "perception.yaml")
    _up(ros_node, node, "perception")
    _assert_clean(node, _signal_and_wait(node, SIGNALS[signals]))


@pytest.mark.timeout(120)
def test_router_exits_0_on_two_sigints(start_node, ros_node):
    node = start_node("harness_nodes.router.node", "router.yaml")
    _up(ros_node, node, "controller_router")
    _assert_clean(node, _signal_and_wait(node, SIGNALS["SIGINT,late SIGINT"]))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", ["SIGINT", "SIGTERM"])
def test_world_model_exits_0_while_its_multithreaded_executor_is_busy(start_node, ros_node, signals):
    """The world model spins a multi-threaded executor; joint states keep its handlers queued when
    the signal arrives (rclpy used to print 'exception was never retrieved' on the way out)."""
    from sensor_msgs.msg import JointState
    pub = ros_node.create_publisher(JointState, "/joint_states", 10)
    node = start_node("harness_nodes.world_model.node", "world_model.yaml")
    _up(ros_node, node, "world_model")
    assert spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 20.0)
    for i in range(200):
        pub.publish(JointState(name=["panda_joint1"], position=[0.0]))
        ros_node.executor_for_test.spin_once(timeout_sec=0.001)
    _assert_clean(node, _signal_and_wait(node, SIGNALS[signals]))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", list(SIGNALS))
def test_supervisor_exits_0(start_node, ros_node, signals):
    node = start_node("harness_nodes.supervisor.node", "supervisor.yaml")
    _up(ros_node, node, "supervisor")
    _assert_clean(node, _signal_and_wait(node, SIGNALS[signals]))
