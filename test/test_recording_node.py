"""Recording real nodes over DDS (issue 13, items 3 and 4): the recorder beside the sim, the state
publisher and the router while the router executes a chunk; the bag read back with rosbags
(topics, counts, rising timestamps, every message deserialized, a topic that appeared late);
replay publishing it onto topics a subscriber receives; export to the LeRobot v3 layout (pyarrow,
PyAV); the recorder refusing an unusable destination before it starts; hostile parameters and
messages (hypothesis) leaving it up and its bag readable."""
from __future__ import annotations

import os
import signal
from collections import Counter
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from conftest import NodeProcess, _next_domain_id, matched, ros_env, spin_until
from harness_nodes.common.node_main import EXIT_CANNOT_START
from harness_nodes.common.stamps import to_duration
from harness_nodes.dataset.features import ACTION_NAMES, IMAGE_SIZE, STATE_NAMES
from harness_nodes.recording import export as export_cmd
from lerobot_layout import assert_lerobot_layout
from robot_harness.msg import ActionChunk, ExecutionFeedback, HarnessStatus
from test_node_fuzz import chunks
from test_params_node import ALWAYS_BAD, ParameterClient

pytestmark = pytest.mark.integration
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
REPO = Path(__file__).resolve().parents[1]
SIM_TIME = {"use_sim_time": True}     # the whole run follows the sim's /clock, as the stacks do
EXPECTED_TOPICS = {"/joint_states", "/cameras/scene/image_raw", "/cameras/scene/camera_info",
                   "/cameras/wrist/image_raw", "/cameras/wrist/camera_info", "/tf", "/tf_static",
                   "/robot_description", "/harness/command", "/harness/execution", "/harness/status",
                   "/diagnostics"}


def make_node(domain: int, name: str):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.executor_for_test = executor
    return node, context


def close_node(node, context) -> None:
    import rclpy

    node.executor_for_test.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def recorder_subscribed(node, topic: str) -> bool:
    return any(info.node_name == "recorder" for info in node.get_subscriptions_info_by_topic(topic))


def delta_chunk(dx: float, seconds: float) -> ActionChunk:
    chunk = ActionChunk(chunk_id=f"rec-{os.getpid()}-{time.monotonic_ns()}", source="test",
                        space=ActionChunk.SPACE_END_EFFECTOR_DELTA)
    pose = Pose()
    pose.position.x = dx
    pose.orientation.w = 1.0
    chunk.ee_poses = [pose]
    chunk.ee_times = [to_duration(seconds)]
    return chunk


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    """One short recorded run of real nodes: the recorder is started before the nodes it records
    (their topics appear late), harness/status appears later still; the router executes a 4 cm
    move along x. Returns (bag directory, chunk id, statuses published)."""
    out = tmp_path_factory.mktemp("recordings")
    logs = tmp_path_factory.mktemp("logs")
    domain = _next_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_HOME", str(tmp_path_factory.mktemp("ros_home")))
        recorder = NodeProcess("harness_nodes.recording.node", domain, "recorder.yaml",
                               {"output_dir": str(out), "name": "run", "discovery_period": 0.2, **SIM_TIME},
                               log_dir=logs)
        nodes = [NodeProcess("harness_nodes.sim.node", domain, "sim.yaml", SIM_TIME, log_dir=logs),
                 NodeProcess("harness_nodes.state_publisher.node", domain, "state_publisher.yaml", SIM_TIME,
                             log_dir=logs),
                 NodeProcess("harness_nodes.router.node", domain, "router.yaml", SIM_TIME, log_dir=logs)]
    node, context = make_node(domain, "recording_test")
    try:
        feedback: list[ExecutionFeedback] = []
        node.create_subscription(ExecutionFeedback, "harness/execution", feedback.append, RELIABLE)
        command = node.create_publisher(ActionChunk, "harness/command", RELIABLE)
        ready = ("/cameras/scene/image_raw", "/cameras/wrist/image_raw", "/joint_states", "/harness/execution",
                 "/harness/command", "/tf", "/robot_description")
        assert spin_until(node, lambda: all(recorder_subscribed(node, t) for t in ready)
                          and command.get_subscription_count() >= 2 and matched(command), 60.0), \
            recorder.log()[-3000:]
        status = node.create_publisher(HarnessStatus, "harness/status", RELIABLE)   # a topic that appears late
        assert spin_until(node, lambda: status.get_subscription_count() >= 1, 20.0), recorder.log()[-2000:]
        chunk = delta_chunk(0.04, 1.5)
        command.publish(chunk)
        # executed (a loaded machine may finish it FAILED on tracking; the arm still gets there)
        assert spin_until(node, lambda: any(f.chunk_id == chunk.chunk_id and f.status in (
            f.STATUS_SUCCEEDED, f.STATUS_FAILED) for f in feedback), 40.0), [f.message for f in feedback]
        for n in range(3):
            status.publish(HarnessStatus(task_id="t", phase="execute", attempt=n))
        settle = time.monotonic() + 2.0           # a few camera frames after the move
        spin_until(node, lambda: time.monotonic() > settle, 3.0)
        assert recorder.stop() == 0, recorder.log()[-2000:]
    finally:
        close_node(node, context)
        recorder.stop()
        for n in reversed(nodes):
            n.stop()
    return out / "run", chunk.chunk_id, 3


@pytest.mark.timeout(180)
def test_recording_reads_back_with_rosbags(recorded_run):
    from rosbags.highlevel import AnyReader

    bag, chunk_id, statuses = recorded_run
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "run.mcap"]
    assert not bag.with_name("run.partial").exists()
    assert "storage_identifier: mcap" in (bag / "metadata.yaml").read_text()
    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert EXPECTED_TOPICS <= set(counts), sorted(counts)
        assert all(counts[t] > 0 for t in EXPECTED_TOPICS), counts
        assert counts["/harness/status"] == statuses and counts["/harness/command"] == 1
        assert counts["/joint_states"] > 100 and counts["/cameras/scene/image_raw"] >= 5
        last: dict[str, int] = {}
        chunks_seen, images = [], 0
        for connection, stamp, raw in reader.messages():
            assert stamp >= last.get(connection.topic, 0)
            last[connection.topic] = stamp
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic == "/harness/command":
                chunks_seen.append(msg.chunk_id)
            elif connection.topic == "/cameras/scene/image_raw":
                assert msg.encoding == "rgb8" and len(msg.data) == msg.step * msg.height
                images += 1
        assert chunks_seen == [chunk_id] and images == counts["/cameras/scene/image_raw"]
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/harness/command"] == "robot_harness/msg/ActionChunk"
        assert types["/tf"] == "tf2_msgs/msg/TFMessage"
    # the MCAP reference reader (the format library Foxglove builds on) decodes every message too
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(bag / "run.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        decoded = Counter(channel.topic for _, channel, _, _ in reader.iter_decoded_messages())
    assert decoded == Counter(counts)


@pytest.mark.timeout(120)
def test_replay_publishes_the_recording_onto_its_topics(recorded_run, domain_id, ros_node):
    bag, chunk_id, _ = recorded_run
    received_chunks: list[str] = []
    states: list[JointState] = []
    ros_node.create_subscription(ActionChunk, "harness/command", lambda m: received_chunks.append(m.chunk_id),
                                 RELIABLE)
    ros_node.create_subscription(JointState, "joint_states", states.append, RELIABLE)
    replay = subprocess.Popen([sys.executable, "-m", "harness_nodes.recording.replay", str(bag), "--rate", "4",
                               "--topics", "/harness/command", "/joint_states", "--loop"],
                              env=ros_env(domain_id), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, text=True)
    try:
        assert spin_until(ros_node, lambda: chunk_id in received_chunks and len(states) > 20, 60.0)
        assert {s.name[0] for s in states} == {"panda_joint1"}
    finally:
        if replay.poll() is None:
            os.killpg(replay.pid, signal.SIGINT)
        output = replay.communicate(timeout=20)[0]
    assert replay.returncode == 0, output
    assert "playing 2 topics" in output


@pytest.mark.timeout(120)
def test_export_writes_the_lerobot_layout(recorded_run, tmp_path):
    bag, _, _ = recorded_run
    out = tmp_path / "dataset"
    # without ROS: the export is a pip command (rosbags deserializes with the recording's schemas)
    code = ("import sys; sys.modules['rclpy'] = sys.modules['builtin_interfaces'] = None\n"
            "from harness_nodes.recording.export import main\n"
            f"sys.exit(main([{str(bag)!r}, {str(out)!r}, '--task', 'move along x']))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"episodes": 1' in run.stdout
    ds, info = assert_lerobot_layout(out, fps=5.0)
    assert info["robot_type"] == "panda" and info["total_episodes"] == 1
    assert info["features"]["observation.state"]["names"] == list(STATE_NAMES)
    assert info["features"]["action"]["names"] == list(ACTION_NAMES)
    assert sorted(ds.video_keys) == ["observation.images.scene", "observation.images.wrist"]
    for key in ds.video_keys:
        assert ds.video(key).shape == (len(ds), IMAGE_SIZE, IMAGE_SIZE, 3)
        assert ds.video(key).std() > 5          # a rendered scene, not a blank frame
    state, action = ds.columns["observation.state"], ds.columns["action"]
    assert np.all(np.isfinite(state)) and np.all(np.isfinite(action))
    travelled = state[:, 0].max() - state[:, 0].min()
    assert 0.03 < travelled < 0.05, travelled                 # the 4 cm move, measured by FK
    assert action[:, 0].max() > 0.005 and np.all(action[:, 0] > -1e-3)   # asked along +x only
    assert np.all(np.abs(action[:, :3]) <= 0.03 + 1e-6)
    assert np.all(action[:, 4] == 1.0)                        # the gripper never asked to close
    assert [ds.tasks[i] for i in set(ds.columns["task_index"])] == ["move along x"]
    # a second export into the same, now full, directory is refused and changes nothing
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert export_cmd.main([str(bag), str(out)]) == 2
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.timeout(60)
def test_recorder_refuses_an_unusable_destination_before_recording(start_node, tmp_path):
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("x")
    full = tmp_path / "full"
    cases = [({"output_dir": str(a_file)}, "is not a directory"),
             ({"output_dir": str(full), "min_free_mb": 1e9}, "not enough free space"),
             ({"output_dir": str(tmp_path / "bad"), "name": "../escape"}, "plain directory name")]
    for overrides, reason in cases:
        node = start_node("harness_nodes.recording.node", "recorder.yaml", **overrides)
        deadline = time.monotonic() + 30
        while node.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not node.alive() and node.proc.returncode in (EXIT_CANNOT_START, 2), node.log()
        assert reason in node.log(), node.log()
    assert list(full.iterdir()) == []          # nothing written where the recording was refused
    assert not (tmp_path / "bad").exists() and not (tmp_path / "escape").exists()


@pytest.mark.timeout(240)
def test_recorder_survives_hostile_parameters_and_messages(start_node, ros_node, tmp_path):
    from rosbags.highlevel import AnyReader

    recorder = start_node("harness_nodes.recording.node", "recorder.yaml", output_dir=str(tmp_path), name="fuzz",
                          topics=["harness/command"], discovery_period=0.2)
    params = ParameterClient(ros_node, "recorder")
    params.wait()
    diagnostics: list = []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.extend(
        s for s in m.status if s.name.startswith("recorder")), 10)
    publisher = ros_node.create_publisher(ActionChunk, "harness/command", RELIABLE)
    assert spin_until(ros_node, lambda: publisher.get_subscription_count() >= 1, 30.0), recorder.log()
    names = sorted(["output_dir", "name", "topics", "min_free_mb", "queue_mb", "max_message_mb", "discovery_period"])
    kept = {n: params.get(n) for n in names}
    published: list[str] = []
    published_sizes: list[int] = []

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(names), value=ALWAYS_BAD, chunk=chunks())
    def check(name, value, chunk):
        result = params.set(name, value)
        assert not result.successful, f"{name} := {str(value)[:60]} accepted"
        got = params.get(name)
        assert (list(got) if isinstance(kept[name], list) else got) == \
            (list(kept[name]) if isinstance(kept[name], list) else kept[name])
        publisher.publish(chunk)
        published.append(chunk.chunk_id)
        published_sizes.append(len(chunk.ee_poses))

    check()
    diagnostics.clear()
    assert spin_until(ros_node, lambda: diagnostics, 10.0) and recorder.alive()
    values = {kv.key: kv.value for kv in diagnostics[-1].values}
    assert spin_until(ros_node, lambda: any(int({kv.key: kv.value for kv in d.values}["messages_written"])
                                            == len(published) for d in diagnostics), 10.0), values
    assert recorder.stop() == 0, recorder.log()[-2000:]
    with AnyReader([tmp_path / "fuzz"]) as reader:
        recorded = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert len(recorded) == len(published)      # hostile content included: a recorder records what was said
    assert [len(m.ee_poses) for m in recorded] == published_sizes
