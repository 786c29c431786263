"""Replay a recording onto its topics, with the recorded timing.

    python -m harness_nodes.recording.replay BAG [--rate 1.0] [--topics T ...] [--loop] [--delay S]

BAG is a rosbag2 directory (or its .mcap file). Every recorded message is published again,
serialized as it was recorded, on its topic with its type (rclpy publishers of the installed
types) and the QoS its publishers offered (reliability, durability, depth). `--rate 2` plays twice
as fast; `--loop` starts over at the end until Ctrl-C. The whole file is checked before anything is
published: a missing, corrupt or unreadable recording, an unknown `--topics` name or no topic whose
type is installed is a clear error and exit 2, with no node started. Topics of types not installed
here are left out with a warning.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from pathlib import Path

from harness_nodes.recording.bagfile import RecordingReadError, open_recording

EXIT_BAD_INPUT = 2


def select_connections(reader, topics: list[str] | None):
    """The connections to play: all, or those of `topics` (unknown names: RecordingReadError)."""
    available = sorted({c.topic for c in reader.connections})
    if topics:
        topics = [t if t.startswith("/") else f"/{t}" for t in topics]   # recorded names are absolute
        unknown = [t for t in topics if t not in available]
        if unknown:
            raise RecordingReadError(f"topics {unknown} are not in the recording; it has {available}")
        return [c for c in reader.connections if c.topic in topics]
    return list(reader.connections)


def qos_of(connection):
    """The QoS the recorded publishers offered (reliable + volatile, depth 10 if not recorded)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    offered = list(getattr(connection.ext, "offered_qos_profiles", []) or [])
    reliable, latched, depth = True, False, 10
    if offered:
        first = offered[0]
        reliable = getattr(first.reliability, "name", "") != "BEST_EFFORT"
        latched = getattr(first.durability, "name", "") == "TRANSIENT_LOCAL"
        depth = max(1, min(int(first.depth or 10), 1000))
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def play(reader, connections, publishers: dict, rate: float, loop: bool, stop: threading.Event) -> int:
    """Publish the messages of `connections` at `rate` times the recorded pace; returns the count."""
    count = 0
    while not stop.is_set():
        start_wall, first_stamp = time.monotonic(), None
        for connection, stamp, data in reader.messages(connections=connections):
            if first_stamp is None:
                first_stamp = stamp
            due = start_wall + (stamp - first_stamp) * 1e-9 / rate
            if stop.wait(max(0.0, due - time.monotonic())):
                return count
            publishers[connection.id].publish(bytes(data))
            count += 1
        if not loop or first_stamp is None:
            break
    return count


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bag", type=Path, help="rosbag2 directory (or its .mcap file)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (> 0)")
    ap.add_argument("--topics", nargs="+", default=None, help="play only these topics (names as recorded; a missing leading / is added)")
    ap.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    ap.add_argument("--delay", type=float, default=0.0, help="s to wait after creating the publishers")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (math.isfinite(args.rate) and 0.0 < args.rate <= 1000.0):
        print(f"replay: --rate {args.rate} must be > 0 and <= 1000", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (math.isfinite(args.delay) and 0.0 <= args.delay <= 3600.0):
        print(f"replay: --delay {args.delay} must be within 0..3600 s", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        reader = open_recording(args.bag)
        connections = select_connections(reader, args.topics)
    except RecordingReadError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from harness_nodes.recording.node import message_class
    from harness_nodes.recording.core import RecordingError

    playable, classes = [], {}
    for c in connections:
        try:
            classes[c.id] = message_class(c.msgtype)
            playable.append(c)
        except RecordingError as exc:
            print(f"replay: leaving out {c.topic}: {exc}", file=sys.stderr)
    if not playable:
        print(f"replay: {args.bag}: no topic of an installed type to play", file=sys.stderr)
        reader.close()
        return EXIT_BAD_INPUT

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("recording_replay")
    try:
        publishers = {c.id: node.create_publisher(classes[c.id], c.topic, qos_of(c)) for c in playable}
        node.get_logger().info(f"playing {len(playable)} topics of {args.bag} at rate {args.rate}"
                               f"{' in a loop' if args.loop else ''}")
        if args.delay:
            stop.wait(args.delay)
        count = play(reader, playable, publishers, args.rate, args.loop, stop)
        node.get_logger().info(f"published {count} messages")
    finally:
        reader.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
