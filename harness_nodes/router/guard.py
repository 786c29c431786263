"""Watchdog and e-stop state of the router (pure, no rclpy): why the router holds right now.

* Command-stream watchdog: once stream commands flow, a gap longer than `command_timeout` -> hold
  (the stream ends; the next stream command starts a new one). The gap is measured on the node's
  clock (sim time under `use_sim_time`) and on a wall clock: whichever runs out first holds, so a
  stopped /clock or a starved loop cannot keep a stale stream alive.
* Supervisor heartbeat: once a heartbeat was seen, silence longer than `heartbeat_timeout` -> hold,
  and new commands are refused until heartbeats resume (0 disables the check).
* E-stop: a pressed e-stop latches a hold; only an explicit reset (service call) releases it, and
  only while the e-stop is no longer pressed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Guard:
    command_timeout: float
    heartbeat_timeout: float = 0.0
    estop_latched: bool = False
    estop_pressed: bool = False
    last_stream: float | None = None
    last_stream_wall: float | None = None
    last_heartbeat: float | None = None
    heartbeat_lost: bool = False

    # ------------------------------------------------------------------ inputs
    def on_estop(self, pressed: bool) -> bool:
        """Returns True when this press newly latches the hold."""
        self.estop_pressed = bool(pressed)
        if pressed and not self.estop_latched:
            self.estop_latched = True
            return True
        return False

    def reset_estop(self) -> tuple[bool, str]:
        if not self.estop_latched:
            return True, "e-stop was not latched"
        if self.estop_pressed:
            return False, "e-stop still pressed: release it (publish false) before the reset"
        self.estop_latched = False
        return True, "e-stop released"

    def on_heartbeat(self, now: float) -> bool:
        """Returns True when heartbeats resume after a loss."""
        self.last_heartbeat = now
        if self.heartbeat_lost:
            self.heartbeat_lost = False
            return True
        return False

    def on_stream(self, now: float, wall: float | None = None) -> None:
        self.last_stream = now
        self.last_stream_wall = wall

    def end_stream(self) -> None:
        self.last_stream = None
        self.last_stream_wall = None

    # ------------------------------------------------------------------ checks
    def check(self, now: float, wall: float | None = None) -> list[str]:
        """Hold reasons that became true since the last call (each reported once). `wall`: a
        monotonic wall clock, the same one passed to `on_stream`."""
        reasons = []
        if self.last_stream is not None:
            gap = now - self.last_stream
            wall_gap = (wall - self.last_stream_wall if wall is not None and self.last_stream_wall is not None
                        else -1.0)
            if gap > self.command_timeout or wall_gap > self.command_timeout:
                reasons.append(f"command stream stale: no command for {max(gap, wall_gap):.3f} s "
                               f"(command_timeout {self.command_timeout} s)")
                self.end_stream()
        if (self.heartbeat_timeout > 0.0 and self.last_heartbeat is not None and not self.heartbeat_lost
                and now - self.last_heartbeat > self.heartbeat_timeout):
            self.heartbeat_lost = True
            reasons.append(f"supervisor heartbeat lost: none for {now - self.last_heartbeat:.3f} s "
                           f"(heartbeat_timeout {self.heartbeat_timeout} s)")
        return reasons

    def refusal(self) -> str | None:
        """Why new commands are refused now, or None."""
        if self.estop_latched:
            return "e-stop latched: call the reset_estop service after releasing the e-stop"
        if self.heartbeat_lost:
            return "supervisor heartbeat lost: commands refused until it resumes"
        return None

    @property
    def streaming(self) -> bool:
        return self.last_stream is not None
