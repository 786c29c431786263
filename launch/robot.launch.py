"""Controller router against a real ros2_control arm (joint_trajectory_controller), from the
`robot` stack of config/stack.yaml. Start the arm's own bringup first.

    ros2 launch robot_harness robot.launch.py [robot:=panda]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _stack import stack_launch_description  # noqa: E402


def generate_launch_description():
    return stack_launch_description("robot", use_sim_time_default="false")
