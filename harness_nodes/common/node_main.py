"""The `main()` every harness node shares: init rclpy, build the node (a bad parameter or config
exits non-zero with the reason), spin until SIGINT/SIGTERM or shutdown, clean up, exit 0.

Going down is orderly whatever the signals: `ros2 launch` sends SIGINT to the whole process group
on Ctrl-C and then its own SIGINT (and SIGTERM if a node is slow), so a node sees one, two or
three signals in quick succession. rclpy's own handlers would shut the context down from inside
the signal (every later publish, take or destroy raises `RCLError ... context is not valid`) and
then raise KeyboardInterrupt wherever the main thread happens to be (in `destroy_node`, a SQLite
close, a worker's wait). So rclpy installs no signal handlers here: SIGINT and SIGTERM only ask
the spin loop to stop; the loop stops, `on_exit(node)` runs with the context still valid (final
flushes, the router's hold), the node is destroyed and the context shut down. Later signals are
noted and ignored, up to the end of the process (the interpreter's own finalisation would otherwise
reset SIGINT to its default and a late signal would kill it with -2). The exit code is 0 unless the
node could not start.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from harness_nodes.common.params import ParameterError

EXIT_BAD_PARAMETER = 2
EXIT_CANNOT_START = 3
SPIN_PERIOD = 0.1      # s: longest wait of the spin loop before it looks at the stop request
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by SIGINT/SIGTERM (any number of them, never raising), read by the spin loop."""

    def __init__(self):
        self.event = threading.Event()
        self.signals: list[int] = []
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def ignore_further(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.signals.append(signum)
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


def _spin(node, context, stop: StopRequest, make_executor: Callable | None) -> None:
    executor = make_executor(context) if make_executor else SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while not stop and context.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD)
    finally:
        executor.shutdown(timeout_sec=1.0)


def run_node(name: str, factory: Callable[[], "rclpy.node.Node"], args=None,
             on_start: Callable[[object], int] | None = None,
             on_exit: Callable[[object], None] | None = None,
             executor: Callable[[object], "rclpy.executors.Executor"] | None = None) -> int:
    """Run one node to completion and return the process exit code.

    `executor(context)` makes the executor to spin with (default: single-threaded), e.g. a
    MultiThreadedExecutor for a node whose heavy service runs in its own callback group.

    `on_start(node)` may return a non-zero code to stop before spinning (e.g. a failed lifecycle
    autostart); `on_exit(node)` runs before the node is destroyed, with the context still valid
    (final flushes, commands that must go out, warnings)."""
    stop = StopRequest()
    stop.install()      # before anything slow: a signal during start-up is a clean stop too
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    context = rclpy.get_default_context()
    logger = rclpy.logging.get_logger(name)
    try:
        node = factory()
    except ParameterError as exc:
        logger.error(f"invalid parameter: {exc}")
        print(f"{name}: invalid parameter: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        stop.restore()
        return EXIT_BAD_PARAMETER
    except Exception as exc:   # bad robot description, missing URDF, unusable database, ...
        logger.error(f"cannot start: {exc}")
        print(f"{name}: cannot start: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        stop.restore()
        return EXIT_CANNOT_START
    code = 0
    try:
        code = on_start(node) if on_start else 0
        if code == 0 and not stop:
            _spin(node, context, stop, executor)
    except ExternalShutdownException:
        pass
    finally:
        if stop.signals:
            names = ", ".join(signal.Signals(s).name for s in stop.signals)
            logger.info(f"stopping on {names}")
        try:
            if on_exit:
                on_exit(node)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
            if stop.signals:
                stop.ignore_further()   # also while the interpreter finalises (it resets Python handlers)
            else:
                stop.restore()
    return code
