"""The `main()` every harness node shares: init rclpy, build the node (a bad parameter or config
exits non-zero with the reason), spin until Ctrl-C or shutdown, clean up."""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException

from harness_nodes.common.params import ParameterError

EXIT_BAD_PARAMETER = 2
EXIT_CANNOT_START = 3


def run_node(name: str, factory: Callable[[], "rclpy.node.Node"], args=None,
             on_start: Callable[[object], int] | None = None,
             on_exit: Callable[[object], None] | None = None) -> int:
    """Run one node to completion and return the process exit code.

    `on_start(node)` may return a non-zero code to stop before spinning (e.g. a failed lifecycle
    autostart); `on_exit(node)` runs before the node is destroyed (final flushes, warnings)."""
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(name)
    try:
        node = factory()
    except ParameterError as exc:
        logger.error(f"invalid parameter: {exc}")
        print(f"{name}: invalid parameter: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return EXIT_BAD_PARAMETER
    except Exception as exc:   # bad robot description, missing URDF, unusable database, ...
        logger.error(f"cannot start: {exc}")
        print(f"{name}: cannot start: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return EXIT_CANNOT_START
    code = on_start(node) if on_start else 0
    try:
        if code == 0:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if on_exit:
            on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return code
