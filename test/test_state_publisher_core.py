"""The transform tree of the state publisher (pure, no ROS): every link, tool and camera frame is
connected to `world`, forward kinematics agree with the router's and the simulator's, the camera
mounts agree with where the sim renders from, and no joint state input breaks it."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pinocchio as pin
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from harness_nodes.bringup.stack import node_parameters
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.common.kinematics import ArmKinematics
from harness_nodes.state_publisher.core import (MAX_JOINTS_PER_MESSAGE, StatePublisherParameters,
                                                TransformTree, optical_frame, reachable)

ROBOTS = ["panda", "xarm6"]


def chain(tree: TransformTree, transforms, target: str, root: str = "world") -> pin.SE3:
    """Pose of `target` in `root` by composing the tree's transforms (as tf2 would)."""
    parent_of = {t.child: t for t in transforms}
    pose = pin.SE3.Identity()
    frame = target
    while frame != root:
        edge = parent_of[frame]
        pose = edge.se3() * pose
        frame = edge.parent
    return pose


def all_transforms(tree):
    return tree.static_transforms() + tree.moving_transforms()


def test_core_never_imports_rclpy():
    code = "import sys, harness_nodes.state_publisher.core; sys.exit('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("robot", ROBOTS)
def test_every_frame_the_stack_names_is_connected_to_world_with_one_parent(robot):
    d = load_robot_description(robot)
    tree = TransformTree(d)
    transforms = all_transforms(tree)
    children = [t.child for t in transforms]
    assert len(children) == len(set(children)), "a frame with two parents breaks tf2"
    frames = reachable(transforms, "world")
    expected = {*tree.link_names, d.base_frame, d.end_effector_frame, d.camera_link,
                optical_frame("scene"), optical_frame("wrist")}
    assert expected <= frames, expected - frames
    assert all(math.isfinite(v) for t in transforms for v in (*t.translation, *t.rotation))


@pytest.mark.parametrize("robot", ROBOTS)
def test_forward_kinematics_agree_with_the_routers(robot):
    d = load_robot_description(robot)
    tree = TransformTree(d)
    kin = ArmKinematics.from_description(d)
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.uniform(kin.lower, kin.upper)
        verdict = tree.accept_joint_state(d.arm.joint_names, q.tolist())
        assert verdict.accepted == len(q) and not verdict.error
        ee = chain(tree, all_transforms(tree), d.end_effector_frame, root=d.base_frame)
        expected = kin.fk(q)
        assert np.allclose(ee.translation, expected.translation, atol=1e-9)
        assert np.allclose(ee.rotation, expected.rotation, atol=1e-9)


@pytest.mark.parametrize("robot", ROBOTS)
def test_camera_frames_are_where_the_sim_renders_from(robot):
    from harness_nodes.sim.world import SimWorld

    world = SimWorld(robot).connect()
    try:
        d = world.description
        q = np.array(d.arm.home) + 0.2
        snap = world.snapshot()
        snap["joints"][:len(q)] = q.tolist()
        world.apply_snapshot(snap)
        tree = TransformTree(d)
        tree.accept_joint_state(world.description.all_joint_names, snap["joints"])
        for camera in ("scene", "wrist"):
            eye, rotation = world.camera_pose(camera)
            pose = chain(tree, all_transforms(tree), optical_frame(camera))
            assert np.allclose(pose.translation, eye, atol=1e-6), camera
            assert np.allclose(pose.rotation, rotation, atol=1e-6), camera
    finally:
        world.disconnect()


def test_the_configured_scene_camera_is_the_sims():
    from harness_nodes.sim.world import SimWorld

    params = node_parameters("state_publisher.yaml", "state_publisher")
    assert tuple(params["scene_camera_eye"]) == SimWorld.SCENE_EYE
    assert tuple(params["scene_camera_target"]) == SimWorld.SCENE_TARGET
    assert tuple(params["wrist_camera_offset"]) == SimWorld.WRIST_OFFSET


def test_base_pose_places_the_robot_root_in_world():
    d = load_robot_description("panda")
    tree = TransformTree(d, StatePublisherParameters(base_xyz=[1.0, 2.0, 0.5], base_rpy=[0.0, 0.0, math.pi / 2]))
    pose = chain(tree, all_transforms(tree), d.base_frame)
    assert np.allclose(pose.translation, [1.0, 2.0, 0.5])
    assert np.allclose(pose.rotation @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_parameters_are_validated():
    with pytest.raises(ValidationError, match="unknown camera"):
        StatePublisherParameters(cameras=["scene", "thermal"])
    with pytest.raises(ValidationError, match="finite"):
        StatePublisherParameters(base_xyz=[0.0, float("nan"), 0.0])
    with pytest.raises(ValidationError):
        StatePublisherParameters(base_rpy=[0.0, 0.0])


def test_malformed_joint_states_change_nothing_and_bad_values_are_dropped():
    d = load_robot_description("panda")
    tree = TransformTree(d)
    before = tree.q.copy()
    names = d.arm.joint_names
    assert tree.accept_joint_state(names, [0.1] * 3).error          # length mismatch
    assert tree.accept_joint_state(names[:2] * 2, [0.1] * 4).error   # duplicates
    many = [f"j{i}" for i in range(MAX_JOINTS_PER_MESSAGE + 1)]
    assert tree.accept_joint_state(many, [0.0] * len(many)).error
    assert np.array_equal(tree.q, before)
    verdict = tree.accept_joint_state([names[0], names[1], names[2], "nope"],
                                      [float("nan"), 1e308, 0.3, 1.0])
    assert verdict.dropped == (names[0], names[1]) and verdict.accepted == 1 and verdict.ignored_unknown == 1
    assert tree.q[tree.joints[names[2]][0]] == 0.3
    assert tree.q[tree.joints[names[0]][0]] == before[tree.joints[names[0]][0]]


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308]))
PANDA = load_robot_description("panda")
NAMES = st.one_of(st.sampled_from(PANDA.all_joint_names), st.text(max_size=300))


@settings(max_examples=200, deadline=None)
@given(names=st.lists(NAMES, max_size=40), positions=st.lists(FLOATS, max_size=40))
def test_no_joint_state_raises_or_makes_a_transform_non_finite(names, positions):
    tree = TransformTree(PANDA)
    tree.accept_joint_state(names, positions)
    for t in all_transforms(tree):
        assert all(math.isfinite(v) for v in (*t.translation, *t.rotation))
