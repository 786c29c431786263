"""Shared by sim.launch.py and robot.launch.py: turn a stack of config/stack.yaml into launch_ros
Node actions. Uses only the standard launch / launch_ros API."""
import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "robot_harness"


def _load_stack(stack_name):
    # harness_nodes is installed with the package; fall back to the source tree beside this file.
    try:
        from harness_nodes.bringup.stack import load_stack_description
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from harness_nodes.bringup.stack import load_stack_description
    config_dir = os.path.join(get_package_share_directory(PACKAGE), "config")
    return load_stack_description(os.path.join(config_dir, "stack.yaml")).stack(stack_name), config_dir


def _nodes(context):
    stack, config_dir = _load_stack(LaunchConfiguration("stack").perform(context))
    robot = LaunchConfiguration("robot").perform(context)
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")
    actions = []
    for spec in stack.nodes:
        params = [os.path.join(config_dir, p) for p in spec.parameters]
        overrides = {"robot": robot, "use_sim_time": use_sim_time}
        if spec.name == "sim":
            overrides["gui"] = LaunchConfiguration("gui").perform(context).lower() in ("true", "1")
        actions.append(Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            parameters=[*params, overrides],
            output="screen",
            emulate_tty=True,
        ))
    return actions


def stack_launch_description(stack_name, use_sim_time_default):
    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="panda",
                              description="robot description in config/robots/<robot>.yaml"),
        DeclareLaunchArgument("use_sim_time", default_value=use_sim_time_default,
                              description="follow /clock instead of the wall clock"),
        DeclareLaunchArgument("gui", default_value="false",
                              description="open the PyBullet GUI (simulation only)"),
        DeclareLaunchArgument("stack", default_value=stack_name,
                              description="stack of config/stack.yaml to start"),
        OpaqueFunction(function=_nodes),
    ])
