"""Constants the pure cores copy from the generated interfaces (they cannot import the messages)
equal the generated message/service constants, so the two cannot drift apart."""
from __future__ import annotations

import re

import pytest

from robot_harness.msg import (ActionChunk, ExecutionFeedback, HumanFeedback, MemoryEvent, MemoryFact,
                               ObjectObservation)
from robot_harness.srv import SwitchController


def msg_constants(cls, prefix: str) -> dict[str, object]:
    """{NAME without prefix: value} of the generated constants NAME starting with `prefix`."""
    names = [n for n in dir(cls) if n.startswith(prefix) and n.isupper()]
    return {n[len(prefix):]: getattr(cls, n) for n in names}


def enum_members(enum_cls) -> dict[str, int]:
    return {m.name: int(m.value) for m in enum_cls}


@pytest.mark.parametrize("enum_path, msg_cls, prefix", [
    ("harness_nodes.router.validation:Space", ActionChunk, "SPACE_"),
    ("harness_nodes.router.validation:GripperCommand", ActionChunk, "GRIPPER_"),
    ("harness_nodes.router.validation:Failure", ExecutionFeedback, "FAILURE_"),
    ("harness_nodes.memory.facts:Kind", MemoryFact, "KIND_"),
    ("harness_nodes.memory.facts:State", MemoryFact, "STATE_"),
    ("harness_nodes.memory.facts:EventType", MemoryEvent, "EVENT_"),
    ("harness_nodes.memory.facts:ObsStatus", ObjectObservation, "STATUS_"),
])
def test_mirrored_enum_equals_generated_constants(enum_path, msg_cls, prefix):
    import importlib

    module, _, name = enum_path.partition(":")
    enum_cls = getattr(importlib.import_module(module), name)
    generated = msg_constants(msg_cls, prefix)
    assert generated, f"{msg_cls.__name__} has no {prefix}* constants"
    assert enum_members(enum_cls) == generated


def test_module_level_mirrors_equal_generated_constants():
    from harness_nodes.expert import plan
    from harness_nodes.perception import core as perception_core
    from harness_nodes.perception import node as perception_node
    from harness_nodes.supervisor import planner as supervisor_planner
    from harness_nodes.supervisor import runner as supervisor_runner

    mirrors = {
        (plan.GRIPPER_NONE, plan.GRIPPER_OPEN, plan.GRIPPER_CLOSE):
            (ActionChunk.GRIPPER_NONE, ActionChunk.GRIPPER_OPEN, ActionChunk.GRIPPER_CLOSE),
        (perception_core.STATUS_SEEN, perception_core.STATUS_EXPECTED_NOT_SEEN):
            (ObjectObservation.STATUS_SEEN, ObjectObservation.STATUS_EXPECTED_NOT_SEEN),
        (perception_node.KIND_VISUAL, perception_node.STATE_VALID, perception_node.STATE_STALE):
            (MemoryFact.KIND_VISUAL, MemoryFact.STATE_VALID, MemoryFact.STATE_STALE),
        (supervisor_planner.STATE_VALID, supervisor_planner.STATE_STALE, supervisor_planner.STATE_INVALID,
         supervisor_planner.STATE_CONTRADICTED):
            (MemoryFact.STATE_VALID, MemoryFact.STATE_STALE, MemoryFact.STATE_INVALID, MemoryFact.STATE_CONTRADICTED),
        (supervisor_runner.KIND_APPROVE, supervisor_runner.KIND_REJECT, supervisor_runner.KIND_CORRECT,
         supervisor_runner.KIND_ABORT):
            (HumanFeedback.KIND_APPROVE, HumanFeedback.KIND_REJECT, HumanFeedback.KIND_CORRECT,
             HumanFeedback.KIND_ABORT),
    }
    for mirrored, generated in mirrors.items():
        assert mirrored == generated


def test_controller_names_equal_switch_controller_constants():
    """The router's controller names, its `controller` parameter and the robot description's
    controller type accept exactly SwitchController's CONTROLLER_* strings."""
    from harness_nodes.common.robot_description import ControllerTopics
    from harness_nodes.router.configuration import RouterParameters
    from harness_nodes.router.node import CONTROLLERS

    generated = set(msg_constants(SwitchController.Request, "CONTROLLER_").values())
    assert set(CONTROLLERS) == generated

    def pattern_choices(model, field: str) -> set[str]:
        pattern = next(m.pattern for m in model.model_fields[field].metadata if getattr(m, "pattern", None))
        return {c for c in re.fullmatch(r"\^\((.*)\)\$", pattern).group(1).split("|") if c}

    assert pattern_choices(RouterParameters, "controller") == generated
    assert pattern_choices(ControllerTopics, "type") == generated
