"""Shared by sim.launch.py and robot.launch.py: turn a stack of config/stack.yaml into launch_ros
Node actions. Uses only the standard launch / launch_ros API; the argument checks are the pure
helpers of harness_nodes.bringup.arguments, which the pip-only bringup uses too.

`robot` only takes the robots of config/robots/, booleans only the spellings ROS accepts, and a
node that exits while the stack runs stops the launch with a non-zero exit code and the list of
robots (a stack that cannot run does not pretend to)."""
import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "robot_harness"

# harness_nodes is installed with the package; fall back to the source tree beside this file.
try:
    import harness_nodes.bringup.arguments  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness_nodes.bringup.arguments import (BOOLEAN_CHOICES, available_robots, check_robot,  # noqa: E402
                                             normalize_namespace, parse_bool, stack_failure_message)
from harness_nodes.bringup.stack import (RECORDER, load_stack_description, new_run_directory,  # noqa: E402
                                         per_run_parameters, recorder_parameters)


def _load_stack(stack_name):
    config_dir = os.path.join(get_package_share_directory(PACKAGE), "config")
    return load_stack_description(os.path.join(config_dir, "stack.yaml")).stack(stack_name), config_dir


def _stop_on_exit(name, robot):
    def on_exit(event, context):
        if not context.is_shutdown:
            # An exception here ends the launch with exit code 1 and shuts the other nodes down.
            raise RuntimeError(stack_failure_message(name, event.returncode, robot))
    return on_exit


def _nodes(context):
    stack, config_dir = _load_stack(LaunchConfiguration("stack").perform(context))
    robot = check_robot(LaunchConfiguration("robot").perform(context))
    use_sim_time = parse_bool("use_sim_time", LaunchConfiguration("use_sim_time").perform(context))
    gui = parse_bool("gui", LaunchConfiguration("gui").perform(context))
    namespace = normalize_namespace(LaunchConfiguration("namespace").perform(context))
    run_dir = new_run_directory() if any(n.per_run_files for n in stack.nodes) else None
    actions = []
    for spec in stack.nodes:
        params = [os.path.join(config_dir, p) for p in spec.parameters]
        overrides = {"robot": robot, "use_sim_time": use_sim_time}
        if spec.name == "sim":
            overrides["gui"] = gui
        if run_dir is not None:
            overrides.update(per_run_parameters(spec, run_dir))
        node = Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            namespace=namespace or None,   # None: no namespace of its own (a PushRosNamespace still applies)
            parameters=[*params, overrides],
            output="screen",
            emulate_tty=True,
        )
        actions += [node, RegisterEventHandler(OnProcessExit(target_action=node,
                                                             on_exit=_stop_on_exit(spec.name, robot)))]
    record = LaunchConfiguration("record").perform(context).strip()
    if record:
        # checked before anything starts: an unwritable or full directory fails the launch here
        recorder = recorder_parameters(record)
        actions.append(Node(
            package=PACKAGE, executable=RECORDER.executable, name=RECORDER.name, namespace=namespace or None,
            parameters=[*(os.path.join(config_dir, p) for p in RECORDER.parameters),
                        {**recorder, "use_sim_time": use_sim_time}],
            output="screen", emulate_tty=True))
    return actions


def stack_launch_description(stack_name, use_sim_time_default):
    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="panda", choices=available_robots(),
                              description="robot description in config/robots/<robot>.yaml"),
        DeclareLaunchArgument("use_sim_time", default_value=use_sim_time_default, choices=list(BOOLEAN_CHOICES),
                              description="follow /clock instead of the wall clock"),
        DeclareLaunchArgument("gui", default_value="false", choices=list(BOOLEAN_CHOICES),
                              description="open the PyBullet GUI (simulation only)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of every node (two arms on one machine: "
                                          "left, right); /tf, /tf_static, /clock, /diagnostics stay global"),
        DeclareLaunchArgument("stack", default_value=stack_name, choices=sorted(load_stack_description().stacks),
                              description="stack of config/stack.yaml to start"),
        DeclareLaunchArgument("record", default_value="",
                              description="also record the harness topics (rosbag2 + MCAP) into "
                                          "<record>/recording-<time>-<pid>; empty: no recording"),
        OpaqueFunction(function=_nodes),
    ])
