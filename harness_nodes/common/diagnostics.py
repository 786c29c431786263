"""/diagnostics for every node: one DiagnosticStatus from a level, a message and a dict of values
(each value a KeyValue, as diagnostic_updater's DiagnosticStatusWrapper builds them), and the
DiagnosticArray that carries statuses out, stamped."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def format_value(value, float_format: str | None = None) -> str:
    if float_format is not None and isinstance(value, float):
        return format(value, float_format)
    return str(value)


def diagnostic_status(level, name: str, hardware_id: str, message: str, values: dict | None = None, *,
                      float_format: str | None = None, max_text: int | None = None) -> DiagnosticStatus:
    """A status whose values are `values` as KeyValues. Floats are written with `float_format` when
    given (e.g. ".3f"), anything else with str(); `max_text` caps the message and each value."""
    def cap(text: str) -> str:
        return text if max_text is None else text[:max_text]
    return DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=cap(message),
                            values=[KeyValue(key=str(k), value=cap(format_value(v, float_format)))
                                    for k, v in (values or {}).items()])


def publish_diagnostics(publisher, stamp, statuses: list[DiagnosticStatus]) -> None:
    """Publish `statuses` as one DiagnosticArray stamped `stamp` (builtin_interfaces Time)."""
    array = DiagnosticArray(status=list(statuses))
    array.header.stamp = stamp
    publisher.publish(array)
