"""Pure pick-and-place planning: from an object pose and a tray pose to end-effector phases.

Each phase becomes one action chunk for the router: a few end-effector waypoints (tool pointing
down, yaw aligned with the cube's faces) and a gripper command executed after the motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness_nodes.common.geometry import quat_multiply, yaw_of, yaw_quat

GRIPPER_NONE, GRIPPER_OPEN, GRIPPER_CLOSE = 0, 1, 2


@dataclass(frozen=True)
class PickPlaceConfig:
    approach_height: float = 0.15   # m above the grasp point for pre-grasp and retreat
    grasp_height_offset: float = 0.0  # m, grasp point relative to the object's centre
    place_height: float = 0.12      # m above the tray's base for release
    move_speed: float = 0.25        # m/s of end-effector travel used to time waypoints
    min_segment_time: float = 0.8   # s


@dataclass(frozen=True)
class Phase:
    name: str
    positions: list[np.ndarray]     # m, world = robot base frame
    quaternion: np.ndarray          # x, y, z, w: tool pointing down
    gripper: int


def top_down_quaternion(yaw: float) -> np.ndarray:
    """Tool z pointing down (rotation by pi about x), then yaw about the world z axis.

    A cube looks the same every quarter turn, so the yaw is folded into [-pi/4, pi/4] to keep the
    wrist near its home angle."""
    yaw = (yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4
    down = np.array([1.0, 0.0, 0.0, 0.0])
    return quat_multiply(yaw_quat(yaw), down)


def plan_pick_place(object_position, object_quaternion, tray_position,
                    config: PickPlaceConfig = PickPlaceConfig()) -> list[Phase]:
    obj = np.asarray(object_position, dtype=float)
    tray = np.asarray(tray_position, dtype=float)
    grasp = obj + np.array([0.0, 0.0, config.grasp_height_offset])
    above_obj = grasp + np.array([0.0, 0.0, config.approach_height])
    release = np.array([tray[0], tray[1], tray[2] + config.place_height])
    above_tray = release + np.array([0.0, 0.0, config.approach_height])
    pick_q = top_down_quaternion(yaw_of(object_quaternion))
    place_q = top_down_quaternion(0.0)
    return [
        Phase("pre_grasp", [above_obj], pick_q, GRIPPER_OPEN),
        Phase("descend", [grasp], pick_q, GRIPPER_CLOSE),
        Phase("lift", [above_obj], pick_q, GRIPPER_NONE),
        Phase("transport", [above_tray], place_q, GRIPPER_NONE),
        Phase("lower", [release], place_q, GRIPPER_OPEN),
        Phase("retreat", [above_tray], place_q, GRIPPER_NONE),
    ]


def waypoint_times(start: np.ndarray, positions: list[np.ndarray], config: PickPlaceConfig) -> list[float]:
    """time_from_start of each waypoint at the configured travel speed."""
    times, t, prev = [], 0.0, np.asarray(start, dtype=float)
    for p in positions:
        t += max(config.min_segment_time, float(np.linalg.norm(p - prev)) / config.move_speed)
        times.append(t)
        prev = p
    return times
