"""LeRobot v3 writer/loader round trip and the simulated episode recorder (no ROS)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness_nodes.dataset.generate import generate, spec_for
from harness_nodes.dataset.lerobot import (DATA_PATH, EPISODES_PATH, TASKS_PATH, DatasetError, Episode,
                                           LeRobotDataset, LeRobotWriter, image_key, read_video)
from harness_nodes.dataset.sim_episodes import ACTION_NAMES, CAMERA_KEYS, IMAGE_SIZE, PHASES, STATE_NAMES
from lerobot_layout import assert_lerobot_layout


def synthetic_episode(rng, length: int, task: str) -> Episode:
    # Smooth frames: a bright square moving across a coloured background, so lossy coding stays close.
    frames = np.zeros((length, 32, 32, 3), dtype=np.uint8)
    frames[:] = rng.integers(40, 200, size=3, dtype=np.uint8)
    for t in range(length):
        frames[t, 8:16, 2 + t:10 + t] = 250
    return Episode(task=task,
                   columns={"observation.state": rng.normal(size=(length, 5)).astype(np.float32),
                            "action": rng.normal(size=(length, 5)).astype(np.float32),
                            "phase_index": np.arange(length, dtype=np.int64) % 3},
                   videos={"scene": frames, "wrist": frames[:, ::-1].copy()},
                   extra={"success": bool(length % 2)})


def test_round_trip_layout_timestamps_features(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [synthetic_episode(rng, n, task) for n, task in ((7, "put red_cube in tray"),
                                                                 (5, "put blue_cube in tray"),
                                                                 (9, "put red_cube in tray"))]
    LeRobotWriter(tmp_path, fps=5.0, robot_type="panda", names={"action": list(ACTION_NAMES)}).write(episodes)

    for rel in (DATA_PATH.format(chunk_index=0, file_index=0), EPISODES_PATH, TASKS_PATH, "meta/info.json",
                f"videos/{image_key('scene')}/chunk-000/file-000.mp4",
                f"videos/{image_key('wrist')}/chunk-000/file-000.mp4"):
        assert (tmp_path / rel).is_file(), rel
    info = json.loads((tmp_path / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 5.0
    assert info["total_episodes"] == 3 and info["total_frames"] == 21 and info["total_tasks"] == 2
    assert info["features"]["action"]["names"] == list(ACTION_NAMES)

    # every feature of info.json is a data column or a video, with the declared shape; timestamps
    # strictly increasing by 1/fps within each episode; global index contiguous; videos at fps
    ds, _ = assert_lerobot_layout(tmp_path, fps=5.0)
    for sl, ep in zip(ds.episode_slices(), episodes):
        assert len(ds.columns["timestamp"][sl]) == len(ep.columns["action"])
    np.testing.assert_array_equal(ds.columns["index"], np.arange(21))
    np.testing.assert_allclose(ds.columns["action"], np.concatenate([e.columns["action"] for e in episodes]))
    assert [ds.tasks[i] for i in ds.columns["task_index"][[0, 7, 12]]] == \
        ["put red_cube in tray", "put blue_cube in tray", "put red_cube in tray"]
    # video: one frame per row, at fps, close to what was written (lossy coding)
    frames, times = read_video(tmp_path / f"videos/{image_key('scene')}/chunk-000/file-000.mp4")
    assert len(frames) == 21 and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(np.diff(times), 0.2, atol=1e-6)
    decoded = ds.video(image_key("scene"))
    written = np.concatenate([e.videos["scene"] for e in episodes])
    assert np.abs(decoded.astype(int) - written).mean() < 4.0
    assert [e["success"] for e in ds.episodes] == [True, True, True]


def test_loader_names_the_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="info.json"):
        LeRobotDataset(tmp_path)


def test_writer_rejects_ragged_episode(tmp_path):
    rng = np.random.default_rng(1)
    ep = synthetic_episode(rng, 4, "put red_cube in tray")
    ep.columns["action"] = ep.columns["action"][:3]
    with pytest.raises(DatasetError, match="different lengths"):
        LeRobotWriter(tmp_path, 5.0, "panda").write([ep])


def test_generated_sim_dataset_matches_its_info(tmp_path, monkeypatch):
    import harness_nodes.dataset.generate as gen

    # two short episodes: the layout, not the task, is under test here
    monkeypatch.setattr(gen, "spec_for", lambda seed, robot, split, perturb=True:
                        spec_for(seed, robot, split, perturb).__class__(seed=seed, robot=robot, max_steps=3,
                                                                         camera_jitter=True, distractor_motion=True))
    summary = generate(tmp_path, "panda", "train", episodes=2, workers=1, progress=False)
    ds, _ = assert_lerobot_layout(tmp_path / "panda_train", fps=5.0)
    assert summary["episodes"] == 2 and len(ds) == summary["frames"]
    assert ds.columns["observation.state"].shape[1] == len(STATE_NAMES)
    assert ds.columns["action"].shape[1] == len(ACTION_NAMES)
    assert set(ds.columns["phase_index"]) <= set(range(len(PHASES)))
    for cam in CAMERA_KEYS:
        assert ds.video(image_key(cam)).shape == (len(ds), IMAGE_SIZE, IMAGE_SIZE, 3)
    assert ds.info["features"]["observation.state"]["names"] == list(STATE_NAMES)
    assert {e["robot"] for e in ds.episodes} == {"panda"}
