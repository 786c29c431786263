"""Operator command for the supervisor's help requests (terminal):

    python -m harness_nodes.supervisor.operator list  [--wait S]
    python -m harness_nodes.supervisor.operator answer <request_id> <response...> [--kind K] [--note TEXT]

`list` prints the help requests heard on harness/help_request (transient local: recent ones reach
a late listener) and marks the open one (the supervisor reports waiting_for_human for its task on
harness/status; one task runs at a time, so at most one request is open). `answer` publishes a
HumanFeedback (kind from --kind, else: "abort" -> abort, a position -> correct, otherwise approve)
and waits, bounded, for the supervisor to stop waiting.
"""
from __future__ import annotations

from harness_nodes.supervisor.runner import KIND_ABORT, KIND_APPROVE, KIND_CORRECT, KIND_REJECT, parse_position

KINDS = {"approve": KIND_APPROVE, "reject": KIND_REJECT, "correct": KIND_CORRECT, "abort": KIND_ABORT}


def kind_for(response: str, kind: str | None = None) -> int:
    """The HumanFeedback kind an answer is sent with."""
    if kind:
        return KINDS[kind]
    text = response.strip().lower()
    if text.startswith("abort"):
        return KIND_ABORT
    if parse_position(text) is not None:
        return KIND_CORRECT
    return KIND_APPROVE
