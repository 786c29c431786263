"""launch_pytest test of launch/sim.launch.py. launch, launch_ros and launch_pytest are on no
package registry, so this runs on machines with ROS 2 installed and is skipped elsewhere; there
test_bringup.py covers the same stack through the bringup command."""
import pytest

launch_pytest = pytest.importorskip(
    "launch_pytest", reason="launch_pytest is not installable from PyPI; runs on a ROS 2 install")

import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import rclpy  # noqa: E402
import rclpy.executors  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "sim.launch.py"
# Its own domain, discovery limited to this machine, like every integration test here.
DOMAIN_ID = 201 + os.getpid() % 30


@launch_pytest.fixture
def sim_stack():
    return LaunchDescription([
        SetEnvironmentVariable("ROS_DOMAIN_ID", str(DOMAIN_ID)),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                                 launch_arguments={"use_sim_time": "true"}.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=sim_stack)
def test_sim_launch_publishes_joint_states():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        node = rclpy.create_node("launch_test_listener", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        received = []
        node.create_subscription(JointState, "/joint_states", received.append, 10)
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert received, "sim.launch.py brought up no /joint_states publisher"
        assert len(received[-1].name) == 9
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("argument", ["robot:=nonexistent", "use_sim_time:=yes"])
def test_bad_launch_arguments_exit_non_zero_naming_the_choices(argument):
    import subprocess

    result = subprocess.run(["ros2", "launch", str(LAUNCH_FILE), argument],
                            env=dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID)),
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert ("panda" in output and "xarm6" in output) if "robot" in argument else "true" in output
