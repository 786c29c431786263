"""Recording cores without DDS: schemas from the installed interface files, the bag writer (MCAP
read back with rosbags, `.partial` until closed, write failures), the checks before a recording
starts, the recorder's parameters under hostile values, the episode conversion, and replay/export
refusing corrupt recordings and unknown types without touching anything."""
from __future__ import annotations

import errno
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_nodes.common.params import ParameterError, validate_parameters
from harness_nodes.recording import export as export_cmd
from harness_nodes.recording import replay as replay_cmd
from harness_nodes.recording.bagfile import RecordingReadError, open_recording
from harness_nodes.recording.core import (BagWriter, MessageDefinitions, QosInfo, RecorderParameters, RecordingError,
                                          check_destination, interface_file, partial_path)
from harness_nodes.recording.episode import (CommandTrack, EpisodeError, actions, fold_yaw, frame_times, image_rgb,
                                             latest_at, square_frame)

MB = 1_000_000


@pytest.fixture(scope="module")
def definitions() -> MessageDefinitions:
    return MessageDefinitions()


def joint_state_bytes(definitions, n: int, position: float) -> bytes:
    store = definitions.typestore
    JointState = store.types["sensor_msgs/msg/JointState"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    msg = JointState(header=Header(stamp=Time(sec=n, nanosec=0), frame_id="world"), name=["a", "b"],
                     position=np.array([position, -position]), velocity=np.zeros(0), effort=np.zeros(0))
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def write_bag(tmp_path, definitions, name="bag", count=50) -> BagWriter:
    writer = BagWriter(tmp_path / name, queue_bytes=64 * MB, max_message_bytes=MB, min_free_bytes=0)
    writer.add_topic("/joint_states", definitions.get("sensor_msgs/msg/JointState"), QosInfo(reliable=True))
    for n in range(count):
        assert writer.offer("/joint_states", 1_000_000_000 + n * 10_000_000, joint_state_bytes(definitions, n, n * 0.01))
    return writer


def test_schemas_are_the_installed_interface_files(definitions):
    import json

    for msgtype in ("sensor_msgs/msg/JointState", "robot_harness/msg/ActionChunk", "tf2_msgs/msg/TFMessage",
                    "sensor_msgs/msg/Image"):
        definition = definitions.get(msgtype)
        source = interface_file(msgtype, ".msg").read_text()
        assert definition.text.startswith(source.rstrip("\n"))       # the file itself, comments included
        hashes = json.loads(interface_file(msgtype, ".json").read_text())["type_hashes"]
        assert definition.rihs01 == hashes[0]["hash_string"] == definitions.typestore.hash_rihs01(msgtype)
    chunk = definitions.get("robot_harness/msg/ActionChunk").text
    for dependency in ("MSG: std_msgs/Header", "MSG: geometry_msgs/Pose", "MSG: trajectory_msgs/JointTrajectoryPoint",
                       "MSG: builtin_interfaces/Duration"):
        assert dependency in chunk
    with pytest.raises(RecordingError, match="no interface file"):
        definitions.get("no_such_pkg/msg/Thing")
    with pytest.raises(RecordingError, match="not a message type"):
        definitions.get("robot_harness/srv/QueryMemory")


def test_bag_is_partial_until_closed_then_reads_back_with_rosbags(tmp_path, definitions):
    from rosbags.highlevel import AnyReader

    writer = write_bag(tmp_path, definitions)
    assert partial_path(tmp_path / "bag").is_dir() and not (tmp_path / "bag").exists()
    assert writer.close() == tmp_path / "bag"
    assert not partial_path(tmp_path / "bag").exists()
    assert sorted(p.name for p in (tmp_path / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]
    assert "storage_identifier: mcap" in (tmp_path / "bag/metadata.yaml").read_text()
    with AnyReader([tmp_path / "bag"]) as reader:
        (connection,) = reader.connections
        assert (connection.topic, connection.msgtype, connection.msgcount) == \
            ("/joint_states", "sensor_msgs/msg/JointState", 50)
        stamps, positions = [], []
        for c, stamp, raw in reader.messages():
            stamps.append(stamp)
            positions.append(reader.deserialize(raw, c.msgtype).position[0])
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(positions, np.arange(50) * 0.01)
    assert writer.stats.written == {"/joint_states": 50} and writer.stats.dropped == 0


def test_a_slow_disk_never_blocks_the_caller(tmp_path, definitions, monkeypatch):
    writer = BagWriter(tmp_path / "bag", queue_bytes=64 * MB, max_message_bytes=MB, min_free_bytes=0)
    real_write = writer._writer.write

    def slow_write(*args):
        time.sleep(0.1)
        real_write(*args)

    monkeypatch.setattr(writer._writer, "write", slow_write)
    writer.add_topic("/joint_states", definitions.get("sensor_msgs/msg/JointState"), QosInfo())
    payloads = [joint_state_bytes(definitions, n, 0.0) for n in range(20)]
    start = time.monotonic()
    assert all(writer.offer("/joint_states", n + 1, data) for n, data in enumerate(payloads))
    assert time.monotonic() - start < 0.5          # 20 writes take >= 2 s on this "disk"
    assert writer.close() == tmp_path / "bag" and writer.stats.written == {"/joint_states": 20}


def test_a_failed_write_leaves_only_the_partial_directory(tmp_path, definitions, monkeypatch):
    writer = BagWriter(tmp_path / "bag", queue_bytes=64 * MB, max_message_bytes=MB, min_free_bytes=0)

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer._writer, "write", disk_full)
    writer.add_topic("/joint_states", definitions.get("sensor_msgs/msg/JointState"), QosInfo())
    writer.offer("/joint_states", 1, joint_state_bytes(definitions, 0, 0.0))
    assert writer.close() is None
    assert "No space left" in writer.stats.error
    assert partial_path(tmp_path / "bag").is_dir() and not (tmp_path / "bag").exists()
    assert not writer.offer("/joint_states", 2, b"x")


def test_oversized_messages_and_a_full_queue_are_dropped_and_counted(tmp_path, definitions):
    writer = BagWriter(tmp_path / "bag", queue_bytes=64 * MB, max_message_bytes=100, min_free_bytes=0)
    writer.add_topic("/joint_states", definitions.get("sensor_msgs/msg/JointState"), QosInfo())
    assert not writer.offer("/joint_states", 1, b"\0" * 101)
    assert writer.offer("/joint_states", 2, joint_state_bytes(definitions, 0, 0.0))
    writer.queue_bytes = 0
    assert not writer.offer("/joint_states", 3, joint_state_bytes(definitions, 1, 0.0))
    assert writer.stats.dropped == 2
    assert writer.close() == tmp_path / "bag"


def test_free_space_running_out_closes_the_bag_early_and_says_so(tmp_path, definitions, monkeypatch):
    monkeypatch.setattr(BagWriter, "FREE_CHECK_BYTES", 1)
    writer = BagWriter(tmp_path / "bag", queue_bytes=64 * MB, max_message_bytes=MB, min_free_bytes=10**18)
    writer.add_topic("/joint_states", definitions.get("sensor_msgs/msg/JointState"), QosInfo())
    writer.offer("/joint_states", 1, joint_state_bytes(definitions, 0, 0.0))
    deadline = time.monotonic() + 10
    while writer.recording and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not writer.recording and "free space" in writer.stats.error
    assert not writer.offer("/joint_states", 2, joint_state_bytes(definitions, 1, 0.0))
    assert writer.close() == tmp_path / "bag"            # closed cleanly: complete up to there, and marked
    assert "stopped_early" in (tmp_path / "bag/metadata.yaml").read_text()
    assert writer.stats.written == {"/joint_states": 1}


def test_destination_checks_name_the_problem(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(RecordingError, match="is not a directory"):
        check_destination(a_file, "bag", 0.0)
    with pytest.raises(RecordingError, match="cannot be created"):
        check_destination(a_file / "below", "bag", 0.0)
    with pytest.raises(RecordingError, match="not enough free space"):
        check_destination(tmp_path / "out", "bag", 1e9)
    (tmp_path / "out" / "bag.partial").mkdir()
    with pytest.raises(RecordingError, match="exists already"):
        check_destination(tmp_path / "out", "bag", 0.0)
    assert check_destination(tmp_path / "out", "other", 0.0) == tmp_path / "out" / "other"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bag.partial"]   # the probe is gone


HOSTILE = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 2**62, -2**62, True, "",
                                     "x" * 100_000, "../..", "a/b", "/", "bag.partial", "\x00",
                                     [], ["x" * 100_000], ["//bad"], ["ok", "ok"], ["1abc"], [1.0], ["é"] * 300]),
                    st.text(max_size=30), st.floats(), st.lists(st.text(max_size=20), max_size=5))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(sorted(RecorderParameters.model_fields)), value=HOSTILE)
def test_recorder_parameters_refuse_hostile_values_by_name(field, value):
    try:
        params = validate_parameters(RecorderParameters, {field: value})
    except ParameterError as exc:
        assert field in str(exc)
        return
    # accepted: then it is a sane value of the field
    got = getattr(params, field)
    if isinstance(got, float):
        assert math.isfinite(got) and got >= 0
    if field == "topics":
        assert got and all(t and len(t) <= 256 and "//" not in t for t in got)
    if field == "name":
        assert "/" not in got and not got.endswith(".partial") and got not in (".", "..")


def test_frame_times_latest_sample_and_actions():
    fps = 5.0
    joints = np.arange(0, 3_000_000_000, 10_000_000, dtype=np.int64)          # 100 Hz for 3 s
    images = np.arange(150_000_000, 2_900_000_000, 200_000_000, dtype=np.int64)
    frames = frame_times({"joints": joints, "scene": images}, fps)
    assert frames[0] == images[0] and frames[-1] <= images[-1]
    np.testing.assert_array_equal(np.diff(frames), 200_000_000)
    assert latest_at(images, frames).tolist() == list(range(len(frames)))
    with pytest.raises(EpisodeError, match="no messages"):
        frame_times({"joints": joints, "wrist": np.zeros(0, dtype=np.int64)}, fps)
    with pytest.raises(EpisodeError, match="less than two frames"):
        frame_times({"joints": joints[:5]}, fps)

    # a 0.1 m move along x over 1 s starting at frame 2, then a close; state stays put (worst case)
    states = np.tile(np.array([0.3, 0.0, 0.4, 0.0, 0.08], dtype=np.float32), (len(frames), 1))
    start = int(frames[2])
    track = CommandTrack(start, start + 1_500_000_000, np.array([0.0, 1.0]),
                         np.array([[0.3, 0.0, 0.4], [0.4, 0.0, 0.4]]), np.array([0.0, 0.0]), grip=0.0)
    acts = actions(frames, states, [track], fps, open_width=0.08)
    assert acts.shape == (len(frames), 5)
    assert np.all(acts[:1, :4] == 0) and acts[0, 4] == 1.0                 # before: still, open (measured)
    assert acts[2, 0] == pytest.approx(0.02, abs=1e-6) and np.all(np.abs(acts[2, 1:4]) < 1e-6)
    assert acts[5, 0] == pytest.approx(0.03)                                # 0.08 asked: limited to MAX_STEP
    assert acts[-1, 4] == 0.0                                               # closed once the motion ended
    nan_track = CommandTrack(start, start + 10**9, np.array([0.0, 1.0]), np.array([[0, 0, 0], [math.nan, 0, 0]]),
                             np.zeros(2), None)
    assert np.all(np.isfinite(actions(frames, states, [nan_track], fps, 0.08)))


def test_images_and_yaw_like_the_dataset():
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    bgr = rgb[..., ::-1].copy()
    assert np.array_equal(image_rgb("rgb8", 4, 6, 18, rgb.reshape(-1)), rgb)
    assert np.array_equal(image_rgb("bgr8", 4, 6, 18, bgr.reshape(-1)), rgb)
    assert image_rgb("mono8", 4, 6, 8, np.zeros(32, dtype=np.uint8)).shape == (4, 6, 3)   # padded rows
    with pytest.raises(EpisodeError, match="not supported"):
        image_rgb("32FC1", 4, 6, 24, np.zeros(96, dtype=np.uint8))
    with pytest.raises(EpisodeError, match="does not fit"):
        image_rgb("rgb8", 4000, 6000, 18000, np.zeros(10, dtype=np.uint8))
    assert square_frame(np.zeros((240, 320, 3), dtype=np.uint8), 64).shape == (64, 64, 3)
    assert fold_yaw(math.pi / 2 + 0.1) == pytest.approx(0.1)
    assert -math.pi / 4 <= fold_yaw(3.0) < math.pi / 4


@pytest.fixture
def corrupt_bag(tmp_path, definitions):
    write_bag(tmp_path, definitions, count=400).close()
    mcap = tmp_path / "bag" / "bag.mcap"
    data = bytearray(mcap.read_bytes())
    data[200:len(data) - 100] = bytes(len(data) - 300)        # records zeroed: header and footer kept
    mcap.write_bytes(bytes(data))
    return tmp_path / "bag"


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "garbage", "not a bag"])
def test_replay_and_export_refuse_a_corrupt_recording_and_touch_nothing(tmp_path, definitions, corrupt_bag,
                                                                       damage, capsys):
    bag = corrupt_bag
    mcap = bag / "bag.mcap"
    if damage == "truncated":
        write_bag(tmp_path, definitions, name="t", count=400).close()
        bag, mcap = tmp_path / "t", tmp_path / "t" / "t.mcap"
        mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    elif damage == "garbage":
        mcap.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 50)
    elif damage == "not a bag":
        bag = tmp_path / "empty"
        bag.mkdir()
    before = {p: p.read_bytes() for p in bag.rglob("*") if p.is_file()}
    with pytest.raises(RecordingReadError):
        open_recording(bag)
    out = tmp_path / "dataset"
    assert export_cmd.main([str(bag), str(out)]) == 2
    assert replay_cmd.main([str(bag)]) == 2
    err = capsys.readouterr().err
    assert str(bag) in err and ("corrupt" in err or "not a" in err)
    assert not out.exists() and not (tmp_path / "dataset.partial").exists()
    assert {p: p.read_bytes() for p in bag.rglob("*") if p.is_file()} == before


def test_unknown_types_are_left_out_of_replay_and_refused_by_the_recorder(tmp_path, definitions, capsys):
    from rosbags.typesys import get_types_from_msg

    definitions.typestore.register(get_types_from_msg("float64 value\n", "elsewhere_msgs/msg/Reading"))
    writer = BagWriter(tmp_path / "bag", queue_bytes=MB, max_message_bytes=MB, min_free_bytes=0)
    text, _ = definitions.typestore.generate_msgdef("elsewhere_msgs/msg/Reading", ros_version=2)
    from harness_nodes.recording.core import MessageDefinition
    writer.add_topic("/reading", MessageDefinition("elsewhere_msgs/msg/Reading", text,
                                                   definitions.typestore.hash_rihs01("elsewhere_msgs/msg/Reading")),
                     QosInfo())
    Reading = definitions.typestore.types["elsewhere_msgs/msg/Reading"]
    writer.offer("/reading", 5, bytes(definitions.typestore.serialize_cdr(Reading(value=1.5),
                                                                          "elsewhere_msgs/msg/Reading")))
    writer.close()
    assert replay_cmd.main([str(tmp_path / "bag")]) == 2
    err = capsys.readouterr().err
    assert "leaving out /reading" in err and "no topic of an installed type" in err
    assert replay_cmd.main([str(tmp_path / "bag"), "--topics", "/nowhere"]) == 2
    assert "not in the recording" in capsys.readouterr().err
    with pytest.raises(RecordingError, match="no interface file"):
        MessageDefinitions().get("elsewhere_msgs/msg/Reading")
    # export: a recording without joint states or cameras is refused by name
    assert export_cmd.main([str(tmp_path / "bag"), str(tmp_path / "out")]) == 2
    assert "no joint states" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_bringup_record_adds_the_recorder_or_refuses_the_directory(tmp_path, capsys):
    from harness_nodes.bringup import cli

    commands = cli.build_commands("sim", "panda", True, ["recorder.name:=episode_1"], record=str(tmp_path / "rec"))
    assert list(commands)[-1] == "recorder"
    recorder = " ".join(commands["recorder"])
    assert f"output_dir:={tmp_path / 'rec'}" in recorder and "name:=episode_1" in recorder
    assert "use_sim_time:=true" in recorder and "robot:=" not in recorder and "recorder.yaml" in recorder
    assert "recorder" not in cli.build_commands("sim", None, None, [])
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert cli.main(["sim", "--record", str(a_file)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["sim", "--record", str(tmp_path / "rec"), "-p", "recorder.min_free_mb:=1e9"]) == 2
    assert "not enough free space" in capsys.readouterr().err
    assert not any((tmp_path / "rec").iterdir())
