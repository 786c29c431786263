"""The obstacle-near-path scenario: a tall box beside the straight red cube -> tray line, clear of
the tray and the cubes, standing still until something knocks it."""
import numpy as np
import pytest

from harness_nodes.sim.world import OBSTACLE_HALF, OBSTACLE_ID, TRAY_ID, SimWorld


@pytest.fixture(scope="module")
def world():
    w = SimWorld("panda", scenario="obstacle", seed=1, image_width=8, image_height=8).connect()
    yield w
    w.disconnect()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_obstacle_stands_beside_the_path_and_stays_put(world, seed):
    world.reset("obstacle", seed)
    cube, _ = world.object_pose("red_cube")
    tray, _ = world.object_pose(TRAY_ID)
    obstacle, _ = world.object_pose(OBSTACLE_ID)
    (lx, ly), (ox, oy) = (tray - cube)[:2] / np.linalg.norm((tray - cube)[:2]), (obstacle - cube)[:2]
    side = abs(lx * oy - ly * ox)                               # distance from the line
    assert 0.04 <= side <= 0.08                                # beside the straight path, not on it
    lo, hi = world.tray_footprint()
    assert not (lo[0] - OBSTACLE_HALF[0] < obstacle[0] < hi[0] + OBSTACLE_HALF[0]
                and lo[1] - OBSTACLE_HALF[1] < obstacle[1] < hi[1] + OBSTACLE_HALF[1])
    world.run_for(1.0)
    assert np.linalg.norm(world.object_pose(OBSTACLE_ID)[0] - obstacle) < 0.002


def test_obstacle_is_parked_off_the_table_in_other_scenarios(world):
    world.reset("nominal", 1)
    assert world.object_pose(OBSTACLE_ID)[0][2] < -0.5
