"""Export recordings (rosbag2 + MCAP) to the LeRobot v3 layout the data generation writes.

    python -m harness_nodes.recording.export BAG [BAG ...] OUT_DIR [--robot panda] [--task TEXT] [--fps 5]

One episode per recording, written with harness_nodes.dataset.lerobot.LeRobotWriter: parquet rows
at `--fps` (default the dataset's control rate) with `observation.state` (tool x, y, z, yaw,
gripper width from the joint states by forward kinematics), `observation.joint_positions`,
`action` (dx, dy, dz, dyaw, grip from the commands the router executed: `harness/command` and
`harness/command_stream`, minus those `harness/execution` says it rejected), `next.done`; one mp4
per camera found (`cameras/<scene|wrist>/image_raw`, centre square resized to the dataset's image
size); meta/info.json, meta/episodes, meta/tasks. Messages are deserialized by `rosbags` with the
schemas stored in the recording, so no ROS is needed. The robot is the one of config/robots/ whose
arm joints the joint states name (or `--robot`).

Every recording is read and checked before anything is written; the dataset is built in
`OUT_DIR.partial` and renamed at the end. A corrupt or unreadable recording, a missing stream, an
OUT_DIR that exists and is not empty: a clear error, exit 2, OUT_DIR untouched.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness_nodes.common.stamps import to_seconds
from harness_nodes.dataset.features import ACTION_NAMES, CAMERA_KEYS, CONTROL_RATE, IMAGE_SIZE, STATE_NAMES
from harness_nodes.dataset.lerobot import DatasetError, Episode, LeRobotWriter
from harness_nodes.recording.bagfile import RecordingReadError, open_recording
from harness_nodes.recording.episode import (CommandTrack, EpisodeError, actions, fold_yaw, frame_times,
                                             image_rgb, latest_at, square_frame)

EXIT_BAD_INPUT = 2
COMMAND_TOPICS = ("harness/command", "harness/command_stream")
FEEDBACK_TOPIC = "harness/execution"
JOINT_STATES = "joint_states"
DEFAULT_TASK = "recorded run"
# robot_harness/ActionChunk and ExecutionFeedback constants (the recording's own schema has them too)
SPACE_END_EFFECTOR, SPACE_JOINT, SPACE_END_EFFECTOR_DELTA = 0, 1, 2
GRIPPER_OPEN, GRIPPER_CLOSE, GRIPPER_WIDTH = 1, 2, 3
FINAL_STATUSES = {2: "succeeded", 3: "rejected", 4: "failed", 5: "held"}
STATUS_REJECTED = 3


class ExportError(ValueError):
    """A recording that cannot be exported, or an output directory that must not be touched."""


def _topic_is(topic: str, name: str) -> bool:
    """`topic` is `name` in the root or any namespace (/joint_states, /left/joint_states)."""
    return topic == f"/{name}" or topic.endswith(f"/{name}")


@dataclass
class Streams:
    """The messages of one recording that an episode is made of (times in ns, sorted)."""
    joint_times: list[int] = field(default_factory=list)
    joints: list[dict[str, float]] = field(default_factory=list)
    images: dict[str, list[tuple[int, object]]] = field(default_factory=dict)
    commands: list[tuple[int, object]] = field(default_factory=list)
    feedback: list[tuple[int, str, int]] = field(default_factory=list)   # (time, chunk_id, status)


def read_streams(path: Path, cameras: tuple[str, ...]) -> Streams:
    """Everything the export needs from one recording (RecordingReadError / ExportError)."""
    reader = open_recording(path)
    try:
        streams = Streams()
        wanted = []
        for c in reader.connections:
            if _topic_is(c.topic, JOINT_STATES) and c.msgtype == "sensor_msgs/msg/JointState":
                wanted.append(c)
            elif any(_topic_is(c.topic, t) for t in COMMAND_TOPICS) and c.msgtype == "robot_harness/msg/ActionChunk":
                wanted.append(c)
            elif _topic_is(c.topic, FEEDBACK_TOPIC) and c.msgtype == "robot_harness/msg/ExecutionFeedback":
                wanted.append(c)
            elif c.msgtype == "sensor_msgs/msg/Image" and any(_topic_is(c.topic, f"cameras/{cam}/image_raw")
                                                             for cam in cameras):
                wanted.append(c)
        try:
            # (rosbags reads every connection when given none)
            for c, stamp, raw in (reader.messages(connections=wanted) if wanted else ()):
                msg = reader.deserialize(raw, c.msgtype)
                if c.msgtype == "sensor_msgs/msg/JointState":
                    if len(msg.name) == len(msg.position):
                        streams.joint_times.append(stamp)
                        streams.joints.append(dict(zip(msg.name, (float(v) for v in msg.position))))
                elif c.msgtype == "robot_harness/msg/ActionChunk":
                    streams.commands.append((stamp, msg))
                elif c.msgtype == "robot_harness/msg/ExecutionFeedback":
                    streams.feedback.append((stamp, msg.chunk_id, int(msg.status)))
                else:
                    cam = re.search(r"cameras/([^/]+)/image_raw$", c.topic).group(1)
                    streams.images.setdefault(cam, []).append((stamp, msg))
        except Exception as exc:   # noqa: BLE001 - a message its own schema cannot decode
            raise ExportError(f"{path}: a message cannot be deserialized: {type(exc).__name__}: {exc}") from None
        return streams
    finally:
        reader.close()


def infer_robot(joint_names: set[str]) -> str:
    from harness_nodes.common.paths import config_dir
    from harness_nodes.common.robot_description import load_robot_description

    robots = sorted(p.stem for p in (config_dir() / "robots").glob("*.yaml"))
    for robot in robots:
        if set(load_robot_description(robot).arm.joint_names) <= joint_names:
            return robot
    raise ExportError(f"the joint states name none of the robots {robots} (joints {sorted(joint_names)[:12]}); "
                      f"pass --robot")


class ToolState:
    """Tool state [x, y, z, yaw, width] from joint positions (Pinocchio forward kinematics)."""

    def __init__(self, robot: str):
        from harness_nodes.common.kinematics import ArmKinematics
        from harness_nodes.common.robot_description import load_robot_description

        self.description = load_robot_description(robot)
        self.kinematics = ArmKinematics.from_description(self.description)
        self.arm = list(self.description.arm.joint_names)
        self.gripper = self.description.gripper

    def arm_q(self, positions: dict[str, float], fallback: np.ndarray | None = None) -> np.ndarray:
        home = np.asarray(self.description.arm.home, dtype=float) if fallback is None else fallback
        return np.array([positions.get(n, home[k]) for k, n in enumerate(self.arm)], dtype=float)

    def pose(self, arm_q: np.ndarray) -> tuple[np.ndarray, float]:
        se3 = self.kinematics.fk(arm_q)
        r = se3.rotation
        return np.asarray(se3.translation, dtype=float), fold_yaw(float(np.arctan2(r[1, 0], r[0, 0])))

    def state(self, positions: dict[str, float]) -> np.ndarray:
        pos, yaw = self.pose(self.arm_q(positions))
        grip = [positions[n] for n in self.gripper.joint_names if n in positions]
        width = self.gripper.width_from_joints(grip) if grip else float("nan")
        return np.array([*pos, yaw, width], dtype=np.float32)


def command_tracks(streams: Streams, tool: ToolState) -> list[CommandTrack]:
    """The commands the router took, as tool targets over time (rejected ones left out)."""
    finals: dict[str, list[tuple[int, int]]] = {}
    for stamp, chunk_id, status in streams.feedback:
        if status in FINAL_STATUSES:
            finals.setdefault(chunk_id, []).append((stamp, status))
    joint_times = np.asarray(streams.joint_times, dtype=np.int64)
    tracks = []
    commands = sorted(streams.commands, key=lambda c: c[0])
    for n, (stamp, chunk) in enumerate(commands):
        final = next(((t, s) for t, s in finals.get(chunk.chunk_id, []) if t >= stamp), None)
        if final is not None and final[1] == STATUS_REJECTED:
            continue
        next_start = commands[n + 1][0] if n + 1 < len(commands) else np.iinfo(np.int64).max
        end = min(final[0], next_start) if final is not None else next_start
        q0 = tool.arm_q(streams.joints[int(latest_at(joint_times, np.array([stamp]))[0])])
        p0, yaw0 = tool.pose(q0)
        times, positions, yaws = [0.0], [p0], [yaw0]
        try:
            if chunk.space in (SPACE_END_EFFECTOR, SPACE_END_EFFECTOR_DELTA):
                from harness_nodes.common.geometry import yaw_of

                for pose, t in zip(chunk.ee_poses, chunk.ee_times):
                    p = np.array([pose.position.x, pose.position.y, pose.position.z])
                    q = (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)
                    if chunk.space == SPACE_END_EFFECTOR_DELTA:
                        p, yaw = p0 + p, yaw0 + yaw_of(q)
                    else:
                        yaw = fold_yaw(yaw_of(q))
                    times.append(to_seconds(t))
                    positions.append(p)
                    yaws.append(yaw)
            elif chunk.space == SPACE_JOINT:
                names = list(chunk.joint_names)
                for point in chunk.joint_points:
                    q = dict(zip(names, (float(v) for v in point.positions)))
                    p, yaw = tool.pose(tool.arm_q(q, q0))
                    times.append(to_seconds(point.time_from_start))
                    positions.append(p)
                    yaws.append(yaw)
        except (ValueError, ArithmeticError):
            continue
        grip = {GRIPPER_OPEN: 1.0, GRIPPER_CLOSE: 0.0}.get(int(chunk.gripper_command))
        if int(chunk.gripper_command) == GRIPPER_WIDTH and np.isfinite(chunk.gripper_width):
            grip = 1.0 if chunk.gripper_width >= 0.5 * tool.gripper.max_width else 0.0
        yaws_unwrapped = np.unwrap(np.asarray(yaws, dtype=float))
        tracks.append(CommandTrack(stamp, int(end), np.asarray(times, dtype=float), np.asarray(positions, dtype=float),
                                   yaws_unwrapped, grip))
    return tracks


def to_episode(streams: Streams, robot: str | None, task: str, fps: float, image_size: int,
               source: str) -> tuple[Episode, str]:
    if not streams.joints:
        raise ExportError(f"{source}: no joint states recorded (topic {JOINT_STATES})")
    cameras = sorted(streams.images)
    if not cameras:
        raise ExportError(f"{source}: no camera images recorded (cameras/<{'|'.join(CAMERA_KEYS)}>/image_raw)")
    robot = robot or infer_robot(set().union(*(set(j) for j in streams.joints)))
    tool = ToolState(robot)
    joint_times = np.asarray(streams.joint_times, dtype=np.int64)
    image_times = {cam: np.asarray([t for t, _ in streams.images[cam]], dtype=np.int64) for cam in cameras}
    try:
        frames_ns = frame_times({"joint_states": joint_times, **{f"cameras/{c}": t for c, t in image_times.items()}},
                                fps)
    except EpisodeError as exc:
        raise ExportError(f"{source}: {exc}") from None
    rows = latest_at(joint_times, frames_ns)
    states = np.stack([tool.state(streams.joints[int(i)]) for i in rows])
    joints = np.stack([tool.arm_q(streams.joints[int(i)]) for i in rows]).astype(np.float32)
    acts = actions(frames_ns, states, command_tracks(streams, tool), fps, tool.gripper.max_width)
    videos = {}
    for cam in cameras:
        picked = latest_at(image_times[cam], frames_ns)
        decoded: dict[int, np.ndarray] = {}
        frames = []
        for i in picked:
            if int(i) not in decoded:
                msg = streams.images[cam][int(i)][1]
                try:
                    rgb = image_rgb(msg.encoding, int(msg.height), int(msg.width), int(msg.step), msg.data)
                except EpisodeError as exc:
                    raise ExportError(f"{source}: cameras/{cam}/image_raw: {exc}") from None
                decoded[int(i)] = square_frame(rgb, image_size)
            frames.append(decoded[int(i)])
        videos[cam] = np.stack(frames)
    n = len(frames_ns)
    columns = {"observation.state": states, "observation.joint_positions": joints, "action": acts,
               "next.done": np.arange(n) == n - 1}
    extra = {"robot": robot, "source": source, "start_time_ns": int(frames_ns[0])}
    return Episode(task=task, columns=columns, videos=videos, extra=extra), robot


def export(bags: list[Path], out_dir: Path, robot: str | None = None, task: str = DEFAULT_TASK,
           fps: float = CONTROL_RATE, image_size: int = IMAGE_SIZE) -> dict:
    """Write the recordings as one dataset in out_dir; returns a summary. Raises ExportError /
    RecordingReadError before anything is written if an input or out_dir is unusable."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not an empty directory; choose a new OUT_DIR")
    staging = out_dir.with_name(out_dir.name + ".partial")
    if staging.exists():
        raise ExportError(f"{staging} exists (an interrupted export?); remove it first")
    episodes, robots = [], set()
    cameras = tuple(CAMERA_KEYS)
    for bag in bags:
        episode, used = to_episode(read_streams(Path(bag), cameras), robot, task, fps, image_size, Path(bag).name)
        episodes.append(episode)
        robots.add(used)
    if len(robots) > 1:
        raise ExportError(f"the recordings are of different robots {sorted(robots)}: export them separately")
    names = {"observation.state": list(STATE_NAMES), "action": list(ACTION_NAMES),
             "observation.joint_positions": list(ToolState(next(iter(robots))).arm)}
    try:
        LeRobotWriter(staging, fps, next(iter(robots)), names).write(episodes)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"dataset": str(out_dir), "episodes": len(episodes), "frames": int(sum(len(e.columns["action"])
                                                                                  for e in episodes)),
            "fps": fps, "robot": next(iter(robots)), "cameras": sorted(episodes[0].videos)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, metavar="BAG [BAG ...] OUT_DIR",
                    help="recordings (rosbag2 directories), then the dataset directory to create")
    ap.add_argument("--robot", default=None, help="robot description (config/robots/<robot>.yaml); default: inferred")
    ap.add_argument("--task", default=DEFAULT_TASK, help="task text of the episodes")
    ap.add_argument("--fps", type=float, default=CONTROL_RATE, help="dataset frame rate (Hz)")
    ap.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="frames are size x size pixels")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if len(args.paths) < 2:
        print("export: give at least one recording and the output directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (0.1 <= args.fps <= 1000.0) or not (8 <= args.image_size <= 4096):
        print("export: --fps must be within 0.1..1000 and --image-size within 8..4096", file=sys.stderr)
        return EXIT_BAD_INPUT
    *bags, out_dir = args.paths
    try:
        summary = export(bags, out_dir, args.robot, args.task, args.fps, args.image_size)
    except (ExportError, RecordingReadError, EpisodeError, DatasetError, FileNotFoundError, KeyError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
