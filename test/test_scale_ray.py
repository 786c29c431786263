"""The scale-out module's Ray backend on a local Ray instance (started by the test, as `--ray`
without an address does): real simulated data-generation episodes (no ROS), the same episodes as
in-process runs, domains never shared by concurrent tasks, failures and timeouts as results."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from harness_nodes.dataset import generate as gen  # noqa: E402
from harness_nodes.dataset.lerobot import LeRobotDataset  # noqa: E402
from harness_nodes.scale import run_jobs  # noqa: E402
from harness_nodes.scale.ray_backend import ray_session  # noqa: E402
from scale_jobs import SleepSpec, fail_some, hang_with_grandchild, report_domain  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def local_ray():
    # Ray's workers are started with the driver's environment: they find harness_nodes (PYTHONPATH
    # of scripts/env.sh) and, for these tests, the test jobs' module.
    test_dir = str(Path(__file__).resolve().parent)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = test_dir + (os.pathsep + old if old else "")
    try:
        with ray_session(None, 2):
            yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    assert not ray.is_initialized()


def short_spec(seed, robot, split, perturb=True):
    return gen.EpisodeSpec(seed=seed, robot=robot, max_steps=6, camera_jitter=True, distractor_motion=True)


def test_generated_episodes_on_ray_equal_the_in_process_ones(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "spec_for", short_spec)
    summary = gen.generate(tmp_path, "panda", "train", episodes=3, workers=2, progress=False, backend="ray")
    assert ray.is_initialized()        # the session's instance, left running by the calls inside it
    ds = LeRobotDataset(tmp_path / "panda_train")
    assert summary["episodes"] == 3 and len(ds) == summary["frames"]
    assert [e["seed"] for e in ds.episodes] == [10_000, 10_001, 10_002]
    # the job code is unchanged on Ray: the same seed gives the same episode as in this process
    reference = gen.run_expert_episode(short_spec(10_001, "panda", "train"))
    second = ds.episode_slices()[1]
    np.testing.assert_allclose(ds.columns["action"][second], np.stack(reference.actions), atol=1e-6)
    np.testing.assert_allclose(ds.columns["observation.state"][second], np.stack(reference.states), atol=1e-6)


def test_concurrent_ray_tasks_never_share_a_domain(local_ray):
    specs = [SleepSpec(i, seconds=0.5) for i in range(6)]
    results = run_jobs(report_domain, specs, backend="ray", workers=2, domains=[180, 181], timeout=60,
                       progress=False)
    assert [r.spec for r in results] == specs and all(r.ok for r in results), [r.error for r in results]
    values = [r.value for r in results]
    for a in values:
        assert a["env_domain"] == a["spec_domain"] in (180, 181)
        for b in values:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["env_domain"] != b["env_domain"], (a, b)


def test_failures_and_timeouts_on_ray_are_results(local_ray, tmp_path):
    results = run_jobs(fail_some, [SleepSpec(i) for i in range(4)], backend="ray", workers=2, domains=[182, 183],
                       timeout=60, progress=False)
    assert [r.status for r in results] == ["ok", "error", "crashed", "ok"]
    assert "ValueError: job 1 refuses" in results[1].error
    [hung] = run_jobs(hang_with_grandchild, [SleepSpec(0, pid_file=str(tmp_path / "pid"))], backend="ray",
                      workers=1, domains=[184], timeout=3.0, progress=False)
    assert hung.status == "timeout"
