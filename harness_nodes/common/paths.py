"""Where the package's config files and robot models live, source tree or installed prefix."""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_NAME = "robot_harness"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """The package's config/ folder: the source tree's when run from it, else the installed share
    (pip install: <prefix>/share/robot_harness/config; colcon: the ament index)."""
    source = _SOURCE_ROOT / "config"
    if (source / "stack.yaml").is_file():
        return source
    pip_installed = Path(sys.prefix) / "share" / PACKAGE_NAME / "config"   # `pip install .` (setup.py)
    if (pip_installed / "stack.yaml").is_file():
        return pip_installed
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE_NAME)) / "config"
    except Exception as exc:  # pragma: no cover - only without the source tree and the prefix
        raise FileNotFoundError(f"cannot find the {PACKAGE_NAME} config directory") from exc


def resolve_config_file(name: str | os.PathLike) -> Path:
    """An absolute path as given; a relative one inside config/."""
    path = Path(name)
    return path if path.is_absolute() else config_dir() / path


def resolve_model_file(name: str) -> Path:
    """A robot or object model: absolute path as given, otherwise relative to pybullet_data."""
    path = Path(name)
    if path.is_absolute():
        return path
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / path
