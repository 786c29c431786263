"""From recorded streams to dataset rows (pure numpy, no ROS, no bag library): the frame times at
the dataset's rate, the latest sample at each frame, the tool state, the action the router was
asked for at each step, and camera frames cropped and resized like the dataset's.

State and action follow harness_nodes.dataset.features: state = [x, y, z, yaw, gripper_width] of
the tool in the robot base frame (yaw folded into [-pi/4, pi/4] as the top-down tool's is); action
= [dx, dy, dz, dyaw, grip] for one control step: where the command the router was executing wants
the tool one step later, minus where it is, limited to MAX_STEP / MAX_YAW_STEP as the dataset's
actions are; grip = the gripper state wanted after the step (1 open, 0 closed). No command
executing: a zero displacement with the last gripper command (or the measured opening).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness_nodes.dataset.features import MAX_STEP, MAX_YAW_STEP


class EpisodeError(ValueError):
    """Recorded streams that do not make an episode (too short, a stream missing)."""


def fold_yaw(yaw: float) -> float:
    """A top-down tool's yaw folded into [-pi/4, pi/4) (a cube looks the same every quarter turn)."""
    return (yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4


def wrap(angle: np.ndarray | float):
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


@dataclass
class CommandTrack:
    """One command the router took: tool targets over time from when it arrived until it ended."""
    start_ns: int
    end_ns: int
    times: np.ndarray        # s after start_ns of each waypoint; the first (0.0) is the start pose
    positions: np.ndarray    # (K, 3) m
    yaws: np.ndarray         # (K,) rad, unwrapped along the track
    grip: float | None       # gripper state asked after the motion: 1 open, 0 closed, None unchanged

    @property
    def motion_end_ns(self) -> int:
        return self.start_ns + int(self.times[-1] * 1e9)

    def target(self, t_ns: int) -> tuple[np.ndarray, float]:
        s = (t_ns - self.start_ns) * 1e-9
        pos = np.array([np.interp(s, self.times, self.positions[:, k]) for k in range(3)])
        return pos, float(np.interp(s, self.times, self.yaws))

    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.times)) and np.all(np.isfinite(self.positions))
                    and np.all(np.isfinite(self.yaws)) and np.all(np.diff(self.times) >= 0))


def frame_times(streams: dict[str, np.ndarray], fps: float) -> np.ndarray:
    """Times (ns) of the dataset frames: every 1/fps from when every stream has a sample until the
    first stream ends. `streams` maps a name to its sorted sample times (ns)."""
    empty = [name for name, times in streams.items() if len(times) == 0]
    if empty:
        raise EpisodeError(f"no messages on {empty}")
    start = max(int(t[0]) for t in streams.values())
    end = min(int(t[-1]) for t in streams.values())
    step = 1e9 / fps
    count = int(math.floor((end - start) / step)) + 1 if end >= start else 0
    if count < 2:
        raise EpisodeError(f"the streams overlap for {(end - start) / 1e9:.2f} s: less than two frames at {fps} fps")
    return start + np.round(np.arange(count) * step).astype(np.int64)


def latest_at(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the last sample at or before each query time (the first sample before it)."""
    return np.clip(np.searchsorted(times, query, side="right") - 1, 0, len(times) - 1)


def actions(frames_ns: np.ndarray, states: np.ndarray, tracks: list[CommandTrack], fps: float,
            open_width: float) -> np.ndarray:
    """The action of each frame (N, 5) from the commands the router executed."""
    step_ns = int(round(1e9 / fps))
    tracks = sorted((t for t in tracks if t.finite()), key=lambda t: t.start_ns)
    grip_events = sorted((t.motion_end_ns, t.grip) for t in tracks if t.grip is not None)
    out = np.zeros((len(frames_ns), 5), dtype=np.float32)
    for i, t in enumerate(frames_ns):
        due = int(t) + step_ns
        state = states[i]
        active = [tr for tr in tracks if tr.start_ns <= due < tr.end_ns]
        if active:
            position, yaw = active[-1].target(due)
            out[i, :3] = np.clip(position - state[:3], -MAX_STEP, MAX_STEP)
            out[i, 3] = np.clip(wrap(yaw - state[3]), -MAX_YAW_STEP, MAX_YAW_STEP)
        asked = [g for when, g in grip_events if when <= due]
        out[i, 4] = asked[-1] if asked else (1.0 if state[4] >= 0.5 * open_width else 0.0)
    return out


def square_frame(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square of an RGB image resized to size x size (area averaging), uint8."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(image[top:top + side, left:left + side])
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def image_rgb(encoding: str, height: int, width: int, step: int, data: np.ndarray) -> np.ndarray:
    """An RGB (H, W, 3) uint8 array from sensor_msgs/Image fields (rgb8, bgr8, rgba8, bgra8, mono8)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding)
    if channels is None:
        raise EpisodeError(f"image encoding '{encoding}' is not supported (rgb8, bgr8, rgba8, bgra8, mono8)")
    if height <= 0 or width <= 0 or step < width * channels or len(data) < step * height:
        raise EpisodeError(f"image {width}x{height} step {step} does not fit its {len(data)} bytes")
    rows = np.asarray(data, dtype=np.uint8)[:step * height].reshape(height, step)[:, :width * channels]
    pixels = rows.reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])
