"""The callback guards: an exception never escapes; services still answer with a reason."""
from harness_nodes.common.callbacks import guarded, guarded_service
from robot_harness.srv import QueryMemory, ResetEstop


class FakeLogger:
    def __init__(self):
        self.errors = []

    def error(self, text):
        self.errors.append(text)


class Node:
    def __init__(self):
        self.logger = FakeLogger()

    def get_logger(self):
        return self.logger


def test_subscriber_exception_is_logged_counted_and_swallowed():
    node = Node()

    def boom(msg):
        raise OverflowError("cannot convert float infinity to integer")

    cb = guarded(node, boom)
    assert cb(object()) is None
    assert cb(object()) is None
    assert node.callback_errors["boom"] == 2
    assert len(node.logger.errors) == 1   # throttled
    assert "OverflowError" in node.logger.errors[0]


def test_service_exception_answers_with_failure_and_reason():
    node = Node()

    def boom(req, res):
        raise ValueError("x" * 10_000)

    res = guarded_service(node, boom)(ResetEstop.Request(), ResetEstop.Response())
    assert res.success is False
    assert res.message.startswith("internal error: ValueError") and len(res.message) < 600


def test_service_passes_normal_answers_through():
    node = Node()
    res = guarded_service(node, lambda req, res: res)(QueryMemory.Request(), QueryMemory.Response())
    assert isinstance(res, QueryMemory.Response)
    assert not getattr(node, "callback_errors", {})
