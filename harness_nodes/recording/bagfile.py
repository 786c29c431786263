"""Opening a recording for reading (replay, export): a rosbags AnyReader over a rosbag2 directory,
checked end to end before anyone acts on it, so a corrupt file is an error before anything is
published or written."""
from __future__ import annotations

from pathlib import Path


class RecordingReadError(ValueError):
    """A recording that cannot be read (the message names the file and the reason)."""


def open_recording(path: Path):
    """An opened rosbags AnyReader of the bag at `path` (directory or .mcap), checked end to end:
    every message record is read once, so a truncated or corrupt file fails here."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise RecordingReadError(f"{path}: no such recording")
    if path.is_file():
        path = path.parent if (path.parent / "metadata.yaml").is_file() else path
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise RecordingReadError(f"{path}: not a rosbag2 directory (no metadata.yaml); "
                                 f"a recording still being written is <name>.partial")
    try:
        reader = AnyReader([path])
        reader.open()
    except Exception as exc:   # noqa: BLE001 - rosbags raises several types for a bad file
        raise RecordingReadError(f"{path}: not a readable recording: {type(exc).__name__}: {exc}") from None
    try:
        for _ in reader.messages():
            pass
    except Exception as exc:   # noqa: BLE001
        reader.close()
        raise RecordingReadError(f"{path}: corrupt recording: {type(exc).__name__}: {exc}") from None
    return reader
