"""`make demo`: bring up the simulated stack (PyBullet arm + controller router) from
config/stack.yaml, run the scripted pick-and-place expert against it over ROS 2 topics, print a
summary, and exit 0 when the cube is in the tray.

    python -m harness_nodes.demo [--object red_cube] [--robot panda|xarm6] [--stack sim|sim_perception]
                                 [--real-time-factor 1.0] [--gui]
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from harness_nodes.bringup.stack import find_executable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", default="red_cube")
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--stack", default="sim", help="stack of config/stack.yaml to bring up (sim, sim_perception)")
    parser.add_argument("--real-time-factor", type=float, default=1.0)
    parser.add_argument("--gui", action="store_true")
    parser.add_argument("--timeout", type=float, default=240.0, help="wall s for the task")
    args = parser.parse_args(argv)

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
            "-p", f"task_timeout:={args.timeout}",
        ], stdout=subprocess.PIPE, text=True, timeout=args.timeout + 120)
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
    print("\n=== robot harness demo ===")
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
