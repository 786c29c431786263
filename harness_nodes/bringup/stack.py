"""The stack description: which nodes a stack runs, from which executable, with which parameters.

`config/stack.yaml` is read here, and only here, by both `launch/*.launch.py` (on ROS 2
installs) and the pip-only bringup command, so the two ways of starting the harness cannot drift.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness_nodes.common.paths import PACKAGE_NAME, resolve_config_file

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    executable: str = Field(min_length=1)
    parameters: list[str] = []
    # parameter name -> file name: the parameter is set to that file in a directory made fresh for
    # each run of the stack (e.g. the memory store of a simulated world, which must not carry
    # beliefs over from earlier runs of other worlds)
    per_run_files: dict[str, str] = {}

    @field_validator("per_run_files")
    @classmethod
    def _plain_file_names(cls, files: dict[str, str]) -> dict[str, str]:
        for param, name in files.items():
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"per_run_files.{param}: '{name}' must be a plain file name")
        return files

    @field_validator("name", "executable")
    @classmethod
    def _ros_name(cls, value: str) -> str:
        if not set(value) <= _NAME_CHARS or value[0].isdigit():
            raise ValueError(f"'{value}' is not a valid ROS node or executable name")
        return value

    def parameter_files(self) -> list[Path]:
        files = [resolve_config_file(p) for p in self.parameters]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"node '{self.name}': parameter file {f} not found")
        return files


class StackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    nodes: list[NodeSpec] = Field(min_length=1)

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[NodeSpec]) -> list[NodeSpec]:
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        return nodes


class StackDescription(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stacks: dict[str, StackSpec]

    def stack(self, name: str) -> StackSpec:
        if name not in self.stacks:
            raise KeyError(f"unknown stack '{name}'; stacks: {sorted(self.stacks)}")
        return self.stacks[name]


def load_stack_description(path: str | os.PathLike = "stack.yaml") -> StackDescription:
    with open(resolve_config_file(path)) as f:
        return StackDescription.model_validate(yaml.safe_load(f))


def node_parameters(path: str | os.PathLike, node_name: str) -> dict:
    """The `ros__parameters` a parameter file gives `node_name` in any namespace (its key is
    `/**/<node>` so namespaced stacks get them too; a plain `<node>` key also counts)."""
    with open(resolve_config_file(path)) as f:
        data = yaml.safe_load(f) or {}
    for key in (f"/**/{node_name}", node_name):
        if key in data:
            return data[key]["ros__parameters"]
    raise KeyError(f"{path} has no parameters for node '{node_name}' (key /**/{node_name})")


def new_run_directory() -> Path:
    """A directory of its own for one run of a stack: $ROS_HOME/robot_harness/runs/<time>-<pid>
    (ROS_HOME defaults to ~/.ros, as for ros2 launch's logs)."""
    ros_home = Path(os.environ.get("ROS_HOME") or Path.home() / ".ros")
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    run_dir = ros_home / PACKAGE_NAME / "runs" / f"{stamp}-{os.getpid()}"
    suffix = 0
    while True:
        candidate = run_dir if suffix == 0 else run_dir.with_name(f"{run_dir.name}-{suffix}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            suffix += 1


def per_run_parameters(node: NodeSpec, run_dir: Path) -> dict[str, str]:
    """The node's per-run file parameters, pointing into this run's directory."""
    return {param: str(run_dir / name) for param, name in node.per_run_files.items()}


def find_executable(executable: str) -> Path:
    """`lib/<package>/<executable>` in the first ament prefix that has it, as launch_ros looks."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "lib" / PACKAGE_NAME / executable
        if prefix and candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"executable '{executable}' not found in lib/{PACKAGE_NAME}/ of AMENT_PREFIX_PATH; "
        "run `make setup` (or `colcon build`) first")


def ros_value(value) -> str:
    """A Python value as a `-p name:=value` argument."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(ros_value(v) for v in value) + "]"
    return str(value)


def node_command(python: str, node: NodeSpec, overrides: dict[str, object], namespace: str = "") -> list[str]:
    """The command line that starts one node of the stack, as `ros2 launch` would; `namespace`
    ('' or e.g. '/left') pushes the node and its relative topic and service names into it."""
    cmd = [python, str(find_executable(node.executable)), "--ros-args", "-r", f"__node:={node.name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for f in node.parameter_files():
        cmd += ["--params-file", str(f)]
    for key, value in overrides.items():
        cmd += ["-p", f"{key}:={ros_value(value)}"]
    return cmd


RECORDER = NodeSpec(name="recorder", executable="recorder", parameters=["recorder.yaml"])


def recorder_parameters(output_dir: str, overrides: dict | None = None) -> dict[str, object]:
    """The recorder's `output_dir` and `name` for a stack started with a recording directory (the
    bringup's `--record DIR`, the launch files' `record:=DIR`), after checking a recording can
    start there (writable, `min_free_mb` free, no bag of that name): RecordingError otherwise,
    before any node starts."""
    from harness_nodes.recording.core import check_destination, default_bag_name

    overrides = dict(overrides or {})
    name = str(overrides.get("name") or default_bag_name())
    min_free = float(overrides.get("min_free_mb", node_parameters("recorder.yaml", RECORDER.name)["min_free_mb"]))
    check_destination(output_dir, name, min_free)
    return {"output_dir": str(output_dir), "name": name}
