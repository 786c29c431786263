"""The suite command's own logic (harness_nodes/benchmark/suite.py) with a stand-in episode job:
names validated, specs built, jobs through the scale-out module (failures become failed episodes),
report written, JSON last. The end-to-end run with the real episode runner is a separate test."""
from __future__ import annotations

import json
import os

import pytest

from harness_nodes.benchmark import suite
from harness_nodes.episodes.spec import HELDOUT_SEEDS
from harness_nodes.sim.world import SCENARIOS as SIM_SCENARIOS
from harness_nodes.episodes.spec import EpisodeResult, EpisodeSpec
from scale_jobs import fake_episode

TYPES = (EpisodeSpec, EpisodeResult)


def domains() -> str:
    lo, hi = (int(x) for x in os.environ.get("HARNESS_TEST_DOMAINS", "1-200").split("-"))
    return f"{lo}-{min(hi, lo + 5)}"


def test_suite_runs_every_cell_and_prints_the_table_then_one_json_line(tmp_path, capsys):
    out = tmp_path / "results"
    code = suite.main(["--scenarios", "nominal,obstacle", "--ablations", "policy_only,full", "--seeds", "2",
                       "--trials", "2", "--workers", "2", "--domains", domains(), "--out", str(out), "--quiet"],
                      job=fake_episode, types=TYPES)
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert lines[0].startswith("| scenario | ablation |")
    cells = {(c["scenario"], c["ablation"]): c for c in result["cells"]}
    assert set(cells) == {(s, a) for s in ("nominal", "obstacle") for a in ("policy_only", "full")}
    assert cells[("nominal", "full")]["success_rate"] == 1.0
    assert cells[("nominal", "policy_only")]["success_rate"] == 0.5        # seeds 1000 (even) and 1001
    broken = cells[("obstacle", "policy_only")]                             # seed 1001 raised twice
    assert broken["errors"] == 2 and broken["successes"] == 2 and broken["episodes"] == 4
    assert result["jobs"] == {"jobs": 16, "ok": 14, "error": 2, "timeout": 0, "crashed": 0,
                              "job_seconds": pytest.approx(result["jobs"]["job_seconds"])}
    assert result["suite"]["seeds"] == [1000, 1001] and result["suite"]["heldout"] is True
    assert result["goals"]["full_minus_policy_only"] == {"obstacle": 0.5}
    for name in ("table.md", "success_rate.png", "decision_latency.png", "results.json"):
        assert (out / name).is_file(), name


def test_specs_cover_the_grid_with_one_recording_per_scenario(tmp_path):
    specs = suite.build_specs(EpisodeSpec, ("nominal", "moved"), ("policy_only", "full"), (1000, 1001), 3,
                              out=tmp_path, timeout=50.0)
    assert len(specs) == 2 * 2 * 2 * 3 and all(s.timeout == 50.0 for s in specs)
    recorded = [s for s in specs if s.record_dir]
    assert [(s.scenario, s.ablation, s.seed) for s in recorded] == [("nominal", "full", 1000), ("moved", "full", 1000)]
    assert recorded[0].record_dir == str(tmp_path / "recordings" / "nominal_panda")


def test_unknown_names_list_the_known_ones(tmp_path, capsys):
    assert suite.main(["--scenarios", "nominal,teleport", "--out", str(tmp_path)], job=fake_episode,
                      types=TYPES) == 2
    err = capsys.readouterr().err
    assert "unknown scenario(s) ['teleport']" in err and str(list(suite.SCENARIOS)) in err
    assert suite.main(["--ablations", "everything", "--out", str(tmp_path)], job=fake_episode, types=TYPES) == 2
    assert str(list(suite.ABLATIONS)) in capsys.readouterr().err
    assert suite.main(["--seeds", "x", "--out", str(tmp_path)], job=fake_episode, types=TYPES) == 2


def test_an_unwritable_output_folder_is_refused_before_any_episode(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert suite.main(["--smoke", "--out", str(blocker / "results")], job=fake_episode, types=TYPES) == 2
    assert "not writable" in capsys.readouterr().err


def test_seeds_default_to_heldout_and_tuning_ones_are_accepted_when_named():
    assert suite.parse_seeds("3") == tuple(HELDOUT_SEEDS[:3])
    assert suite.parse_seeds("5-7") == (5, 6, 7) and suite.parse_seeds("4,1002") == (4, 1002)


def test_suite_scenarios_are_the_sims_plus_moved():
    assert set(suite.SCENARIOS) == set(SIM_SCENARIOS) | {"moved"}


def test_suite_names_match_the_episode_runner_and_the_sim():
    from harness_nodes.episodes import spec
    from harness_nodes.sim.world import SCENARIOS as SIM_SCENARIOS

    assert suite.ABLATIONS == spec.ABLATIONS and set(suite.SCENARIOS) == set(spec.SCENARIOS)
    assert {s.sim_scenario for s in spec.SCENARIOS.values()} == set(SIM_SCENARIOS)


def test_a_full_disk_is_refused_before_any_episode(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    assert suite.main(["--smoke", "--out", str(tmp_path / "results")], job=fake_episode, types=TYPES) == 2
    assert "has 1 MB free" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_suite_runs_real_episodes_and_keeps_a_recording_rosbags_opens(tmp_path, capsys):
    """The smoke suite end to end: real harness episodes (each stack on its own ROS domain), the
    table, plots and JSON line, and the full harness's recording readable by rosbags."""
    from rosbags.highlevel import AnyReader

    out = tmp_path / "results"
    code = suite.main(["--smoke", "--domains", domains(), "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cells = {(c["scenario"], c["ablation"]): c for c in result["cells"]}
    assert set(cells) == {("nominal", "policy_only"), ("nominal", "full")}
    assert all(c["episodes"] == 1 and c["errors"] == 0 for c in cells.values()), cells
    assert (out / "table.md").is_file() and list(out.glob("*.png"))
    bags = [p.parent for p in (out / "recordings").rglob("metadata.yaml")]
    assert bags, list((out / "recordings").rglob("*"))
    with AnyReader(bags[:1]) as reader:
        topics = {c.topic for c in reader.connections}
        assert any(t.endswith("joint_states") for t in topics) and any("harness/command" in t for t in topics)
        assert sum(1 for _ in reader.messages()) > 0
