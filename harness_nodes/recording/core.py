"""Recording core (no rclpy): the recorder's parameters, the checks made before a recording starts,
message definitions read from the installed interface files, and the bag writer that runs on its
own thread.

A recording is a rosbag2 directory with MCAP storage (`metadata.yaml` + `<name>.mcap`), written by
the `rosbags` library, so `ros2 bag info/play`, `rosbags` and Foxglove open it. While it is being
written it lies inside `<name>.partial/`; it is moved to `<output_dir>/<name>` only once the writer
closed it cleanly, so a `<name>` directory is always a complete bag.

Schemas: each topic's message definition is the text of the `.msg` files installed with the
interfaces (`share/<package>/msg/<Type>.msg` under AMENT_PREFIX_PATH, the same files rosidl built
the types from), dependencies appended as rosbag2 does (`MSG: <package>/<Type>` sections), and the
type hash (RIHS01) is the one rosidl wrote next to them (`<Type>.json`).
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

PARTIAL_SUFFIX = ".partial"
BAG_VERSION = 9
# Topics recorded by default: what the router is asked and answers, the arm's state, the sim's
# cameras, the memory and supervisor state, transforms and diagnostics (relative names resolve in
# the recorder's namespace, like the stack's own).
DEFAULT_TOPICS = (
    "harness/command", "harness/command_stream", "harness/execution", "harness/estop",
    "joint_states",
    "cameras/scene/image_raw", "cameras/scene/camera_info",
    "cameras/wrist/image_raw", "cameras/wrist/camera_info",
    "harness/memory", "harness/status",
    "/tf", "/tf_static", "robot_description", "/diagnostics",
)
MAX_TOPICS = 256
MAX_TOPIC_LENGTH = 256
_TOPIC_RE = re.compile(r"^/?[A-Za-z_~][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TYPE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/msg/([A-Za-z][A-Za-z0-9_]*)$")


class RecordingError(RuntimeError):
    """A recording that cannot start or continue (the message says why and what to do)."""


class RecorderParameters(BaseModel):
    """The recorder node's parameters (all read-only: fixed when the recording starts)."""
    model_config = ConfigDict(extra="forbid")
    DYNAMIC: ClassVar[frozenset[str]] = frozenset()

    output_dir: str = Field("recordings", min_length=1, max_length=1024,
                            description="directory the recording is written into (created if missing)")
    name: str = Field("", max_length=128,
                      description="bag directory name; empty: recording-<date>-<time>-<pid>")
    topics: list[str] = Field(list(DEFAULT_TOPICS), min_length=1, max_length=MAX_TOPICS,
                              description="topics to record; relative names resolve in the node's namespace")
    min_free_mb: float = Field(100.0, ge=0.0, le=1e9,
                               description="MB that must stay free on the output disk; less: no start, "
                                           "or the recording is closed early")
    queue_mb: float = Field(256.0, gt=0.0, le=16384.0,
                            description="MB of messages waiting for the writer thread; beyond it messages are dropped and counted")
    max_message_mb: float = Field(64.0, gt=0.0, le=1024.0,
                                  description="a larger message is not recorded (counted as dropped)")
    discovery_period: float = Field(0.5, gt=0.0, le=60.0,
                                    description="s between looks for topics that appeared since")

    @field_validator("topics")
    @classmethod
    def _topics(cls, topics: list[str]) -> list[str]:
        for t in topics:
            if len(t) > MAX_TOPIC_LENGTH or not _TOPIC_RE.match(t):
                raise ValueError(f"'{t[:80]}' is not a valid topic name")
        if len(set(topics)) != len(topics):
            raise ValueError("topics must be unique")
        return topics

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if name and (not _NAME_RE.match(name) or name.endswith(PARTIAL_SUFFIX)):
            raise ValueError(f"'{name[:80]}' must be a plain directory name (letters, digits, _ . -), "
                             f"not ending in {PARTIAL_SUFFIX}")
        return name


def default_bag_name() -> str:
    return f"recording-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def check_destination(output_dir: str | os.PathLike, name: str, min_free_mb: float) -> Path:
    """The final bag path `<output_dir>/<name>`, after making sure a recording can start there:
    the directory exists or can be made, is writable, has `min_free_mb` free, and neither the bag
    nor its `.partial` exists. Anything else raises RecordingError naming the problem."""
    directory = Path(output_dir).expanduser()
    if directory.exists() and not directory.is_dir():
        raise RecordingError(f"recording directory {directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"recording directory {directory} cannot be created: {exc.strerror or exc}") from None
    probe = directory / f".write-test-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RecordingError(f"recording directory {directory} is not writable: {exc.strerror or exc}") from None
    free_mb = shutil.disk_usage(directory).free / 1e6
    if free_mb < min_free_mb:
        raise RecordingError(f"not enough free space in {directory}: {free_mb:.0f} MB free, "
                             f"min_free_mb is {min_free_mb:.0f} MB")
    final = directory / name
    for path in (final, partial_path(final)):
        if path.exists():
            raise RecordingError(f"{path} exists already; choose another name or move it away")
    return final


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


# -- message definitions from the installed interface files -------------------------------------
def interface_file(msgtype: str, suffix: str, prefixes: list[str] | None = None) -> Path | None:
    """`share/<pkg>/msg/<Type><suffix>` in the first prefix of AMENT_PREFIX_PATH that has it."""
    match = _TYPE_RE.match(msgtype)
    if not match:
        return None
    pkg, name = match.groups()
    for prefix in prefixes if prefixes is not None else os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / pkg / "msg" / f"{name}{suffix}"
        if prefix and candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class MessageDefinition:
    msgtype: str          # pkg/msg/Type
    text: str             # ros2msg schema: the .msg file, then each dependency's
    rihs01: str           # type hash as rosidl computed it


class MessageDefinitions:
    """Definitions of message types read from the installed `.msg` files (cached)."""

    def __init__(self, prefixes: list[str] | None = None):
        from rosbags.typesys import Stores, get_typestore

        self.prefixes = prefixes
        self.typestore = get_typestore(Stores.EMPTY)
        self._sources: dict[str, str] = {}
        self._cache: dict[str, MessageDefinition] = {}

    def _load(self, msgtype: str) -> None:
        from rosbags.typesys import get_types_from_msg

        pending = [msgtype]
        while pending:
            current = pending.pop()
            if current in self._sources:
                continue
            path = interface_file(current, ".msg", self.prefixes)
            if path is None:
                raise RecordingError(f"no interface file for {current} (share/<package>/msg/<Type>.msg "
                                     f"in AMENT_PREFIX_PATH): is its package installed?")
            text = path.read_text()
            types = get_types_from_msg(text, current)
            self._sources[current] = text
            self.typestore.register(types)
            for _, fields in types.values():
                pending.extend(_nested_types(fields))

    def get(self, msgtype: str) -> MessageDefinition:
        if msgtype in self._cache:
            return self._cache[msgtype]
        if not _TYPE_RE.match(msgtype):
            raise RecordingError(f"'{msgtype[:120]}' is not a message type (pkg/msg/Type)")
        self._load(msgtype)
        generated, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
        # the order and names of the dependency sections rosbags/rosbag2 use, with the original texts
        sections = [self._sources[msgtype]]
        for dep in re.findall(r"^MSG: (\S+)$", generated, re.M):
            pkg, _, name = dep.partition("/")
            sections.append(f"{'=' * 80}\nMSG: {dep}\n{self._sources[f'{pkg}/msg/{name}']}")
        rihs01 = self._hash(msgtype)
        definition = MessageDefinition(msgtype, "\n".join(s.rstrip("\n") for s in sections) + "\n", rihs01)
        self._cache[msgtype] = definition
        return definition

    def _hash(self, msgtype: str) -> str:
        path = interface_file(msgtype, ".json", self.prefixes)
        if path is not None:
            for entry in json.loads(path.read_text()).get("type_hashes", []):
                if entry.get("type_name") == msgtype:
                    return entry["hash_string"]
        return self.typestore.hash_rihs01(msgtype)


def _nested_types(fields) -> list[str]:
    """Message type names a rosbags field list refers to."""
    found = []

    def visit(desc):
        kind, payload = desc
        if getattr(kind, "name", "") == "NAME":
            found.append(payload)
        elif isinstance(payload, tuple):
            for item in payload:
                if isinstance(item, tuple) and len(item) == 2 and hasattr(item[0], "name"):
                    visit(item)
    for _, desc in fields:
        visit(desc)
    return found


# -- the writer thread --------------------------------------------------------------------------
@dataclass
class QosInfo:
    """The publishers' QoS as metadata.yaml records it (offered_qos_profiles)."""
    reliable: bool = True
    transient_local: bool = False
    depth: int = 10


@dataclass
class RecorderStats:
    written: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    bytes_written: int = 0
    error: str = ""


_STOP = object()


class BagWriter:
    """Writes serialized messages into a bag inside `<final>.partial/` on a thread of its own;
    `close()` finishes the bag and moves it to `<final>`. `offer()` never blocks: beyond `queue_bytes` of waiting
    messages it drops and counts. A write error (disk full) or free space below `min_free_bytes`
    stops the recording: with space left the bag is closed cleanly and marked `stopped_early`;
    after a failed write the `.partial` directory stays as it is (never renamed)."""

    FREE_CHECK_BYTES = 16 * 1024 * 1024     # check the free space every this many bytes written

    def __init__(self, final: Path, *, queue_bytes: int, max_message_bytes: int, min_free_bytes: int,
                 custom_data: dict[str, str] | None = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.final = Path(final)
        self.partial = partial_path(self.final)
        self.queue_bytes = queue_bytes
        self.max_message_bytes = max_message_bytes
        self.min_free_bytes = min_free_bytes
        self.stats = RecorderStats()
        # the bag is made inside `<name>.partial/` under its final name (rosbags names the .mcap after
        # its directory), so closing is one rename of a finished directory
        self.partial.mkdir()
        self._writer = Writer(self.partial / self.final.name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._connections: dict[str, object] = {}
        self._stopped = threading.Event()     # no more messages accepted
        self._closed = False
        self._closing = False
        self._writer.open()
        self._thread = threading.Thread(target=self._run, name="bag-writer", daemon=True)
        self._thread.start()

    @property
    def recording(self) -> bool:
        return not self._stopped.is_set()

    def add_topic(self, topic: str, definition: MessageDefinition, qos: QosInfo) -> None:
        """Declare a topic (its messages may be offered right after; the writer thread adds it first)."""
        self._queue.put(("topic", topic, definition, qos))

    def offer(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        """Queue one serialized message; False when it was dropped (full queue, too large, stopped)."""
        size = len(data)
        with self._lock:
            if self._closing or self._stopped.is_set() or size > self.max_message_bytes or \
                    self._queued_bytes + size > self.queue_bytes:
                self.stats.dropped += 1
                return False
            self._queued_bytes += size
        self._queue.put(("msg", topic, int(timestamp_ns), data))
        return True

    def _run(self) -> None:
        since_check = 0
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if item[0] == "topic":
                _, topic, definition, qos = item
                if self.stats.error:
                    continue
                try:
                    self._connections[topic] = self._writer.add_connection(
                        topic, definition.msgtype, msgdef=definition.text, rihs01=definition.rihs01,
                        offered_qos_profiles=[_rosbags_qos(qos)])
                    self.stats.written.setdefault(topic, 0)
                except Exception as exc:    # noqa: BLE001 - reported, the thread goes on
                    self.stats.error = self.stats.error or f"cannot add {topic}: {exc}"
                continue
            _, topic, stamp, data = item
            with self._lock:
                self._queued_bytes -= len(data)
            if self._stopped.is_set() or topic not in self._connections:
                continue
            try:
                self._writer.write(self._connections[topic], stamp, data)
            except Exception as exc:   # noqa: BLE001 - disk full, I/O error: the recording stops, reported
                self._fail(f"writing {self.partial} failed: {getattr(exc, 'strerror', None) or exc}")
                continue
            self.stats.written[topic] += 1
            self.stats.bytes_written += len(data)
            since_check += len(data)
            if since_check >= self.FREE_CHECK_BYTES:
                since_check = 0
                free = shutil.disk_usage(self.partial).free
                if free < self.min_free_bytes:
                    self.stats.error = (f"free space below min_free_mb ({free / 1e6:.0f} MB left): "
                                        f"recording stopped early")
                    self._writer.set_custom_data("stopped_early", self.stats.error)
                    self._stopped.set()

    def _fail(self, reason: str) -> None:
        self.stats.error = reason
        self._stopped.set()
        try:
            self._writer.abort()
        except Exception:   # noqa: BLE001 - the partial directory stays as the evidence
            pass
        self._writer = None

    def close(self) -> Path | None:
        """Finish: write the rest, close the bag, rename it; returns the bag path (None when a write
        failed: then only `<name>.partial` is there). Safe to call more than once."""
        if self._closed:
            return None if self.stats.error and self._writer is None else self.final
        self._closed = True
        with self._lock:
            self._closing = True     # messages already queued are still written, new offers refused
        self._queue.put(_STOP)
        self._thread.join()
        if self._writer is None:
            return None
        try:
            self._writer.close()
        except OSError as exc:
            self._fail(f"closing {self.partial} failed: {exc.strerror or exc}")
            return None
        self._writer = None
        (self.partial / self.final.name).rename(self.final)
        self.partial.rmdir()
        return self.final


def _rosbags_qos(qos: QosInfo):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, qos.depth,
               QosReliability.RELIABLE if qos.reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if qos.transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def split_type(msgtype: str) -> tuple[str, str]:
    """('pkg', 'Type') of 'pkg/msg/Type'; RecordingError for anything else."""
    match = _TYPE_RE.match(msgtype)
    if not match:
        raise RecordingError(f"'{msgtype[:120]}' is not a message type (pkg/msg/Type)")
    return match.group(1), match.group(2)
