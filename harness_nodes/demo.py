"""`make demo`: the full harness on the "moved" scenario. The stack (sim, router, memory, perception,
world model, latent policy, supervisor) comes up on its own; the supervisor gets "put the red cube
in the tray"; once the arm has started its approach the cube is moved somewhere else. The demo
prints the supervisor's steps as they happen (what it believed, checked, vetoed, what failed and how
it recovered) and a summary; success is judged from the simulator's ground truth by the demo only
(the harness never sees it). Exit 0 when the cube is in the tray.

    python -m harness_nodes.demo [--scenario moved] [--ablation full] [--seed 0] [--robot panda]
                                 [--object red_cube] [--timeout 300]
    python -m harness_nodes.demo --expert [--object red_cube] [--robot panda|xarm6]
                                 [--stack sim|sim_perception] [--real-time-factor 1.0] [--gui]

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
