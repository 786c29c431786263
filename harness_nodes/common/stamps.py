"""Conversions between builtin_interfaces Time/Duration messages and float seconds, for every node.

`to_seconds` reads either message (both are sec + nanosec). `to_time` gives the zero stamp for a
time that is negative or not finite (a stamp cannot hold it); `to_duration` keeps the sign as ROS
does (negative sec, nanosec in [0, 1e9)). Nanoseconds are rounded and carried into seconds.
The message types are imported where they are built, so `to_seconds` also reads stamps without ROS
(e.g. messages deserialized from a recording by rosbags)."""
from __future__ import annotations

import math


def to_seconds(stamp) -> float:
    """Seconds of a builtin_interfaces Time or Duration."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def _split(t: float) -> tuple[int, int]:
    sec = int(math.floor(t))
    nanosec = int(round((t - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return sec, nanosec


def to_time(t: float) -> Time:
    """Stamp of `t` seconds; the zero stamp when `t` is negative or not finite."""
    from builtin_interfaces.msg import Time

    if not math.isfinite(t) or t < 0:
        return Time()
    sec, nanosec = _split(t)
    return Time(sec=sec, nanosec=nanosec)


def to_duration(t: float) -> Duration:
    """Duration of `t` seconds (builtin_interfaces/Duration)."""
    from builtin_interfaces.msg import Duration

    sec, nanosec = _split(t)
    return Duration(sec=sec, nanosec=nanosec)
