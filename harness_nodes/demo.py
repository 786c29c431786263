"""`make demo`: the full harness on the "moved" scenario. The stack (sim, router, memory, perception,
world model, latent policy, supervisor) comes up on its own; the supervisor gets "put the red cube
in the tray"; once the arm has started its approach the cube is moved somewhere else. The demo
prints the supervisor's steps as they happen (what it believed, checked, vetoed, what failed and how
it recovered) and a summary; success is judged from the simulator's ground truth by the demo only
(the harness never sees it). Exit 0 when the cube is in the tray.

    python -m harness_nodes.demo [--scenario moved] [--ablation full] [--seed 0] [--robot panda]
                                 [--object red_cube] [--timeout 300]
    python -m harness_nodes.demo --policy-alone [--object red_cube] [--robot panda|xarm6]
    python -m harness_nodes.demo --expert [--object red_cube] [--robot panda|xarm6]
                                 [--stack sim|sim_perception] [--real-time-factor 1.0] [--gui]

`--policy-alone` runs the latent-action policy by itself in closed loop through the router (sim,
perception and memory for its belief about the cube; no supervisor, no world model, no expert).
`--expert` runs the scripted pick-and-place expert instead (no harness, no perturbation).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from harness_nodes.bringup.stack import find_executable
from harness_nodes.episodes.spec import ABLATIONS, SCENARIOS, EpisodeSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expert", action="store_true", help="the scripted-expert demo (no harness)")
    parser.add_argument("--policy-alone", action="store_true",
                        help="the latent policy alone in closed loop through the router (no supervisor)")
    parser.add_argument("--object", default="red_cube")
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--scenario", default="moved", choices=sorted(SCENARIOS))
    parser.add_argument("--ablation", default="full", choices=ABLATIONS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stack", default="sim", help="--expert: stack of config/stack.yaml (sim, sim_perception)")
    parser.add_argument("--real-time-factor", type=float, default=1.0, help="--expert only")
    parser.add_argument("--gui", action="store_true", help="--expert only")
    parser.add_argument("--timeout", type=float, default=None, help="wall s for the task (harness 300, expert 240)")
    args = parser.parse_args(argv)
    if args.expert:
        return expert_demo(args)
    if args.policy_alone:
        return policy_alone_demo(args)
    return harness_demo(args)


def harness_demo(args) -> int:
    from harness_nodes.episodes.runner import run_episode

    spec = EpisodeSpec(scenario=args.scenario, ablation=args.ablation, seed=args.seed, robot=args.robot,
                       object_id=args.object, timeout=args.timeout or 300.0)
    scenario = SCENARIOS[spec.scenario]
    print(f"=== robot harness demo: '{spec.goal}', scenario '{spec.scenario}' ({scenario.description}), "
          f"ablation '{spec.ablation}', seed {spec.seed} ===", flush=True)
    print("bringing up the harness stack (sim, router, memory, perception, world model, latent policy, "
          "supervisor)...", flush=True)
    start = time.monotonic()

    def show(line: str) -> None:
        print(f"  [{time.monotonic() - start:6.1f} s] {line}", flush=True)

    result = run_episode(spec, on_line=show)
    s = result.summary()
    print("\n=== robot harness demo: summary ===")
    print(f"  {'task:':<32}{spec.goal} ({spec.robot}, PyBullet, scenario '{spec.scenario}')")
    print(f"  {'success:':<32}{result.success}  (ground truth: '{spec.object_id}' "
          f"{'in' if result.success else 'not in'} the tray)")
    print(f"  {'outcome:':<32}{result.outcome}" + (f"  ({result.error})" if result.error else ""))
    if result.perturbation:
        print(f"  {'perturbation:':<32}{json.dumps(result.perturbation)}")
    for key, label in (("attempts", "attempts"), ("retries", "retries"), ("escalations", "escalations"),
                       ("vetoes", "world-model vetoes"), ("false_vetoes", "false vetoes"),
                       ("stale_fact_uses", "stale-belief uses"), ("re_observations", "re-observations"),
                       ("surprises", "surprise cues"), ("policy_chunks", "chunks from policy"),
                       ("planner_chunks", "chunks from planner"),
                       ("decision_latency_ms_median", "decision latency (ms, median)"),
                       ("sim_time_s", "sim time (s)"), ("wall_time_s", "wall time (s)")):
        print(f"  {label + ':':<32}{s[key]}")
    print("summary: " + json.dumps(s), flush=True)
    return 0 if result.success else 1


def policy_alone_demo(args) -> int:
    """The latent policy drives the task by itself: observe (cameras, joint state, memory's belief
    from perception) -> propose -> its best chunk to the router -> repeat. Judged from ground truth."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from robot_harness.msg import SimGroundTruth

    timeout = args.timeout or 240.0
    goal = f"put {args.object} in tray"
    print(f"=== robot harness demo: the latent policy alone, '{goal}' ({args.robot}, PyBullet) ===", flush=True)
    start = time.monotonic()
    bringup = subprocess.Popen([sys.executable, "-m", "harness_nodes.bringup.cli", "sim_perception",
                                "--use-sim-time", "--robot", args.robot])
    policy = subprocess.Popen([sys.executable, str(find_executable("latent_policy")), "--ros-args",
                               "-p", "use_sim_time:=true", "-p", "closed_loop:=true", "-p", f"robot:={args.robot}",
                               "-p", f"goal:={goal}", "-p", "max_chunks:=100"])
    rclpy.init()
    node = rclpy.create_node("policy_alone_demo")
    truth: list[SimGroundTruth] = []
    node.create_subscription(SimGroundTruth, "sim/ground_truth", truth.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.VOLATILE))
    success, last_print, where = False, 0.0, ""
    try:
        while time.monotonic() - start < timeout and policy.poll() is None and bringup.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.2)
            if not truth:
                continue
            gt = truth[-1]
            del truth[:-1]
            pose = dict(zip(gt.object_ids, gt.poses)).get(args.object)
            if pose is not None:
                p = pose.position
                where = f"'{args.object}' at ({p.x:.3f}, {p.y:.3f}, {p.z:.3f})" + \
                        (", in the gripper" if gt.held_object == args.object else "")
            if time.monotonic() - last_print > 5.0:
                print(f"  [{time.monotonic() - start:6.1f} s] ground truth: {where}", flush=True)
                last_print = time.monotonic()
            if args.object in gt.in_tray and not gt.held_object:
                success = True
                break
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for proc in (policy, bringup):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in (policy, bringup):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("\n=== robot harness demo (latent policy alone): summary ===")
    print(f"  {'task:':<24}{goal} ({args.robot}, PyBullet)")
    print(f"  {'success:':<24}{success}  (ground truth: {where or 'no ground truth received'})")
    print(f"  {'wall time (s):':<24}{time.monotonic() - start:.1f}")
    return 0 if success else 1


def expert_demo(args) -> int:
    """The scripted pick-and-place expert against the sim stack (the demo before the harness)."""
    timeout = args.timeout or 240.0
    wall_start = time.monotonic()
    bringup = subprocess.Popen([
        sys.executable, "-m", "harness_nodes.bringup.cli", args.stack, "--use-sim-time",
        "--robot", args.robot,
        "-p", f"sim.real_time_factor:={args.real_time_factor}",
        "-p", f"sim.gui:={'true' if args.gui else 'false'}",
    ])
    try:
        expert = subprocess.run([
            sys.executable, str(find_executable("pick_place_expert")), "--ros-args",
            "-p", "use_sim_time:=true", "-p", f"object_id:={args.object}",
            "-p", f"task_timeout:={timeout}",
        ], stdout=subprocess.PIPE, text=True, timeout=timeout + 120)
        sys.stdout.write(expert.stdout)
        summary = {}
        for line in expert.stdout.splitlines():
            if line.startswith("pick-and-place summary: "):
                summary = json.loads(line.split(": ", 1)[1])
        code = expert.returncode
    except subprocess.TimeoutExpired:
        summary, code = {"success": False, "reason": "expert timed out"}, 1
    finally:
        if bringup.poll() is None:
            bringup.send_signal(signal.SIGINT)
        try:
            bringup.wait(20)
        except subprocess.TimeoutExpired:
            bringup.kill()
    summary["total_wall_time_s"] = round(time.monotonic() - wall_start, 2)
    print("\n=== robot harness demo (scripted expert) ===")
    print(f"  task:                put {args.object} in the tray ({args.robot}, PyBullet)")
    print(f"  success:             {summary.get('success', False)}"
          + ("" if summary.get("success") else f"  ({summary.get('reason', 'see log above')})"))
    for key, label in (("attempts", "attempts"), ("commands_sent", "commands sent"),
                       ("sim_time_s", "sim time (s)"), ("wall_time_s", "task wall time (s)"),
                       ("total_wall_time_s", "total wall time (s)")):
        if key in summary:
            print(f"  {label + ':':<21}{summary[key]}")
    return 0 if code == 0 and summary.get("success") else 1


if __name__ == "__main__":
    sys.exit(main())
