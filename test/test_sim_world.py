"""Pure tests of the PyBullet world core (no ROS): trajectory tracking, cameras, ground truth,
perturbations and a physical top-down grasp."""
from __future__ import annotations

import math

import numpy as np
import pybullet as p
import pytest

from harness_nodes.sim.world import (CUBE_IDS, OBJECT_IDS, JointTrajectoryTracker, SimWorld,
                                     TrajectoryPoint)


@pytest.fixture
def world():
    w = SimWorld("panda").connect()
    yield w
    w.disconnect()


def arm_target(world) -> np.ndarray:
    return np.array(world.description.arm.home) + np.array([0.4, 0.3, -0.3, 0.3, 0.5, -0.3, 0.4])


def test_world_never_imports_rclpy():
    import harness_nodes.sim.world as module

    source = open(module.__file__).read()
    assert "rclpy" not in source.replace("never rclpy", "")


def test_starts_at_home_with_gripper_open(world):
    home = np.array(world.description.arm.home)
    assert np.allclose(world.arm_positions(), home, atol=1e-6)
    assert world.gripper_width() == pytest.approx(world.description.gripper.max_width, abs=1e-4)
    js = world.joint_states()
    assert js.names == world.description.all_joint_names and len(js.names) == 9
    assert js.positions.shape == js.velocities.shape == js.efforts.shape == (9,)


def test_hold_without_command(world):
    world.run_for(2.0)
    assert world.sim_time == pytest.approx(2.0)
    assert np.abs(world.arm_positions() - world.description.arm.home).max() < 1e-3
    assert world.gripper_width() == pytest.approx(0.08, abs=1e-3)


def test_trajectory_tracked_to_target(world):
    names = world.description.arm.joint_names
    target = arm_target(world)
    assert world.set_arm_trajectory(names, [TrajectoryPoint(target.tolist(), 2.0)]) is None
    world.run_for(1.0)
    mid = world.arm_positions()
    home = np.array(world.description.arm.home)
    # halfway in time, linear interpolation: roughly halfway in joint space
    assert np.allclose(mid, (home + target) / 2, atol=0.02)
    world.run_for(1.5)
    assert np.abs(world.arm_positions() - target).max() < 0.01
    assert not world.arm_trajectory_active  # finished: holds the last point
    world.run_for(1.0)
    assert np.abs(world.arm_positions() - target).max() < 0.01


def test_joint_order_free_and_partial(world):
    names = list(world.description.arm.joint_names)
    target = arm_target(world)
    order = [6, 0, 3, 1, 5, 2, 4]
    assert world.set_arm_trajectory([names[i] for i in order],
                                    [TrajectoryPoint([target[i] for i in order], 1.5)]) is None
    world.run_for(2.0)
    assert np.abs(world.arm_positions() - target).max() < 0.01
    # only joint1: the others hold
    assert world.set_arm_trajectory([names[0]], [TrajectoryPoint([0.0], 1.0)]) is None
    world.run_for(1.5)
    q = world.arm_positions()
    assert abs(q[0]) < 0.01 and np.abs(q[1:] - target[1:]).max() < 0.01


def test_hermite_with_velocities_multi_point(world):
    names = world.description.arm.joint_names
    home = np.array(world.description.arm.home)
    a, b = home + 0.2, home + 0.4
    b[3] = min(b[3], -0.1)
    a[3] = min(a[3], -0.1)
    pts = [TrajectoryPoint(a.tolist(), 1.0, [0.2] * 7), TrajectoryPoint(b.tolist(), 2.0, [0.0] * 7)]
    assert world.set_arm_trajectory(names, pts) is None
    world.run_for(1.0)
    assert np.abs(world.arm_positions() - a).max() < 0.02
    world.run_for(1.5)
    assert np.abs(world.arm_positions() - b).max() < 0.01


def test_replacing_trajectory_does_not_jump(world):
    names = world.description.arm.joint_names
    target = arm_target(world)
    world.set_arm_trajectory(names, [TrajectoryPoint(target.tolist(), 2.0)])
    world.run_for(1.0)
    before = world.arm.desired.copy()
    home = world.description.arm.home
    assert world.set_arm_trajectory(names, [TrajectoryPoint(list(home), 2.0)]) is None
    world.step()
    assert np.abs(world.arm.desired - before).max() < 0.01   # continues from the desired state
    world.run_for(2.5)
    assert np.abs(world.arm_positions() - home).max() < 0.01


def test_future_start_time_waits(world):
    names = world.description.arm.joint_names
    target = arm_target(world)
    assert world.set_arm_trajectory(names, [TrajectoryPoint(target.tolist(), 1.0)],
                                    start_time=world.sim_time + 1.0) is None
    world.run_for(0.9)
    assert np.abs(world.arm_positions() - world.description.arm.home).max() < 1e-3
    world.run_for(1.5)
    assert np.abs(world.arm_positions() - target).max() < 0.01


@pytest.mark.parametrize("names, points", [
    (["panda_joint1", "nope"], [TrajectoryPoint([0.1, 0.1], 1.0)]),                  # unknown joint
    (["panda_joint1"], [TrajectoryPoint([0.1, 0.2], 1.0)]),                           # wrong length
    (["panda_joint1"], [TrajectoryPoint([math.nan], 1.0)]),                           # NaN
    (["panda_joint1"], [TrajectoryPoint([5.0], 1.0)]),                                # beyond limit
    (["panda_joint1"], [TrajectoryPoint([0.1], 1.0), TrajectoryPoint([0.2], 1.0)]),  # time not increasing
    (["panda_joint1", "panda_joint1"], [TrajectoryPoint([0.1, 0.1], 1.0)]),          # duplicate
])
def test_bad_trajectory_rejected_and_arm_holds(world, names, points):
    error = world.set_arm_trajectory(names, points)
    assert isinstance(error, str) and error
    world.run_for(1.0)
    assert np.abs(world.arm_positions() - world.description.arm.home).max() < 1e-3


def test_gripper_close_and_open(world):
    assert world.set_gripper_width(0.02, 0.5) is None
    world.run_for(1.0)
    assert world.gripper_width() == pytest.approx(0.02, abs=2e-3)
    # one finger named: the other mimics it
    assert world.set_gripper_trajectory(["panda_finger_joint1"], [TrajectoryPoint([0.04], 0.5)]) is None
    world.run_for(1.0)
    assert world.gripper_width() == pytest.approx(0.08, abs=2e-3)
    assert world.set_gripper_trajectory(["panda_finger_joint1"], [TrajectoryPoint([0.06], 0.5)])
    assert world.set_gripper_trajectory(["panda_joint1"], [TrajectoryPoint([0.0], 0.5)])


def test_tracker_linear_sampling():
    tr = JointTrajectoryTracker(["a", "b"], [0.0, 1.0])
    tr.set(["b", "a"], [TrajectoryPoint([3.0, 2.0], 2.0)], start_time=0.0, now=0.0)
    assert np.allclose(tr.sample(1.0), [1.0, 2.0])
    assert np.allclose(tr.desired_velocity, [1.0, 1.0])
    assert np.allclose(tr.sample(5.0), [2.0, 3.0]) and not tr.active


def test_cameras_shapes_depth_and_intrinsics(world):
    world.cameras["scene"].width, world.cameras["scene"].height = 160, 120
    for cam in ("scene", "wrist"):
        r = world.render(cam)
        h, w = world.cameras[cam].height, world.cameras[cam].width
        assert r.rgb.shape == (h, w, 3) and r.rgb.dtype == np.uint8
        assert r.depth.shape == (h, w) and r.depth.dtype == np.float32
        assert np.all(np.isfinite(r.depth)) and r.depth.min() > 0
        fx, fy, cx, cy = r.intrinsics
        assert fx == pytest.approx(fy) and cx == pytest.approx(w / 2 - 0.5) and cy == pytest.approx(h / 2 - 0.5)
        assert np.linalg.norm(r.quaternion) == pytest.approx(1.0)
    scene = world.render("scene")
    # Centre ray from (1.3, 0, 0.9) through (0.5, 0, 0.05) hits the table at ~1.24 m.
    d = float(scene.depth[scene.depth.shape[0] // 2, scene.depth.shape[1] // 2])
    assert 1.0 < d < 1.4
    # Optical z points from the eye towards the table centre, y (down) has a negative world z.
    rot = np.array(p.getMatrixFromQuaternion(scene.quaternion.tolist())).reshape(3, 3)
    forward = np.array([0.5, 0.0, 0.05]) - np.array([1.3, 0.0, 0.9])
    assert np.allclose(rot[:, 2], forward / np.linalg.norm(forward), atol=1e-6)
    assert rot[2, 1] < 0
    # The wrist camera at home looks down at the table from ~0.57 m.
    wrist = world.render("wrist")
    assert 0.45 < float(wrist.depth[120, 160]) < 0.7
    # The red cube is visible (reddish pixels) in the scene image.
    rgb = scene.rgb.astype(int)
    assert np.sum((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)) > 10


def test_cameras_pose_of_projected_cube(world):
    """A cube's centre projects (with the returned intrinsics and pose) onto a red pixel."""
    r = world.render("scene")
    rot = np.array(p.getMatrixFromQuaternion(r.quaternion.tolist())).reshape(3, 3)
    cube, _ = world.object_pose("red_cube")
    cam = rot.T @ (cube - r.position)
    fx, fy, cx, cy = r.intrinsics
    u, v = fx * cam[0] / cam[2] + cx, fy * cam[1] / cam[2] + cy
    px = r.rgb[int(round(v)), int(round(u))].astype(int)
    assert px[0] > 120 and px[1] < 90 and px[2] < 90, px
    assert float(r.depth[int(round(v)), int(round(u))]) == pytest.approx(cam[2], abs=0.05)


def test_seeds_reproducible_and_distinct():
    def cube_positions(seed):
        with SimWorld(seed=seed) as w:
            return np.array([w.object_pose(c)[0] for c in CUBE_IDS])

    a, b, c = cube_positions(3), cube_positions(3), cube_positions(4)
    assert np.allclose(a, b)
    assert not np.allclose(a, c)
    for x, y, _ in a:
        assert 0.35 <= x <= 0.65 and abs(y) < 0.3


def test_several_worlds_coexist():
    with SimWorld() as a, SimWorld() as b:
        assert a.client != b.client
        a.set_arm_trajectory(["panda_joint1"], [TrajectoryPoint([0.5], 0.5)])
        a.run_for(1.0)
        b.run_for(1.0)
        assert abs(a.arm_positions()[0] - 0.5) < 0.01 and abs(b.arm_positions()[0]) < 1e-3


def test_ground_truth_and_perturbations(world):
    gt = world.ground_truth()
    assert gt.object_ids == list(OBJECT_IDS) and gt.held_object == "" and gt.in_tray == []
    for obj in OBJECT_IDS:
        x, y, _ = gt.pose(obj)[0]
        assert 0.35 <= x <= 0.65 and abs(y) < 0.3
    tray, _ = world.object_pose("tray")
    world.move_object("green_cube", (tray[0], tray[1], 0.05))
    world.run_for(1.0)
    gt = world.ground_truth()
    assert gt.in_tray == ["green_cube"]
    assert np.allclose(gt.pose("green_cube")[0][:2], tray[:2], atol=0.01)
    world.remove_object("blue_cube")
    world.run_for(0.5)
    pos = world.ground_truth().pose("blue_cube")[0]
    assert np.linalg.norm(pos[:2]) > 1.5 and pos[2] < 0
    with pytest.raises(KeyError):
        world.move_object("purple_cube", (0.5, 0, 0.1))
    with pytest.raises(ValueError):
        world.move_object("red_cube", (0.5, 0, math.nan))
    with pytest.raises(RuntimeError):
        world.inject_grasp_slip()   # nothing held
    world.reset("nominal", 0)
    gt = world.ground_truth()
    assert gt.in_tray == [] and np.linalg.norm(gt.pose("blue_cube")[0][:2]) < 0.7
    with pytest.raises(ValueError):
        world.reset("no_such_scenario", 0)


def _move_tcp(world, position, duration, yaw=0.0):
    """Test helper only: IK for the grasp target pointing down, then a joint trajectory."""
    link = world._link_index["panda_grasptarget"]
    quat = p.getQuaternionFromEuler((math.pi, 0.0, yaw))
    arm = world.description.arm
    q = p.calculateInverseKinematics(
        world.robot, link, position, quat, lowerLimits=arm.position_lower + [0, 0],
        upperLimits=arm.position_upper + [0.04, 0.04],
        jointRanges=[u - l for l, u in zip(arm.position_lower, arm.position_upper)] + [0.04, 0.04],
        restPoses=list(arm.home) + [0.04, 0.04], maxNumIterations=200, residualThreshold=1e-5,
        physicsClientId=world.client)
    target = np.clip(q[:7], arm.position_lower, arm.position_upper)
    assert world.set_arm_trajectory(arm.joint_names, [TrajectoryPoint(target.tolist(), duration)]) is None
    world.run_for(duration + 0.3)


def _grasp_and_lift(world, cube="red_cube"):
    pos, quat = world.object_pose(cube)
    yaw = p.getEulerFromQuaternion(quat)[2]
    _move_tcp(world, (pos[0], pos[1], 0.15), 1.5, yaw)
    _move_tcp(world, (pos[0], pos[1], pos[2] + 0.005), 1.0, yaw)
    world.set_gripper_width(0.0, 0.5)
    world.run_for(0.8)
    _move_tcp(world, (pos[0], pos[1], 0.20), 1.5, yaw)


def test_top_down_grasp_lifts_cube_and_slip_drops_it():
    with SimWorld(seed=2) as world:
        start = world.object_pose("red_cube")[0]
        _grasp_and_lift(world)
        lifted = world.object_pose("red_cube")[0]
        assert lifted[2] > start[2] + 0.1, lifted
        gt = world.ground_truth()
        assert gt.held_object == "red_cube"
        assert 0.03 < world.gripper_width() < 0.06     # fingers stopped on the 5 cm cube
        world.run_for(1.0)                              # holds while the arm stays
        assert world.ground_truth().held_object == "red_cube"
        assert world.inject_grasp_slip() == "red_cube"
        world.run_for(1.0)
        gt = world.ground_truth()
        assert gt.held_object == ""
        assert gt.pose("red_cube")[0][2] < 0.06         # back on the table
        world.run_for(0.5)
        assert world._slip is None                      # contacts restored once clear


def test_xarm_gripper_width_table_matches_the_finger_pad_gap_in_the_model():
    """The xArm gripper's width is not linear in its drive angle; the description's width table
    must agree with the gap between the finger pads of the model the simulator loads."""
    w = SimWorld("xarm6").connect()
    try:
        grip = w.description.gripper
        left, right = (w._link_index[n] for n in grip.finger_links)
        errors = []
        for q in np.linspace(0.0, 0.85, 23):
            p.resetJointState(w.robot, w._joint_index[grip.joint_names[0]], q, physicsClientId=w.client)
            for name, m in grip.mimic_joints.items():
                p.resetJointState(w.robot, w._joint_index[name], m * q, physicsClientId=w.client)
            pts = p.getClosestPoints(w.robot, w.robot, 1.0, linkIndexA=left, linkIndexB=right,
                                     physicsClientId=w.client)
            gap = min(pt[8] for pt in pts)
            errors.append(abs(grip.width_for_position(q) - gap))
        assert max(errors) < 5e-4, max(errors)
        for width in (0.0, 0.02, 0.05, 0.085):      # the map is invertible over the commanded range
            assert grip.width_for_position(grip.position_for_width(width)) == pytest.approx(width, abs=1e-6)
    finally:
        w.disconnect()


def test_gripper_width_table_is_validated():
    from pydantic import ValidationError

    from harness_nodes.common.robot_description import GripperDescription
    base = dict(joint_names=["drive_joint"], min_width=0.0, max_width=0.085, max_speed=0.1, effort=5.0)
    GripperDescription(**base, width_table=[[0.0, 0.09], [0.85, -0.001]])
    for table, words in (([[0.0, 0.09]], "at least 2"), ([[0.0, 0.09], [0.85, math.nan]], "finite"),
                         ([[0.5, 0.09], [0.1, 0.0]], "sorted"), ([[0.0, 0.09], [0.4, 0.09], [0.85, 0.0]], "monotonic"),
                         ([[0.0, 0.05], [0.85, 0.0]], "cover")):
        with pytest.raises(ValidationError, match=words):
            GripperDescription(**base, width_table=table)
    with pytest.raises(ValidationError, match="either"):
        GripperDescription(**base, open_position=0.0, closed_position=0.85, width_table=[[0.0, 0.09], [0.85, 0.0]])


def test_trajectory_whose_points_are_all_in_the_past_is_rejected_not_jumped_to(world):
    world.run_for(2.0)
    names = world.description.arm.joint_names
    target = arm_target(world)
    error = world.set_arm_trajectory(names, [TrajectoryPoint(target.tolist(), 0.5)], start_time=world.sim_time - 1.0)
    assert error is not None and "in the past" in error
    world.run_for(0.5)
    assert np.abs(world.arm_positions() - world.description.arm.home).max() < 1e-3
    # one point still ahead: accepted (the past ones are skipped, as the controller does)
    ok = world.set_arm_trajectory(names, [TrajectoryPoint(target.tolist(), 2.0)], start_time=world.sim_time - 1.0)
    assert ok is None


@pytest.mark.parametrize("position, why", [((1e308, 0.0, 0.1), "outside the cell"),
                                           ((0.0, 0.0, 0.05), "inside the robot base")])
def test_move_object_refuses_absurd_positions_and_the_robot_base(world, position, why):
    before = world.object_pose("red_cube")[0].copy()
    with pytest.raises(ValueError, match=why):
        world.move_object("red_cube", position)
    assert np.allclose(world.object_pose("red_cube")[0], before)
    world.move_object("red_cube", (0.5, 0.3, 0.025))       # a free spot on the table is fine
    assert np.allclose(world.object_pose("red_cube")[0], (0.5, 0.3, 0.025), atol=1e-6)


def _transport_toward_tray(world):
    tray, _ = world.object_pose("tray")
    _move_tcp(world, (tray[0], tray[1], 0.20), 2.0)


@pytest.mark.parametrize("scenario, slips", [("grasp_slip", True), ("nominal", False)])
def test_grasp_slip_scenario_drops_the_cube_during_transport_and_nominal_does_not(scenario, slips):
    with SimWorld(scenario=scenario, seed=2, image_width=8, image_height=8) as world:
        start = world.object_pose("red_cube")[0]
        _grasp_and_lift(world)
        world.run_for(0.5)
        assert world.ground_truth().held_object == "red_cube"   # lifted, held while not carried
        assert world.grasp_slip_time is None
        _transport_toward_tray(world)
        gt = world.ground_truth()
        cube_z = gt.pose("red_cube")[0][2]
        if slips:
            assert world.grasp_slip_time is not None
            assert gt.held_object == "" and cube_z < 0.06     # left the fingers, down on the table
            assert "red_cube" not in gt.in_tray
            carried = np.linalg.norm(gt.pose("red_cube")[0][:2] - start[:2])
            assert carried < world.grasp_slip_distance + 0.08   # dropped on the way, not at the tray
        else:
            assert world.grasp_slip_time is None
            assert gt.held_object == "red_cube" and cube_z > 0.1


def test_grasp_slip_is_seeded_and_reproducible():
    def slip(seed):
        with SimWorld(scenario="grasp_slip", seed=seed, image_width=8, image_height=8) as world:
            _grasp_and_lift(world)
            _transport_toward_tray(world)
            return world.grasp_slip_distance, world.grasp_slip_time, world.object_pose("red_cube")[0]

    first, again = slip(3), slip(3)
    assert first[0] == again[0] and first[1] == again[1]
    np.testing.assert_allclose(first[2], again[2], atol=1e-6)
    with SimWorld(scenario="grasp_slip", seed=4, image_width=8, image_height=8) as other:
        assert other.grasp_slip_distance != first[0]
    with SimWorld(scenario="grasp_slip", seed=3) as a, SimWorld(scenario="nominal", seed=3) as b:
        for cube in CUBE_IDS:   # the slip has its own random stream: the layout is nominal's
            np.testing.assert_allclose(a.object_pose(cube)[0], b.object_pose(cube)[0])


def test_tuning_and_heldout_seeds_are_disjoint():
    from harness_nodes.episodes.spec import HELDOUT_SEEDS, TUNING_SEEDS

    assert len(TUNING_SEEDS) and len(HELDOUT_SEEDS)
    assert not set(TUNING_SEEDS) & set(HELDOUT_SEEDS)
