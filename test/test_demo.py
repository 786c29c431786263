"""End to end: `python -m harness_nodes.demo` puts the cube in the tray over real topics, while a
separate plain rclpy program (examples/listen_topics.py) receives joint states and feedback. Its own
ROS domain and a temporary ROS_HOME (conftest), so it shares nothing with `make demo`."""
import json
import signal
import subprocess
import sys

import pytest

from conftest import REPO, ros_env

pytestmark = pytest.mark.integration


@pytest.mark.timeout(420)
def test_demo_puts_the_cube_in_the_tray_and_outsiders_can_listen(domain_id, private_ros_home):
    env = ros_env(domain_id)
    listener = subprocess.Popen([sys.executable, str(REPO / "examples/listen_topics.py"), "--duration", "300"],
                                env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        demo = subprocess.run([sys.executable, "-m", "harness_nodes.demo", "--real-time-factor", "2.0",
                               "--timeout", "240"],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    finally:
        listener.send_signal(signal.SIGINT)
        out, _ = listener.communicate(timeout=30)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "success:             True" in demo.stdout
    counts = json.loads(out.strip().splitlines()[-1].split("received ", 1)[1])
    assert counts["joint_states"] > 10
    assert counts["execution"] >= 6, "every phase's feedback reaches an outside subscriber"
    # the demo's memory store is this run's own, inside the test's temporary ROS_HOME
    assert list((private_ros_home / "robot_harness" / "runs").glob("*/memory.sqlite"))
