"""Unit tests of the memory tracker's pure core: every validity rule, input checks, re-check
requests, the latent cache, queries and the spatial index."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from harness_nodes.memory.config import MemoryParameters
from harness_nodes.memory.core import InputError, MemoryCore
from harness_nodes.common.geometry import CameraModel
from harness_nodes.memory.facts import EventType, Fact, Kind, ObjectObs, ObsStatus, SceneObs, State
from harness_nodes.memory.table import FactTable
from harness_nodes.memory.validity import expected_visible, mahalanobis2, path_distance

DOWN_CAMERA_Q = (1.0, 0.0, 0.0, 0.0)      # optical z pointing down (rotation pi about x)
CAM = CameraModel(width=320, height=240, fx=207.8, fy=207.8, cx=159.5, cy=119.5, near=0.01, far=5.0)


def params(**kw) -> MemoryParameters:
    base = dict(half_life_visual=100.0, half_life_environment=10.0, stale_threshold=0.5)
    base.update(kw)
    return MemoryParameters(**base)


def scene(t, *objects, camera="scene", cam_pos=(0.5, 0.0, 1.0), cam_q=DOWN_CAMERA_Q, frame="world"):
    return SceneObs(camera=camera, stamp=t, frame_id=frame, camera_position=cam_pos, camera_orientation=cam_q,
                    objects=list(objects))


def seen(oid, pos, sigma=0.005, **kw):
    cov = tuple((np.eye(3) * sigma ** 2).ravel())
    return ObjectObs(object_id=oid, position=tuple(pos), covariance=cov, **kw)


def events(core, kind=None):
    evs = core.drain_events()
    return [e for e in evs if kind is None or e.event == kind]


@pytest.fixture
def core():
    c = MemoryCore(params())
    c.ingest(scene(0.0, seen("red", (0.4, 0.0, 0.025)), seen("green", (0.55, 0.1, 0.025)),
                   seen("far", (0.0, 0.6, 0.025))), 0.0)
    c.drain_events()
    return c


# ---------------------------------------------------------------- decay
def test_confidence_decays_with_the_kinds_half_life_and_goes_stale(core):
    assert core.get("visual/red", 100.0).confidence == pytest.approx(0.5, rel=1e-6)
    assert core.get("visual/red", 50.0).confidence == pytest.approx(2 ** -0.5, rel=1e-6)
    assert core.tick(99.0) == 0
    assert core.tick(101.0) == 3
    stale = events(core, EventType.STALE)
    assert {e.fact_id for e in stale} == {"visual/red", "visual/green", "visual/far"}
    assert core.get("visual/red", 101.0).state == State.STALE
    assert core.tick(200.0) == 0          # one event per transition


def test_half_lives_are_per_kind_and_zero_never_decays():
    c = MemoryCore(params(half_life_environment=10.0, half_life_text=0.0))
    c.assert_fact(Fact("", Kind.ENVIRONMENT, "door", value='{"open": true}', position=(1.0, 0.0, 0.0)), 0.0)
    c.assert_fact(Fact("", Kind.TEXT, "task", value='"put the red cube in the tray"'), 0.0)
    assert c.get("environment/door", 10.0).confidence == pytest.approx(0.5)
    assert c.get("text/task", 1e6).confidence == 1.0
    c.tick(11.0)
    assert c.get("environment/door", 11.0).state == State.STALE
    assert c.get("text/task", 11.0).state == State.VALID


# ---------------------------------------------------------------- actions
def test_swept_path_invalidates_near_facts_and_lowers_nearby_ones(core):
    path = [(0.4, 0.0, 0.3), (0.4, 0.0, 0.03)]          # straight down onto red
    far_before = core.get("visual/far", 1.0).confidence
    n = core.apply_action("chunk-1", path, 1.0)
    red, green, far = (core.get(f"visual/{s}", 1.0) for s in ("red", "green", "far"))
    assert red.state == State.INVALID and red.invalidated_by == "action chunk-1"
    assert red.confidence < 0.35
    assert green.state == State.VALID and 0.3 < green.confidence < 0.99   # 0.18 m from the path
    assert far.confidence == pytest.approx(far_before) and far.state == State.VALID   # 0.7 m from the path: untouched
    assert n == 2
    inv = events(core, EventType.INVALIDATED)
    assert [e.subject for e in inv] == ["red"]
    action = core.get("action/chunk-1", 1.0)
    assert action.kind == Kind.ACTION and '"invalidated": ["red"]' in action.value


def test_contacts_lower_confidence_more_than_the_path(core):
    c2 = MemoryCore(params())
    c2.ingest(scene(0.0, seen("green", (0.55, 0.1, 0.025))), 0.0)
    path = [(0.4, 0.0, 0.3), (0.4, 0.0, 0.03)]
    core.apply_action("a", path, 1.0)
    c2.apply_action("b", path, 1.0, contacts=[(0.5, 0.05, 0.03)])
    assert c2.get("visual/green", 1.0).confidence < core.get("visual/green", 1.0).confidence * 0.5


def test_path_distance_is_capsule_distance():
    path = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=float)
    pts = np.array([[0.5, 0.2, 0], [-1, 0, 0], [1.5, 0.5, 0], [1, 2, 0], [0.5, 0, 0.3]])
    np.testing.assert_allclose(path_distance(pts, path), [0.2, 1.0, 0.5, 1.0, 0.3])
    np.testing.assert_allclose(path_distance(pts, path[:1]), np.linalg.norm(pts, axis=1))


# ---------------------------------------------------------------- grasp
def _tool_down():
    return np.diag([1.0, -1.0, -1.0])


def test_grasped_object_follows_the_gripper_until_release(core):
    core.update_gripper((0.4, 0.0, 0.3), _tool_down(), 0.08, 1.0)
    core.apply_action("descend", [(0.4, 0.0, 0.3), (0.4, 0.0, 0.025)], 2.0)
    core.update_gripper((0.4, 0.0, 0.025), _tool_down(), 0.049, 2.0)      # closed on the 5 cm cube
    assert core.check_grasp("descend", 2.0) == "red"
    assert core.held.fact_id == "visual/red"
    core.update_gripper((0.4, 0.1, 0.2), _tool_down(), 0.049, 3.0, "lift")
    red = core.get("visual/red", 3.0)
    np.testing.assert_allclose(red.position, (0.4, 0.1, 0.2), atol=1e-9)
    assert red.state == State.VALID and red.confidence == pytest.approx(0.8, rel=0.01) and red.source == "gripper"
    # The chunk carrying the object does not invalidate it.
    core.apply_action("lift", [(0.4, 0.0, 0.025), (0.4, 0.1, 0.2)], 3.0)
    assert core.get("visual/red", 3.0).state == State.VALID
    # Release during "lower": the object stays where it was let go, not invalidated by that chunk.
    core.update_gripper((0.1, 0.5, 0.1), _tool_down(), 0.049, 4.0, "lower")
    core.update_gripper((0.1, 0.5, 0.1), _tool_down(), 0.07, 4.5, "lower")
    assert core.held is None
    core.apply_action("lower", [(0.1, 0.5, 0.3), (0.1, 0.5, 0.1)], 5.0)
    red = core.get("visual/red", 5.0)
    np.testing.assert_allclose(red.position, (0.1, 0.5, 0.1), atol=1e-9)
    assert red.state == State.VALID and red.confidence == pytest.approx(0.6, rel=0.01)


def test_gripper_closed_on_nothing_holds_nothing_and_slip_invalidates(core):
    core.update_gripper((0.4, 0.0, 0.025), _tool_down(), 0.001, 1.0)
    assert core.check_grasp("c", 1.0) is None
    core.update_gripper((0.4, 0.0, 0.025), _tool_down(), 0.05, 1.0)
    assert core.check_grasp("c", 1.0) == "red"
    core.drain_events()
    core.update_gripper((0.4, 0.0, 0.1), _tool_down(), 0.0, 2.0)
    assert core.held is None
    assert core.get("visual/red", 2.0).state == State.INVALID
    assert [e.event for e in events(core)] == [EventType.INVALIDATED]


# ---------------------------------------------------------------- negative evidence
def test_expected_not_seen_lowers_confidence():
    core = MemoryCore(params(negative_evidence_factor=0.7))
    core.ingest(scene(0.0, seen("red", (0.4, 0.0, 0.025))), 0.0)
    core.drain_events()
    miss = ObjectObs(object_id="red", status=ObsStatus.EXPECTED_NOT_SEEN)
    core.ingest(scene(1.0, miss), 1.0)
    c1 = core.get("visual/red", 1.0).confidence
    assert c1 == pytest.approx(0.7 * 2 ** (-1 / 100), rel=1e-6)
    assert core.get("visual/red", 1.0).state == State.VALID
    core.ingest(scene(2.0, miss), 2.0)
    assert core.get("visual/red", 2.0).state == State.STALE
    assert [e.subject for e in events(core, EventType.STALE)] == ["red"]


def test_frustum_negative_evidence_needs_view_and_no_occlusion(core):
    depth_far = np.full((CAM.height, CAM.width), 1.2, dtype=np.float32)    # table 1.2 m below? farther than cubes
    # Camera 1 m above (0.5, 0, 0): red (0.4, 0, .025) and green in view; "far" (0, 0.6) outside.
    core.ingest(scene(1.0), 1.0, CAM, depth_far)
    assert core.get("visual/red", 1.0).confidence < 0.51
    assert core.get("visual/green", 1.0).confidence < 0.51
    assert core.get("visual/far", 1.0).confidence > 0.98
    # Occluded: depth much nearer than the fact -> no evidence.
    c = MemoryCore(params())
    c.ingest(scene(0.0, seen("red", (0.4, 0.0, 0.025))), 0.0)
    c.ingest(scene(1.0), 1.0, CAM, np.full((CAM.height, CAM.width), 0.3, dtype=np.float32))
    assert c.get("visual/red", 1.0).confidence > 0.98
    # No depth image: cannot tell occlusion -> no evidence (require_depth_for_negative_evidence).
    c.ingest(scene(2.0), 2.0, CAM, None)
    assert c.get("visual/red", 2.0).confidence > 0.98
    # Detected objects are not negative evidence.
    c.ingest(scene(3.0, seen("red", (0.4, 0.0, 0.025))), 3.0, CAM, np.full((240, 320), 2.0, np.float32))
    assert c.get("visual/red", 3.0).confidence > 0.98


def test_expected_visible_geometry():
    pts = np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 1.5], [3.0, 0.0, 0.0]])
    vis = expected_visible(pts, (0.5, 0.0, 1.0), DOWN_CAMERA_Q, CAM, np.full((240, 320), 2.0, np.float32))
    assert vis.tolist() == [True, False, False]     # below: seen; behind the camera; outside the frustum


# ---------------------------------------------------------------- contradiction
def test_disagreeing_observation_contradicts_and_observation_wins(core):
    core.ingest(scene(1.0, seen("red", (0.5, 0.1, 0.025))), 1.0)
    evs = events(core)
    assert [e.event for e in evs] == [EventType.CONTRADICTED]
    assert "observation wins" in evs[0].reason
    red = core.get("visual/red", 1.0)
    np.testing.assert_allclose(red.position, (0.5, 0.1, 0.025))
    assert red.state == State.VALID
    old = core.get("visual/red@0.000", 1.0)
    assert old.state == State.CONTRADICTED and old.position == (0.4, 0.0, 0.025)
    assert {f.fact_id for f in core.query(1.0, subject="red")} == {"visual/red", "visual/red@0.000"}


def test_agreeing_observation_is_fused_and_verifies(core):
    core.tick(150.0)
    core.drain_events()
    core.ingest(scene(150.0, seen("red", (0.402, 0.0, 0.025))), 150.0)
    assert [e.event for e in events(core)] == [EventType.VERIFIED]
    red = core.get("visual/red", 150.0)
    assert red.state == State.VALID and red.confidence == pytest.approx(1.0)
    assert 0.4 < red.position[0] < 0.402 and red.last_verified == 150.0


def test_invalidated_fact_reobserved_elsewhere_is_verified_not_contradicted(core):
    core.apply_action("c", [(0.4, 0.0, 0.3), (0.4, 0.0, 0.03)], 1.0)
    core.drain_events()
    core.ingest(scene(2.0, seen("red", (0.1, 0.5, 0.025))), 2.0)
    assert [e.event for e in events(core)] == [EventType.VERIFIED]
    assert core.get("visual/red", 2.0).position == (0.1, 0.5, 0.025)


def test_mahalanobis_gate():
    cov = np.eye(3).ravel() * 1e-4
    assert mahalanobis2([0.01, 0, 0], cov, cov, 0.0) == pytest.approx(0.5)
    assert mahalanobis2([0.1, 0, 0], cov, cov, 0.0) == pytest.approx(50.0)


# ---------------------------------------------------------------- bad input
BAD = {
    "nan pose": lambda: scene(1.0, seen("x", (math.nan, 0, 0))),
    "unknown frame": lambda: scene(1.0, seen("x", (0, 0, 0)), frame="map"),
    "object frame": lambda: scene(1.0, ObjectObs("x", frame_id="camera", covariance=(0,) * 9)),
    "future": lambda: scene(5.0, seen("x", (0, 0, 0))),
    "far past": lambda: scene(-100.0, seen("x", (0, 0, 0))),
    "duplicate ids": lambda: scene(1.0, seen("x", (0, 0, 0)), seen("x", (1, 0, 0))),
    "huge array": lambda: scene(1.0, *[seen(f"o{i}", (0, 0, 0)) for i in range(300)]),
    "bad covariance": lambda: scene(1.0, ObjectObs("x", covariance=(-1.0,) + (0.0,) * 8)),
    "non-unit quaternion": lambda: scene(1.0, ObjectObs("x", orientation=(0, 0, 0, 0))),
    "far away": lambda: scene(1.0, seen("x", (1e6, 0, 0))),
    "empty id": lambda: scene(1.0, seen("", (0, 0, 0))),
    "empty camera": lambda: scene(1.0, seen("x", (0, 0, 0)), camera=""),
    "nan camera pose": lambda: scene(1.0, cam_pos=(math.nan, 0, 0)),
    "confidence": lambda: scene(1.0, seen("x", (0, 0, 0), identity_confidence=2.0)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_observations_are_rejected_and_the_store_is_untouched(core, case):
    before = [(f.fact_id, f.position, f.confidence, f.state) for f in core.query(1.0)]
    dirty = set(core.dirty)
    mask = core.table.dirty.copy()
    with pytest.raises(InputError):
        core.ingest(BAD[case](), 1.0, CAM, np.full((240, 320), 2.0, np.float32))
    assert [(f.fact_id, f.position, f.confidence, f.state) for f in core.query(1.0)] == before
    assert core.dirty == dirty and core.drain_events() == []
    assert np.array_equal(core.table.dirty, mask)
    assert core.counters.rejected == 1


def test_duplicate_observation_is_rejected(core):
    s = scene(1.0, seen("red", (0.4, 0.0, 0.025)))
    core.ingest(s, 1.0)
    with pytest.raises(InputError, match="duplicate observation"):
        core.ingest(s, 1.0)


def test_bad_asserted_facts_are_rejected(core):
    with pytest.raises(InputError):
        core.assert_fact(Fact("", Kind.VISUAL, "x"), 0.0)                      # no pose
    with pytest.raises(InputError):
        core.assert_fact(Fact("", Kind.TEXT, "x", confidence=math.nan), 0.0)
    with pytest.raises(InputError):
        core.assert_fact(Fact("", 9, "x"), 0.0)
    assert len(core) == 3


# ---------------------------------------------------------------- re-check
def test_recheck_requests_for_stale_dependencies_cheapest_first():
    c = MemoryCore(params(task_subjects=["red"]))
    c.ingest(scene(0.0, seen("red", (0.4, 0.0, 0.025)), seen("green", (0.55, 0.1, 0.025)),
                   seen("blue", (0.0, 0.6, 0.025))), 0.0)
    assert c.recheck_requests(1.0) == []                  # nothing stale yet
    c.tick(150.0)
    c.query(150.0, subject="blue")                        # queried -> the task depends on it
    c.update_gripper((0.3, 0.0, 0.4), _tool_down(), 0.08, 150.0)
    cams = {"scene": ((0.5, 0.0, 1.0), DOWN_CAMERA_Q, CAM)}
    reqs = c.recheck_requests(150.0, cams)
    assert [r.subjects for r in reqs] == [["red"], ["blue"]]   # green: stale but not a dependency
    assert reqs[0].camera == "scene" and reqs[0].cost < reqs[1].cost
    assert reqs[1].camera == "wrist" and reqs[1].information_gain > 0
    np.testing.assert_allclose(reqs[1].camera_position, (0.0, 0.6, 0.325))


# ---------------------------------------------------------------- latent cache
def test_latent_cache_hits_misses_and_region_invalidation(core):
    key = core.latent_store("scene", "enc-v1", (0.4, 0.0, 0.0), 0.1, 0.5, (2, 3), np.arange(6), 1.0)
    assert core.latent_fetch("scene", "enc-v1", (0.41, 0.0, 0.0), 0.1).entry_id == key   # same quantised key
    assert core.latent_fetch("wrist", "enc-v1", (0.4, 0.0, 0.0), 0.1) is None
    assert (core.latent.hits, core.latent.misses) == (1, 1)
    assert core.get(f"latent/{key}", 1.0).kind == Kind.LATENT
    core.ingest(scene(2.0, seen("far", (0.0, 0.6, 0.025))), 2.0)            # outside the region
    assert core.latent_fetch("scene", "enc-v1", (0.4, 0.0, 0.0), 0.1) is not None
    core.ingest(scene(3.0, seen("red", (0.45, 0.0, 0.025))), 3.0)           # red moved: region changed
    assert core.latent_fetch("scene", "enc-v1", (0.4, 0.0, 0.0), 0.1) is None
    assert core.get(f"latent/{key}", 3.0) is None
    with pytest.raises(InputError):
        core.latent_store("scene", "enc-v1", (0, 0, 0), 0.1, 0.0, (4,), np.arange(6), 1.0)
    with pytest.raises(InputError):
        core.latent_store("scene", "enc-v1", (0, 0, 0), 0.1, 0.0, (1,), [math.nan], 1.0)


def test_an_encoding_captured_before_its_region_changed_is_refused(core):
    """A store still on its way when the region changed (frames captured at 2.5, red moved at 3.0)
    is refused, with the reason; frames captured after the change, or elsewhere, are stored."""
    from harness_nodes.memory.latent import StaleEncoding

    core.ingest(scene(1.0, seen("red", (0.4, 0.0, 0.025))), 1.0)
    core.ingest(scene(3.0, seen("red", (0.45, 0.0, 0.025))), 3.0)           # red moved: region changed at 3.0
    with pytest.raises(StaleEncoding, match="changed at 3.000 s, after these frames were captured"):
        core.latent_store("scene", "enc", (0.4, 0.0, 0.0), 0.1, 2.5, (1,), [1.0], 3.2)
    assert core.latent.refused_stale == 1 and not core.latent.entries
    assert core.latent_store("scene", "enc", (0.4, 0.0, 0.0), 0.1, 3.1, (1,), [1.0], 3.2)    # after the change
    assert core.latent_store("scene", "enc", (0.0, 0.6, 0.0), 0.1, 2.5, (1,), [1.0], 3.2)    # elsewhere
    # the arm's own action in the region counts as a change too
    core.apply_action("c", [(0.0, 0.6, 0.3), (0.0, 0.6, 0.03)], 4.0)
    with pytest.raises(StaleEncoding):
        core.latent_store("scene", "enc", (0.0, 0.6, 0.0), 0.1, 3.5, (1,), [1.0], 4.1)
    # a clock that went back (a restarted sim): the old changes no longer refuse anything
    core.ingest(scene(0.5, seen("blue", (0.0, 0.9, 0.025))), 0.5)
    assert core.latent_store("scene", "enc", (0.4, 0.0, 0.0), 0.1, 0.4, (1,), [1.0], 0.6)


def test_latent_entry_dropped_by_an_action_in_its_region(core):
    core.latent_store("scene", "m", (0.4, 0.0, 0.0), 0.1, 0.5, (1,), [1.0], 1.0)
    core.apply_action("c", [(0.4, 0.0, 0.3), (0.4, 0.0, 0.03)], 2.0)
    assert core.latent_fetch("scene", "m", (0.4, 0.0, 0.0), 0.1) is None


def test_latent_entries_evicted_for_size_lose_their_facts_whatever_their_camera_and_model():
    c = MemoryCore(params(latent_max_entries=2))
    a = c.latent_store("scene", "m1", (0.0, 0.0, 0.0), 0.1, 0.0, (1,), [1.0], 0.0)
    b = c.latent_store("wrist", "m2", (0.5, 0.0, 0.0), 0.1, 0.0, (1,), [2.0], 0.0)
    d = c.latent_store("scene", "m3", (1.0, 0.0, 0.0), 0.1, 0.0, (1,), [3.0], 0.0)
    assert list(c.latent.entries) == [b, d]
    assert c.get(f"latent/{a}", 0.0) is None
    assert c.get(f"latent/{b}", 0.0) is not None and c.get(f"latent/{d}", 0.0) is not None


# ---------------------------------------------------------------- queries and the index
def test_query_by_subject_kind_region_and_confidence(core):
    core.assert_fact(Fact("", Kind.TEXT, "note", value='"careful"'), 0.0)
    assert [f.subject for f in core.query(1.0, kind=int(Kind.TEXT))] == ["note"]
    assert sorted(f.subject for f in core.query(1.0, center=(0.45, 0.05, 0.0), radius=0.12)) == ["green", "red"]
    core.apply_action("c", [(0.4, 0.0, 0.3), (0.4, 0.0, 0.03)], 1.0)
    assert sorted(f.subject for f in core.query(1.0, kind=int(Kind.VISUAL), min_confidence=0.95)) == ["far"]


def test_vectorised_facts_are_the_facts_built_one_by_one(core):
    core.assert_fact(Fact("", Kind.TEXT, "note", value='"careful"'), 0.5)            # no pose (NaN)
    core.ingest(scene(1.0, seen("red", (0.6, 0.3, 0.025))), 1.0)                      # contradiction
    core.apply_action("c", [(0.55, 0.1, 0.3), (0.55, 0.1, 0.03)], 2.0)               # green invalid
    core.latent_store("scene", "enc", (0.0, 0.6, 0.0), 0.1, 2.0, (1,), [1.0], 2.0)
    t = core.table
    live = t.live_slots()
    assert len(live) == 7
    for now in (2.0, 250.0):
        one_by_one = [t.fact(s, now) for s in live.tolist()]
        assert [repr(f) for f in t.facts(live, now)] == [repr(f) for f in one_by_one]   # repr: NaN == NaN
        assert [repr(f) for f in t.facts(live[::-1], now)] == [repr(f) for f in one_by_one[::-1]]
    assert t.facts(np.empty(0, dtype=np.intp), 2.0) == []
    # query(): same answer as building each matched fact; query_page(): a prefix and the total
    for kw in ({}, {"center": (0.5, 0.1, 0.0), "radius": 0.3}, {"min_confidence": 0.5}, {"subject": "red"},
               {"kind": int(Kind.VISUAL), "include_superseded": False}):
        got = core.query(3.0, **kw)
        slots, _ = core._select(3.0, kw.get("subject", ""), kw.get("kind"), kw.get("center"), kw.get("radius", 0.0),
                                kw.get("min_confidence", 0.0), kw.get("include_superseded", True))
        assert [repr(f) for f in got] == [repr(t.fact(s, 3.0)) for s in slots.tolist()]
        page, total = core.query_page(3.0, limit=2, **kw)
        assert total == len(got) and [repr(f) for f in page] == [repr(f) for f in got[:2]]


def test_region_query_index_follows_moves_and_removals():
    t = FactTable(cell_size=0.1)
    for i in range(50):
        t.put(Fact(f"f{i}", Kind.VISUAL, f"s{i}", position=(0.01 * i, 0.0, 0.0)), 100.0, 0.0)
    assert sorted(t.in_region((0.05, 0.0, 0.0), 0.05).tolist()) == list(range(11))   # cells now cached
    t.set_pose(t.slot_of["f3"], (1.0, 1.0, 1.0))
    t.remove("f4")
    t.put(Fact("f60", Kind.VISUAL, "s60", position=(0.02, 0.0, 0.0)), 100.0, 0.0)       # reuses f4's slot
    got = sorted(t.in_region((0.05, 0.0, 0.0), 0.05).tolist())
    assert got == sorted(t.in_region_brute((0.05, 0.0, 0.0), 0.05).tolist())
    assert t.slot_of["f3"] not in got and t.slot_of["f60"] in got
    assert t.in_region((1.0, 1.0, 1.0), 0.01).tolist() == [t.slot_of["f3"]]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 0.6), st.floats(0.02, 0.5))
def test_grid_region_query_matches_brute_force(seed, radius, cell):
    rng = np.random.default_rng(seed)
    t = FactTable(cell_size=cell)
    pts = rng.uniform(-1, 1, (300, 3))
    for i, p in enumerate(pts):
        t.put(Fact(f"f{i}", Kind.VISUAL, f"s{i}", position=tuple(p)), 100.0, 0.0)
    for i in range(0, 300, 7):
        t.remove(f"f{i}")
    centre = rng.uniform(-1, 1, 3)
    assert sorted(t.in_region(centre, radius).tolist()) == sorted(t.in_region_brute(centre, radius).tolist())


def test_prune_drops_superseded_and_invalid_first():
    c = MemoryCore(params(max_facts=10))
    for i in range(8):
        c.ingest(scene(float(i), seen(f"o{i}", (0.1 * i, 0, 0))), float(i))
    c.ingest(scene(8.0, seen("o0", (0.0, 0.5, 0))), 8.0)       # contradiction: o0@... superseded
    c.apply_action("c", [(0.7, 0.0, 0.1), (0.7, 0.0, 0.0)], 9.0)  # o7 invalid; + action fact
    c.assert_fact(Fact("", Kind.TEXT, "task"), 9.0)
    assert len(c) == 11
    c.tick(9.0)                                                 # over 10 -> prune to 9
    ids = {f.fact_id for f in c.query(9.0)}
    assert len(ids) == 9 and "text/task" in ids
    assert not any("@" in i for i in ids) and "visual/o7" not in ids


# ---------------------------------------------------------------- finite but absurd input (issue 8)
@pytest.mark.parametrize("center,radius", [((1e308, 0.0, 0.0), 0.1), ((0.0, 0.0, 0.0), 1e308),
                                           ((-1e308, 1e308, 0.0), 1e308), ((0.0, 0.0, 0.0), math.inf)])
def test_region_queries_with_extreme_values_answer_instead_of_overflowing(core, center, radius):
    slots = core.table.in_region(center, radius)
    assert set(slots.tolist()) <= set(core.table.live_slots().tolist())
    core.query(0.0, center=center, radius=radius)         # no OverflowError
    core.invalidate_region(center, radius, "test", 0.0)


@pytest.mark.parametrize("center", [(1e308, 0.0, 0.0), (0.0, -1e308, 0.0), (0.0, 0.0, 1e300)])
def test_latent_key_out_of_range_is_an_input_error_not_an_overflow(core, center):
    with pytest.raises(InputError, match="within"):
        core.latent_store("scene", "enc", center, 0.1, 0.0, [1], [1.0], 0.0)
    with pytest.raises(InputError, match="within"):
        core.latent_fetch("scene", "enc", center, 0.1)
    with pytest.raises(InputError):
        core.latent_store("scene", "enc", (0.0, 0.0, 0.0), 1e308, 0.0, [1], [1.0], 0.0)


@pytest.mark.parametrize("shape", [[65536] * 4, [2 ** 32, 2 ** 32], [0], [], [3, 0]])
def test_latent_shape_whose_product_overflows_or_is_empty_is_refused(core, shape):
    with pytest.raises(InputError):
        core.latent_store("scene", "enc", (0.0, 0.0, 0.0), 0.1, 0.0, shape, [], 0.0)
    assert not core.latent.entries


def test_long_label_and_long_strings_of_an_asserted_fact_are_refused(core):
    n = len(core)
    with pytest.raises(InputError, match="label"):
        core.ingest(scene(1.0, seen("blue", (0.4, 0.3, 0.02), label="x" * 5_000_000)), 1.0)
    for field in ("source", "camera", "invalidated_by"):
        f = Fact("", Kind.TEXT, "task", value='"x"', **{field: "s" * 5_000_000})
        with pytest.raises(InputError):
            core.assert_fact(f, 1.0)
    assert len(core) == n


def test_measured_motion_segments_open_on_motion_and_close_at_rest():
    from harness_nodes.memory.motion import MeasuredMotion
    m = MeasuredMotion(min_step=0.005, settle=0.5)
    assert m.update((0.3, 0.0, 0.4), 0.0) is None                       # rest position
    assert m.update((0.302, 0.0, 0.4), 0.1) is None and not m.path      # below the step: no motion
    for k in range(1, 11):
        assert m.update((0.3, 0.01 * k, 0.4), 0.1 + 0.01 * k) is None
    assert m.update((0.3, 0.1, 0.4), 0.3) is None                        # not yet settled
    path = m.update((0.3, 0.1, 0.4), 0.8)
    assert path is not None and path.shape == (11, 3)
    assert np.allclose(path[0], (0.3, 0.0, 0.4)) and np.allclose(path[-1], (0.3, 0.1, 0.4))
    assert m.segments == 1 and m.update((0.3, 0.1, 0.4), 2.0) is None    # at rest again
    m.update((0.3, 0.2, 0.4), 3.0)
    assert len(m.take()) == 2 and m.poll(10.0) is None                   # a chunk took it over


def test_boundary_models_refuse_absurd_requests_naming_the_field():
    from harness_nodes.memory.boundary import (BoundaryError, FactStrings, LatentKey, LatentStore, Limits,
                                               QueryRequest, validate)
    limits = Limits.of(params())
    ok = validate(QueryRequest, limits, subject="red", center=(0.4, 0.0, 0.0), radius=0.2, min_confidence=0.5)
    assert ok.center == (0.4, 0.0, 0.0)
    for values, field in (({"center": (1e308, 0.0, 0.0)}, "center"), ({"radius": 1e308}, "radius"),
                          ({"radius": math.nan}, "radius"), ({"min_confidence": 2.0}, "min_confidence"),
                          ({"subject": "s" * 5000}, "subject")):
        with pytest.raises(BoundaryError, match=field):
            validate(QueryRequest, limits, **values)
    key = dict(camera="scene", model="enc", center=(0.0, 0.0, 0.0), radius=0.1)
    validate(LatentKey, limits, **key)
    with pytest.raises(BoundaryError, match="center"):
        validate(LatentKey, limits, **{**key, "center": (0.0, -1e308, 0.0)})
    with pytest.raises(BoundaryError, match="elements"):
        validate(LatentStore, limits, **key, stamp=0.0, shape=[65536] * 4, length=0)
    with pytest.raises(BoundaryError, match="elements, data has 1"):
        validate(LatentStore, limits, **key, stamp=0.0, shape=[2, 2], length=1)
    with pytest.raises(BoundaryError, match="source"):
        validate(FactStrings, subject="task", source="s" * 5_000_000)
