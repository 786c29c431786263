"""PyBullet arm + controller router, from the `sim` stack of config/stack.yaml.

    ros2 launch robot_harness sim.launch.py [robot:=panda] [use_sim_time:=true] [gui:=false]
        [stack:=sim_perception]   # + perception and active viewpoint selection
        [record:=recordings]      # + the recorder: harness topics to recordings/recording-<time>-<pid> (MCAP)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _stack import stack_launch_description  # noqa: E402


def generate_launch_description():
    return stack_launch_description("sim", use_sim_time_default="true")
