"""Foundation benchmark: simulation real-time factor (headless) and controller-router forward
latency (ActionChunk in -> JointTrajectory out), measured on real node processes over DDS.

    make bench-foundation        # = scripts/env.sh python bench/foundation.py

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from builtin_interfaces.msg import Duration  # noqa: E402
from geometry_msgs.msg import Point, Pose, Quaternion  # noqa: E402

from harness_nodes.common.robot_description import load_robot_description  # noqa: E402
from harness_nodes.common.geometry import matrix_to_quat  # noqa: E402
from harness_nodes.common.kinematics import ArmKinematics  # noqa: E402
from robot_harness.msg import ActionChunk, ExecutionFeedback  # noqa: E402

DOMAIN_ID = int(os.environ.get("BENCH_ROS_DOMAIN_ID", "77"))


def start(module: str, params_file: str, **overrides) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    args = [sys.executable, "-m", module, "--ros-args", "--params-file", str(REPO / "config" / params_file)]
    for k, v in overrides.items():
        args += ["-p", f"{k}:={v}"]
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Client:
    def __init__(self, context):
        self.node = rclpy.create_node("bench_foundation", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()


def measure_rtf(client: Client, requested: float, seconds: float, camera: bool) -> float:
    """Sim seconds per wall second, from /clock, over `seconds` of wall time."""
    proc = start("harness_nodes.sim.node", "sim.yaml", real_time_factor=requested,
                 cameras="[scene]")
    clocks: list[tuple[float, float]] = []
    sub = client.node.create_subscription(
        Clock, "/clock", lambda m: clocks.append((time.monotonic(), m.clock.sec + m.clock.nanosec * 1e-9)),
        qos_profile_sensor_data)
    images = []
    img_sub = (client.node.create_subscription(Image, "/cameras/scene/image_raw", images.append,
                                               qos_profile_sensor_data) if camera else None)
    try:
        if not client.spin_until(lambda: len(clocks) > 10, 60.0):
            raise RuntimeError("simulation published no /clock")
        clocks.clear()
        client.spin_until(lambda: False, seconds)
        (w0, s0), (w1, s1) = clocks[0], clocks[-1]
        return (s1 - s0) / (w1 - w0)
    finally:
        client.node.destroy_subscription(sub)
        if img_sub:
            client.node.destroy_subscription(img_sub)
        stop(proc)


def measure_router_latency(client: Client, n: int, space: int) -> dict:
    """Command in -> JointTrajectory out, for joint-space chunks or end-effector chunks (with IK)."""
    robot = load_robot_description("panda")
    kinematics = ArmKinematics.from_description(robot)
    names = robot.all_joint_names
    home = list(robot.arm.home) + [0.04, 0.04]
    proc = start("harness_nodes.router.node", "router.yaml")
    subs = []
    state = {"q": list(home)}
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    feedback: dict[str, int] = {}
    js_pub = client.node.create_publisher(JointState, "/joint_states", 10)
    cmd_pub = client.node.create_publisher(ActionChunk, "/harness/command", 10)

    def on_trajectory(msg: JointTrajectory) -> None:
        now = time.monotonic()
        if pending and pending[-1] in sent_at and pending[-1] not in done_latency:
            latencies.append(now - sent_at[pending[-1]])
            done_latency.add(pending[-1])
        # a perfect arm: reach the final point at once
        final = dict(zip(msg.joint_names, msg.points[-1].positions))
        state["q"] = [final.get(nm, q) for nm, q in zip(names, state["q"])]

    def on_feedback(msg: ExecutionFeedback) -> None:
        feedback[msg.chunk_id] = msg.status

    pending: list[str] = []
    done_latency: set[str] = set()
    subs.append(client.node.create_subscription(JointTrajectory, robot.controllers.arm_topic, on_trajectory, 10))
    subs.append(client.node.create_subscription(ExecutionFeedback, "/harness/execution", on_feedback, 10))

    def publish_state() -> None:
        js = JointState(name=names, position=[float(v) for v in state["q"]],
                        velocity=[0.0] * len(names), effort=[0.0] * len(names))
        js.header.stamp = client.node.get_clock().now().to_msg()
        js_pub.publish(js)

    timer = client.node.create_timer(0.01, publish_state)
    rng = np.random.default_rng(0)
    try:
        if not client.spin_until(lambda: cmd_pub.get_subscription_count() > 0, 60.0):
            raise RuntimeError("router did not come up")
        client.spin_until(lambda: False, 1.0)
        for i in range(n):
            chunk = ActionChunk(chunk_id=f"bench-{space}-{i}", source="bench", space=space)
            target = np.array(robot.arm.home) + rng.uniform(-0.05, 0.05, 7)
            if space == ActionChunk.SPACE_JOINT:
                chunk.joint_names = list(robot.arm.joint_names)
                point = JointTrajectoryPoint(positions=[float(v) for v in target])
                point.time_from_start.nanosec = 200_000_000
                chunk.joint_points = [point]
            else:
                pose = kinematics.fk(target)
                x, y, z = (float(v) for v in pose.translation)
                qx, qy, qz, qw = (float(v) for v in matrix_to_quat(pose.rotation))
                chunk.ee_poses = [Pose(position=Point(x=x, y=y, z=z),
                                       orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))]
                chunk.ee_times = [Duration(sec=0, nanosec=200_000_000)]
            pending.append(chunk.chunk_id)
            sent_at[chunk.chunk_id] = time.monotonic()
            cmd_pub.publish(chunk)
            client.spin_until(lambda: feedback.get(chunk.chunk_id) in (
                ExecutionFeedback.STATUS_SUCCEEDED, ExecutionFeedback.STATUS_FAILED,
                ExecutionFeedback.STATUS_REJECTED), 10.0)
    finally:
        client.node.destroy_timer(timer)
        for sub in subs:
            client.node.destroy_subscription(sub)
        client.node.destroy_publisher(js_pub)
        client.node.destroy_publisher(cmd_pub)
        stop(proc)
    lat = np.array(latencies) * 1e3
    return {"n": int(lat.size), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="wall s per real-time-factor run")
    parser.add_argument("--commands", type=int, default=100, help="router commands to time")
    args = parser.parse_args()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    client = Client(context)
    try:
        rtf_max = measure_rtf(client, 0.0, args.seconds, camera=False)
        print(f"sim real-time factor, as fast as possible, headless, no camera subscribers: {rtf_max:.2f}")
        rtf_cam = measure_rtf(client, 0.0, args.seconds, camera=True)
        print(f"sim real-time factor, as fast as possible, scene camera subscribed: {rtf_cam:.2f}")
        rtf_1 = measure_rtf(client, 1.0, args.seconds, camera=False)
        print(f"sim real-time factor when asked for 1.0: {rtf_1:.3f}")
        router = measure_router_latency(client, args.commands, ActionChunk.SPACE_JOINT)
        print(f"router forward latency (ActionChunk -> JointTrajectory, joint space, n={router['n']}): "
              f"p50 {router['p50_ms']} ms, p99 {router['p99_ms']} ms")
        router_ee = measure_router_latency(client, args.commands, ActionChunk.SPACE_END_EFFECTOR)
        print(f"router forward latency (end-effector space, Pinocchio IK included, n={router_ee['n']}): "
              f"p50 {router_ee['p50_ms']} ms, p99 {router_ee['p99_ms']} ms")
    finally:
        client.node.destroy_node()
        rclpy.shutdown(context=context)
    print("reproduce with: make bench-foundation")
    print(json.dumps({
        "bench": "foundation",
        "sim_rtf_max_headless": round(rtf_max, 2),
        "sim_rtf_max_with_camera": round(rtf_cam, 2),
        "camera_cost_ratio": round(rtf_max / rtf_cam, 2) if rtf_cam > 0 else None,
        "sim_rtf_requested_1": round(rtf_1, 3),
        "router_forward_latency_p50_ms": router["p50_ms"],
        "router_forward_latency_p99_ms": router["p99_ms"],
        "router_ee_forward_latency_p50_ms": router_ee["p50_ms"],
        "router_ee_forward_latency_p99_ms": router_ee["p99_ms"],
        "ik_cost_ratio_p50": round(router_ee["p50_ms"] / router["p50_ms"], 2),
        "router_commands": router["n"] + router_ee["n"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
