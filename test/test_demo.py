"""End to end: `python -m harness_nodes.demo` (the full harness on the moved scenario) catches the
moved cube and puts it in the tray, printing its steps and a summary; `--expert` (the scripted
expert) puts the cube in the tray over real topics while a separate plain rclpy program
(examples/listen_topics.py) receives joint states and feedback. Each on its own ROS domain with a
temporary ROS_HOME (conftest), so they share nothing with `make demo`."""
import json
import re
import signal
import subprocess
import sys

import pytest

from conftest import REPO, ros_env

pytestmark = pytest.mark.integration


@pytest.mark.timeout(420)
def test_expert_demo_puts_the_cube_in_the_tray_and_outsiders_can_listen(domain_id, private_ros_home):
    env = ros_env(domain_id)
    listener = subprocess.Popen([sys.executable, str(REPO / "examples/listen_topics.py"), "--duration", "300"],
                                env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        demo = subprocess.run([sys.executable, "-m", "harness_nodes.demo", "--expert", "--real-time-factor", "2.0",
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


@pytest.mark.timeout(420)
def test_demo_runs_the_full_harness_catches_the_moved_cube_and_prints_its_steps(domain_id, private_ros_home):
    demo = subprocess.run([sys.executable, "-m", "harness_nodes.demo", "--timeout", "280"],
                          env=ros_env(domain_id), cwd=REPO, capture_output=True, text=True, timeout=400)
    out = demo.stdout
    assert demo.returncode == 0, out[-4000:] + demo.stderr[-3000:]
    assert re.search(r"success:\s+True", out) and "scenario 'moved'" in out
    steps = out.split("=== robot harness demo: summary ===")[0]
    # printed as it happened, in order: the belief, the move, what caught it and the recovery, the check
    caught = min((i for i in (steps.find("object_moved at"), steps.find("grasp_missed at")) if i >= 0), default=-1)
    order = [steps.find("look: believes 'red_cube'"), steps.find("[episode] moved 'red_cube'"), caught,
             steps.find("recovering: ", caught), steps.find("verify: 'red_cube' believed at")]
    assert all(i >= 0 for i in order) and order == sorted(order), steps[-4000:]
    assert "world model chose candidate" in steps and "policy" in steps       # checked, and the policy was asked
    summary = json.loads(out.strip().splitlines()[-1].split("summary: ", 1)[1])
    assert summary["success"] and summary["attempts"] >= 2 and summary["escalations"] == 0
    assert summary["planner_chunks"] + summary["policy_chunks"] >= 7
