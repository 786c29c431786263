"""The stack description and the bringup's command building (no ROS processes)."""
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from harness_nodes.bringup.cli import build_commands, parse_overrides
from harness_nodes.bringup.stack import StackDescription, load_stack_description, node_parameters
from harness_nodes.common.robot_description import load_robot_description

REPO = Path(__file__).resolve().parents[1]


def test_every_stack_node_has_an_installed_executable_and_parameter_files():
    cmake = (REPO / "CMakeLists.txt").read_text()
    installed = set(re.findall(r'"(\w+):harness_nodes[\w.]+"', cmake))
    stacks = load_stack_description()
    assert {"sim", "robot"} <= set(stacks.stacks)
    for stack in stacks.stacks.values():
        for node in stack.nodes:
            assert node.executable in installed, node.executable
            for f in node.parameter_files():
                assert isinstance(node_parameters(f, node.name), dict), f


def test_robot_stack_runs_no_simulation():
    names = [n.name for n in load_stack_description().stack("robot").nodes]
    assert "sim" not in names and "controller_router" in names


def test_every_stack_publishes_the_robot_description_and_transforms():
    for name, stack in load_stack_description().stacks.items():
        assert "state_publisher" in [n.executable for n in stack.nodes], name


def test_bringup_commands_match_the_stack():
    commands = build_commands("sim", "panda", True, ["sim.real_time_factor:=2.0", "seed:=3"])
    assert set(commands) == {n.name for n in load_stack_description().stack("sim").nodes}
    assert {"sim", "controller_router", "memory_tracker"} <= set(commands)
    sim = commands["sim"]
    assert sim[1].endswith("lib/robot_harness/sim_node")
    assert "__node:=sim" in sim and str(REPO / "config" / "sim.yaml") in sim
    assert "real_time_factor:=2.0" in sim and "use_sim_time:=true" in sim and "seed:=3" in sim
    assert "real_time_factor:=2.0" not in commands["controller_router"]
    assert "seed:=3" in commands["controller_router"]


def test_overrides_reject_unknown_nodes_and_malformed_items():
    with pytest.raises(ValueError, match="unknown node 'nope'"):
        parse_overrides(["nope.x:=1"], ["sim"])
    with pytest.raises(ValueError, match="must look like"):
        parse_overrides(["x=1"], ["sim"])


def test_malformed_stack_descriptions_are_refused_with_the_field_named():
    with pytest.raises(ValidationError, match="nodes"):
        StackDescription.model_validate({"stacks": {"s": {"nodes": []}}})
    with pytest.raises(ValidationError, match="unique"):
        StackDescription.model_validate({"stacks": {"s": {"nodes": [
            {"name": "a", "executable": "x"}, {"name": "a", "executable": "y"}]}}})
    with pytest.raises(ValidationError, match="not a valid ROS"):
        StackDescription.model_validate({"stacks": {"s": {"nodes": [{"name": "a b", "executable": "x"}]}}})
    with pytest.raises(KeyError, match="unknown stack"):
        load_stack_description().stack("nope")


def test_robot_description_validation_names_the_field(tmp_path):
    good = yaml.safe_load((REPO / "config/robots/panda.yaml").read_text())
    assert load_robot_description("panda").arm.joint_names[0] == "panda_joint1"
    bad = dict(good, arm=dict(good["arm"], velocity_limit=good["arm"]["velocity_limit"][:3]))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValidationError, match="velocity_limit has 3 entries"):
        load_robot_description(str(path))
    bad = dict(good, arm=dict(good["arm"], home=[float("nan")] * 7))
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValidationError, match="home must be finite"):
        load_robot_description(str(path))


def test_real_arm_router_asks_for_realtime_scheduling_and_the_sim_router_does_not():
    from harness_nodes.bringup.stack import resolve_config_file
    from harness_nodes.router.configuration import RouterParameters

    def router_parameters(stack: str) -> RouterParameters:
        node = next(n for n in load_stack_description().stack(stack).nodes if n.name == "controller_router")
        merged: dict = {}
        for f in node.parameters:     # later files override earlier ones, as with --params-file
            merged.update(node_parameters(f, "controller_router"))
        return RouterParameters(**merged)

    assert router_parameters("robot").realtime_priority == 50
    assert router_parameters("sim").realtime_priority == 0
