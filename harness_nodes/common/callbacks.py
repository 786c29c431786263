"""Callbacks that no input can kill: every subscriber, service and timer of a harness node goes
through `guarded` / `guarded_service`.

An exception escaping an rclpy callback ends `spin()`, the node exits and the bringup stops the
whole stack, so one malformed message would take the harness down. The guards catch everything
except KeyboardInterrupt/SystemExit, log it (throttled, with the callback's name), count it in
`node.callback_errors` (nodes report the counts on /diagnostics) and, for services, answer with the
response object as it stands after setting its `ok`/`success` flag false and its `message`/`reason`
where the type has one, so the caller always gets an answer.
"""
from __future__ import annotations

import functools
import time
import traceback
from collections import Counter
from typing import Callable

LOG_EVERY = 2.0   # s between two logs of the same callback's failures
MAX_MESSAGE = 512  # characters of an exception message echoed back to a caller


def _record(node, name: str, exc: BaseException) -> str:
    errors: Counter = node.__dict__.setdefault("callback_errors", Counter())
    errors[name] += 1
    last: dict = node.__dict__.setdefault("_callback_error_logged", {})
    text = f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE]
    now = time.monotonic()
    if now - last.get(name, -1e9) >= LOG_EVERY:
        last[name] = now
        node.get_logger().error(
            f"callback {name} failed ({errors[name]} so far), input dropped: {text}\n"
            + "".join(traceback.format_exception(exc, limit=-3)))
    return text


def guarded(node, fn: Callable, name: str | None = None) -> Callable:
    """Wrap a subscriber or timer callback of `node`: an exception is logged and counted, never raised."""
    label = name or getattr(fn, "__name__", "callback")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:   # noqa: BLE001 - the point of the guard
            _record(node, label, exc)
            return None
    return wrapper


def guarded_service(node, fn: Callable, name: str | None = None) -> Callable:
    """Wrap a service callback `(request, response) -> response`: on an exception the caller gets
    the response with its failure flag and reason set instead of no answer at all."""
    label = name or getattr(fn, "__name__", "service")

    @functools.wraps(fn)
    def wrapper(request, response):
        try:
            return fn(request, response)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:   # noqa: BLE001
            text = _record(node, label, exc)
            for flag in ("ok", "success", "accepted"):
                if hasattr(response, flag):
                    setattr(response, flag, False)
            for field in ("message", "reason", "error"):
                if hasattr(response, field) and isinstance(getattr(response, field), str):
                    setattr(response, field, f"internal error: {text}")
                    break
            return response
    return wrapper
