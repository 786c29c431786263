"""`pip install .` (and `pip install .[train]`) without ROS: the pure-Python cores of harness_nodes,
the package's config/ (robot descriptions, stack, parameters) under <prefix>/share/robot_harness/,
and the console commands that need no ROS.

The ROS build is CMakeLists.txt (ament_cmake + ament_cmake_python: rosidl interfaces, nodes,
launch files); colcon picks it from package.xml's build_type and never runs this file. The version
lives in package.xml only. COMMANDS is the list of ROS-free commands; CMakeLists.txt's
HARNESS_COMMANDS installs the same ones for `ros2 run` (test/test_packaging.py keeps them equal).
Data, training and evaluation commands join COMMANDS and HARNESS_COMMANDS as they are written.
"""
import xml.etree.ElementTree as ET
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
PACKAGE = "robot_harness"
VERSION = ET.parse(ROOT / "package.xml").getroot().findtext("version").strip()

COMMANDS = {
    "harness_describe_robot": "harness_nodes.describe_robot:main",
    "harness_generate_episodes": "harness_nodes.dataset.generate:main",
    "harness_train_latent_policy": "harness_nodes.latent_policy.train:main",
    "harness_train_world_model": "harness_nodes.world_model.training:main",
    "harness_export_recording": "harness_nodes.recording.export:main",
}


def config_files():
    """(install dir, files) pairs keeping config/'s layout under share/robot_harness/config."""
    by_dir = {}
    for path in sorted((ROOT / "config").rglob("*.yaml")):
        rel = path.relative_to(ROOT)
        by_dir.setdefault(str(Path("share", PACKAGE, rel.parent)), []).append(str(rel))
    return sorted(by_dir.items())


setup(
    name=PACKAGE,
    version=VERSION,
    description="Pure-Python cores and ROS-free commands of the robot harness",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["harness_nodes", "harness_nodes.*"]),
    data_files=config_files(),
    install_requires=["numpy", "pydantic>=2", "PyYAML", "pin", "pybullet", "opencv-python-headless"],
    extras_require={"train": ["torch==2.13.0", "safetensors", "pyarrow", "av", "tqdm", "matplotlib", "rosbags"],
                    "ray": ["ray==2.60.0"]},   # --ray of the data generation and the suite
    entry_points={"console_scripts": [f"{name}={target}" for name, target in COMMANDS.items()]},
)
