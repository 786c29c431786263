"""Pure pick-and-place planning of the scripted expert."""
import math

import numpy as np
import pytest

from harness_nodes.expert.plan import (GRIPPER_CLOSE, GRIPPER_OPEN, PickPlaceConfig, plan_pick_place,
                                       top_down_quaternion, waypoint_times)


def rotation_z_axis(q):
    x, y, z, w = q
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


@pytest.mark.parametrize("yaw", [0.0, 0.3, -0.7, 1.2, 3.0])
def test_tool_points_down_with_yaw_folded_to_a_quarter_turn(yaw):
    q = top_down_quaternion(yaw)
    assert np.linalg.norm(q) == pytest.approx(1.0)
    assert rotation_z_axis(q) == pytest.approx([0, 0, -1], abs=1e-9)
    x_axis = np.array([1 - 2 * (q[1] ** 2 + q[2] ** 2), 2 * (q[0] * q[1] + q[3] * q[2]), 0.0])
    tool_yaw = math.atan2(x_axis[1], x_axis[0])
    assert -math.pi / 4 - 1e-9 <= tool_yaw <= math.pi / 4 + 1e-9
    assert math.remainder(tool_yaw - yaw, math.pi / 2) == pytest.approx(0.0, abs=1e-9)


def test_plan_goes_above_grasps_lifts_and_releases_over_the_tray():
    phases = plan_pick_place([0.5, 0.1, 0.025], [0, 0, 0, 1], [0.5, -0.3, 0.0])
    names = [p.name for p in phases]
    assert names == ["pre_grasp", "descend", "lift", "transport", "lower", "retreat"]
    by = {p.name: p for p in phases}
    assert by["pre_grasp"].gripper == GRIPPER_OPEN and by["descend"].gripper == GRIPPER_CLOSE
    assert by["lower"].gripper == GRIPPER_OPEN
    assert by["descend"].positions[0] == pytest.approx([0.5, 0.1, 0.025])
    assert by["pre_grasp"].positions[0][2] > by["descend"].positions[0][2] + 0.1
    assert by["lower"].positions[0][:2] == pytest.approx([0.5, -0.3])


def test_waypoint_times_follow_distance_and_a_minimum():
    cfg = PickPlaceConfig(move_speed=0.5, min_segment_time=0.5)
    times = waypoint_times(np.zeros(3), [np.array([1.0, 0, 0]), np.array([1.0, 0, 0.01])], cfg)
    assert times == pytest.approx([2.0, 2.5])
