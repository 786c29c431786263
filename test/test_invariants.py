"""Architecture invariants (design §4), checked on the source tree."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "harness_nodes"
# Modules where ROS meets a core: node files, the bringup/demo launchers, and the expert node.
ROS_MODULES = {"node.py"}
ROS_ALLOWED = {"harness_nodes/bringup/cli.py", "harness_nodes/demo.py", "harness_nodes/common/params.py",
               "harness_nodes/common/node_main.py", "harness_nodes/common/qos.py",
               "harness_nodes/recording/replay.py",   # a command that publishes a recording back
               "harness_nodes/episodes/runner.py"}    # brings up a stack, sends the goal, judges from ground truth


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


# The world model's physics backend builds its own PyBullet shadow world from the harness's belief
# (memory facts, joint state): it may use the physics engine, never the simulation's code or truth.
OWN_PHYSICS_WORLDS = {"harness_nodes/world_model/modeling_physics.py"}


def test_no_harness_node_reads_ground_truth_or_imports_the_simulation():
    # the sim, the scripted expert and the data generation run the simulation by design; the episode
    # runner and the demo are the judges (success from ground truth, the perturbation through
    # /sim/control) and hand nothing of it to the harness
    allowed = ("harness_nodes/sim/", "harness_nodes/expert/", "harness_nodes/dataset/sim_episodes.py",
               "harness_nodes/dataset/generate.py", "harness_nodes/episodes/runner.py", "harness_nodes/demo.py")
    offenders = []
    for path in python_files():
        rel = str(path.relative_to(REPO))
        if rel.startswith(allowed):
            continue
        text = path.read_text()
        if "SimGroundTruth" in text or "/sim/ground_truth" in text or "harness_nodes.sim" in text:
            offenders.append(rel)
        if "pybullet" in imported_modules(path) - {"pybullet_data"} and rel not in OWN_PHYSICS_WORLDS:
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


GUARDED_NODES = sorted(str(p.relative_to(REPO)) for p in (REPO / "harness_nodes").rglob("node.py"))


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


HARNESS_NODE_MODULES = sorted(f"harness_nodes.{p.parent.name}.node" for p in (REPO / "harness_nodes").glob("*/node.py")
                              if p.parent.name not in ("sim", "expert"))


@pytest.mark.parametrize("module", HARNESS_NODE_MODULES)
def test_harness_nodes_do_not_load_the_simulation(module):
    """Importing a harness node (and everything it imports) loads neither the simulation's code
    nor PyBullet: the harness sees a simulated robot exactly as a real one."""
    code = (f"import sys, {module}; "
            "bad = sorted(m for m in sys.modules if m == 'pybullet' or m.startswith('harness_nodes.sim')"
            " or m == 'harness_nodes.dataset.sim_episodes'); print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} loads {result.stdout.strip()} {result.stderr[-500:]}"


# Node packages share code only through harness_nodes/common/; a node package importing another's
# modules is listed here, (importer, imported) -> why. The offline data and training packages
# (expert rollouts, dataset, world_model, latent_policy) are built on the simulator and the
# router's chunk schema by design.
CROSS_PACKAGE_IMPORTS: dict[tuple[str, str], str] = {
    ("world_model", "router"): "an action chunk is checked by the router's own schema (router/validation.py) "
                               "before it is rolled out: one definition of what the arm accepts",
    ("world_model", "expert"): "training data are the scripted expert's rollouts",
    ("expert", "router"): "scripted rollouts are checked by the router's chunk schema (router/validation.py)",
    ("expert", "sim"): "scripted rollouts run offline in the simulator (no ROS)",
    ("expert", "world_model"): "rollouts are stepped and labelled as the world model sees chunks",
    ("dataset", "expert"): "episodes are the scripted expert's demonstrations",
    ("supervisor", "expert"): "the planner fallback builds its chunks with the expert's pick-and-place geometry "
                              "(expert/plan.py, pure), from memory's beliefs instead of ground truth",
    ("dataset", "sim"): "episodes are recorded offline in the simulator (no ROS)",
    ("latent_policy", "dataset"): "the policy trains on the dataset's episodes and its feature layout",
    ("latent_policy", "perception"): "camera images are decoded as perception decodes them",
    ("recording", "dataset"): "recordings are exported with the dataset's LeRobot writer and feature layout",
    ("bringup", "recording"): "--record checks the recording destination before any node starts",
    ("benchmark", "episodes"): "the suite runs the episode runner's episodes with its scenarios and ablations",
    ("benchmark", "scale"): "the suite's episodes run through the scale-out module (processes or Ray)",
    ("dataset", "scale"): "generation episodes run through the scale-out module (processes or Ray)",
}
# One home in common/ for each helper nodes share; a definition of one of these names (or of the
# names the duplicates had before they moved) anywhere else is a copy.
SHARED_HELPERS = {
    # common/geometry.py
    "quat_to_matrix", "matrix_to_quat", "yaw_quat", "quat_multiply", "yaw_of",
    "quat_xyzw_to_matrix", "matrix_to_quat_xyzw",
    # common/stamps.py
    "to_seconds", "to_time", "to_duration", "stamp_seconds", "from_time", "to_stamp", "from_stamp",
    "_seconds", "_duration",
    # common/diagnostics.py
    "diagnostic_status", "publish_diagnostics",
    # common/camera_mount.py, common/kinematics.py
    "ee_T_camera", "ee_target_for_camera", "camera_for_ee", "add_tool_frame",
    # common/messages.py
    "pose_msg", "_pose",
}


def harness_imports(path: Path) -> set[str]:
    """Every harness_nodes.<package> this file imports, at module level or inside functions."""
    packages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                   [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        packages |= {m.split(".")[1] for m in modules if m.startswith("harness_nodes.") and m.count(".") >= 1}
    return packages


def test_node_packages_share_code_only_through_common():
    offenders, seen = [], set()
    for path in python_files():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2:
            continue   # top-level entry modules (demo, describe_robot) may use any package
        own = parts[0]
        for other in harness_imports(path) - {own, "common"}:
            seen.add((own, other))
            if (own, other) not in CROSS_PACKAGE_IMPORTS:
                offenders.append(f"{path.relative_to(REPO)} imports harness_nodes.{other}")
    assert offenders == [], f"node packages importing each other (move the shared code to common/): {offenders}"
    assert set(CROSS_PACKAGE_IMPORTS) <= seen, f"listed but no longer imported: {set(CROSS_PACKAGE_IMPORTS) - seen}"


def test_common_imports_no_node_package():
    offenders = [f"{p.relative_to(REPO)}: {sorted(harness_imports(p) - {'common'})}"
                 for p in (PACKAGE / "common").glob("*.py") if harness_imports(p) - {"common"}]
    assert offenders == [], offenders


def test_shared_helpers_are_defined_once_in_common():
    copies = []
    for path in python_files():
        if path.parent.name == "common":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in SHARED_HELPERS:
                copies.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert copies == [], f"shared helpers defined outside harness_nodes/common/: {copies}"
    homes = {n.name for p in (PACKAGE / "common").glob("*.py") for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.FunctionDef)}
    assert {"quat_to_matrix", "matrix_to_quat", "yaw_quat", "to_seconds", "to_time", "to_duration",
            "diagnostic_status", "publish_diagnostics", "ee_T_camera", "add_tool_frame", "pose_msg"} <= homes


def test_diagnostic_statuses_are_built_by_the_common_helper():
    builders = [str(p.relative_to(REPO)) for p in python_files()
                if p.parent.name != "common" and re.search(r"\bKeyValue\(|DiagnosticStatus\(", p.read_text())]
    assert builders == [], f"build DiagnosticStatus with harness_nodes.common.diagnostics instead: {builders}"
