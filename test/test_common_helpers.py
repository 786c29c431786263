"""The helpers every node shares from harness_nodes/common/: time <-> message conversions, the
diagnostics status builder, and the quaternion helpers (against Pinocchio's)."""
import math

import numpy as np
import pinocchio as pin
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.geometry import matrix_to_quat, quat_multiply, quat_to_matrix, yaw_of, yaw_quat
from harness_nodes.common.stamps import to_duration, to_seconds, to_time


@pytest.mark.parametrize("t", [0.0, 1e-9, 0.5, 1.25, 12345.678901234, 1.7e9 + 0.123456])
def test_time_round_trips_within_a_nanosecond(t):
    stamp = to_time(t)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert to_seconds(stamp) == pytest.approx(t, abs=1e-9 + abs(t) * 1e-15)
    assert to_seconds(to_duration(t)) == pytest.approx(t, abs=1e-9 + abs(t) * 1e-15)


def test_nanoseconds_that_round_up_carry_into_seconds():
    stamp = to_time(2.9999999999)
    assert (stamp.sec, stamp.nanosec) == (3, 0)
    duration = to_duration(0.99999999996)
    assert (duration.sec, duration.nanosec) == (1, 0)


@pytest.mark.parametrize("t", [-1.0, -1e-12, math.nan, math.inf, -math.inf])
def test_a_time_no_stamp_can_hold_is_the_zero_stamp(t):
    stamp = to_time(t)
    assert (stamp.sec, stamp.nanosec) == (0, 0)


def test_negative_durations_keep_their_sign_as_ros_does():
    d = to_duration(-1.25)
    assert (d.sec, d.nanosec) == (-2, 750_000_000)
    assert to_seconds(d) == pytest.approx(-1.25)


def test_diagnostic_status_carries_values_formatted_and_capped():
    s = diagnostic_status(DiagnosticStatus.WARN, "n", "hw", "m" * 600,
                          {"count": 3, "ratio": 0.123456, "text": "x" * 600}, float_format=".3f", max_text=500)
    assert (s.level, s.name, s.hardware_id, len(s.message)) == (DiagnosticStatus.WARN, "n", "hw", 500)
    values = {kv.key: kv.value for kv in s.values}
    assert values == {"count": "3", "ratio": "0.123", "text": "x" * 500}
    plain = diagnostic_status(DiagnosticStatus.OK, "n", "hw", "ok", {"ratio": 0.123456})
    assert plain.values[0].value == "0.123456"


def test_publish_diagnostics_sends_one_stamped_array():
    sent = []

    class Publisher:
        def publish(self, msg):
            sent.append(msg)
    status = diagnostic_status(DiagnosticStatus.OK, "n", "hw", "ok")
    publish_diagnostics(Publisher(), to_time(4.5), [status])
    assert len(sent) == 1 and to_seconds(sent[0].header.stamp) == 4.5 and sent[0].status[0].name == "n"


def test_quaternion_helpers_agree_with_pinocchio():
    rng = np.random.default_rng(3)
    for q in rng.normal(size=(50, 4)):
        q = q / np.linalg.norm(q)
        expected = pin.Quaternion(q[3], q[0], q[1], q[2]).toRotationMatrix()
        assert np.allclose(quat_to_matrix(q), expected, atol=1e-12)
        back = matrix_to_quat(expected)
        assert np.allclose(back, q, atol=1e-9) or np.allclose(back, -q, atol=1e-9)
    a, b = yaw_quat(0.3), yaw_quat(0.4)
    assert np.allclose(quat_multiply(a, b), yaw_quat(0.7))
    assert yaw_of(yaw_quat(-1.2)) == pytest.approx(-1.2)


def _busy_loop_waits(lock_factory, use_handover: bool) -> float:
    """Longest wait of a callback for a lock a loop re-takes at once after each step."""
    import threading
    import time
    lock = lock_factory()
    running = True

    def loop():
        x = 0
        while running:
            if use_handover:
                lock.yield_to_waiters()
            with (lock.loop() if use_handover else lock):
                for i in range(2000):
                    x += i

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    time.sleep(0.05)
    waits = []
    for _ in range(20):
        t = time.monotonic()
        with lock:
            pass
        waits.append(time.monotonic() - t)
        time.sleep(0.005)
    running = False
    worker.join(5.0)
    return max(waits)


def test_handover_lock_lets_a_waiting_callback_in_between_the_steps_of_a_busy_loop():
    from harness_nodes.common.handover import HandoverLock
    # The loop's step takes ~0.1 ms; a callback waits for at most one step plus the hand-over
    # (a plain RLock here lets it wait up to a second or more: the loop re-takes it first).
    assert _busy_loop_waits(HandoverLock, use_handover=True) < 0.5
    lock = HandoverLock()
    assert lock.yield_to_waiters() is False          # nobody waiting: the loop goes straight on
    with lock:
        with lock:                                    # re-entrant
            assert lock.waiting == 0
