"""Launch arguments that say what they do (pure helpers shared by launch/_stack.py and the
bringup), the per-run memory store of simulated stacks, and the bringup refusing bad arguments
before any node starts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness_nodes.bringup.arguments import (BOOLEAN_CHOICES, available_robots, check_robot,
                                             normalize_namespace, parse_bool, stack_failure_message)
from harness_nodes.bringup.cli import build_commands
from harness_nodes.bringup.stack import load_stack_description

REPO = Path(__file__).resolve().parents[1]


def test_robots_are_the_descriptions_in_config_robots():
    assert available_robots() == sorted(p.stem for p in (REPO / "config/robots").glob("*.yaml"))
    assert {"panda", "xarm6"} <= set(available_robots())
    assert check_robot("xarm6") == "xarm6"
    with pytest.raises(ValueError, match=r"unknown robot 'nonexistent'; robots: panda, xarm6"):
        check_robot("nonexistent")


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True),
                                        ("false", False), ("False", False), ("0", False)])
def test_the_boolean_spellings_ros_accepts(text, value):
    assert text in BOOLEAN_CHOICES
    assert parse_bool("use_sim_time", text) is value


@pytest.mark.parametrize("text", ["yes", "no", "on", "", "tru", "2", "none"])
def test_other_boolean_spellings_are_refused_with_the_choices(text):
    with pytest.raises(ValueError, match="use_sim_time.*is not a boolean; use one of true, True, 1, false"):
        parse_bool("use_sim_time", text)


def test_namespaces_are_normalised_or_refused():
    assert normalize_namespace("") == "" and normalize_namespace("/") == "" and normalize_namespace(None) == ""
    assert normalize_namespace("left") == "/left" and normalize_namespace("/cell_2/left/") == "/cell_2/left"
    for bad in ("1arm", "left arm", "le-ft", "a//b", "a/__b", "~x"):
        with pytest.raises(ValueError, match="not a valid ROS namespace"):
            normalize_namespace(bad)


def test_a_failing_stack_names_the_node_its_code_and_the_robots():
    message = stack_failure_message("sim", 3, "nonexistent")
    assert "'sim' exited with code 3" in message and "robots: panda, xarm6" in message


def test_bringup_commands_refuse_an_unknown_robot_and_carry_the_namespace():
    with pytest.raises(ValueError, match="robots: panda, xarm6"):
        build_commands("sim", "nonexistent", True, [])
    commands = build_commands("sim", "xarm6", True, [], namespace="left")
    for cmd in commands.values():
        assert cmd[cmd.index("__ns:=/left") - 1] == "-r"
    assert all("__ns:=/left" not in c for c in build_commands("sim", None, None, []).values())


def test_simulated_stacks_get_a_fresh_memory_store_per_run_and_the_robot_stack_persists(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    stores = []
    for stack in ("sim", "sim_perception", "sim"):
        memory = build_commands(stack, None, True, [])["memory_tracker"]
        db = [a.split(":=", 1)[1] for a in memory if a.startswith("db_path:=")]
        assert len(db) == 1, memory
        stores.append(Path(db[0]))
    assert len(set(stores)) == 3, "each run has its own store"
    for store in stores:
        assert store.parent.is_dir() and not store.exists()
        assert store.parent.parent == tmp_path / "robot_harness" / "runs"
    robot = build_commands("robot", None, None, [])["memory_tracker"]
    assert not any(a.startswith("db_path:=") for a in robot), "the real arm keeps its memory across runs"
    assert not load_stack_description().stack("robot").nodes[-1].per_run_files


def test_an_override_still_wins_over_the_per_run_store(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    memory = build_commands("sim", None, True, [f"memory_tracker.db_path:={tmp_path / 'kept.sqlite'}"])
    assert [a for a in memory["memory_tracker"] if a.startswith("db_path:=")] == [f"db_path:={tmp_path / 'kept.sqlite'}"]


@pytest.mark.parametrize("args,expected", [
    (["sim", "--robot", "nonexistent"], "unknown robot 'nonexistent'; robots: panda, xarm6"),
    (["sim", "--use-sim-time", "yes"], "use_sim_time:='yes' is not a boolean"),
    (["sim", "--namespace", "left arm"], "not a valid ROS namespace"),
    (["sim", "-p", "use_sim_time:=yes"], "use_sim_time:='yes' is not a boolean"),
    (["sim", "-p", "sim.gui:=on"], "gui:='on' is not a boolean"),
    (["sim", "-p", "sim.robot:=ur5"], "unknown robot 'ur5'; robots: panda, xarm6"),
])
def test_the_bringup_refuses_bad_arguments_before_starting_anything(args, expected):
    result = subprocess.run([sys.executable, "-m", "harness_nodes.bringup.cli", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "starting" not in result.stdout


def test_a_recording_directory_is_checked_once_for_the_bringup_and_the_launch_files(tmp_path):
    """`--record DIR` (bringup) and `record:=DIR` (launch/_stack.py) both take the recorder's
    output_dir and name from recorder_parameters, which refuses before any node starts."""
    from harness_nodes.bringup.stack import recorder_parameters
    from harness_nodes.recording.core import RecordingError

    params = recorder_parameters(str(tmp_path / "rec"))
    assert params["output_dir"] == str(tmp_path / "rec") and params["name"].startswith("recording-")
    assert recorder_parameters(str(tmp_path / "rec"), {"name": "run1"})["name"] == "run1"
    (tmp_path / "rec" / "run1").mkdir()
    with pytest.raises(RecordingError, match="exists already"):
        recorder_parameters(str(tmp_path / "rec"), {"name": "run1"})
    with pytest.raises(RecordingError, match="not enough free space"):
        recorder_parameters(str(tmp_path / "rec"), {"min_free_mb": 1e15})
    (tmp_path / "file").write_text("")
    with pytest.raises(RecordingError, match="is not a directory"):
        recorder_parameters(str(tmp_path / "file"))
    commands = build_commands("sim", None, True, [], record=str(tmp_path / "rec"))
    assert "recorder" in commands and any("output_dir:=" + str(tmp_path / "rec") in a for a in commands["recorder"])
    launch = (REPO / "launch" / "_stack.py").read_text()
    assert 'DeclareLaunchArgument("record"' in launch and "recorder_parameters(record)" in launch
