"""LeRobot v3 dataset layout: writer and loader (pyarrow for parquet, PyAV for mp4).

Layout (what the `lerobot` package's v3.0 reader expects):

    meta/info.json                                   codebase_version, fps, features, paths, totals
    meta/tasks.parquet                               task (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, the data
                                                     rows and video time span it occupies
    data/chunk-000/file-000.parquet                  one row per frame, all episodes concatenated
    videos/<camera key>/chunk-000/file-000.mp4       one video per camera, all episodes concatenated

Frame `i` of an episode is at `timestamp = i / fps` in its data rows, and at
`from_timestamp + timestamp` in the camera's video file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
TASKS_PATH = "meta/tasks.parquet"
VIDEO_CODEC = "libx264"
VIDEO_PIX_FMT = "yuv444p"     # full chroma: 64x64 frames lose colour detail in 4:2:0
VIDEO_CRF = "12"
INDEX_FEATURES = {"timestamp": ("float32", [1]), "frame_index": ("int64", [1]),
                  "episode_index": ("int64", [1]), "index": ("int64", [1]), "task_index": ("int64", [1])}


class DatasetError(ValueError):
    """A dataset directory that does not follow the layout (names the file and what is wrong)."""


@dataclass
class Episode:
    """One episode to write: per-frame arrays (first axis = frame) and camera frames (T, H, W, 3)."""
    task: str
    columns: dict[str, np.ndarray]
    videos: dict[str, np.ndarray]
    extra: dict | None = None        # per-episode values stored in meta/episodes (e.g. success)


def image_key(camera: str) -> str:
    return f"observation.images.{camera}"


def _feature(values: np.ndarray, names: Sequence[str] | None) -> dict:
    shape = list(values.shape[1:]) or [1]
    dtype = "bool" if values.dtype == np.bool_ else str(values.dtype)
    feat = {"dtype": dtype, "shape": shape, "names": list(names) if names else None}
    return feat


class LeRobotWriter:
    """Writes episodes into one LeRobot v3 dataset (one data file, one video per camera)."""

    def __init__(self, root: str | Path, fps: float, robot_type: str, names: dict[str, Sequence[str]] | None = None):
        self.root = Path(root)
        self.fps = float(fps)
        self.robot_type = robot_type
        self.names = names or {}

    def write(self, episodes: Sequence[Episode]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not episodes:
            raise DatasetError("no episodes to write")
        keys = sorted(episodes[0].columns)
        cams = sorted(episodes[0].videos)
        for n, ep in enumerate(episodes):
            if sorted(ep.columns) != keys or sorted(ep.videos) != cams:
                raise DatasetError(f"episode {n}: columns/cameras differ from episode 0")
            lengths = {len(v) for v in ep.columns.values()} | {len(v) for v in ep.videos.values()}
            if len(lengths) != 1:
                raise DatasetError(f"episode {n}: columns and videos have different lengths {sorted(lengths)}")
        self.root.mkdir(parents=True, exist_ok=True)
        tasks: dict[str, int] = {}
        for ep in episodes:
            tasks.setdefault(ep.task, len(tasks))
        rows: dict[str, list] = {k: [] for k in [*keys, *INDEX_FEATURES]}
        episode_rows: list[dict] = []
        index = 0
        video_time = 0.0
        for e, ep in enumerate(episodes):
            length = len(next(iter(ep.columns.values())))
            for k in keys:
                rows[k].append(np.asarray(ep.columns[k]))
            rows["timestamp"].append((np.arange(length) / self.fps).astype(np.float32))
            rows["frame_index"].append(np.arange(length, dtype=np.int64))
            rows["episode_index"].append(np.full(length, e, dtype=np.int64))
            rows["index"].append(np.arange(index, index + length, dtype=np.int64))
            rows["task_index"].append(np.full(length, tasks[ep.task], dtype=np.int64))
            row = {"episode_index": e, "tasks": [ep.task], "length": length,
                   "data/chunk_index": 0, "data/file_index": 0,
                   "dataset_from_index": index, "dataset_to_index": index + length,
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for cam in cams:
                row.update({f"videos/{image_key(cam)}/chunk_index": 0, f"videos/{image_key(cam)}/file_index": 0,
                            f"videos/{image_key(cam)}/from_timestamp": video_time,
                            f"videos/{image_key(cam)}/to_timestamp": video_time + length / self.fps})
            row.update(ep.extra or {})
            episode_rows.append(row)
            index += length
            video_time += length / self.fps
        arrays, features = {}, {}
        for k, chunks in rows.items():
            values = np.concatenate(chunks)
            if k in INDEX_FEATURES:
                dtype, shape = INDEX_FEATURES[k]
                features[k] = {"dtype": dtype, "shape": shape, "names": None}
            else:
                features[k] = _feature(values, self.names.get(k))
            if values.ndim == 1:
                arrays[k] = pa.array(values)
            else:
                flat = values.reshape(len(values), -1)
                arrays[k] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
        data_file = self.root / DATA_PATH.format(chunk_index=0, file_index=0)
        data_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), data_file)
        for cam in cams:
            frames = np.concatenate([ep.videos[cam] for ep in episodes])
            video_file = self.root / VIDEO_PATH.format(video_key=image_key(cam), chunk_index=0, file_index=0)
            write_video(video_file, frames, self.fps)
            h, w = frames.shape[1:3]
            features[image_key(cam)] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": "h264",
                         "video.pix_fmt": VIDEO_PIX_FMT, "video.is_depth_map": False,
                         "video.fps": self.fps, "video.channels": 3, "has_audio": False}}
        (self.root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(episode_rows), self.root / EPISODES_PATH)
        pq.write_table(_tasks_table(tasks), self.root / TASKS_PATH)
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
                "total_episodes": len(episodes), "total_frames": index, "total_tasks": len(tasks),
                "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
                "fps": self.fps, "splits": {"train": f"0:{len(episodes)}"},
                "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features}
        (self.root / "meta/info.json").write_text(json.dumps(info, indent=2))
        return self.root


def _tasks_table(tasks: dict[str, int]):
    """meta/tasks.parquet as pandas writes a frame indexed by task (lerobot reads it with pandas)."""
    import pyarrow as pa

    pandas_meta = {"index_columns": ["task"], "column_indexes": [],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "task", "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None}],
                   "creator": {"library": "pyarrow"}, "pandas_version": "2.2.0"}
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "task": list(tasks)})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(VIDEO_CODEC, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = VIDEO_PIX_FMT
        stream.options = {"crf": VIDEO_CRF, "g": "2"}
        stream.codec_context.time_base = 1 / rate
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode())


def read_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames (N, H, W, 3) uint8 and their presentation times (s)."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
    return np.stack(frames), np.array(times)


class LeRobotDataset:
    """Reads a dataset written in the v3 layout into numpy arrays (small datasets: all in memory)."""

    def __init__(self, root: str | Path):
        import pyarrow.parquet as pq

        self.root = Path(root)
        info_file = self.root / "meta/info.json"
        if not info_file.is_file():
            raise DatasetError(f"{info_file}: missing (not a LeRobot v3 dataset; make one with "
                               f"`python -m harness_nodes.dataset.generate`)")
        self.info = json.loads(info_file.read_text())
        if self.info.get("codebase_version") != CODEBASE_VERSION:
            raise DatasetError(f"{info_file}: codebase_version {self.info.get('codebase_version')!r}, "
                               f"expected {CODEBASE_VERSION}")
        self.fps = float(self.info["fps"])
        self.features = self.info["features"]
        table = pq.read_table(self.root / DATA_PATH.format(chunk_index=0, file_index=0))
        self.columns: dict[str, np.ndarray] = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if hasattr(col, "flatten") and str(col.type).startswith("fixed_size_list"):
                width = col.type.list_size
                self.columns[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
            else:
                self.columns[name] = col.to_numpy(zero_copy_only=False)
        self.episodes = pq.read_table(self.root / EPISODES_PATH).to_pylist()
        tasks = pq.read_table(self.root / TASKS_PATH).to_pydict()
        self.tasks = dict(zip(tasks["task_index"], tasks["task"]))
        self.video_keys = [k for k, f in self.features.items() if f["dtype"] == "video"]
        self._videos: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.columns["index"])

    def video(self, key: str) -> np.ndarray:
        """All frames of one camera key, in dataset row order (N, H, W, 3) uint8."""
        if key not in self._videos:
            path = self.root / self.info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
            if not path.is_file():
                raise DatasetError(f"{path}: missing video for feature {key}")
            frames, times = read_video(path)
            rows = []
            for ep in self.episodes:
                start = ep[f"videos/{key}/from_timestamp"]
                ts = self.columns["timestamp"][ep["dataset_from_index"]:ep["dataset_to_index"]]
                rows.append(np.rint((start + ts) * self.fps).astype(int))
            idx = np.concatenate(rows)
            if idx.max() >= len(frames):
                raise DatasetError(f"{path}: {len(frames)} frames, the episodes need {idx.max() + 1}")
            self._videos[key] = frames[idx]
        return self._videos[key]

    def episode_slices(self) -> list[slice]:
        return [slice(ep["dataset_from_index"], ep["dataset_to_index"]) for ep in self.episodes]
