"""Packaging: `pip install .` into a fresh venv without ROS gives the pure cores and the same
ROS-free commands the colcon install declares; the version lives in package.xml only; the colcon
build runs the suite under `colcon test`; the declared license is there."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def setup_py_commands() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMANDS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no COMMANDS")


def cmake_list(name: str) -> dict[str, str]:
    block = re.search(rf"set\({name}\n(.*?)\n\)", (REPO / "CMakeLists.txt").read_text(), re.S)
    assert block, f"CMakeLists.txt has no {name}"
    return dict(re.findall(r'"(\w+):([\w.]+)"', block.group(1)))


def test_setup_py_commands_are_the_ones_colcon_installs():
    commands = setup_py_commands()
    assert commands, "at least one ROS-free command"
    assert {name: target.split(":")[0] for name, target in commands.items()} == cmake_list("HARNESS_COMMANDS")
    assert all(target.endswith(":main") for target in commands.values())
    assert not set(commands) & set(cmake_list("HARNESS_EXECUTABLES")), "ROS nodes are not pip commands"


def test_the_version_lives_in_package_xml_only():
    version = ET.parse(REPO / "package.xml").getroot().findtext("version")
    result = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == version
    assert version not in (REPO / "setup.py").read_text()


def test_declared_license_file_and_colcon_test_hook():
    license_name = ET.parse(REPO / "package.xml").getroot().findtext("license")
    assert license_name == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"if\(BUILD_TESTING\).*ament_add_pytest_test\(\w+ test", cmake, re.S)


def _fresh_python() -> str:
    return shutil.which("python3.11") or getattr(sys, "_base_executable", sys.executable)


@pytest.mark.timeout(180)
def test_pip_install_into_a_fresh_venv_without_ros_gives_cores_and_commands(tmp_path):
    source = tmp_path / "src"
    for name in ("setup.py", "package.xml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    for folder in ("harness_nodes", "config"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([_fresh_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    # What `pip install .` does, in two steps so no network is needed: build the wheel with this
    # environment's setuptools (a fresh venv's may predate bdist_wheel), install it into the fresh venv.
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(source)],
                           env=env, capture_output=True, text=True, timeout=150)
    assert wheel.returncode == 0, wheel.stdout + wheel.stderr
    wheels = list((tmp_path / "dist").glob("robot_harness-*.whl"))
    assert len(wheels) == 1
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                              "-q", str(wheels[0])], env=env, capture_output=True, text=True, timeout=150)
    assert install.returncode == 0, install.stdout + install.stderr

    for name in setup_py_commands():
        assert (venv / "bin" / name).is_file(), f"console command {name} not installed"
    assert (venv / "share" / "robot_harness" / "config" / "robots" / "xarm6.yaml").is_file()

    # The dependencies (not ROS) come from the project's venv, appended after the fresh install so
    # the freshly installed harness_nodes is the one imported; rclpy is made unimportable.
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "deps_from_project.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "import harness_nodes, harness_nodes.state_publisher.core, harness_nodes.common.kinematics\n"
            f"assert harness_nodes.__file__.startswith({str(venv)!r}), harness_nodes.__file__\n"
            "from harness_nodes.describe_robot import main\n"
            "sys.exit(main(['xarm6']))\n")
    run = subprocess.run([str(python), "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "robot xarm6" in run.stdout and "xarm_tcp" in run.stdout and "wrist_optical_frame" in run.stdout
