"""Unit tests (no ROS graph) of common/params.py over every node's parameter model: each field has
the right ROS type and range, is read-only or dynamic, a dynamic field's change is validated by the
same model and applied by the node's `_apply_parameters` (no stale copy left anywhere in the node's
objects), bad values are refused with the old model kept, and the parameter files type-check."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from harness_nodes.bringup.stack import node_parameters
from harness_nodes.common.params import (MAX_ARRAY_LENGTH, MAX_STRING_LENGTH, MissingParameters, ParameterError,
                                         check_update, dynamic_fields, parameter_files_for, parameter_specs,
                                         validate_parameters)
from harness_nodes.common.paths import config_dir
from harness_nodes.expert.node import ExpertParameters, PickPlaceExpert
from harness_nodes.latent_policy.node import LatentPolicyNode, LatentPolicyParameters
from harness_nodes.memory.config import MemoryParameters
from harness_nodes.memory.node import MemoryTracker
from harness_nodes.perception.config import PerceptionParameters
from harness_nodes.perception.node import PerceptionNode
from harness_nodes.router.configuration import RouterParameters
from harness_nodes.router.node import ControllerRouter
from harness_nodes.sim.node import SimNode, SimParameters
from harness_nodes.supervisor.config import SupervisorParameters
from harness_nodes.supervisor.node import Supervisor
from harness_nodes.world_model.node import WorldModelNode, WorldModelParameters

# model, node class (its _apply_parameters), node name in config/stack.yaml
NODES = {
    "controller_router": (RouterParameters, ControllerRouter),
    "sim": (SimParameters, SimNode),
    "memory_tracker": (MemoryParameters, MemoryTracker),
    "perception": (PerceptionParameters, PerceptionNode),
    "pick_place_expert": (ExpertParameters, PickPlaceExpert),
    "supervisor": (SupervisorParameters, Supervisor),
    "world_model": (WorldModelParameters, WorldModelNode),
    "latent_policy": (LatentPolicyParameters, LatentPolicyNode),
}
MODELS = [m for m, _ in NODES.values()]
PY_TYPES = {"bool": bool, "integer": int, "double": float, "string": str}


def candidates(spec, current):
    """Values to try as a valid change of a field, nearest the current value first."""
    if spec.type_name == "bool":
        return [not current]
    if spec.type_name in ("integer", "double"):
        lo, hi = spec.range if spec.range else (-math.inf, math.inf)
        base = [current * 0.9, current * 1.1, current + 1, current - 1, current * 0.5, current * 2]
        if math.isfinite(lo) and math.isfinite(hi):
            base += [(lo + hi) / 2, lo + (hi - lo) * 0.25, hi]
        values = [v for v in base if lo <= v <= hi]
        return [int(round(v)) for v in values] if spec.type_name == "integer" else [float(v) for v in values]
    if spec.type_name == "string_array":
        return [["red_cube"], [*current, "extra"]]
    if spec.type_name == "double_array":
        return [[v * 0.9 for v in current], [v * 1.1 for v in current]]
    return ["changed"]


def changed(model_instance, name):
    """`model_instance` with field `name` changed to some other valid value."""
    spec = parameter_specs(type(model_instance))[name]
    current = getattr(model_instance, name)
    for value in candidates(spec, current):
        if value == current:
            continue
        try:
            return check_update(model_instance, {name: value})
        except ParameterError:
            continue
    raise AssertionError(f"no valid new value found for {type(model_instance).__name__}.{name}")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_ros_type_range_and_mode(model):
    specs = parameter_specs(model)
    dynamic = dynamic_fields(model)
    assert dynamic, f"{model.__name__} has no run-time changeable parameter"
    defaults = model.model_construct()
    for name, info in model.model_fields.items():
        spec = specs[name]
        assert spec.read_only == (name not in dynamic)
        assert spec.description == (info.description or "")
        assert spec.required == info.is_required()
        if spec.required:
            continue
        # the default (from a default_factory too) is a value of the declared ROS type
        value = getattr(defaults, name)
        assert spec.default == value
        items = value if spec.type_name.endswith("_array") else [value]
        scalar = PY_TYPES[spec.type_name.removesuffix("_array")]
        assert all(type(v) is scalar for v in items), f"{name}: default {value!r} is not {spec.type_name}"
        lo = next((getattr(m, a) for m in info.metadata for a in ("ge", "gt") if getattr(m, a, None) is not None),
                  None)
        hi = next((getattr(m, a) for m in info.metadata for a in ("le", "lt") if getattr(m, a, None) is not None),
                  None)
        if spec.type_name in ("integer", "double") and (lo is not None or hi is not None):
            assert spec.range[0] == (lo if lo is not None else spec.range[0])
            assert spec.range[1] == (hi if hi is not None else spec.range[1])
            assert spec.range[0] <= value <= spec.range[1]
        else:
            assert spec.range is None


@pytest.mark.parametrize("node_name", list(NODES))
def test_parameter_files_have_the_declared_types(node_name):
    """rcl reads `1` as an integer and `1.0` as a double: a file must match the static types."""
    model = NODES[node_name][0]
    specs = parameter_specs(model)
    files = parameter_files_for(node_name)
    values = {}
    for path in files:
        values.update(node_parameters(config_dir().parent / path, node_name))
    for name, value in values.items():
        assert name in specs, f"{files}: unknown parameter {name}"
        spec = specs[name]
        items = value if spec.type_name.endswith("_array") else [value]
        scalar = PY_TYPES[spec.type_name.removesuffix("_array")]
        assert all(type(v) is scalar for v in items), f"{files}: {name}: {value!r} is not {spec.type_name}"
    validate_parameters(model, {**model().model_dump(), **values})


@pytest.mark.parametrize("model, name", [(m, n) for m in MODELS for n in sorted(dynamic_fields(m))],
                         ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_dynamic_field_change_is_validated_and_kept(model, name):
    old = model()
    new = changed(old, name)
    assert getattr(new, name) != getattr(old, name)
    assert old == model(), "the current model is never modified"
    spec = parameter_specs(model)[name]
    if spec.type_name in ("integer", "double") and spec.range is not None:
        lo, hi = spec.range
        for bad in ([hi * 2 + 1] if math.isfinite(hi) else []) + ([lo - abs(lo) - 1] if math.isfinite(lo) else []):
            bad = int(bad) if spec.type_name == "integer" else float(bad)
            with pytest.raises(ParameterError, match=name):
                check_update(old, {name: bad})
    wrong_type = 1 if spec.type_name in ("double", "string", "bool") else "hello"
    with pytest.raises(ParameterError, match="expected"):
        check_update(old, {name: wrong_type})
    if spec.type_name == "double":
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(ParameterError, match="not finite"):
                check_update(old, {name: bad})


@pytest.mark.parametrize("model, name", [(m, n) for m in MODELS for n in sorted(set(m.model_fields) - dynamic_fields(m))],
                         ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_read_only_field_change_is_refused(model, name):
    old = model()
    value = getattr(old, name)
    with pytest.raises(ParameterError, match="read-only"):
        check_update(old, {name: value})


def test_cross_field_rules_hold_at_run_time():
    sim = SimParameters()
    with pytest.raises(ParameterError, match="physics_rate"):
        check_update(sim, {"joint_state_rate": sim.physics_rate + 1.0})
    memory = MemoryParameters()
    with pytest.raises(ParameterError, match="action_invalidate_radius"):
        check_update(memory, {"action_invalidate_radius": memory.action_influence_radius + 0.01})


def test_unknown_field_and_huge_values_are_refused():
    router = RouterParameters()
    with pytest.raises(ParameterError, match="not a parameter"):
        check_update(router, {"no_such_parameter": 1.0})
    memory = MemoryParameters()
    with pytest.raises(ParameterError, match="elements"):
        check_update(memory, {"task_subjects": ["a"] * (MAX_ARRAY_LENGTH + 1)})
    with pytest.raises(ParameterError, match="characters"):
        check_update(memory, {"task_subjects": ["x" * (MAX_STRING_LENGTH + 1)]})


def test_missing_parameters_name_the_fields_and_the_file():
    err = MissingParameters(["robot", "scenario"], parameter_files_for("sim"))
    assert "robot" in str(err) and "scenario" in str(err) and "config/sim.yaml" in str(err)
    assert parameter_files_for("controller_router") == ["config/router.yaml", "config/router_real_arm.yaml"]
    assert isinstance(err, ParameterError)

    class Required(BaseModel):
        robot: str
    assert parameter_specs(Required)["robot"].required


# -- the nodes' apply functions -------------------------------------------------------------------
def stale_copies(root, new: BaseModel, max_depth: int = 4) -> list[str]:
    """Paths under `root` where the node would still use an old value: an instance of the model
    other than `new`, or an attribute named like a dynamic field whose value differs from `new`'s."""
    dynamic = dynamic_fields(type(new))
    found, seen = [], set()

    def walk(obj, path, depth):
        if id(obj) in seen or depth > max_depth:
            return
        seen.add(id(obj))
        if isinstance(obj, BaseModel):
            if isinstance(obj, type(new)) and obj != new:
                found.append(path)
            return
        if isinstance(obj, (types.ModuleType, type, np.ndarray, str, bytes, int, float)) or callable(obj):
            return
        attrs = getattr(obj, "__dict__", None)
        if isinstance(obj, dict):
            attrs = {str(k): v for k, v in obj.items()}
        if not attrs:
            return
        for key, value in attrs.items():
            if key in dynamic and not isinstance(value, BaseModel) and value != getattr(new, key):
                found.append(f"{path}.{key}")
            walk(value, f"{path}.{key}", depth + 1)

    walk(root, "node", 0)
    return found


def all_dynamic_changed(model):
    new = model()
    for name in sorted(dynamic_fields(model)):
        new = changed(new, name)
    return new


def fake_router(params):
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.router.core import RouterCore
    from harness_nodes.router.guard import Guard

    return types.SimpleNamespace(params=params, guard=Guard(params.command_timeout, params.heartbeat_timeout),
                                 core=RouterCore(load_robot_description(params.robot), params))


def fake_memory(params):
    from harness_nodes.common.robot_description import load_robot_description
    from harness_nodes.memory.core import MemoryCore

    node = types.SimpleNamespace(params=params, core=MemoryCore(params),
                                 description=load_robot_description(params.robot))
    node._with_base_frame = types.MethodType(MemoryTracker._with_base_frame, node)
    return node


def fake_perception(params):
    from harness_nodes.perception.core import PerceptionCore
    from harness_nodes.perception.viewpoint import ViewpointPlanner

    return types.SimpleNamespace(params=params, core=PerceptionCore(params), planner=ViewpointPlanner(params))


FAKES = {"controller_router": fake_router, "memory_tracker": fake_memory, "perception": fake_perception,
         "sim": lambda p: types.SimpleNamespace(params=p), "pick_place_expert": lambda p: types.SimpleNamespace(params=p),
         "supervisor": lambda p: types.SimpleNamespace(params=p),
         "world_model": lambda p: types.SimpleNamespace(params=p),
         "latent_policy": lambda p: types.SimpleNamespace(params=p)}


@pytest.mark.parametrize("node_name", list(NODES))
def test_apply_leaves_no_stale_copy(node_name):
    """Every dynamic field changed at once, then the node's own _apply_parameters: nothing the node
    reads still holds an old value (this fails if, say, the router forgot its guard or timing)."""
    model, node_cls = NODES[node_name]
    old = model()
    node = FAKES[node_name](old)
    new = all_dynamic_changed(model)
    assert stale_copies(node, old) == []
    node_cls._apply_parameters(node, new)
    # the memory tracker always accepts its robot's base frame besides the configured ones
    expected = node._with_base_frame(new) if hasattr(node, "_with_base_frame") else new
    assert stale_copies(node, expected) == []


def test_router_apply_changes_planned_timing():
    """velocity_scale really slows the next plan (not just a stored number)."""
    from harness_nodes.router.trajectory import segment_min_time

    old = RouterParameters()
    node = fake_router(old)
    step = np.full(len(node.core.arm_joints), 0.5)
    before = segment_min_time(step, node.core.timing)
    ControllerRouter._apply_parameters(node, check_update(old, {"velocity_scale": old.velocity_scale / 4}))
    assert segment_min_time(step, node.core.timing) > 3.0 * before


# -- property-based: the set-parameters path never lets a bad value through, never raises else
NASTY = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=50),
    st.just("x" * 100_000),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5),
    st.just([1e308] * (MAX_ARRAY_LENGTH + 1)),
    st.lists(st.text(max_size=10), max_size=5),
    st.just(["y" * 100_000]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), data=st.data(), value=NASTY)
def test_check_update_refuses_or_returns_a_valid_model(model, data, value):
    name = data.draw(st.sampled_from(sorted(model.model_fields)))
    old = model()
    try:
        new = check_update(old, {name: value})
    except ParameterError as exc:
        assert name in str(exc) and len(str(exc)) < 2000
        return
    assert name in dynamic_fields(model)
    assert model.model_validate(new.model_dump()) == new
    got = getattr(new, name)
    for v in (got if isinstance(got, list) else [got]):
        assert not isinstance(v, float) or math.isfinite(v)


def test_a_field_can_mark_itself_dynamic_and_unknown_names_are_caught():
    from typing import ClassVar

    from pydantic import Field

    class Marked(BaseModel):
        rate: float = Field(1.0, gt=0.0, le=10.0, json_schema_extra={"dynamic": True})
        topic: str = "/x"

    assert dynamic_fields(Marked) == {"rate"}
    assert check_update(Marked(), {"rate": 2.0}).rate == 2.0
    with pytest.raises(ParameterError, match="read-only"):
        check_update(Marked(), {"topic": "/y"})

    class Typo(BaseModel):
        DYNAMIC: ClassVar[frozenset[str]] = frozenset({"rtae"})
        rate: float = 1.0

    with pytest.raises(TypeError, match="rtae"):
        dynamic_fields(Typo)
