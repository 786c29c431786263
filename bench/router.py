"""Router v2 benchmark (`make bench-router`): command-stream rate and p99 period error with and
without a CPU-loading process (side by side; with the sender's own period error and the latency
through the router for attribution), the same under load with router, sender and receiver at
SCHED_FIFO (the router's `realtime_priority`), stale-command -> hold and e-stop -> hold in the sim
(hold message at the controller, and the simulated arm at rest in /joint_states), IK solve time
p50/p99 for both arms, and the e-stop latency (press -> hold message at the arm topic; router
against a joint-state publisher, no sim) idle (`estop_idle_ms`), while the worst chunk the router
accepts (max_chunk_points end-effector poses) is being planned (`estop_during_plan_ms`, pressed a
few ms after the chunk; `plans_leaked` counts planned trajectories that reached the arm after the
hold) and with 1000 valid chunks/s arriving from another process (`estop_under_flood_ms`); the
same three with the router and the presser at SCHED_FIFO (`estop_sched_fifo`, as on a real arm).
Last line: one JSON object with every figure.

    scripts/env.sh python bench/router.py [--seconds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from harness_nodes.common.realtime import apply_realtime_priority, thread_ids  # noqa: E402
RATE = 250.0


def ik_times(robot: str, n: int = 200) -> dict:
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.common.kinematics import ArmKinematics
    d = load_robot_description(robot)
    a = d.arm
    k = ArmKinematics.from_description(d)
    rng = np.random.default_rng(0)
    times, ok = [], 0
    for _ in range(n):
        q = np.array(a.home) + rng.uniform(-0.3, 0.3, len(a.home))
        r = k.ik(k.fk(q), a.home, margin=0.02)
        times.append(r.solve_time)
        ok += r.success
    t = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
            "success_rate": ok / n}


def cpu_load():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stderr=subprocess.DEVNULL)


def sender(seconds: float, rate: float, priority: int = 0) -> int:
    """`--sender`: the benchmark's stream publisher, in its own process so that its pacing does not
    share a Python interpreter (GIL, executor) with the receiver. Absolute deadlines: sleep until
    SPIN_GUARD before each deadline, then poll the clock. Prints 'ready', waits for a line on stdin,
    streams, then prints the send times (perf_counter, CLOCK_MONOTONIC: comparable across processes)."""
    import rclpy
    from builtin_interfaces.msg import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectoryPoint
    from robot_harness.msg import ActionChunk
    from harness_nodes.common.robot_description import load_robot_description
    d = load_robot_description("panda")
    rclpy.init()
    node = rclpy.create_node("bench_stream_sender")
    js = node.create_publisher(JointState, "/joint_states", 10)
    pub = node.create_publisher(ActionChunk, "/harness/command_stream",
                                QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    state = JointState(name=list(d.all_joint_names), position=[*d.arm.home, 0.04, 0.04])
    if priority:
        apply_realtime_priority(priority)
    t_end = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < t_end:
        js.publish(state)
        time.sleep(0.05)
    for _ in range(20):
        js.publish(state)
        time.sleep(0.05)
    print("ready", flush=True)
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    while not sel.select(timeout=0.05):   # keep the router's joint state fresh until "go"
        js.publish(state)
    sys.stdin.readline()
    names, home = list(d.arm.joint_names), np.array(d.arm.home)
    period = 1.0 / rate
    sends = []
    start = time.perf_counter()
    next_t = start
    for i in range(int(round(seconds * rate))):
        q = home + 0.05 * np.sin(2 * np.pi * 0.5 * (next_t - start))
        c = ActionChunk(chunk_id=f"s{i}", space=ActionChunk.SPACE_JOINT, joint_names=names)
        c.joint_points = [JointTrajectoryPoint(positions=[float(v) for v in q],
                                               time_from_start=Duration(nanosec=4_000_000))]
        while True:
            rem = next_t - time.perf_counter()
            if rem <= 0.0:
                break
            if rem > SPIN_GUARD:
                time.sleep(rem - SPIN_GUARD)
        sends.append(time.perf_counter())
        pub.publish(c)
        if i % 5 == 0:
            js.publish(state)
        next_t += period
    time.sleep(0.2)
    print(json.dumps(sends), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


FLOOD_RATE = 1000.0     # chunks/s of the flood sender


def _estop_qos():
    """How e-stop publishers should publish (README): reliable + transient-local (latched)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

ESTOP_GOAL_MS = 10.0


def flood(seconds: float) -> int:
    """`--flood`: valid joint chunks at FLOOD_RATE (batches every 10 ms) on the command topic, plus
    joint states, until `seconds` pass."""
    import rclpy
    from builtin_interfaces.msg import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectoryPoint
    from robot_harness.msg import ActionChunk
    from harness_nodes.common.robot_description import load_robot_description
    d = load_robot_description("panda")
    rclpy.init()
    node = rclpy.create_node("bench_flood")
    pub = node.create_publisher(ActionChunk, "/harness/command",
                                QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    js = node.create_publisher(JointState, "/joint_states", 10)
    state = JointState(name=list(d.all_joint_names), position=[*d.arm.home, 0.04, 0.04])
    t_end = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < t_end:
        time.sleep(0.05)
    print("ready", flush=True)
    names, home = list(d.arm.joint_names), np.array(d.arm.home)
    batch = int(FLOOD_RATE * 0.01)
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < seconds:
        for _ in range(batch):
            c = ActionChunk(chunk_id=f"f{k}", space=ActionChunk.SPACE_JOINT, joint_names=names)
            c.joint_points = [JointTrajectoryPoint(positions=[float(v) for v in home + 0.001 * (k % 5)],
                                                   time_from_start=Duration(sec=1))]
            pub.publish(c)
            k += 1
        js.publish(state)
        time.sleep(max(0.0, start + 0.01 * (k // batch) - time.monotonic()))
    print(json.dumps({"sent": k, "seconds": round(time.monotonic() - start, 3)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def worst_chunk(d, kin, n: int):
    """max_chunk_points end-effector poses on a small circle around the tool at home: the heaviest
    chunk the router accepts (IK, workspace, collision and proximity checks on every segment)."""
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Pose
    from harness_nodes.common.geometry import matrix_to_quat
    from robot_harness.msg import ActionChunk
    home = kin.fk(np.array(d.arm.home))
    quat = matrix_to_quat(home.rotation)
    c = ActionChunk(chunk_id=f"worst{time.perf_counter_ns()}", space=ActionChunk.SPACE_END_EFFECTOR)
    c.header.frame_id = d.base_frame
    for i, a in enumerate(np.linspace(0.0, 2 * np.pi, n)):
        p = home.translation + 0.04 * np.array([np.sin(a), np.cos(a) - 1.0, 0.0])
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quat)
        c.ee_poses.append(pose)
        t = 0.1 * (i + 1)
        c.ee_times.append(Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9))))
    return c


def estop_latency(domain: int, trials: int, flood_seconds: float, priority: int = 0) -> dict:
    """Router subprocess against joint states published here; e-stop press -> hold (empty
    JointTrajectory) arriving at the arm topic, idle, during planning of the worst chunk, and
    under a flood of valid chunks from a sender process. `priority` > 0: the router
    (`realtime_priority`) and this process at that SCHED_FIFO priority (the flood at normal
    scheduling), as on a real arm."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool
    from trajectory_msgs.msg import JointTrajectory
    from robot_harness.msg import ActionChunk
    from robot_harness.srv import ResetEstop
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.router.configuration import RouterParameters
    from harness_nodes.common.kinematics import ArmKinematics
    d = load_robot_description("panda")
    kin = ArmKinematics.from_description(d)
    max_points = RouterParameters().max_chunk_points
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    router = subprocess.Popen([sys.executable, "-m", "harness_nodes.router.node", "--ros-args", "--params-file",
                               os.path.join(REPO, "config/router.yaml"), "-p", f"realtime_priority:={priority}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    rclpy.init()
    node = rclpy.create_node("bench_estop")
    rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    arm_msgs = []   # (arrival, has points)
    node.create_subscription(JointTrajectory, d.controllers.arm_topic,
                             lambda m: arm_msgs.append((time.perf_counter(), bool(m.points))), rel)
    js = node.create_publisher(JointState, "/joint_states", 10)
    cmd = node.create_publisher(ActionChunk, "/harness/command", rel)
    estop = node.create_publisher(Bool, "/harness/estop", _estop_qos())
    reset = node.create_client(ResetEstop, "/controller_router/reset_estop")
    state = JointState(name=list(d.all_joint_names), position=[*d.arm.home, 0.04, 0.04])
    node.create_timer(0.02, lambda: js.publish(state))

    def spin(seconds):
        t = time.monotonic() + seconds
        while time.monotonic() < t:
            rclpy.spin_once(node, timeout_sec=0.001)

    t_end = time.monotonic() + 60
    while (cmd.get_subscription_count() == 0 or estop.get_subscription_count() == 0
           or node.count_publishers(d.controllers.arm_topic) == 0) and time.monotonic() < t_end:
        spin(0.05)
    spin(1.5)
    scheduling = apply_realtime_priority(priority)

    def press() -> tuple[float | None, int]:
        """ms from the press to the hold arriving, and planned trajectories arriving after it."""
        n = len(arm_msgs)
        t0 = time.perf_counter()
        estop.publish(Bool(data=True))
        t_wait = time.monotonic() + 2
        hold = None
        while time.monotonic() < t_wait and hold is None:
            rclpy.spin_once(node, timeout_sec=0.0005)
            hold = next((t for t, pts in arm_msgs[n:] if not pts), None)
        spin(0.3)
        leaked = sum(1 for t, pts in arm_msgs[n:] if pts and hold is not None and t > hold)
        estop.publish(Bool(data=False))
        spin(0.05)
        f = reset.call_async(ResetEstop.Request())
        t_wait = time.monotonic() + 5
        while not f.done() and time.monotonic() < t_wait:
            rclpy.spin_once(node, timeout_sec=0.01)
        return (None if hold is None else (hold - t0) * 1000), leaked

    idle, plan, leaked = [], [], 0
    for _ in range(trials):
        ms, _n = press()
        if ms is not None:
            idle.append(ms)
        spin(0.1)
    for _ in range(trials):
        cmd.publish(worst_chunk(d, kin, max_points))
        spin(0.005)
        ms, n_leaked = press()
        leaked += n_leaked
        if ms is not None:
            plan.append(ms)
        spin(0.2)
    sender = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--flood", str(flood_seconds)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    flooded = []
    flood_info = {}
    if sender.stdout.readline().strip() == "ready":
        t_flood_end = time.monotonic() + flood_seconds - 0.5
        spin(0.5)
        while time.monotonic() < t_flood_end:
            ms, _n = press()
            if ms is not None:
                flooded.append(ms)
            spin(0.1)
        try:
            flood_info = json.loads(sender.stdout.readline() or "{}")
        except json.JSONDecodeError:
            flood_info = {}
    sender.wait(10)
    if scheduling.applied:
        normal_scheduling()
    node.destroy_node()
    rclpy.try_shutdown()
    router.send_signal(signal.SIGINT)
    try:
        router.wait(10)
    except subprocess.TimeoutExpired:
        router.kill()

    def stats(xs):
        if not xs:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "trials": 0}
        return {"p50": round(float(np.percentile(xs, 50)), 2), "p99": round(float(np.percentile(xs, 99)), 2),
                "max": round(float(max(xs)), 2), "trials": len(xs)}
    return {"estop_idle_ms": stats(idle), "estop_during_plan_ms": {**stats(plan), "plans_leaked": leaked,
                                                                   "chunk_points": max_points},
            "estop_under_flood_ms": {**stats(flooded), "flood_chunks_per_s": round(
                flood_info.get("sent", 0) / max(flood_info.get("seconds", 1e-9), 1e-9), 1)},
            **({"sched_fifo": scheduling.applied} if priority else {})}


SPIN_GUARD = 3e-4   # s before a deadline the sender stops sleeping and polls the clock
RT_PRIORITY = 50    # SCHED_FIFO priority of the real-time configuration (ros2_control's default)


def normal_scheduling() -> None:
    for tid in thread_ids():
        try:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass


def p99_period_error_ms(t: np.ndarray) -> float:
    return round(float(np.percentile(np.abs(np.diff(t) - 1.0 / RATE), 99) * 1000), 3)


def stream_rate(seconds: float, load: bool, domain: int, priority: int = 0) -> dict:
    """Router subprocess, sender subprocess (paced at RATE), receiver here on the arm topic.
    Headline: rate and p99 |period - 1/RATE| of the trajectories arriving at the arm topic (end to
    end: includes the sender's and the receiver's own jitter). For attribution: the sender's p99
    period error and the send -> arrival latency through the router. `priority` > 0 runs the
    router (`realtime_priority`), the sender and the receiver at that SCHED_FIFO priority, as a
    deployment would run the command source, the router and the controller."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from trajectory_msgs.msg import JointTrajectory
    from harness_nodes.common.robot_description import load_robot_description
    d = load_robot_description("panda")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    router = subprocess.Popen([sys.executable, "-m", "harness_nodes.router.node", "--ros-args", "--params-file",
                               os.path.join(REPO, "config/router.yaml"), "-p", "monitor_rate:=100.0",
                               "-p", f"realtime_priority:={priority}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    send = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sender", str(seconds),
                             "--sender-priority", str(priority)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    rclpy.init()
    node = rclpy.create_node("bench_stream")
    arrivals = []
    # Only trajectories with points: the empty one is the router's hold once the stream ends.
    node.create_subscription(JointTrajectory, d.controllers.arm_topic,
                             lambda m: arrivals.append(time.perf_counter()) if m.points else None,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    ready = send.stdout.readline().strip() == "ready"
    t_wait = time.monotonic() + 30   # the router's arm publisher discovered by this receiver, then 1 s
    while node.count_publishers(d.controllers.arm_topic) == 0 and time.monotonic() < t_wait:
        rclpy.spin_once(node, timeout_sec=0.01)
    t_wait = time.monotonic() + 1.0
    while time.monotonic() < t_wait:
        rclpy.spin_once(node, timeout_sec=0.01)
    loader = cpu_load() if load else None
    scheduling = apply_realtime_priority(priority)
    sends = []
    if ready:
        send.stdin.write("go\n")
        send.stdin.flush()
        t_end = time.monotonic() + seconds + 10
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(send.stdout, selectors.EVENT_READ)
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.002)
            if sel.select(timeout=0):
                sends = json.loads(send.stdout.readline() or "[]")
                break
        t_drain = time.monotonic() + 0.3
        while time.monotonic() < t_drain:
            rclpy.spin_once(node, timeout_sec=0.01)
    if scheduling.applied:
        normal_scheduling()
    node.destroy_node()
    rclpy.try_shutdown()
    for p in (router, loader, send):
        if p is not None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    a, s_ = np.array(arrivals), np.array(sends)
    if len(a) < 3:
        return {"rate_hz": 0.0, "p99_period_error_ms": float("nan"), "sent": len(s_), "forwarded": len(a)}
    out = {"rate_hz": round(float((len(a) - 1) / (a[-1] - a[0])), 1), "p99_period_error_ms": p99_period_error_ms(a),
           "sent": int(len(s_)), "forwarded": int(len(a))}
    if priority:
        out["sched_fifo"] = scheduling.applied
    if len(s_) >= 3:
        out["sender_p99_period_error_ms"] = p99_period_error_ms(s_)
        out["first_arrival_after_first_send_ms"] = round(float(a[0] - s_[0]) * 1000, 1)
        out["last_arrival_after_last_send_ms"] = round(float(a[-1] - s_[-1]) * 1000, 1)
    if len(s_) == len(a):   # reliable, in order: arrival i answers send i
        lat = (a - s_) * 1000
        out["latency_ms_p50"] = round(float(np.percentile(lat, 50)), 3)
        out["latency_ms_p99"] = round(float(np.percentile(lat, 99)), 3)
    return out


REST_SPEED = 0.02     # rad/s: the arm counts as at rest below this on every arm joint ...
REST_SAMPLES = 5      # ... for this many consecutive /joint_states (100 Hz in sim.yaml)


def at_rest_after(samples: list, t_event: float) -> tuple[float | None, float]:
    """(first receipt time after t_event from which REST_SAMPLES joint states in a row have every arm
    joint slower than REST_SPEED, or None; the arm speed at the event, rad/s)."""
    after = [(t, v) for t, v in samples if t >= t_event]
    before = [v for t, v in samples if t < t_event]
    speed = before[-1] if before else float("nan")
    run = 0
    for i, (t, v) in enumerate(after):
        run = run + 1 if v < REST_SPEED else 0
        if run == REST_SAMPLES:
            return after[i - REST_SAMPLES + 1][0], speed
    return None, speed


def hold_latency(domain: int) -> dict:
    """Sim stack (bringup: sim node with config/sim.yaml, router, memory tracker). Per trial:
    * stale: a look-ahead stream (each command 0.3 s ahead, so the arm is still moving when the
      stream stops) ends; the stream is stale command_timeout after the last command;
    * e-stop: pressed 0.8 s into a 3 s chunk.
    From the event: the hold message (empty JointTrajectory) arriving on the arm topic, and the
    simulated arm at rest (every arm joint velocity in /joint_states < REST_SPEED)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from builtin_interfaces.msg import Duration
    from sensor_msgs.msg import JointState
    from robot_harness.msg import ActionChunk
    from robot_harness.srv import ResetEstop
    from harness_nodes.common.robot_description import load_robot_description
    d = load_robot_description("panda")
    arm = list(d.arm.joint_names)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    stack = subprocess.Popen([sys.executable, "-m", "harness_nodes.bringup.cli", "sim", "-p", "sim.camera_rate:=0.0"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    rclpy.init()
    node = rclpy.create_node("bench_hold")
    rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    holds, vel = [], []

    def on_js(m):
        if len(m.velocity) == len(m.name):
            v = dict(zip(m.name, m.velocity))
            if all(n in v for n in arm):
                vel.append((time.perf_counter(), max(abs(v[n]) for n in arm)))
    node.create_subscription(JointTrajectory, d.controllers.arm_topic,
                             lambda m: holds.append(time.perf_counter()) if not m.points else None, rel)
    node.create_subscription(JointState, "/joint_states", on_js, 50)
    stream = node.create_publisher(ActionChunk, "/harness/command_stream", rel)
    cmd = node.create_publisher(ActionChunk, "/harness/command", rel)
    estop = node.create_publisher(Bool, "/harness/estop", _estop_qos())
    t_end = time.monotonic() + 60
    while (stream.get_subscription_count() == 0 or not vel) and time.monotonic() < t_end:
        rclpy.spin_once(node, timeout_sec=0.05)

    def spin(seconds):
        t = time.monotonic() + seconds
        while time.monotonic() < t:
            rclpy.spin_once(node, timeout_sec=0.005)
    spin(1.0)

    def point(q, t):
        c = ActionChunk(chunk_id=f"b{time.perf_counter_ns()}", space=ActionChunk.SPACE_JOINT, joint_names=arm)
        c.joint_points = [JointTrajectoryPoint(positions=[float(v) for v in q],
                                               time_from_start=Duration(sec=int(t), nanosec=int((t % 1) * 1e9)))]
        return c

    def wait_hold(n):
        t0 = time.monotonic()
        while len(holds) == n and time.monotonic() - t0 < 2:
            rclpy.spin_once(node, timeout_sec=0.002)
        return holds[n] if len(holds) > n else None

    mask = np.array([1, 0, 1, 0, 1, 0, 1], dtype=float)
    timeout = 0.1   # command_timeout in config/router.yaml
    stale, est, stale_rest, est_rest, stale_speed, est_speed = [], [], [], [], [], []
    home = np.array(d.arm.home)
    for trial in range(5):
        sign = 1 if trial % 2 == 0 else -1
        for k in range(50):   # 1 s at 50 Hz, each command 0.3 s ahead: ~0.2 rad/s on four joints
            stream.publish(point(home + sign * 0.004 * (k + 15) * mask, 0.3))
            last = time.perf_counter()
            spin(0.02)
        n = len(holds)
        t_stale = last + timeout
        h = wait_hold(n)
        if h is not None:
            stale.append((h - t_stale) * 1000)
        spin(1.0)
        rest, speed = at_rest_after(vel, t_stale)
        if rest is not None:
            stale_rest.append((rest - t_stale) * 1000)
            stale_speed.append(speed)
        cmd.publish(point(home - sign * 0.3 * mask, 3.0))   # ~0.55 rad back across home
        spin(0.8)
        n = len(holds)
        t_press = time.perf_counter()
        estop.publish(Bool(data=True))
        h = wait_hold(n)
        if h is not None:
            est.append((h - t_press) * 1000)
        spin(1.0)
        rest, speed = at_rest_after(vel, t_press)
        if rest is not None:
            est_rest.append((rest - t_press) * 1000)
            est_speed.append(speed)
        estop.publish(Bool(data=False))
        spin(0.1)
        cli = node.create_client(ResetEstop, "/controller_router/reset_estop")
        cli.wait_for_service(timeout_sec=5)
        f = cli.call_async(ResetEstop.Request())
        t0 = time.monotonic()
        while not f.done() and time.monotonic() - t0 < 5:
            rclpy.spin_once(node, timeout_sec=0.01)
        cmd.publish(point(home, 2.0))   # back home for the next trial
        spin(2.5)
    node.destroy_node()
    rclpy.try_shutdown()
    stack.send_signal(signal.SIGINT)
    try:
        stack.wait(20)
    except subprocess.TimeoutExpired:
        stack.kill()
    f = lambda xs: round(float(np.percentile(xs, 50)), 1) if xs else float("nan")
    g = lambda xs: round(float(max(xs)), 1) if xs else float("nan")
    # stale: ms from the moment the stream went stale (last command + command_timeout) to the hold
    return {"stale_to_hold_ms_p50": f(stale), "stale_to_hold_ms_max": g(stale), "stale_trials": len(stale),
            "stale_to_rest_ms_p50": f(stale_rest), "stale_to_rest_ms_max": g(stale_rest),
            "stale_rest_trials": len(stale_rest),
            "stale_arm_speed_rad_s_p50": round(float(np.median(stale_speed)), 3) if stale_speed else float("nan"),
            "estop_to_hold_ms_p50": f(est), "estop_to_hold_ms_max": g(est), "estop_trials": len(est),
            "estop_to_rest_ms_p50": f(est_rest), "estop_to_rest_ms_max": g(est_rest),
            "estop_rest_trials": len(est_rest),
            "estop_arm_speed_rad_s_p50": round(float(np.median(est_speed)), 3) if est_speed else float("nan"),
            "rest_definition": f"every arm joint < {REST_SPEED} rad/s for {REST_SAMPLES} joint states in a row"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sender", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sender-priority", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--flood", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--estop-trials", type=int, default=20)
    ap.add_argument("--estop-only", action="store_true", help="only the e-stop latency figures")
    args = ap.parse_args()
    if args.sender is not None:
        return sender(args.sender, RATE, args.sender_priority)
    if args.flood is not None:
        return flood(args.flood)
    base = 90 + os.getpid() % 50
    res = {"command": f"scripts/env.sh python bench/router.py --seconds {args.seconds}"
                      + (" --estop-only" if args.estop_only else "")}
    res.update(estop_latency(base + 4, args.estop_trials, flood_seconds=max(4.0, args.seconds)))
    print(f"e-stop -> hold (ms): idle {res['estop_idle_ms']}, during planning {res['estop_during_plan_ms']}, "
          f"under a {FLOOD_RATE:.0f} chunks/s flood {res['estop_under_flood_ms']}", flush=True)
    res["estop_sched_fifo"] = estop_latency(base + 5, args.estop_trials, max(4.0, args.seconds), RT_PRIORITY)
    print(f"e-stop -> hold (ms), router and presser at SCHED_FIFO {RT_PRIORITY}: {res['estop_sched_fifo']}",
          flush=True)
    res["estop_goal_p99_ms"] = ESTOP_GOAL_MS
    if args.estop_only:
        res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(res))
        return 0
    for robot in ("panda", "xarm6"):
        res[f"ik_{robot}"] = ik_times(robot)
        print(f"IK {robot}: {res[f'ik_{robot}']}", flush=True)
    # side by side: same run, idle CPU vs a busy-loop process loading it
    res["stream_idle"] = stream_rate(args.seconds, False, base)
    print(f"stream (idle CPU):   {res['stream_idle']}", flush=True)
    res["stream_loaded"] = stream_rate(args.seconds, True, base + 1)
    print(f"stream (CPU loaded): {res['stream_loaded']}", flush=True)
    res["stream_rate_ratio_loaded_vs_idle"] = round(res["stream_loaded"]["rate_hz"] / max(res["stream_idle"]["rate_hz"], 1e-9), 3)
    res["stream_loaded_sched_fifo"] = stream_rate(args.seconds, True, base + 3, RT_PRIORITY)
    print(f"stream (CPU loaded, router/sender/receiver SCHED_FIFO {RT_PRIORITY}): "
          f"{res['stream_loaded_sched_fifo']}", flush=True)
    res["p99_period_error_ratio_loaded_normal_vs_fifo"] = round(
        res["stream_loaded"]["p99_period_error_ms"] / max(res["stream_loaded_sched_fifo"]["p99_period_error_ms"], 1e-9), 2)
    res["goal"] = {"stream_hz": RATE, "p99_period_error_ms": 2.0, "hold_ms": 100.0}
    res["hold"] = hold_latency(base + 2)
    print(f"hold (sim; stale measured from last command + command_timeout): {res['hold']}", flush=True)
    res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print("reproduce: " + res["command"])
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
