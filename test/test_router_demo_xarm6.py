"""Cross-embodiment: the same scripted end-effector pick-and-place runs on the xArm6 in sim (on this
test's own ROS domain, with a temporary ROS_HOME like every test)."""
import subprocess
import sys

import pytest

from conftest import REPO, ros_env

pytestmark = pytest.mark.integration


@pytest.mark.timeout(200)
def test_demo_xarm6_puts_the_cube_in_the_tray(domain_id):
    result = subprocess.run([sys.executable, "-m", "harness_nodes.demo", "--expert", "--robot", "xarm6",
                             "--timeout", "120"],
                            env=ros_env(domain_id), cwd=REPO, capture_output=True, text=True, timeout=190)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "success:             True" in result.stdout
