"""Layout checks of a LeRobot v3 dataset, shared by the data generation and recording export tests:
every feature of meta/info.json is a data column or a video of the declared shape and nothing else
is; timestamps rise by 1/fps within each episode; each camera's mp4 (decoded with PyAV) has one
frame per row at fps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from harness_nodes.dataset.lerobot import DATA_PATH, LeRobotDataset, read_video


def assert_lerobot_layout(root: Path, fps: float) -> tuple[LeRobotDataset, dict]:
    info = json.loads((Path(root) / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == fps
    ds = LeRobotDataset(root)
    table = pq.read_table(Path(root) / DATA_PATH.format(chunk_index=0, file_index=0))
    for key, feat in info["features"].items():
        if feat["dtype"] == "video":
            assert ds.video(key).shape[1:] == tuple(feat["shape"])
        else:
            assert key in table.column_names
            assert tuple(ds.columns[key].shape[1:] or (1,)) == tuple(feat["shape"])
    assert set(table.column_names) <= set(info["features"])
    assert info["total_frames"] == len(ds) == table.num_rows
    for sl in ds.episode_slices():
        ts = ds.columns["timestamp"][sl]
        assert np.all(np.diff(ts) > 0)
        np.testing.assert_allclose(np.diff(ts), 1 / fps, rtol=1e-5)
    np.testing.assert_array_equal(ds.columns["index"], np.arange(len(ds)))
    for key in ds.video_keys:
        path = Path(root) / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
        frames, times = read_video(path)
        assert len(frames) == len(ds), (key, len(frames), len(ds))
        assert np.all(np.diff(times) > 0)
        np.testing.assert_allclose(np.diff(times), 1 / fps, atol=1e-6)
    return ds, info
