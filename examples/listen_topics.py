#!/usr/bin/env python3
"""A plain rclpy program, outside the harness, that subscribes to the robot's joint states and the
harness's execution feedback, the way other software would.

    scripts/env.sh python examples/listen_topics.py [--duration 30]

Prints one line per feedback message and, at the end, how many messages of each it received.
"""
import argparse
import json
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState

from robot_harness.msg import ExecutionFeedback


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=30.0, help="wall s to listen")
    args = parser.parse_args()
    rclpy.init()
    node = Node("harness_listener")
    counts = {"joint_states": 0, "execution": 0}

    def on_joint_states(msg: JointState) -> None:
        counts["joint_states"] += 1

    def on_feedback(msg: ExecutionFeedback) -> None:
        counts["execution"] += 1
        print(f"feedback {msg.chunk_id}: status={msg.status} failure={msg.failure} "
              f"tracking_error={msg.tracking_error:.4f} {msg.message}", flush=True)

    node.create_subscription(JointState, "/joint_states", on_joint_states, 10)
    node.create_subscription(ExecutionFeedback, "/harness/execution", on_feedback, 10)
    deadline = time.monotonic() + args.duration
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: still report what arrived
    print("received " + json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
