"""Pure tests of the controller router core: kinematics, validation, time scaling, monitor."""
from __future__ import annotations

import math

import numpy as np
import pinocchio as pin
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.router.configuration import RouterParameters
from harness_nodes.router.core import RouterCore
from harness_nodes.router.execution import Finished, StartGripper
from harness_nodes.router.planner import Duplicate, Plan
from harness_nodes.common.kinematics import ArmKinematics
from harness_nodes.router.trajectory import (TimingLimits, build_arm_trajectory, build_gripper_trajectory,
                                             segment_min_time)
from harness_nodes.router.validation import ChunkInput, Failure, Rejection, ValidChunk, validate_chunk

DESC = load_robot_description("panda")
ARM = DESC.arm
HOME = np.array(ARM.home)
LO, HI = np.array(ARM.position_lower), np.array(ARM.position_upper)
DOWN = (1.0, 0.0, 0.0, 0.0)   # tool pointing down (x, y, z, w)


@pytest.fixture(scope="module")
def kin() -> ArmKinematics:
    return ArmKinematics(DESC.urdf_path, ARM.joint_names, DESC.end_effector_frame, LO, HI, HOME)


@pytest.fixture(scope="module")
def core_factory(kin):
    def make(**overrides) -> RouterCore:
        return RouterCore(DESC, RouterParameters(**overrides), kinematics=kin)
    return make


def home_state(width: float = 0.08) -> dict[str, float]:
    state = dict(zip(ARM.joint_names, ARM.home))
    state.update({n: width / 2 for n in DESC.gripper.joint_names})
    return state


def ee_chunk(positions, quats=None, times=None, chunk_id="c1", **kw) -> ChunkInput:
    positions = [list(p) for p in positions]
    quats = quats or [DOWN] * len(positions)
    times = times or [1.0 * (i + 1) for i in range(len(positions))]
    return ChunkInput(chunk_id=chunk_id, space=0, ee_positions=positions, ee_orientations=quats,
                      ee_times=times, **kw)


def joint_chunk(points, names=None, times=None, chunk_id="j1", **kw) -> ChunkInput:
    names = names if names is not None else list(ARM.joint_names)
    times = times or [1.0 * (i + 1) for i in range(len(points))]
    return ChunkInput(chunk_id=chunk_id, space=1, joint_names=names, joint_positions=[list(p) for p in points],
                      joint_times=times, **kw)


# ---------------------------------------------------------------- kinematics
def test_fk_home_is_in_front_pointing_down(kin):
    pose = kin.fk(HOME)
    assert 0.2 < pose.translation[0] < 0.6 and abs(pose.translation[1]) < 1e-6
    assert pose.rotation[2, 2] < -0.99    # tool z axis points down


def test_joint_mapping_follows_description_order(kin):
    model = kin.model
    for i, name in enumerate(ARM.joint_names):
        assert model.joints[model.getJointId(name)].idx_q == kin.q_index[i]
    # finger joints are not IK variables and are held
    assert set(kin.other_joints) == set(DESC.gripper.joint_names)


def test_ik_round_trip_random_configurations(kin):
    rng = np.random.default_rng(7)
    margin = 0.05
    failures = 0
    n = 40
    for i in range(n):
        q = rng.uniform(LO + margin, HI - margin)
        target = kin.fk(q)
        seed = HOME if i % 2 else np.clip(q + rng.normal(0.0, 0.3, 7), LO, HI)
        result = kin.ik(target, seed, tolerance=1e-3, margin=0.02)
        if not result.success:
            failures += 1
            continue
        dp, dr = kin.pose_error(kin.fk(result.q), target)
        assert dp <= 1e-3 and dr <= 0.01, (q, result)
        assert np.all(result.q >= LO + 0.02 - 1e-9) and np.all(result.q <= HI - 0.02 + 1e-9)
    # Uniform samples over the whole joint box include contorted ones; nearly all must solve.
    assert failures <= 1, f"{failures}/{n} IK failures"


def test_ik_always_converges_near_home(kin):
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = np.clip(HOME + rng.uniform(-0.6, 0.6, 7), LO + 0.05, HI - 0.05)
        target = kin.fk(q)
        result = kin.ik(target, HOME, tolerance=1e-3)
        assert result.success, result
        dp, dr = kin.pose_error(kin.fk(result.q), target)
        assert dp <= 1e-3 and dr <= 0.01


def test_ik_reports_failure_on_unreachable_target(kin):
    target = pin.SE3(kin.fk(HOME).rotation, np.array([2.0, 0.0, 0.5]))
    result = kin.ik(target, HOME, max_iterations=100)
    assert not result.success
    assert result.position_error > 0.5
    assert np.all(result.q >= LO - 1e-9) and np.all(result.q <= HI + 1e-9)


# ---------------------------------------------------------------- validation
@pytest.fixture(scope="module")
def limits(core_factory):
    return core_factory().limits


def test_valid_ee_chunk_normalizes_quaternion(limits):
    q = np.array([1.0, 0.0, 0.0, 0.0]) * (1 + 5e-4)
    result = validate_chunk(ee_chunk([[0.4, 0.0, 0.3]], quats=[tuple(q)]), limits)
    assert isinstance(result, ValidChunk)
    assert abs(np.linalg.norm(result.ee_quaternions[0]) - 1.0) < 1e-12


@pytest.mark.parametrize("chunk, failure, words", [
    (ee_chunk([[math.nan, 0.0, 0.3]]), Failure.INVALID_INPUT, "non-finite"),
    (ee_chunk([[0.4, math.inf, 0.3]]), Failure.INVALID_INPUT, "non-finite"),
    (ee_chunk([[0.4, 0.0, 0.3]], quats=[(0.0, 0.0, 0.0, 0.0)]), Failure.INVALID_INPUT, "zero quaternion"),
    (ee_chunk([[0.4, 0.0, 0.3]], quats=[(0.0, 0.0, 0.0, 2.0)]), Failure.INVALID_INPUT, "norm"),
    (ee_chunk([[0.4, 0.0, 0.3]], quats=[(math.nan, 0.0, 0.0, 1.0)]), Failure.INVALID_INPUT, "non-finite"),
    (ee_chunk([[0.4, 0.0, 0.3], [0.4, 0.1, 0.3]], times=[1.0]), Failure.INVALID_INPUT, "differ in length"),
    (ee_chunk([]), Failure.INVALID_INPUT, "empty"),
    (ee_chunk([[0.4, 0.0, 0.3], [0.4, 0.1, 0.3]], times=[1.0, 1.0]), Failure.INVALID_INPUT, "strictly increasing"),
    (ee_chunk([[0.4, 0.0, 0.3], [0.4, 0.1, 0.3]], times=[2.0, 1.0]), Failure.INVALID_INPUT, "strictly increasing"),
    (ee_chunk([[0.4, 0.0, 0.3]], times=[0.0]), Failure.INVALID_INPUT, "> 0"),
    (ee_chunk([[0.4, 0.0, 0.3]], times=[math.nan]), Failure.INVALID_INPUT, "non-finite"),
    (ee_chunk([[0.4, 0.0, 0.3]], times=[31.0]), Failure.LIMIT_VIOLATION, "max_chunk_duration"),
    (ee_chunk([[1.5, 0.0, 0.3]]), Failure.LIMIT_VIOLATION, "workspace"),
    (ee_chunk([[0.4, 0.0, -0.2]]), Failure.LIMIT_VIOLATION, "workspace"),
    (ee_chunk([[0.4, 0.0, 0.3]], gripper_command=3, gripper_width=0.2), Failure.LIMIT_VIOLATION, "gripper_width"),
    (ee_chunk([[0.4, 0.0, 0.3]], gripper_command=3, gripper_width=-0.01), Failure.LIMIT_VIOLATION, "gripper_width"),
    (ee_chunk([[0.4, 0.0, 0.3]], gripper_command=3, gripper_width=math.nan), Failure.INVALID_INPUT, "gripper_width"),
    (ee_chunk([[0.4, 0.0, 0.3]], gripper_command=9), Failure.INVALID_INPUT, "gripper_command"),
    (ee_chunk([[0.4, 0.0, 0.3]], chunk_id=""), Failure.INVALID_INPUT, "chunk_id"),
    (ee_chunk([[0.4, 0.0, 0.3]], frame_id="camera"), Failure.INVALID_INPUT, "frame_id"),
    (ChunkInput(chunk_id="x", space=7), Failure.INVALID_INPUT, "space"),
    (joint_chunk([HOME], names=[*ARM.joint_names[:6], "elbow"]), Failure.INVALID_INPUT, "unknown joint"),
    (joint_chunk([HOME], names=[*ARM.joint_names[:6], ARM.joint_names[0]]), Failure.INVALID_INPUT, "duplicated"),
    (joint_chunk([HOME[:6]]), Failure.INVALID_INPUT, "expected 7"),
    (joint_chunk([[*HOME[:6], math.nan]]), Failure.INVALID_INPUT, "non-finite"),
    (joint_chunk([HOME, HOME], times=[1.0, 0.5]), Failure.INVALID_INPUT, "strictly increasing"),
    (joint_chunk([HOME], times=[1.0, 2.0]), Failure.INVALID_INPUT, "times"),
    (joint_chunk([]), Failure.INVALID_INPUT, "empty"),
    (joint_chunk([[*HOME[:3], -3.2, *HOME[4:]]]), Failure.LIMIT_VIOLATION, "panda_joint4"),
    (joint_chunk([[3.0, *HOME[1:]]]), Failure.LIMIT_VIOLATION, "panda_joint1"),
    (joint_chunk([HOME], names=["panda_finger_joint1"] + list(ARM.joint_names[1:])), Failure.INVALID_INPUT,
     "unknown joint"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_validation_rejects(limits, chunk, failure, words):
    result = validate_chunk(chunk, limits)
    assert isinstance(result, Rejection), result
    assert result.failure == failure, result
    assert words in result.reason, result.reason


def test_joint_targets_within_margin_are_clamped_and_counted(limits):
    m = limits.joint_limit_margin
    target = HOME.copy()
    target[0] = HI[0] - m / 2          # inside the limit, inside the margin band: clamped
    target[3] = LO[3] + m / 4
    result = validate_chunk(joint_chunk([target]), limits)
    assert isinstance(result, ValidChunk)
    assert result.clamps == 2
    assert result.joint_positions[0, 0] == pytest.approx(HI[0] - m)
    assert result.joint_positions[0, 3] == pytest.approx(LO[3] + m)


# ---------------------------------------------------------------- trajectory
TIMING = TimingLimits(np.array(ARM.velocity_limit), np.array(ARM.acceleration_limit), 0.5, 0.5, 0.2)


def test_time_scaling_respects_velocity_limits():
    target = HOME + np.array([2.0, 0.5, -1.0, 0.3, 1.5, 0.2, -2.0])
    traj = build_arm_trajectory(ARM.joint_names, HOME, np.array([target, HOME]), [0.1, 0.2], TIMING)
    vmax = TIMING.velocity_scale * TIMING.velocity_limit
    seg_v = np.abs(np.diff(traj.positions, axis=0)) / np.diff(traj.times)[:, None]
    assert np.all(seg_v * 1.5 <= vmax + 1e-9)           # cubic peak within the scaled limit
    assert traj.lengthened == 2
    assert np.all(np.abs(traj.velocities) <= vmax + 1e-9)
    assert np.allclose(traj.velocities[0], 0) and np.allclose(traj.velocities[-1], 0)
    # acceleration bound: 6 dq / T^2 <= scaled limit
    amax = TIMING.acceleration_scale * TIMING.acceleration_limit
    seg_a = 6 * np.abs(np.diff(traj.positions, axis=0)) / np.diff(traj.times)[:, None] ** 2
    assert np.all(seg_a <= amax + 1e-9)


def test_time_scaling_keeps_requested_and_min_times():
    small = HOME + 0.01
    traj = build_arm_trajectory(ARM.joint_names, HOME, np.array([small, small + 0.01]), [3.0, 3.05], TIMING)
    assert traj.times[1] == pytest.approx(3.0)
    assert traj.times[2] - traj.times[1] == pytest.approx(0.2)   # min_segment_time
    assert np.allclose(traj.positions[0], HOME)
    assert segment_min_time(np.zeros(7), TIMING) == pytest.approx(0.2)


def test_intermediate_velocities_zero_on_reversal():
    a, b = HOME + 0.3, HOME
    traj = build_arm_trajectory(ARM.joint_names, HOME, np.array([a, b]), [1.0, 2.0], TIMING)
    assert np.allclose(traj.velocities, 0.0)
    c = HOME + 0.6
    traj = build_arm_trajectory(ARM.joint_names, HOME, np.array([a, c]), [1.0, 2.0], TIMING)
    assert np.all(traj.velocities[1] > 0)


def test_gripper_trajectory_half_width_per_finger():
    g = build_gripper_trajectory(DESC.gripper.joint_names, 0.06, 0.02, 0.0, 0.08, 0.1)
    assert np.allclose(g.positions, [0.03, 0.03])
    assert g.duration == pytest.approx(0.4)


# ---------------------------------------------------------------- core
def test_submit_ee_chunk_plans_ik_targets(core_factory, kin):
    core = core_factory()
    target_p = np.array([0.45, 0.1, 0.25])
    plan = core.submit(ee_chunk([[0.4, 0.0, 0.35], target_p]), home_state())
    assert isinstance(plan, Plan), plan
    final = kin.fk(plan.arm.final)
    assert np.linalg.norm(final.translation - target_p) < 1e-3
    assert final.rotation[2, 2] < -0.999
    assert np.allclose(plan.arm.positions[0], HOME)


def test_submit_without_state_is_rejected(core_factory):
    core = core_factory()
    result = core.submit(ee_chunk([[0.4, 0.0, 0.3]]), None)
    assert isinstance(result, Rejection) and "no state" in result.reason
    result = core.submit(ee_chunk([[0.4, 0.0, 0.3]]), home_state(), state_age=5.0)
    assert isinstance(result, Rejection) and "no state" in result.reason
    assert core.counters.rejected == 2


def test_submit_unreachable_pose_is_ik_failure(core_factory):
    core = core_factory(workspace_min=[-3, -3, -3], workspace_max=[3, 3, 3], ik_max_iterations=50)
    result = core.submit(ee_chunk([[2.0, 0.0, 0.5]]), home_state())
    assert isinstance(result, Rejection) and result.failure == Failure.IK


def test_path_leaving_workspace_is_rejected(core_factory):
    core = core_factory(workspace_min=[-0.9, -0.9, 0.3])
    low = HOME.copy()
    low[1] += 0.9        # shoulder forward: tool dips towards the table
    result = core.submit(joint_chunk([low]), home_state())
    assert isinstance(result, Rejection) and result.failure == Failure.LIMIT_VIOLATION
    assert "workspace" in result.reason


def run_monitor(core, plan, state, arm_reaches=True, fingers_to=None, horizon=20.0, dt=0.02):
    if not core.busy:
        core.start(plan, 0.0)
    t, events = 0.0, []
    while core.busy and t < horizon:
        t += dt
        if arm_reaches and t >= plan.arm.duration:
            state.update(zip(ARM.joint_names, plan.arm.final))
        for e in core.update(t, state, t):
            events.append(e)
            if isinstance(e, StartGripper) and fingers_to is not None:
                state.update({n: fingers_to / 2 for n in DESC.gripper.joint_names})
    return [e for e in events if isinstance(e, (StartGripper, Finished))]


def test_monitor_success_with_gripper(core_factory):
    core = core_factory()
    state = home_state()
    plan = core.submit(joint_chunk([HOME + 0.1], gripper_command=3, gripper_width=0.05), state)
    events = run_monitor(core, plan, state, fingers_to=0.05)
    assert isinstance(events[0], StartGripper) and np.allclose(events[0].trajectory.positions, 0.025)
    done = events[-1]
    assert isinstance(done, Finished) and done.succeeded and done.gripper_width == pytest.approx(0.05)
    assert core.counters.succeeded == 1 and not core.busy


def test_monitor_tracking_failure(core_factory):
    core = core_factory()
    state = home_state()
    plan = core.submit(joint_chunk([HOME + 0.2]), state)
    done = run_monitor(core, plan, state, arm_reaches=False)[-1]
    assert not done.succeeded and done.failure == Failure.TRACKING
    assert done.tracking_error == pytest.approx(0.2)


def test_monitor_timeout_without_state(core_factory):
    core = core_factory()
    state = home_state()
    plan = core.submit(joint_chunk([HOME + 0.05]), state)
    core.start(plan, 0.0)
    events = []
    t = 0.0
    while core.busy and t < 10:
        t += 0.05
        events += core.update(t, state, 0.0)    # state never refreshed
    assert events[-1].failure == Failure.TIMEOUT


def test_busy_and_duplicate(core_factory):
    core = core_factory()
    state = home_state()
    plan = core.submit(joint_chunk([HOME + 0.05], chunk_id="a"), state)
    core.start(plan, 0.0)
    assert isinstance(core.submit(joint_chunk([HOME + 0.05], chunk_id="a"), state), Duplicate)
    reused = core.submit(joint_chunk([HOME], chunk_id="a"), state)   # same id, other content
    assert isinstance(reused, Rejection) and reused.failure == Failure.INVALID_INPUT and "reused" in reused.reason
    busy = core.submit(joint_chunk([HOME], chunk_id="b"), state)
    assert isinstance(busy, Rejection) and busy.failure == Failure.BUSY
    run_monitor(core, plan, state)
    again = core.submit(joint_chunk([HOME + 0.05], chunk_id="a"), state)
    assert isinstance(again, Duplicate) and again.finished is not None and again.finished.succeeded
    reused = core.submit(joint_chunk([HOME], chunk_id="a"), state)
    assert isinstance(reused, Rejection) and "reused" in reused.reason


# ---------------------------------------------------------------- property: malformed chunks never plan
_bad_float = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def malformed_chunks(draw):
    """A valid chunk with exactly one kind of corruption."""
    space = draw(st.sampled_from([0, 1]))
    n = draw(st.integers(1, 4))
    times = [0.5 * (i + 1) for i in range(n)]
    kind = draw(st.sampled_from(["nonfinite", "times", "length", "names", "limit", "gripper", "quat", "workspace"]))
    if space == 0:
        pos = [[0.4, 0.05 * i, 0.3] for i in range(n)]
        quats = [list(DOWN) for _ in range(n)]
        i = draw(st.integers(0, n - 1))
        if kind == "nonfinite":
            (pos if draw(st.booleans()) else quats)[i][draw(st.integers(0, 2))] = draw(_bad_float)
        elif kind == "times":
            times[i] = draw(st.sampled_from([0.0, -1.0, math.nan, 100.0])) if n == 1 else times[i - 1 if i else 1]
        elif kind == "length":
            times = times + [times[-1] + 1.0] if draw(st.booleans()) else times[:-1]
        elif kind == "quat":
            quats[i] = draw(st.sampled_from([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.0, 0.0]]))
        elif kind == "workspace" or kind == "limit" or kind == "names":
            pos[i][draw(st.integers(0, 2))] = draw(st.sampled_from([-5.0, 5.0, 1e9]))
        else:
            return ChunkInput(chunk_id="p", space=0, ee_positions=pos, ee_orientations=quats, ee_times=times,
                              gripper_command=draw(st.sampled_from([3, 4, 255])),
                              gripper_width=draw(st.sampled_from([-0.1, 0.5, math.nan])))
        return ChunkInput(chunk_id="p", space=0, ee_positions=pos, ee_orientations=quats, ee_times=times)
    names = list(ARM.joint_names)
    pts = [list(HOME + 0.01 * k) for k in range(n)]
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(0, 6))
    if kind == "nonfinite":
        pts[i][j] = draw(_bad_float)
    elif kind == "times":
        times[i] = draw(st.sampled_from([0.0, -1.0, math.nan, 100.0])) if n == 1 else times[i - 1 if i else 1]
    elif kind == "length":
        pts[i] = pts[i][:j] if draw(st.booleans()) else pts[i] + [0.0]
    elif kind == "names":
        names[j] = draw(st.sampled_from(["bogus", "panda_finger_joint1", names[(j + 1) % 7], ""]))
    elif kind in ("limit", "workspace", "quat"):
        pts[i][j] = (HI[j] + draw(st.floats(0.001, 10.0))) if draw(st.booleans()) else (LO[j] - draw(st.floats(0.001, 10.0)))
    else:
        return ChunkInput(chunk_id="p", space=1, joint_names=names, joint_positions=pts, joint_times=times,
                          gripper_command=3, gripper_width=draw(st.sampled_from([-0.1, 0.5, math.nan, math.inf])))
    return ChunkInput(chunk_id="p", space=1, joint_names=names, joint_positions=pts, joint_times=times)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=malformed_chunks())
def test_malformed_chunks_never_plan(core_factory, chunk):
    core = core_factory()
    result = core.submit(chunk, home_state())
    assert isinstance(result, Rejection), (chunk, result)
    assert result.reason
    assert not core.busy


def test_monitor_gripper_blocked_by_object_succeeds_with_measured_width(core_factory):
    core = core_factory()
    state = home_state()
    plan = core.submit(joint_chunk([HOME + 0.05], gripper_command=2), state)
    done = run_monitor(core, plan, state, fingers_to=0.03)[-1]      # closes on a 3 cm object
    assert done.succeeded and done.gripper_width == pytest.approx(0.03)


def test_monitor_gripper_not_responding_times_out(core_factory):
    core = core_factory()
    state = home_state()
    plan = core.submit(joint_chunk([HOME + 0.05], gripper_command=3, gripper_width=0.02), state)
    done = run_monitor(core, plan, state, fingers_to=None)[-1]      # fingers never move
    assert not done.succeeded and done.failure == Failure.TIMEOUT
    assert done.gripper_width == pytest.approx(0.08)


# ---------------------------------------------------------------- config/router.yaml
def test_router_yaml_lists_every_parameter_with_its_default():
    from harness_nodes.bringup.stack import node_parameters
    from harness_nodes.common.paths import resolve_config_file
    values = node_parameters("router.yaml", "controller_router")
    fields = RouterParameters.model_fields
    assert set(values) == set(fields), (set(fields) - set(values), set(values) - set(fields))
    for name, info in fields.items():
        assert values[name] == info.default, (name, values[name], info.default)
    RouterParameters.model_validate(values)
    text = resolve_config_file("router.yaml").read_text()
    for line in text.splitlines():   # every parameter line carries a comment (unit or meaning)
        key = line.strip().split(":")[0]
        if key in fields and key not in ("robot",):
            assert "#" in line, f"router.yaml: '{key}' has no comment"


# ---------------------------------------------------------------- issue 8: outcomes, contact, strings, viewpoints
def run_tracking(core, plan, state, dt=0.02, horizon=20.0):
    """The monitor against an arm that follows the planned trajectory exactly."""
    core.start(plan, 0.0)
    t = 0.0
    while core.busy and t < horizon:
        t += dt
        state.update(zip(ARM.joint_names, plan.arm.sample(min(t, plan.arm.duration))))
        for e in core.update(t, state, t):
            if isinstance(e, Finished):
                return e
    return None


def test_clamped_step_finishes_failed_clamped_with_both_targets(core_factory):
    core = core_factory()
    state = home_state()
    asked = HOME + np.array([2.0, 0, 0, 0, 0, 0, 0])
    plan = core.submit(joint_chunk([asked], times=[3.0]), state)
    assert isinstance(plan, Plan)
    final = run_tracking(core, plan, state)
    assert not final.succeeded and final.failure == Failure.CLAMPED and "clamped" in final.message
    assert final.requested_target[0] == pytest.approx(asked[0])
    assert final.executed_target[0] == pytest.approx(HOME[0] + core.params.max_joint_step)


def test_margin_clamp_within_tracking_tolerance_still_succeeds(core_factory):
    core = core_factory()
    state = home_state()
    state[ARM.joint_names[0]] = ARM.position_upper[0] - 0.2
    target = np.array([state[n] for n in ARM.joint_names])
    target[0] = ARM.position_upper[0] - 0.005         # in the 0.02 rad margin band: clamped by 0.015
    plan = core.submit(joint_chunk([target]), state)
    final = run_tracking(core, plan, state)
    assert final.succeeded and final.failure == Failure.NONE and plan.clamps == 1


def test_contact_present_at_start_fails_only_chunks_pushing_into_it(core_factory):
    core = core_factory()
    state = home_state()
    limit = ARM.effort_limit[1]
    efforts = {n: 0.0 for n in ARM.joint_names}
    efforts[ARM.joint_names[1]] = 0.99 * limit          # pushing joint2 in +
    away = core.submit(joint_chunk([HOME - np.array([0, 0.2, 0, 0, 0, 0, 0])], chunk_id="away"), state)
    core.start(away, 0.0, efforts)
    events = [e for t in np.arange(0.02, 0.6, 0.02) for e in core.update(t, state, t, efforts)]
    assert core.busy and not [e for e in events if isinstance(e, Finished)]
    core.hold(1.0, "test", state)
    into = core.submit(joint_chunk([HOME + np.array([0, 0.2, 0, 0, 0, 0, 0])], chunk_id="into"), state)
    core.start(into, 0.0, efforts)
    events = [e for t in np.arange(0.02, 0.6, 0.02) for e in core.update(t, state, t, efforts)]
    finished = [e for e in events if isinstance(e, Finished)]
    assert finished and finished[0].failure == Failure.CONTACT
    assert core.stream_contact(efforts, HOME, HOME + np.array([0, 0.1, 0, 0, 0, 0, 0])) is not None
    assert core.stream_contact(efforts, HOME, HOME - np.array([0, 0.1, 0, 0, 0, 0, 0])) is None


def test_strings_are_capped_and_viewpoints_validated(core_factory):
    from harness_nodes.router.validation import MAX_ID_LENGTH, short, validate_viewpoint
    core = core_factory()
    long_id = validate_chunk(joint_chunk([HOME], chunk_id="x" * (MAX_ID_LENGTH + 1)), core.limits)
    assert isinstance(long_id, Rejection) and "chunk_id has" in long_id.reason
    long_source = validate_chunk(joint_chunk([HOME], source="s" * 10_000), core.limits)
    assert isinstance(long_source, Rejection) and "source has 10000" in long_source.reason
    assert len(short("y" * 5_000_000)) < 120
    ok = validate_viewpoint("v", "wrist", (0.4, 0.0, 0.5), (0, 0, 0, 1), "", core.limits, "wrist")
    assert not isinstance(ok, Rejection)
    for pos, quat, field in [((math.inf, 0, 0.5), (0, 0, 0, 1), "camera_pose.position"),
                             ((1e308, 0, 0.5), (0, 0, 0, 1), "camera_pose.position"),
                             ((0.4, 0, 0.5), (0, 0, 0, 0), "camera_pose.orientation is a zero quaternion"),
                             ((0.4, 0, 0.5), (0, 0, 0, 3), "camera_pose.orientation has norm 3"),
                             ((0.4, 0, 0.5), (math.nan, 0, 0, 1), "camera_pose.orientation")]:
        bad = validate_viewpoint("v", "wrist", pos, quat, "", core.limits, "wrist")
        assert isinstance(bad, Rejection) and field in bad.reason, (pos, quat, bad)


def test_stream_watchdog_runs_on_wall_time_too():
    from harness_nodes.router.guard import Guard
    guard = Guard(command_timeout=0.1)
    guard.on_stream(5.0, wall=100.0)
    assert guard.check(5.0, wall=100.05) == []
    reasons = guard.check(5.0, wall=100.15)           # node clock frozen, wall time moved on
    assert reasons and "stale" in reasons[0] and not guard.streaming
