"""Architecture invariants (design §4), checked on the source tree."""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "harness_nodes"
# Modules where ROS meets a core: node files, the bringup/demo launchers, and the expert node.
ROS_MODULES = {"node.py"}
ROS_ALLOWED = {"harness_nodes/bringup/cli.py", "harness_nodes/demo.py", "harness_nodes/common/params.py",
               "harness_nodes/common/node_main.py", "harness_nodes/common/qos.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def python_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_pure_cores_never_import_rclpy():
    offenders = []
    for path in python_files():
        rel = str(path.relative_to(REPO))
        if path.name in ROS_MODULES or rel in ROS_ALLOWED:
            continue
        if imported_modules(path) & {"rclpy", "rclpy_lifecycle"}:
            offenders.append(rel)
    assert offenders == [], f"pure cores importing rclpy: {offenders}"


def test_no_harness_node_reads_ground_truth_or_imports_the_simulation():
    allowed = ("harness_nodes/sim/", "harness_nodes/expert/")
    offenders = []
    for path in python_files():
        rel = str(path.relative_to(REPO))
        if rel.startswith(allowed):
            continue
        text = path.read_text()
        if "SimGroundTruth" in text or "/sim/ground_truth" in text or "harness_nodes.sim" in text:
            offenders.append(rel)
        if "pybullet" in imported_modules(path) - {"pybullet_data"}:
            offenders.append(rel)
    assert offenders == [], f"harness code that sees the simulation's internals: {offenders}"


def test_only_the_controller_router_publishes_to_the_arm_command_topics():
    offenders = []
    for path in python_files():
        rel = str(path.relative_to(REPO))
        if rel.startswith(("harness_nodes/router/", "harness_nodes/sim/", "harness_nodes/common/")):
            continue
        text = path.read_text()
        if re.search(r"(arm|gripper)_controller/|\barm_topic\b|\bgripper_topic\b", text):
            offenders.append(rel)
    assert offenders == [], f"modules that name the arm's command topics: {offenders}"


@pytest.mark.parametrize("path", sorted((REPO / "msg").glob("*.msg")), ids=lambda p: p.name)
def test_every_harness_message_carries_a_header(path):
    first_field = next(line for line in path.read_text().splitlines()
                       if line.strip() and not line.lstrip().startswith("#"))
    assert first_field.split()[:2] == ["std_msgs/Header", "header"]


def test_every_module_says_what_it_owns():
    missing = [str(p.relative_to(REPO)) for p in python_files() if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


def test_logger_methods_are_called_where_they_are_named():
    """rclpy on Jazzy raises 'Logger severity cannot be changed between calls' when one call site
    logs at two severities (`log = logger.info if ok else logger.warn; log(...)`): that exception
    once made the router's deactivate fail. Every severity gets its own call site."""
    severities = {"debug", "info", "warn", "warning", "error", "fatal"}
    offenders = []
    for path in python_files():
        tree = ast.parse(path.read_text())
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Attribute) and n.attr in severities and id(n) not in called
                    and isinstance(n.value, ast.Call) and getattr(n.value.func, "attr", None) == "get_logger"):
                offenders.append(f"{path.relative_to(REPO)}:{n.lineno}")
            if (isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "log"
                    and isinstance(n.func.value, ast.Call)
                    and getattr(n.func.value.func, "attr", None) == "get_logger"):
                offenders.append(f"{path.relative_to(REPO)}:{n.lineno}")
    assert offenders == [], f"logger methods stored or given a variable severity: {offenders}"


GUARDED_NODES = ["harness_nodes/memory/node.py", "harness_nodes/perception/node.py", "harness_nodes/sim/node.py",
                 "harness_nodes/expert/node.py", "harness_nodes/supervisor/node.py",
                 "harness_nodes/supervisor/operator/node.py"]


@pytest.mark.parametrize("rel", GUARDED_NODES)
def test_every_callback_goes_through_the_callback_guards(rel):
    """No input can raise out of a subscriber, service or timer: each is registered wrapped in
    `guarded` / `guarded_service` (common/callbacks.py)."""
    callback_index = {"create_subscription": 2, "create_service": 2, "create_timer": 1}
    wrappers = {"create_subscription": "guarded", "create_timer": "guarded", "create_service": "guarded_service"}
    offenders = []
    for n in ast.walk(ast.parse((REPO / rel).read_text())):
        if isinstance(n, ast.Call) and getattr(n.func, "attr", None) in callback_index:
            kind = n.func.attr
            cb = n.args[callback_index[kind]] if len(n.args) > callback_index[kind] else None
            if not (isinstance(cb, ast.Call) and getattr(cb.func, "id", None) == wrappers[kind]):
                offenders.append(f"{rel}:{n.lineno} {kind}")
    assert offenders == [], f"callbacks registered without their guard: {offenders}"
