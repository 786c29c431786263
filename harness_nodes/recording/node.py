"""ROS 2 node `recorder`: records harness topics into a rosbag2 directory with MCAP storage.

  sub <topics>        any type, serialized (raw: nothing is deserialized); QoS adapted to the
                      publishers as `ros2 bag record` does (reliable only if every publisher is,
                      transient-local only if every publisher is), history depth 100
  pub /diagnostics    diagnostic_msgs/DiagnosticArray  1 Hz: topics recorded, messages written and
                      dropped, the bag's path, a stopped recording's reason

Topics are looked for every `discovery_period` s, so a topic that appears after the start is
recorded from then on (subscribed once it has a publisher, with the QoS that publisher offers; a
publisher that appears later with a QoS the subscription cannot match is not recorded, as with
`ros2 bag record`). A topic whose type has no installed interface file is reported (WARN) and
left out. Callbacks only stamp the message (node clock: `use_sim_time` follows /clock) and queue
it; the writer thread (core.BagWriter) writes, so a slow disk never blocks the executor. Before
anything is subscribed the destination is checked (directory writable, `min_free_mb` free, no bag
of that name): otherwise the node refuses to start (exit 3) with the reason. The bag is
`<output_dir>/<name>.partial` while recording and renamed to `<output_dir>/<name>` when the node
stops (SIGINT/SIGTERM).
"""
from __future__ import annotations

import importlib
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from harness_nodes.common.callbacks import guarded
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.qos import DIAGNOSTICS_QOS
from harness_nodes.recording.core import (BagWriter, MessageDefinitions, QosInfo, RecorderParameters,
                                          RecordingError, check_destination, default_bag_name, split_type)

NODE_NAME = "recorder"
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_PERIOD = 1.0      # s
RECORD_DEPTH = 100            # history depth of the recording subscriptions
MB = 1_000_000


def message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Type' (RecordingError if it is not installed)."""
    pkg, name = split_type(msgtype)
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise RecordingError(f"message type {msgtype} is not installed (no Python module {pkg}.msg.{name})") from None


def adapted_qos(publishers) -> tuple[QoSProfile, QosInfo]:
    """A subscription QoS that matches every current publisher, and what they offer."""
    reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = bool(publishers) and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                       for p in publishers)
    profile = QoSProfile(depth=RECORD_DEPTH, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
    depth = max((p.qos_profile.depth for p in publishers), default=10) or 10
    return profile, QosInfo(reliable=reliable, transient_local=latched, depth=int(depth))


class Recorder(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = p = declare_and_load(self, RecorderParameters)
        self.final = check_destination(p.output_dir, p.name or default_bag_name(), p.min_free_mb)
        self.definitions = MessageDefinitions()
        self.wanted = {self.resolve_topic_name(t): t for t in p.topics}
        self.subscribed: dict[str, str] = {}      # topic -> type
        self.skipped: dict[str, str] = {}         # topic -> why it is not recorded
        self.writer = BagWriter(self.final, queue_bytes=int(p.queue_mb * MB),
                                max_message_bytes=int(p.max_message_mb * MB),
                                min_free_bytes=int(p.min_free_mb * MB),
                                custom_data={"recorder": self.get_fully_qualified_name()})
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_timer(p.discovery_period, guarded(self, self._discover))
        self.create_timer(DIAGNOSTICS_PERIOD, guarded(self, self._on_diagnostics))
        self._discover()
        self.get_logger().info(f"recording {len(self.wanted)} topics into {self.writer.partial} "
                               f"(renamed to {self.final.name} when stopped)")

    def _discover(self) -> None:
        available = dict(self.get_topic_names_and_types())
        for topic in self.wanted:
            if topic in self.subscribed or topic not in available:
                continue
            types = available[topic]
            msgtype = types[0]
            try:
                cls = message_class(msgtype)
                definition = self.definitions.get(msgtype)
            except RecordingError as exc:
                if self.skipped.get(topic) != str(exc):
                    self.skipped[topic] = str(exc)
                    self.get_logger().warn(f"not recording {topic}: {exc}")
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:      # only subscribers so far: the QoS to match is not known yet
                continue
            if len(types) > 1:
                self.get_logger().warn(f"{topic} has several types {types}: recording {msgtype}")
            profile, offered = adapted_qos(publishers)
            self.writer.add_topic(topic, definition, offered)
            self.create_subscription(cls, topic, guarded(self, self._make_callback(topic), f"record {topic}"),
                                     profile, raw=True)
            self.subscribed[topic] = msgtype
            self.skipped.pop(topic, None)

    def _make_callback(self, topic: str):
        def on_message(data: bytes) -> None:
            self.writer.offer(topic, self.get_clock().now().nanoseconds, data)
        return on_message

    def _on_diagnostics(self) -> None:
        stats = self.writer.stats
        errors = sum(getattr(self, "callback_errors", {}).values())
        if stats.error:
            level, message = DiagnosticStatus.ERROR, stats.error
        elif self.skipped or stats.dropped or errors:
            level, message = DiagnosticStatus.WARN, (f"{stats.dropped} messages dropped; "
                                                     f"not recorded: {sorted(self.skipped)}")
        elif not self.subscribed:
            level, message = DiagnosticStatus.WARN, "none of the topics is published yet"
        else:
            level, message = DiagnosticStatus.OK, f"recording {len(self.subscribed)} topics"
        values = {"bag": str(self.writer.partial), "topics_recorded": len(self.subscribed),
                  "topics_waiting": len(set(self.wanted) - set(self.subscribed)),
                  "messages_written": sum(stats.written.values()), "messages_dropped": stats.dropped,
                  "bytes_written": stats.bytes_written, "callback_errors": errors}
        status = diagnostic_status(level, f"{self.get_name()}: recording", "recorder", message, values,
                                   max_text=512)
        publish_diagnostics(self.diagnostics_pub, self.get_clock().now().to_msg(), [status])

    def finish(self) -> None:
        path = self.writer.close()
        stats = self.writer.stats
        total = sum(stats.written.values())
        if path is None:
            self.get_logger().error(f"recording failed, {self.writer.partial} is incomplete: {stats.error}")
        else:
            note = f" ({stats.error})" if stats.error else ""
            self.get_logger().info(f"recorded {total} messages on {len(stats.written)} topics "
                                   f"({stats.dropped} dropped) into {path}{note}")


def main(args=None) -> int:
    return run_node(NODE_NAME, Recorder, args, on_exit=lambda node: node.finish())


if __name__ == "__main__":
    sys.exit(main())
