"""Launch arguments that say what they do: the robots a stack can run, the boolean spellings ROS
accepts, namespaces, and the message a stack that cannot run exits with.

Pure (no launch, no rclpy): `launch/_stack.py` and the pip-only bringup (`cli.py`) both call these,
so `robot:=nonexistent` or `use_sim_time:=yes` is refused the same way by both, before any node
starts, with the allowed values named.
"""
from __future__ import annotations

import re

from harness_nodes.common.paths import resolve_config_file

# The spellings launch's conditions accept for a boolean (they compare lower-cased: 'true', '1'
# for true, 'false', '0' for false), and the ones a ROS 2 parameter file takes.
TRUE_SPELLINGS = ("true", "True", "1")
FALSE_SPELLINGS = ("false", "False", "0")
BOOLEAN_CHOICES = TRUE_SPELLINGS + FALSE_SPELLINGS
BOOLEAN_PARAMETERS = ("use_sim_time", "gui")   # stack-wide switches given as launch arguments
_NAMESPACE = re.compile(r"^/?([A-Za-z][A-Za-z0-9_]*)(/[A-Za-z][A-Za-z0-9_]*)*$")


def available_robots() -> list[str]:
    """The robot descriptions in config/robots/ (names usable as robot:=<name>)."""
    return sorted(p.stem for p in resolve_config_file("robots").glob("*.yaml"))


def check_robot(robot: str) -> str:
    """`robot` if config/robots/<robot>.yaml exists (or a path to a description file), else
    ValueError listing the robots."""
    robots = available_robots()
    if robot in robots or (robot.endswith((".yaml", ".yml")) and resolve_config_file(robot).is_file()):
        return robot
    raise ValueError(f"unknown robot '{robot}'; robots: {', '.join(robots)} (config/robots/<robot>.yaml)")


def parse_bool(name: str, text: str | bool) -> bool:
    """A boolean launch argument: true/True/1 or false/False/0; anything else is refused (launch
    would otherwise read e.g. 'yes' as false without a word)."""
    if isinstance(text, bool):
        return text
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise ValueError(f"{name}:={text!r} is not a boolean; use one of {', '.join(BOOLEAN_CHOICES)}")


def normalize_namespace(namespace: str | None) -> str:
    """'' (no namespace) or an absolute ROS namespace such as '/left'; invalid names refused."""
    ns = (namespace or "").strip()
    if ns in ("", "/"):
        return ""
    if ns.endswith("/") and not ns.endswith("//"):
        ns = ns[:-1]
    if not _NAMESPACE.match(ns) or "__" in ns:
        raise ValueError(f"namespace '{namespace}' is not a valid ROS namespace "
                         "(letters, digits and '_', each part starting with a letter, '/' between parts)")
    return "/" + ns.strip("/")


def stack_failure_message(node: str, code: int | None, robot: str) -> str:
    """What a stack says when one of its nodes exits while it should be running."""
    return (f"node '{node}' exited with code {code} while the stack was running, so the stack stops "
            f"(robot '{robot}'; robots: {', '.join(available_robots())}); see the node's log above")
