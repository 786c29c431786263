"""Start a stack from config/stack.yaml as separate node processes, without `ros2 launch`.

    python -m harness_nodes.bringup.cli sim [--robot panda] [--use-sim-time [true|false]]
        [--namespace left] [--record DIR] [-p node.param:=value]

Every node is its own process with the parameter files the stack names (the same ones the launch
files pass). SIGINT/SIGTERM are forwarded; if one node dies the others are stopped and the exit
code says so. Children are tied to this process (PR_SET_PDEATHSIG) so none outlives it. An
unknown robot or a boolean spelled any other way than ROS accepts is refused before any node
starts (exit 2, the allowed values named). `--record DIR` adds the recorder node (config/
recorder.yaml) writing the stack's topics to DIR/recording-<time>-<pid> (rosbag2 + MCAP); a DIR
that cannot be written or lacks the free space is refused before any node starts (exit 2).
"""
from __future__ import annotations

import argparse
import ctypes
import signal
import subprocess
import sys
import time

from harness_nodes.bringup.arguments import (BOOLEAN_PARAMETERS, check_robot, normalize_namespace,
                                             parse_bool, stack_failure_message)
from harness_nodes.bringup.stack import (RECORDER, load_stack_description, new_run_directory, node_command,
                                         per_run_parameters, recorder_parameters)
from harness_nodes.recording.core import RecordingError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: rely on the signal forwarding below
        pass


def parse_overrides(items: list[str], node_names: list[str]) -> dict[str, dict[str, str]]:
    """`-p node.param:=value` (one node) or `-p param:=value` (every node)."""
    per_node: dict[str, dict[str, str]] = {name: {} for name in node_names}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"parameter override '{item}' must look like [node.]name:=value")
        key, value = item.split(":=", 1)
        node, _, param = key.rpartition(".")
        if node and node not in per_node:
            raise ValueError(f"override '{item}' names unknown node '{node}'; nodes: {node_names}")
        for name in ([node] if node else node_names):
            per_node[name][param] = value
    return per_node


class Bringup:
    def __init__(self, commands: dict[str, list[str]], stop_timeout: float = 10.0, robot: str = "panda"):
        self.commands = commands
        self.robot = robot
        self.stop_timeout = stop_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self._stopping = False

    def start(self) -> None:
        for name, cmd in self.commands.items():
            print(f"[bringup] starting {name}: {' '.join(cmd)}", flush=True)
            self.procs[name] = subprocess.Popen(cmd, preexec_fn=_die_with_parent)

    def stop(self, sig: int = signal.SIGINT) -> None:
        self._stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)
        deadline = time.monotonic() + self.stop_timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[bringup] {name} did not stop in {self.stop_timeout:.0f} s, killing", flush=True)
                proc.kill()
                proc.wait()

    def run(self) -> int:
        """Supervise until a signal arrives or a node dies; returns the exit code."""
        received: list[int] = []

        def on_signal(signum, _frame):
            received.append(signum)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not received:
                for name, proc in self.procs.items():
                    code = proc.poll()
                    if code is not None:
                        print(f"[bringup] {stack_failure_message(name, code, self.robot)}",
                              file=sys.stderr, flush=True)
                        self.stop()
                        return code or 1
                time.sleep(0.1)
            print(f"[bringup] {signal.Signals(received[0]).name}: stopping the stack", flush=True)
            self.stop(signal.SIGINT)
            return 0
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if not self._stopping:
                self.stop()


def build_commands(stack_name: str, robot: str | None, use_sim_time: bool | None,
                   overrides: list[str], stack_file: str = "stack.yaml",
                   namespace: str = "", record: str | None = None) -> dict[str, list[str]]:
    stack = load_stack_description(stack_file).stack(stack_name)
    nodes = list(stack.nodes) + ([RECORDER] if record is not None else [])
    per_node = parse_overrides(overrides, [n.name for n in nodes])
    for values in per_node.values():     # -p robot:= / use_sim_time:= / gui:= are checked like the options
        for key, value in values.items():
            if key == "robot":
                check_robot(value)
            elif key in BOOLEAN_PARAMETERS:
                parse_bool(key, value)
    if robot is not None:
        check_robot(robot)
    namespace = normalize_namespace(namespace)
    if record is not None:
        per_node[RECORDER.name].update(recorder_parameters(record, per_node[RECORDER.name]))
    run_dir = new_run_directory() if any(n.per_run_files for n in stack.nodes) else None
    commands = {}
    for node in nodes:
        params: dict[str, object] = {}
        if robot is not None and node is not RECORDER:
            params["robot"] = robot
        if use_sim_time is not None:
            params["use_sim_time"] = use_sim_time
        if run_dir is not None:
            params.update(per_run_parameters(node, run_dir))
        params.update(per_node[node.name])
        commands[node.name] = node_command(sys.executable, node, params, namespace)
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name in config/stack.yaml, e.g. sim or robot")
    parser.add_argument("--robot", help="robot description name (config/robots/<robot>.yaml)")
    parser.add_argument("--use-sim-time", dest="use_sim_time", nargs="?", const="true", default=None,
                        metavar="BOOL", help="follow /clock (true/false/True/False/1/0; bare flag = true)")
    parser.add_argument("--namespace", default="",
                        help="ROS namespace of every node and its relative names (e.g. left: /left/joint_states)")
    parser.add_argument("--stack-file", default="stack.yaml")
    parser.add_argument("--record", metavar="DIR", default=None,
                        help="also run the recorder: the stack's topics into DIR/<name> (rosbag2 + MCAP)")
    parser.add_argument("-p", dest="overrides", action="append", default=[],
                        metavar="[NODE.]PARAM:=VALUE")
    args = parser.parse_args(argv)
    try:
        use_sim_time = None if args.use_sim_time is None else parse_bool("use_sim_time", args.use_sim_time)
        commands = build_commands(args.stack, args.robot, use_sim_time, args.overrides,
                                  args.stack_file, args.namespace, args.record)
    except (KeyError, ValueError, FileNotFoundError, RecordingError) as exc:
        print(f"[bringup] {exc}", file=sys.stderr)
        return 2
    return Bringup(commands, robot=args.robot or "panda").run()


if __name__ == "__main__":
    sys.exit(main())
