"""`harness_describe_robot`: check a robot description without ROS, before a stack runs it.

    harness_describe_robot xarm6            # config/robots/xarm6.yaml
    harness_describe_robot my_arm.yaml      # any description file

Validates the description (joints, limits, gripper, controllers), loads its URDF with Pinocchio
and prints the joints with their limits and the transform tree the state publisher will publish
(every frame connected to `world`). Exit 0 when valid, 1 with the reason otherwise. Pure: no rclpy.
"""
from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError


def describe(robot: str) -> str:
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.state_publisher.core import TransformTree, reachable

    d = load_robot_description(robot)
    tree = TransformTree(d)
    static, moving = tree.static_transforms(), tree.moving_transforms()
    lines = [f"robot {d.name}: URDF {d.urdf_path}", f"base {d.base_frame}, end effector {d.end_effector_frame}",
             "arm joints (rad, rad/s):"]
    arm = d.arm
    for i, name in enumerate(arm.joint_names):
        lines.append(f"  {name:24s} [{arm.position_lower[i]:+.4f}, {arm.position_upper[i]:+.4f}]  "
                     f"v <= {arm.velocity_limit[i]:.3f}  home {arm.home[i]:+.4f}")
    g = d.gripper
    lines.append(f"gripper {g.joint_names} width {g.min_width}..{g.max_width} m")
    frames = reachable(static + moving, "world")
    lines.append(f"transform tree: {len(static)} static, {len(moving)} moving, {len(frames)} frames from world")
    for t in static:
        lines.append(f"  static  {t.parent} -> {t.child}")
    for t in moving:
        lines.append(f"  moving  {t.parent} -> {t.child}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("robot", help="name in config/robots/ or a path to a description .yaml")
    args = parser.parse_args(argv)
    try:
        print(describe(args.robot))
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        print(f"harness_describe_robot: {args.robot}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
