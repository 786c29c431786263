"""Router v2 safety rules, each violated once (pure cores, no ROS): per-step change limit,
self/table collision, velocity scaling near collisions, singularity slowdown, contact, path tracking, grasp check, watchdog,
heartbeat and e-stop latching; plus the xArm6 description planning the same end-effector chunk."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.router.configuration import RouterParameters
from harness_nodes.router.core import RouterCore
from harness_nodes.router.execution import Finished
from harness_nodes.router.guard import Guard
from harness_nodes.common.kinematics import pose_to_se3
from harness_nodes.router.safety import limit_steps, proximity_scale
from harness_nodes.router.validation import ChunkInput, Failure, Rejection

DOWN = (1.0, 0.0, 0.0, 0.0)


@pytest.fixture(scope="module", params=["panda", "xarm6"])
def robot(request):
    desc = load_robot_description(request.param)
    return desc, RouterCore(desc, RouterParameters(robot=request.param))


def state_of(desc, q=None, width=None):
    g = desc.gripper
    s = dict(zip(desc.arm.joint_names, desc.arm.home if q is None else q))
    w = g.max_width if width is None else width
    s.update({n: g.position_for_width(w) for n in g.joint_names})
    return s


def fresh(core):
    core.execution = None
    core.finished.clear()
    return core


def joint_chunk(desc, points, times=None, chunk_id="j", **kw):
    times = times or [1.0 * (i + 1) for i in range(len(points))]
    return ChunkInput(chunk_id=chunk_id, space=1, joint_names=list(desc.arm.joint_names),
                      joint_positions=[list(p) for p in points], joint_times=times, **kw)


def test_same_end_effector_chunk_plans_on_both_arms(robot):
    desc, core = robot
    chunk = ChunkInput(chunk_id="ee-both", space=0, ee_positions=[[0.42, 0.06, 0.2], [0.42, 0.06, 0.05]],
                       ee_orientations=[DOWN, DOWN], ee_times=[1.0, 2.0], gripper_command=2)
    plan = fresh(core).submit(chunk, state_of(desc))
    assert not isinstance(plan, Rejection), plan
    tcp = core.kinematics.fk(plan.arm.final).translation
    assert np.allclose(tcp, [0.42, 0.06, 0.05], atol=2e-3)


def test_end_effector_deltas_move_the_tool_from_where_it_is(robot):
    desc, core = robot
    core = fresh(core)
    start = core.kinematics.fk(desc.arm.home)
    yaw = [0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8)]      # 45 deg about the base z axis
    chunk = ChunkInput(chunk_id="delta", space=2, ee_positions=[[0.0, 0.0, -0.03], [0.04, 0.0, -0.05]],
                       ee_orientations=[[0, 0, 0, 1], yaw], ee_times=[1.0, 2.0])
    plan = core.submit(chunk, state_of(desc))
    assert not isinstance(plan, Rejection), plan
    end = core.kinematics.fk(plan.arm.final)
    assert np.allclose(end.translation, start.translation + [0.04, 0.0, -0.05], atol=2e-3)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    assert np.allclose(end.rotation, rz @ start.rotation, atol=5e-3)
    assert any("deltas" in n for n in plan.notes)
    # A delta that leaves the workspace box, and a non-finite delta, are rejected.
    down = ChunkInput(chunk_id="through-table", space=2, ee_positions=[[0.0, 0.0, -1.0]],
                      ee_orientations=[[0, 0, 0, 1]], ee_times=[1.0])
    rejected = fresh(core).submit(down, state_of(desc))
    assert isinstance(rejected, Rejection) and rejected.failure == Failure.LIMIT_VIOLATION
    nan = ChunkInput(chunk_id="nan", space=2, ee_positions=[[math.nan, 0.0, 0.0]], ee_orientations=[[0, 0, 0, 1]],
                     ee_times=[1.0])
    rejected = fresh(core).submit(nan, state_of(desc))
    assert isinstance(rejected, Rejection) and rejected.failure == Failure.INVALID_INPUT


def test_streamed_end_effector_deltas_accumulate_from_the_last_target():
    desc = load_robot_description("panda")
    core = RouterCore(desc, RouterParameters(collision_check=False))
    start = core.kinematics.fk(desc.arm.home).translation
    step = ChunkInput(chunk_id="s", space=2, ee_positions=[[0.0, 0.01, 0.0]], ee_orientations=[[0, 0, 0, 1]],
                      ee_times=[0.004])
    target = None
    for _ in range(3):
        target, _, _ = core.plan_stream(step, state_of(desc), target)
    assert np.allclose(core.kinematics.fk(target).translation, start + [0.0, 0.03, 0.0], atol=1e-3)


def test_per_step_change_is_clamped_and_counted():
    out, clamps = limit_steps(np.zeros(3), np.array([[0.5, -0.05, 0.0], [0.5, 0.5, 0.0]]), 0.1)
    assert clamps == 3
    assert np.allclose(out, [[0.1, -0.05, 0.0], [0.2, 0.05, 0.0]])


def test_chunk_step_beyond_max_joint_step_is_clamped(robot):
    desc, _ = robot
    core = RouterCore(desc, RouterParameters(robot=desc.name, max_joint_step=0.1, collision_check=False))
    target = np.array(desc.arm.home)
    target[0] += 0.3
    plan = core.submit(joint_chunk(desc, [target]), state_of(desc))
    assert not isinstance(plan, Rejection), plan
    assert plan.arm.final[0] == pytest.approx(desc.arm.home[0] + 0.1)
    assert core.counters.step_clamps == 1 and plan.clamps >= 1
    assert any("max_joint_step" in n for n in plan.notes)


def test_path_into_the_table_is_rejected(robot):
    desc, core = robot
    q = np.array(desc.arm.home)
    q[1] = 1.6 if desc.name == "panda" else 1.9     # shoulder forward: the arm dives into the table
    core = RouterCore(desc, RouterParameters(robot=desc.name, workspace_min=[-2, -2, -2], workspace_max=[2, 2, 2],
                                             max_joint_step=3.0))
    result = core.submit(joint_chunk(desc, [q], times=[5.0]), state_of(desc))
    assert isinstance(result, Rejection) and result.failure == Failure.COLLISION, result
    assert "collision" in result.reason and core.counters.collisions == 1


def test_self_collision_is_rejected():
    desc = load_robot_description("panda")
    core = RouterCore(desc, RouterParameters(workspace_min=[-2, -2, -2], workspace_max=[2, 2, 2], table_height=-2.0,
                                             max_joint_step=6.0))
    q = np.array([0.0, 0.96, 0.0, -1.356, 0.0, 0.007, 0.785])   # wrist folded: hand into link5
    hit = core.collisions.check(q, core.open_fingers)
    assert hit is not None, "expected a self-collision in the folded pose"
    result = core.submit(joint_chunk(desc, [q], times=[10.0]), state_of(desc))
    assert isinstance(result, Rejection) and result.failure == Failure.COLLISION


def test_motion_near_a_singularity_is_slowed():
    desc = load_robot_description("panda")
    base = RouterParameters(collision_check=False, workspace_min=[-2, -2, -2], workspace_max=[2, 2, 2])
    slow = RouterParameters(collision_check=False, workspace_min=[-2, -2, -2], workspace_max=[2, 2, 2],
                            singularity_threshold=0.5)
    q = np.array(desc.arm.home)
    q[3] = -0.1                                      # elbow almost straight: low manipulability
    fast_plan = RouterCore(desc, base).submit(joint_chunk(desc, [q]), state_of(desc))
    core = RouterCore(desc, slow)
    slow_plan = core.submit(joint_chunk(desc, [q]), state_of(desc))
    assert slow_plan.arm.duration > fast_plan.arm.duration * 1.5
    assert core.counters.singularity_slowdowns >= 1 and any("singularity" in n for n in slow_plan.notes)


def test_singularity_threshold_is_each_arms_own_unless_overridden():
    open_box = dict(collision_check=False, workspace_min=[-2, -2, -2], workspace_max=[2, 2, 2], max_joint_step=6.0)
    panda, xarm = load_robot_description("panda"), load_robot_description("xarm6")
    assert RouterCore(panda, RouterParameters(**open_box)).singularity_threshold == panda.singularity_threshold
    assert RouterCore(xarm, RouterParameters(**open_box)).singularity_threshold == xarm.singularity_threshold
    assert RouterCore(xarm, RouterParameters(singularity_threshold=0.0, **open_box)).singularity_threshold == 0.0
    # The xArm6's manipulability is about a third of the Panda's (0.028 vs 0.080 at home): with the
    # Panda's threshold an almost straight xArm elbow would already be slowed, with its own only
    # motion into a real singularity (wrist: joints 4 and 6 aligned) is.
    elbow = np.array(xarm.arm.home)
    elbow[2] = 0.0
    assert xarm.singularity_threshold < core_w(xarm, elbow) < panda.singularity_threshold
    own = RouterCore(xarm, RouterParameters(**open_box))
    plan = own.submit(joint_chunk(xarm, [elbow]), state_of(xarm))
    assert not any("singularity" in n for n in plan.notes)
    pandas = RouterCore(xarm, RouterParameters(singularity_threshold=panda.singularity_threshold, **open_box))
    plan = pandas.submit(joint_chunk(xarm, [elbow]), state_of(xarm))
    assert any("singularity" in n for n in plan.notes)
    wrist = np.array(xarm.arm.home)
    wrist[4] = -0.31
    plan = own.submit(joint_chunk(xarm, [wrist], chunk_id="wrist"), state_of(xarm, elbow))
    assert own.counters.singularity_slowdowns >= 1 and any("singularity" in n for n in plan.notes)


def core_w(desc, q) -> float:
    return RouterCore(desc, RouterParameters(collision_check=False)).kinematics.manipulability(q)


def ik_state(desc, core, xyz):
    """Arm state with the tool (pointing down) at `xyz`, gripper open."""
    r = core.kinematics.ik(pose_to_se3(xyz, DOWN), desc.arm.home, others=core.open_fingers, margin=0.02)
    assert r.success, xyz
    return state_of(desc, r.q)


def ee_line(start, end, chunk_id="line", seconds=1.0):
    return ChunkInput(chunk_id=chunk_id, space=0, ee_positions=[start, end], ee_orientations=[DOWN, DOWN],
                      ee_times=[0.5 * seconds, seconds])


def slowdown_pair(desc, **kw):
    """A core with the default collision slowdown and one with it off (the reference timing)."""
    on = RouterCore(desc, RouterParameters(robot=desc.name, **kw))
    off = RouterCore(desc, RouterParameters(robot=desc.name, collision_slowdown_distance=0.0, **kw))
    return on, off


def test_proximity_scale_slows_only_when_closing_in():
    assert proximity_scale(0.05, 0.06, 0.03, 0.2) == 1.0           # farther than the threshold
    assert proximity_scale(0.015, 0.02, 0.03, 0.2) == pytest.approx(0.5)
    assert proximity_scale(0.001, 0.002, 0.03, 0.2) == 0.2           # floor: collision_min_scale
    assert proximity_scale(0.015, 0.015, 0.03, 0.2) == pytest.approx(0.5)   # grazing: still slowed
    assert proximity_scale(0.015, 0.010, 0.03, 0.2) == 1.0           # backing off: full speed
    assert proximity_scale(0.001, 0.002, 0.0, 0.2) == 1.0            # 0 = off


def test_path_grazing_the_table_is_slowed(robot):
    desc, _ = robot
    on, off = slowdown_pair(desc)
    start = ik_state(desc, on, [0.40, 0.0, 0.015])   # fingertips ~1 cm above the table
    chunk = ee_line([0.45, 0.0, 0.015], [0.50, 0.0, 0.015], seconds=0.6)
    ref = off.submit(chunk, start)
    plan = on.submit(chunk, start)
    assert not isinstance(ref, Rejection) and not isinstance(plan, Rejection), (ref, plan)
    assert np.allclose(plan.arm.positions, ref.arm.positions)          # same path, slower timing
    assert plan.arm.duration > 2.0 * ref.arm.duration, (plan.arm.duration, ref.arm.duration)
    assert on.counters.collision_slowdowns == 2 and off.counters.collision_slowdowns == 0
    assert any("slowed near a collision" in n and "table" in n for n in plan.notes), plan.notes
    # Velocities stay consistent with the stretched timing (zero at both ends).
    assert np.allclose(plan.arm.velocities[[0, -1]], 0.0)


def test_path_far_from_obstacles_is_unchanged(robot):
    desc, _ = robot
    on, off = slowdown_pair(desc)
    start = ik_state(desc, on, [0.40, 0.0, 0.30])
    chunk = ee_line([0.45, 0.0, 0.30], [0.50, 0.05, 0.30], seconds=0.6)
    ref, plan = off.submit(chunk, start), on.submit(chunk, start)
    assert not isinstance(plan, Rejection), plan
    assert np.allclose(plan.arm.times, ref.arm.times)
    assert on.counters.collision_slowdowns == 0
    assert not any("collision" in n for n in plan.notes)


def test_lifting_away_from_the_table_is_not_slowed(robot):
    desc, _ = robot
    on, off = slowdown_pair(desc)
    start = ik_state(desc, on, [0.45, 0.0, 0.015])
    chunk = ee_line([0.45, 0.0, 0.05], [0.45, 0.0, 0.2], seconds=0.6)
    ref, plan = off.submit(chunk, start), on.submit(chunk, start)
    assert not isinstance(plan, Rejection), plan
    assert np.allclose(plan.arm.times, ref.arm.times) and on.counters.collision_slowdowns == 0


def test_stream_step_toward_the_table_is_scaled():
    desc = load_robot_description("panda")
    on, off = slowdown_pair(desc)
    start = ik_state(desc, on, [0.45, 0.0, 0.02])
    target = ik_state(desc, on, [0.45, 0.0, 0.012])
    q0 = np.array([start[n] for n in desc.arm.joint_names])
    q1 = np.array([target[n] for n in desc.arm.joint_names])
    cmd = joint_chunk(desc, [q1], times=[0.004])
    full, _, _ = off.plan_stream(cmd, start, None)
    scaled, _, _ = on.plan_stream(cmd, start, None)
    assert np.allclose(full, q1)
    step, full_step = np.abs(scaled - q0).max(), np.abs(q1 - q0).max()
    assert 0.15 * full_step < step < 0.6 * full_step, (step, full_step)
    assert on.counters.collision_slowdowns == 1
    # Backing off from the table is not scaled.
    back, _, _ = on.plan_stream(joint_chunk(desc, [q0], times=[0.004]), target, None)
    assert np.allclose(back, q0) and on.counters.collision_slowdowns == 1


def run(core, plan, states, efforts=None, until=20.0, dt=0.02):
    core.start(plan, 0.0)
    t, events = 0.0, []
    while core.busy and t < until:
        t += dt
        s = states(t)
        events += core.update(t, s, t, efforts(t) if efforts else None)
    return [e for e in events if isinstance(e, Finished)][-1]


def test_unexpected_contact_stops_the_arm():
    desc = load_robot_description("panda")
    core = RouterCore(desc, RouterParameters(collision_check=False))
    q = np.array(desc.arm.home) + 0.2
    plan = core.submit(joint_chunk(desc, [q], times=[2.0]), state_of(desc))
    efforts = lambda t: {desc.arm.joint_names[1]: 86.0 if t > 0.5 else 10.0}
    done = run(core, plan, lambda t: state_of(desc, plan.arm.sample(t)), efforts)
    assert done.failure == Failure.CONTACT and done.stop_arm and not done.succeeded
    assert "contact" in done.message and core.counters.contacts == 1


def test_tracking_error_while_moving_stops_the_arm():
    desc = load_robot_description("panda")
    core = RouterCore(desc, RouterParameters(collision_check=False, path_tolerance=0.1))
    q = np.array(desc.arm.home) + 0.5
    plan = core.submit(joint_chunk(desc, [q], times=[2.0]), state_of(desc))
    done = run(core, plan, lambda t: state_of(desc))          # the arm never moves
    assert done.failure == Failure.TRACKING and done.stop_arm and done.progress < 1.0
    assert "while moving" in done.message


def test_grasp_check_closing_on_nothing_fails(robot):
    desc, _ = robot
    core = RouterCore(desc, RouterParameters(robot=desc.name, collision_check=False))
    plan = core.submit(joint_chunk(desc, [desc.arm.home], gripper_command=2, attempt=7), state_of(desc))
    done = run(core, plan, lambda t: state_of(desc, width=0.0 if t > 1.5 else None))
    assert done.failure == Failure.GRASP and not done.succeeded and done.attempt == 7


def test_grasp_check_closing_on_an_object_succeeds():
    desc = load_robot_description("panda")
    core = RouterCore(desc, RouterParameters(collision_check=False))
    plan = core.submit(joint_chunk(desc, [desc.arm.home], gripper_command=2), state_of(desc))
    done = run(core, plan, lambda t: state_of(desc, width=0.05 if t > 1.6 else 0.08 - 0.02 * max(t - 1.2, 0) / 0.4))
    assert done.succeeded and done.gripper_width == pytest.approx(0.05)


def test_grip_on_a_creeping_object_is_detected_by_finger_effort():
    """xArm6 in PyBullet: the fingers reach the cube, then keep creeping and chattering by ~1 mm as
    the squeezed cube settles, so the width never stalls; the finger effort at the gripper's limit
    says the object is held."""
    desc = load_robot_description("xarm6")
    g = desc.gripper

    def closing(t):                 # contact at t = 1.6 s, 5 cm; then creeping 1 cm/s with chatter
        w = 0.085 - 0.035 * min(max(t - 1.2, 0.0) / 0.4, 1.0) - 0.01 * max(t - 1.6, 0.0) + 0.0012 * math.sin(40 * t)
        return state_of(desc, width=max(w, 0.0))

    def efforts(t):
        return {n: (g.effort if t > 1.6 else 0.3) for n in g.joint_names}

    core = RouterCore(desc, RouterParameters(robot="xarm6", collision_check=False))
    plan = core.submit(joint_chunk(desc, [desc.arm.home], gripper_command=2), state_of(desc))
    done = run(core, plan, closing, efforts)
    assert done.succeeded and "holding" in done.message and 0.045 < done.gripper_width < 0.052
    # Without effort readings only the width can tell, and it never settles: the close times out.
    core = RouterCore(desc, RouterParameters(robot="xarm6", collision_check=False))
    plan = core.submit(joint_chunk(desc, [desc.arm.home], gripper_command=2), state_of(desc))
    done = run(core, plan, closing)
    assert not done.succeeded and done.failure == Failure.TIMEOUT


def test_hold_finishes_the_executing_chunk():
    desc = load_robot_description("panda")
    core = RouterCore(desc, RouterParameters(collision_check=False))
    plan = core.submit(joint_chunk(desc, [np.array(desc.arm.home) + 0.1]), state_of(desc))
    core.start(plan, 0.0)
    done = core.hold(0.3, "e-stop")
    assert done.held and done.failure == Failure.HELD and not core.busy


def test_guard_stale_stream_heartbeat_and_estop():
    g = Guard(command_timeout=0.1, heartbeat_timeout=0.5)
    assert g.check(0.0) == []
    g.on_stream(1.0)
    assert g.check(1.05) == []
    reasons = g.check(1.2)
    assert len(reasons) == 1 and "stale" in reasons[0]
    assert g.check(1.3) == []                      # reported once; the stream has ended
    g.on_heartbeat(2.0)
    assert g.check(2.4) == [] and g.refusal() is None
    assert "heartbeat" in g.check(2.6)[0] and "heartbeat" in g.refusal()
    assert g.on_heartbeat(2.7) and g.refusal() is None
    assert g.on_estop(True) and not g.on_estop(True)
    assert "e-stop" in g.refusal()
    ok, msg = g.reset_estop()
    assert not ok and "still pressed" in msg
    g.on_estop(False)
    assert "e-stop" in g.refusal()                 # releasing the button does not release the hold
    assert g.reset_estop()[0] and g.refusal() is None
