"""Perception core (no ROS): segmentation -> 3-D with uncertainty on synthetic images and on images
rendered by the simulator, identity of look-alikes, occlusion, negative evidence, bad input, lens
distortion (positions and negative evidence through plumb_bob, rational_polynomial and equidistant
lenses; bad distortion parameters), the wrist-camera mount and viewpoint selection on the
occluded-target scenario."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from harness_nodes.perception.config import PerceptionParameters
from harness_nodes.perception.core import (STATUS_EXPECTED_NOT_SEEN, STATUS_SEEN, ExpectedFact, Frame, FrameError,
                                           PerceptionCore, camera_model_from_info, decode_depth, decode_rgb)
from harness_nodes.common.geometry import CameraModel, model_from_fov, quat_to_matrix
from harness_nodes.perception.viewpoint import ElevationMap, search_target

TABLE_RGB = (180, 155, 120)
DOWN = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])   # optical z pointing down


def synthetic(cubes, height=0.8, size=0.05, width=320, h=240, depth_noise=0.0, seed=0, t=1.0, cam_xy=(0.4, 0.0),
              model=None):
    """A camera `height` m above the table looking straight down at cubes [(x, y, rgb)]: exact depth.
    `model` (default: 60 deg pinhole) may have lens distortion: then every pixel is rendered along
    its true ray (`opencv_rays`), i.e. the image the distorted camera records."""
    model = model or model_from_fov(width, h)
    width, h = model.width, model.height
    pos = np.array([cam_xy[0], cam_xy[1], height])
    rx, ry = opencv_rays(model) if model.distorted else model.rays()
    dirs = np.stack([rx, ry, np.ones_like(rx)], axis=-1) @ DOWN.T           # world ray per pixel (z = -1)
    rgb = np.empty((h, width, 3), np.uint8)
    rgb[:] = TABLE_RGB
    depth = np.full((h, width), height, np.float32)
    for x, y, colour in cubes:
        t_top = (height - size)                                              # along the optical axis
        hit = pos[:2] + dirs[..., :2] * t_top
        inside = (np.abs(hit[..., 0] - x) <= size / 2) & (np.abs(hit[..., 1] - y) <= size / 2)
        rgb[inside] = colour
        depth[inside] = height - size
    if depth_noise:
        depth = depth + np.random.default_rng(seed).normal(0, depth_noise, depth.shape).astype(np.float32)
    return Frame("test", t, rgb, depth, model, pos, DOWN.copy())


def by_id(result):
    return {d.object_id: d for d in result.objects}


# lenses: webcam-like barrel; rational with a denominator; a fisheye lens (equidistant)
LENSES = {"plumb_bob": (-0.12, 0.05, 0.001, -0.0008, 0.0),
          "rational_polynomial": (0.3, -0.05, 0.0005, -0.0003, 0.0, 0.45, -0.02, 0.0),
          "equidistant": (0.05, -0.01, 0.002, -0.0005)}


def lens(name, d=None, width=320, h=240) -> CameraModel:
    m = model_from_fov(width, h)
    return CameraModel(m.width, m.height, m.fx, m.fy, m.cx, m.cy, distortion_model=name,
                       d=LENSES[name] if d is None else d)


def pinhole(m: CameraModel) -> CameraModel:
    """The same camera with its distortion ignored (what perception did before it read D)."""
    return CameraModel(m.width, m.height, m.fx, m.fy, m.cx, m.cy)


def opencv_forward(m: CameraModel, x, y):
    """OpenCV's forward model: normalised (x/z, y/z) -> distorted pixels, no clipping."""
    pts = np.stack([np.ravel(x), np.ravel(y), np.ones(np.size(x))], axis=-1).reshape(-1, 1, 3).astype(float)
    fn = cv2.fisheye.projectPoints if m.distortion_model == "equidistant" else cv2.projectPoints
    uv = fn(pts, np.zeros(3), np.zeros(3), m.matrix, np.array(m.d))[0].reshape(-1, 2)
    return uv[:, 0].reshape(np.shape(x)), uv[:, 1].reshape(np.shape(x))


def opencv_rays(m: CameraModel):
    """Ray (x/z, y/z) through every pixel centre of a distorted camera, made here from OpenCV (not
    by the code under test) and checked to re-project onto its pixel with OpenCV's forward model."""
    v, u = np.mgrid[0:m.height, 0:m.width].astype(float)
    pts = np.stack([u.ravel(), v.ravel()], axis=-1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
    fn = cv2.fisheye.undistortPoints if m.distortion_model == "equidistant" else cv2.undistortPoints
    xy = fn(pts, m.matrix, np.array(m.d), None, np.eye(3), np.eye(3), crit).reshape(m.height, m.width, 2)
    bu, bv = opencv_forward(m, xy[..., 0], xy[..., 1])
    assert max(np.abs(bu - u).max(), np.abs(bv - v).max()) < 1e-3
    return xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32)


def camera_point(f: Frame, x: float, y: float, z: float) -> np.ndarray:
    """World point at normalised image coordinates (x/z, y/z) and depth z of frame f's camera."""
    return f.position + f.rotation @ np.array([x * z, y * z, z])


# ---------------------------------------------------------------------- synthetic images
def test_synthetic_cube_position_covariance_identity():
    core = PerceptionCore()
    f = synthetic([(0.45, 0.05, (217, 25, 25))])
    r = core.process(f)
    d = by_id(r)["red_cube"]
    assert d.status == STATUS_SEEN
    assert np.linalg.norm(d.position - [0.45, 0.05, 0.025]) < 0.003, d.position
    assert d.identity_confidence > 0.9 and d.visible_fraction > 0.85 and d.pixel_support > 100
    cov = d.covariance
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert math.sqrt(cov.max()) < 0.01


def test_covariance_grows_with_distance_and_shrinks_with_support():
    core = PerceptionCore()
    near = by_id(core.process(synthetic([(0.4, 0.0, (217, 25, 25))], height=0.5)))["red_cube"]
    core = PerceptionCore()
    far = by_id(core.process(synthetic([(0.4, 0.0, (217, 25, 25))], height=1.5)))["red_cube"]
    assert far.pixel_support < near.pixel_support
    assert np.trace(far.covariance) > np.trace(near.covariance)
    # same range, fewer pixels (lower resolution): larger covariance
    prm = PerceptionParameters(model_sigma=0.0, calibration_sigma=0.0, min_pixels=5)
    hi = by_id(PerceptionCore(prm).process(synthetic([(0.4, 0.0, (217, 25, 25))], width=640, h=480)))["red_cube"]
    lo = by_id(PerceptionCore(prm).process(synthetic([(0.4, 0.0, (217, 25, 25))], width=160, h=120)))["red_cube"]
    assert np.trace(lo.covariance) > np.trace(hi.covariance)


def test_lookalikes_lower_identity_confidence():
    alone = by_id(PerceptionCore().process(synthetic([(0.40, 0.05, (217, 25, 25))])))
    both = by_id(PerceptionCore().process(synthetic([(0.40, 0.05, (217, 25, 25)), (0.40, -0.05, (217, 71, 25))])))
    assert set(both) == {"red_cube", "red_cube_alt1"}
    assert both["red_cube"].position[1] == pytest.approx(0.05, abs=0.005)    # the truer hue keeps the id
    assert both["red_cube"].identity_confidence < alone["red_cube"].identity_confidence - 0.1
    assert both["red_cube_alt1"].identity_confidence < both["red_cube"].identity_confidence


def test_partial_occlusion_lowers_visible_fraction():
    f = synthetic([(0.40, 0.0, (217, 25, 25))])
    full = by_id(PerceptionCore().process(f))["red_cube"]
    rgb = f.rgb.copy()
    cols = np.where((rgb == (217, 25, 25)).all(axis=-1).any(axis=0))[0]
    rgb[:, cols[: len(cols) // 2]] = (90, 90, 90)       # a grey thing in front of half of it
    dep = f.depth.copy()
    dep[:, cols[: len(cols) // 2]] = 0.5
    half = by_id(PerceptionCore().process(Frame("test", 1.0, rgb, dep, f.model, f.position, f.rotation)))["red_cube"]
    assert half.visible_fraction < 0.7 < full.visible_fraction
    assert np.trace(half.covariance) > np.trace(full.covariance)


def test_negative_evidence_in_view_not_occluded_only():
    core = PerceptionCore()
    f = synthetic([(0.40, 0.0, (30, 190, 40))])              # green present, red gone
    expected = [ExpectedFact("red_cube", np.array([0.45, 0.10, 0.025])),
                ExpectedFact("green_cube", np.array([0.40, 0.0, 0.025])),
                ExpectedFact("blue_cube", np.array([3.0, 0.0, 0.025]))]        # out of view
    r = core.process(f, expected)
    d = by_id(r)
    assert d["red_cube"].status == STATUS_EXPECTED_NOT_SEEN
    assert d["green_cube"].status == STATUS_SEEN
    assert "blue_cube" not in d
    # something tall in front of where red should be: occluded, so no negative evidence
    dep = f.depth.copy()
    dep[:] = np.where(np.arange(f.model.width)[None, :] < f.model.width, dep, dep)
    u = int(round(f.model.cx + f.model.fx * (-(0.10 - 0.0)) / (0.8 - 0.025)))   # y = 0.10 -> image left
    v = int(round(f.model.cy + f.model.fy * (-(0.45 - 0.4)) / (0.8 - 0.025)))
    dep[max(0, v - 15):v + 15, max(0, u - 15):u + 15] = 0.3
    r2 = PerceptionCore().process(Frame("test", 2.0, f.rgb, dep, f.model, f.position, f.rotation), expected)
    assert "red_cube" not in by_id(r2)


# ---------------------------------------------------------------------- lens distortion
RED, GREEN, BLUE = (217, 25, 25), (30, 190, 40), (40, 70, 220)
# centre, right edge, lower-left corner of the image (the camera looks down from (0.4, 0, 0.8))
LENS_CUBES = [(0.40, 0.0, RED), (0.40, -0.45, GREEN), (0.07, 0.40, BLUE)]


@pytest.mark.parametrize("name", list(LENSES))
def test_distorted_frame_positions_as_accurate_as_undistorted(name):
    truth = {"red_cube": (0.40, 0.0), "green_cube": (0.40, -0.45), "blue_cube": (0.07, 0.40)}
    f = synthetic(LENS_CUBES, model=lens(name))
    new = by_id(PerceptionCore().process(f))
    old = by_id(PerceptionCore().process(Frame("test", 1.0, f.rgb, f.depth, pinhole(f.model), f.position,
                                               f.rotation)))
    plain = by_id(PerceptionCore().process(synthetic(LENS_CUBES)))
    for oid, (x, y) in truth.items():
        gt = np.array([x, y, 0.025])
        err_new = np.linalg.norm(new[oid].position - gt)
        err_plain = np.linalg.norm(plain[oid].position - gt)
        assert err_plain < 0.003 and err_new < 0.003, (name, oid, err_new, err_plain)
        assert new[oid].identity_confidence > 0.9, (oid, new[oid])
        # synthetic() draws top faces only: off-centre cubes are partly "hidden", equally so without D
        assert abs(new[oid].visible_fraction - plain[oid].visible_fraction) < 0.1, (oid, new[oid], plain[oid])
        sigma = math.sqrt(np.max(np.linalg.eigvalsh(new[oid].covariance)))
        assert err_new < 4 * sigma + 0.002
        if oid != "red_cube":          # near the edges ignoring D is off by centimetres
            assert np.linalg.norm(old[oid].position - gt) > 0.01, (name, oid, old[oid].position)


def test_zero_distortion_is_the_pinhole_camera():
    f = synthetic([(0.45, 0.05, RED)])
    k = [f.model.fx, 0.0, f.model.cx, 0.0, f.model.fy, f.model.cy, 0.0, 0.0, 1.0]
    plain = camera_model_from_info(320, 240, k)
    for model, d in (("plumb_bob", [0.0] * 5), ("rational_polynomial", [0.0] * 8), ("equidistant", [0.0] * 4),
                     ("plumb_bob", []), ("", [])):
        m = camera_model_from_info(320, 240, k, model, d)
        assert m == plain and not m.distorted and m.rays()[0].shape == (240, 320)
    a = PerceptionCore().process(f).objects[0]
    b = PerceptionCore().process(Frame("test", 1.0, f.rgb, f.depth, camera_model_from_info(
        320, 240, k, "plumb_bob", [0.0] * 5), f.position, f.rotation)).objects[0]
    assert np.array_equal(a.position, b.position) and np.array_equal(a.covariance, b.covariance)


def test_bad_distortion_is_rejected():
    k = [207.8, 0.0, 159.5, 0.0, 207.8, 119.5, 0.0, 0.0, 1.0]
    for model, d, match in [("kannala_brandt", [0.1, 0.0, 0.0, 0.0], "distortion_model 'kannala_brandt' not supported"),
                            ("plumb_bob", [-0.1, 0.01, 0.0, 0.0], "D has 4 values, plumb_bob needs 5"),
                            ("rational_polynomial", [-0.1, 0.01, 0.0, 0.0, 0.0], "needs 8"),
                            ("equidistant", [0.1, 0.0, 0.0, 0.0, 0.0], "needs 4"),
                            ("plumb_bob", [math.nan, 0.0, 0.0, 0.0, 0.0], "D not finite"),
                            ("equidistant", [math.inf, 0.0, 0.0, 0.0], "D not finite"),
                            ("", [-0.1, 0.0, 0.0, 0.0, 0.0], "no distortion_model"),
                            ("plumb_bob", [-0.4, 0.0, 0.0, 0.0, 0.0], "folds"),
                            ("plumb_bob", ["x"] * 5, "D not numbers")]:
        with pytest.raises(FrameError, match=match):
            camera_model_from_info(320, 240, k, model, d)
    assert camera_model_from_info(320, 240, k, "plumb_bob", LENSES["plumb_bob"]).distorted


def test_negative_evidence_projects_through_the_distortion():
    # barrel lens that folds beyond ~56 deg: it sees past the pinhole's corner, and a naive
    # projection of a point far outside the view lands inside the image
    f = synthetic([], model=lens("plumb_bob", (-0.15, 0.0, 0.0, 0.0, 0.0)))
    m, z = f.model, 0.775                                   # cube centres on the table
    direction = np.array([0.8, 0.6])                        # towards the lower-right corner
    inside, beyond, folded = (camera_point(f, *(r * direction), z) for r in (1.0, 1.25, 2.2))
    facts = [ExpectedFact("red_cube", inside), ExpectedFact("green_cube", beyond), ExpectedFact("blue_cube", folded)]

    def in_image(u, v, b=6.0):
        return b <= u <= m.width - 1 - b and b <= v <= m.height - 1 - b

    assert not in_image(*(m.fx * 1.0 * direction + [m.cx, m.cy]))          # outside the pinhole image
    assert in_image(*opencv_forward(m, *(1.0 * direction)))                # inside the distorted one
    assert not in_image(*opencv_forward(m, *(1.25 * direction)))
    assert in_image(*opencv_forward(m, *(2.2 * direction)))                # the fold-back trap
    d = by_id(PerceptionCore().process(f, facts))
    assert set(d) == {"red_cube"} and d["red_cube"].status == STATUS_EXPECTED_NOT_SEEN
    old = PerceptionCore().process(Frame("test", 1.0, f.rgb, f.depth, pinhole(m), f.position, f.rotation), facts)
    assert not old.objects                                                 # ignoring D missed it
    # the occlusion check reads the depth image at the distorted pixel
    u, v = (int(round(float(c))) for c in opencv_forward(m, *(1.0 * direction)))
    dep = f.depth.copy()
    dep[v - 8:v + 9, u - 8:u + 9] = 0.3
    assert not PerceptionCore().process(Frame("test", 1.0, f.rgb, dep, m, f.position, f.rotation), facts).objects
    # pincushion lens: a corner point the pinhole would see is outside the distorted view
    f = synthetic([], model=lens("plumb_bob", (0.1, 0.0, 0.0, 0.0, 0.0)))
    corner = [ExpectedFact("red_cube", camera_point(f, 0.7, 0.52, z))]
    assert in_image(*(f.model.fx * np.array([0.7, 0.52]) + [f.model.cx, f.model.cy]))
    assert not in_image(*opencv_forward(f.model, 0.7, 0.52))
    assert not PerceptionCore().process(f, corner).objects
    old = PerceptionCore().process(Frame("test", 1.0, f.rgb, f.depth, pinhole(f.model), f.position, f.rotation),
                                   corner)
    assert [o.status for o in old.objects] == [STATUS_EXPECTED_NOT_SEEN]   # ignoring D: wrongly expected


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_rejected():
    core = PerceptionCore()
    f = synthetic([(0.4, 0.0, (217, 25, 25))])
    with pytest.raises(FrameError, match="encoding"):
        decode_rgb("mono8", 4, 2, 4, bytes(8))
    with pytest.raises(FrameError, match="bytes"):
        decode_rgb("rgb8", 4, 2, 12, bytes(20))
    with pytest.raises(FrameError, match="encoding"):
        decode_depth("8UC1", 4, 2, 4, bytes(8), False)
    assert decode_depth("16UC1", 2, 1, 4, np.array([1000, 0], np.uint16).tobytes(), False)[0, 0] == pytest.approx(1.0)
    with pytest.raises(FrameError, match="K"):
        camera_model_from_info(320, 240, [math.nan] * 9)
    with pytest.raises(FrameError, match="implausible"):
        camera_model_from_info(320, 240, [0.0, 0, 160, 0, 0.0, 120, 0, 0, 1])
    with pytest.raises(FrameError, match="does not match"):
        core.process(Frame("test", 1.0, f.rgb[:100], f.depth, f.model, f.position, f.rotation))
    with pytest.raises(FrameError, match="does not match"):
        core.process(Frame("test", 1.0, f.rgb, f.depth, f.model.scaled(640, 480), f.position, f.rotation))
    with pytest.raises(FrameError, match="NaN/zero"):
        core.process(Frame("test", 1.0, f.rgb, np.full_like(f.depth, np.nan), f.model, f.position, f.rotation))
    with pytest.raises(FrameError, match="NaN/zero"):
        core.process(Frame("test", 1.0, f.rgb, np.zeros_like(f.depth), f.model, f.position, f.rotation))
    with pytest.raises(FrameError, match="rotation"):
        core.process(Frame("test", 1.0, f.rgb, f.depth, f.model, f.position, f.rotation * 2))
    assert core.process(f).objects                           # a good frame still works after rejections
    with pytest.raises(FrameError, match="out of order"):
        core.process(f)                                      # same stamp again
    with pytest.raises(FrameError, match="out of order"):
        core.process(Frame("test", 0.5, f.rgb, f.depth, f.model, f.position, f.rotation))


def test_some_invalid_depth_is_tolerated():
    f = synthetic([(0.4, 0.0, (217, 25, 25))])
    dep = f.depth.copy()
    dep[::3, ::3] = np.nan
    dep[1::3, ::4] = 0.0
    d = by_id(PerceptionCore().process(Frame("test", 1.0, f.rgb, dep, f.model, f.position, f.rotation)))["red_cube"]
    assert np.linalg.norm(d.position - [0.4, 0.0, 0.025]) < 0.004


# ---------------------------------------------------------------------- simulator renders
@pytest.fixture(scope="module")
def sim():
    from harness_nodes.sim.world import SimWorld
    worlds = {}

    def get(scenario="nominal", seed=3, width=320, height=240):
        key = (scenario, seed, width, height)
        if key not in worlds:
            worlds[key] = SimWorld("panda", scenario=scenario, seed=seed, image_width=width,
                                   image_height=height).connect()
            worlds[key].run_for(0.3)
        return worlds[key]

    yield get
    for w in worlds.values():
        w.disconnect()


def sim_frame(world, cam, t=1.0):
    r = world.render(cam)
    fx, fy, cx, cy = r.intrinsics
    return Frame(cam, t, r.rgb, r.depth, CameraModel(r.width, r.height, fx, fy, cx, cy), r.position,
                 quat_to_matrix(r.quaternion))


@pytest.mark.parametrize("cam", ["scene", "wrist"])
def test_sim_render_positions_within_millimetres(sim, cam):
    w = sim(width=640, height=480)
    gt = w.ground_truth()
    r = PerceptionCore().process(sim_frame(w, cam))
    found = by_id(r)
    assert {"red_cube", "green_cube", "blue_cube"} <= set(found)
    for oid in ("red_cube", "green_cube", "blue_cube"):
        d = found[oid]
        err = np.linalg.norm(d.position - gt.pose(oid)[0])
        assert err < 0.005, (cam, oid, err, d.distance)
        sigma = math.sqrt(np.max(np.linalg.eigvalsh(d.covariance)))
        assert err < 4 * sigma + 0.002, (err, sigma)
        assert d.identity_confidence > 0.9


def test_sim_lookalike_and_occluded_scenarios(sim):
    look = by_id(PerceptionCore().process(sim_frame(sim("lookalike"), "scene")))
    nominal = by_id(PerceptionCore().process(sim_frame(sim("nominal"), "scene")))
    assert look["red_cube"].identity_confidence < nominal["red_cube"].identity_confidence - 0.1
    assert "red_cube_alt1" in look and look["red_cube_alt1"].identity_confidence < 0.5
    w = sim("occluded")
    red = w.object_pose("red_cube")[0]
    for cam in ("scene", "wrist"):                          # hidden from the scene camera, outside the wrist's view
        f = sim_frame(w, cam)
        res = PerceptionCore().process(f, [ExpectedFact("red_cube", red)])
        assert "red_cube" not in by_id(res), cam            # neither seen nor (wrongly) negated


def test_removed_object_reported_missing(sim):
    w = sim("nominal", seed=7)
    red = w.object_pose("red_cube")[0].copy()
    w.remove_object("red_cube")
    res = PerceptionCore().process(sim_frame(w, "scene"), [ExpectedFact("red_cube", red),
                                                           ExpectedFact("green_cube", w.object_pose("green_cube")[0])])
    d = by_id(res)
    assert d["red_cube"].status == STATUS_EXPECTED_NOT_SEEN and d["green_cube"].status == STATUS_SEEN


# ---------------------------------------------------------------------- mount and viewpoints
@pytest.mark.parametrize("robot", ["panda", "xarm6"])
def test_wrist_mount_matches_the_simulator(robot):
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.common.camera_mount import camera_for_ee, ee_T_camera, ee_target_for_camera
    from harness_nodes.common.kinematics import ArmKinematics
    from harness_nodes.sim.world import SimWorld
    d = load_robot_description(robot)
    kin = ArmKinematics.from_description(d)
    mount = ee_T_camera(kin, d.camera_link)
    w = SimWorld(robot).connect()
    try:
        ee = kin.fk(w.arm_positions())
        pos, rot = camera_for_ee(ee.translation, ee.rotation, mount)
        sp, sr = w.camera_pose("wrist")
        assert np.allclose(pos, sp, atol=1e-6) and np.allclose(rot, sr, atol=1e-6)
        back, brot = ee_target_for_camera(pos, rot, mount)
        assert np.allclose(back, ee.translation, atol=1e-9) and np.allclose(brot, ee.rotation, atol=1e-9)
    finally:
        w.disconnect()


def test_viewpoint_selection_finds_the_occluded_target(sim):
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.common.camera_mount import ee_T_camera
    from harness_nodes.perception.viewpoint import Target, ViewpointPlanner
    from harness_nodes.common.kinematics import ArmKinematics
    from harness_nodes.sim.world import TrajectoryPoint
    d = load_robot_description("panda")
    kin = ArmKinematics.from_description(d)
    prm = PerceptionParameters()
    w = sim("occluded", seed=11)
    core = PerceptionCore(prm)
    planner = ViewpointPlanner(prm, kin, ee_T_camera(kin, d.camera_link), d.arm.velocity_limit)
    frames = {c: sim_frame(w, c) for c in ("scene", "wrist")}
    for f in frames.values():
        world, inside = core.world_points(f)
        planner.emap.update(world[inside])
    truth = w.object_pose("red_cube")[0]
    prior = truth + np.array([0.03, -0.03, 0.0])
    target = Target("red_cube", prior, np.diag([0.05 ** 2, 0.05 ** 2, 0.01 ** 2]), 0.3)
    ranking = planner.rank_fixed({"scene": (frames["scene"].position, frames["scene"].rotation,
                                            frames["scene"].model)}, [target])
    best, views = planner.plan([target], frames["wrist"].model, w.arm_positions())
    assert best is not None and best.reachable and best.gain > 1.0
    # the box hides most of the prior from the scene camera: moving the wrist camera is worth more
    assert ranking[0].visible["red_cube"] < 0.2 and ranking[0].gain < best.score
    assert best.visible["red_cube"] > 0.9
    assert w.set_arm_trajectory(d.arm.joint_names, [TrajectoryPoint(list(best.q), 3.0)]) is None
    w.run_for(3.5)
    assert np.linalg.norm(w.camera_pose("wrist")[0] - best.position) < 0.005
    found = by_id(core.process(sim_frame(w, "wrist", t=5.0)))
    assert "red_cube" in found
    assert np.linalg.norm(found["red_cube"].position - truth) < 0.005
    assert math.sqrt(np.max(np.linalg.eigvalsh(found["red_cube"].covariance))) < 0.01   # uncertainty dropped


def test_parameters_validated():
    with pytest.raises(ValueError):
        PerceptionParameters(object_ids=["a", "b"], object_hues=[0.0], object_sizes=[0.05])
    with pytest.raises(ValueError):
        PerceptionParameters(hue_sigma=0.0)


# ---------------------------------------------------------------- searching for an object never seen
def _table_points(lo, hi, cell=0.01, skip=()):
    """Table-top points (z = 0) on a grid over [lo, hi], without those inside the `skip` boxes."""
    xs, ys = np.arange(lo[0] + cell / 2, hi[0], cell), np.arange(lo[1] + cell / 2, hi[1], cell)
    pts = np.array([(x, y, 0.0) for x in xs for y in ys])
    for (x0, y0), (x1, y1) in skip:
        pts = pts[~((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1))]
    return pts


def test_hidden_table_areas_large_enough_for_the_object_become_search_targets():
    emap = ElevationMap((0.0, -0.5), (1.0, 0.5), 0.01)
    behind_box = ((0.40, 0.40), (0.50, 0.48))          # 10 x 8 cm nobody has seen
    sliver = ((0.60, -0.30), (0.61, -0.10))            # 1 cm wide: no cube fits
    emap.observe(_table_points((0.0, -0.5), (1.0, 0.5), skip=(behind_box, sliver)))
    assert not emap.observed[45, 94] and emap.observed[30, 50]
    regions = emap.hidden_regions((0.25, -0.6), (0.8, 0.6), min_extent=0.05)
    assert len(regions) == 1
    assert regions[0].centre == pytest.approx((0.45, 0.44), abs=0.006) and regions[0].cells >= 70
    target = search_target("red_cube", regions[0], 0.05)
    assert target.position == pytest.approx((0.45, 0.44, 0.025), abs=0.006)
    sigma = np.sqrt(np.diag(target.covariance))
    assert 0.03 < sigma[0] < 0.06 and 0.02 < sigma[1] < 0.05 and target.confidence < 0.5
    # outside the searched region, or once seen, it is no longer a place to look
    assert emap.hidden_regions((0.6, -0.6), (0.8, 0.6), 0.05) == []
    emap.observe(_table_points(*behind_box))
    assert emap.hidden_regions((0.25, -0.6), (0.8, 0.6), 0.05) == []


def test_observing_marks_cells_without_changing_heights():
    emap = ElevationMap((0.0, -0.5), (1.0, 0.5), 0.01)
    emap.update(np.array([[0.405, 0.005, 0.05]]))
    emap.observe(np.array([[0.405, 0.005, 0.0], [5.0, 5.0, 0.0], [np.nan, 0.0, 0.0], [1e308, -1e308, 0.0]]))
    assert emap.height[40, 50] == pytest.approx(0.05) and emap.observed.sum() == 1


def test_the_surface_mask_counts_the_table_but_not_the_floor_or_missing_depth():
    prm = PerceptionParameters()
    core = PerceptionCore(prm)
    model = CameraModel(4, 1, 2.0, 2.0, 2.0, 0.5)
    depth = np.array([[1.0, 0.0, 1.0, 1.0]], np.float32)
    world = np.array([[[0.4, 0.0, 0.001], [0.4, 0.1, 0.0], [0.4, 0.2, -0.5], [3.0, 0.0, 0.0]]], np.float32)
    f = Frame("scene", 1.0, np.zeros((1, 4, 3), np.uint8), depth, model, np.zeros(3), np.eye(3))
    assert core.surface_mask(f, world).tolist() == [[True, False, False, False]]
