"""Episodes: the pure spec (ablations cumulative, scenarios, the moved scenario's seeded pose,
validation) and one real episode over DDS through `run_episode` (the whole harness stack as
processes on the test's domain), judged from ground truth."""
from __future__ import annotations

import math

import pytest

from harness_nodes.episodes import ABLATIONS, SCENARIOS, EpisodeSpec, moved_pose, supervisor_switches
from harness_nodes.episodes.runner import stack_overrides
from harness_nodes.episodes.spec import MOVE_MIN_SHIFT, MOVE_REGION_X, MOVE_REGION_Y, SWITCHES


def test_ablations_are_cumulative_and_full_switches_everything_on():
    on = [sum(supervisor_switches(a).values()) for a in ABLATIONS]
    assert on == sorted(on) and len(set(on)) == len(on)          # each adds at least one switch
    assert supervisor_switches("policy_only") == {s: s == "use_policy" for s in SWITCHES}
    assert all(supervisor_switches("full").values())
    for lower, higher in zip(ABLATIONS, ABLATIONS[1:]):
        lo, hi = supervisor_switches(lower), supervisor_switches(higher)
        assert all(hi[k] for k, v in lo.items() if v)              # nothing switched off again
    assert supervisor_switches("world_model")["use_world_model"]
    assert not supervisor_switches("world_model")["use_memory_validity"]
    with pytest.raises(ValueError, match="unknown ablation"):
        supervisor_switches("everything")


def test_scenarios_name_sim_scenarios_and_moved_perturbs_the_target():
    from harness_nodes.sim.world import SCENARIOS as SIM_SCENARIOS

    assert all(s.sim_scenario in SIM_SCENARIOS for s in SCENARIOS.values())
    assert SCENARIOS["moved"].perturbation == "move_target_unobserved"
    assert EpisodeSpec().scenario == "moved" and EpisodeSpec().ablation == "full"
    args = stack_overrides(EpisodeSpec(scenario="moved", ablation="policy_only", seed=1234))
    assert "sim.scenario:=nominal" in args and "sim.seed:=1234" in args
    assert "supervisor.use_world_model:=false" in args and "supervisor.use_policy:=true" in args
    assert "supervisor.policy_steps:=0" in args
    assert "supervisor.policy_steps:=3" in stack_overrides(EpisodeSpec(policy_steps=3))
    with pytest.raises(ValueError, match="policy_steps"):
        EpisodeSpec(policy_steps=-1).validate()


@pytest.mark.parametrize("seed", [0, 1, 7, 1000, 2**31 - 1])
def test_moved_pose_is_seeded_in_reach_and_away_from_where_the_cube_was(seed):
    start = (0.42, 0.06)
    pose = moved_pose(seed, start)
    assert pose == moved_pose(seed, start)
    x, y, z, yaw = pose
    assert MOVE_REGION_X[0] <= x <= MOVE_REGION_X[1] and MOVE_REGION_Y[0] <= y <= MOVE_REGION_Y[1]
    assert math.dist((x, y), start) >= MOVE_MIN_SHIFT and 0.02 < z < 0.03 and abs(yaw) <= 0.3
    assert moved_pose(seed + 1, start) != pose


@pytest.mark.parametrize("fields, reason", [
    ({"scenario": "flying"}, "unknown scenario"), ({"ablation": "half"}, "unknown ablation"),
    ({"seed": -1}, "seed"), ({"domain_id": 500}, "domain_id"), ({"timeout": math.nan}, "timeout"),
    ({"timeout": math.inf}, "timeout"), ({"timeout": -1.0}, "timeout"), ({"object_id": "x" * 100_000}, "object_id"),
    ({"object_id": "red cube; rm"}, "object_id"),
])
def test_bad_specs_are_refused_with_the_reason(fields, reason):
    with pytest.raises(ValueError, match=reason):
        EpisodeSpec(**fields).validate()


def test_a_bad_spec_is_an_error_result_not_an_exception():
    from harness_nodes.episodes import run_episode

    result = run_episode(EpisodeSpec(scenario="flying"))
    assert not result.success and result.outcome == "error" and "unknown scenario" in result.error


@pytest.mark.integration
@pytest.mark.timeout(330)
def test_one_moved_episode_over_dds_is_caught_recovered_and_judged_from_ground_truth(domain_id):
    """The full harness on the moved scenario: the cube is moved once the approach runs; the
    supervisor catches it (contradiction, pre-grasp check, surprise or missed grasp), recovers and
    puts it in the tray; the metrics come back with the result."""
    from harness_nodes.episodes import run_episode

    lines: list[str] = []
    result = run_episode(EpisodeSpec(scenario="moved", ablation="full", seed=3, domain_id=domain_id, timeout=280.0),
                         on_line=lines.append)
    text = "\n".join(result.log)
    assert result.perturbation.get("ok"), (result.perturbation, result.error, text[-3000:])
    assert result.success and result.outcome == "succeeded", (result.outcome, result.error, text[-4000:])
    assert result.attempts >= 2 and result.retries >= 1 and result.escalations == 0, text[-4000:]
    assert "object_moved" in text or "grasp_missed" in text
    assert result.re_observations >= 1 and result.decision_latency_ms and result.planner_chunks >= 7
    assert result.sim_time_s > 1.0 and 0 < result.wall_time_s < 330
    assert any("[episode] moved 'red_cube'" in line for line in lines)     # printed as it happened
