"""Cross-embodiment: the same scripted end-effector pick-and-place runs on the xArm6 in sim."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.timeout(200)
def test_demo_xarm6_puts_the_cube_in_the_tray():
    result = subprocess.run([sys.executable, "-m", "harness_nodes.demo", "--robot", "xarm6", "--timeout", "120"],
                            capture_output=True, text=True, timeout=190)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "success:             True" in result.stdout
