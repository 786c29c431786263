"""A node's ROS parameters, declared from its pydantic model and kept honest at run time.

A node lists its parameters once, as a pydantic model: defaults, descriptions and ranges
(`ge`/`gt`/`le`/`lt`, `min_length`/`max_length`). The model also says which fields may change
while the node runs: a `DYNAMIC: ClassVar[frozenset[str]]` on the model (or
`json_schema_extra={"dynamic": True}` on a field). Every other field is read-only.

`declare_and_load(node, model, apply)` declares each field as a ROS parameter with a descriptor
carrying its ROS type (static typing), range (FloatingPointRange / IntegerRange from the
constraints), description and read-only flag, then validates the values: an invalid one raises
`ParameterError` naming the field and its allowed range, and a field without a default that no
parameter file set raises `MissingParameters` naming them and the file that normally supplies them;
either way the node refuses to start. Afterwards, `ros2 param set` on a read-only parameter is
refused with the reason; on a dynamic one the change is checked by `check_update` (the same model,
plus finite numbers and bounded strings/arrays); a refused change keeps the old value, an accepted
one is handed to `apply(new_model)` so the node uses it.

Everything above `declare_and_load` is pure (no rclpy) and unit-tested per node model.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pydantic import BaseModel, ValidationError

from harness_nodes.common.callbacks import guarded

M = TypeVar("M", bound=BaseModel)

MAX_STRING_LENGTH = 4096   # characters of any string parameter (unless the field says otherwise)
MAX_ARRAY_LENGTH = 4096    # elements of any array parameter (unless the field says otherwise)
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
READ_ONLY_REASON = "read-only: set it in the node's parameter file and restart the node"


class ParameterError(ValueError):
    """A parameter value outside its allowed range, of the wrong type, or not settable."""


class MissingParameters(ParameterError):
    """Fields without a default that no parameter file set."""

    def __init__(self, names: list[str], files: list[str]):
        self.names, self.files = list(names), list(files)
        source = " or ".join(files) if files else "the node's parameter file"
        super().__init__(f"missing parameter(s) {', '.join(self.names)}: they have no default and are normally "
                         f"set by {source} (--ros-args --params-file <file>)")


# -- the pure part ------------------------------------------------------------------------------
_SCALARS = {bool: "bool", int: "integer", float: "double", str: "string"}


def ros_type_name(annotation) -> str:
    """ROS parameter type of a field annotation: bool, integer, double, string or <scalar>_array."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple) and typing.get_args(annotation):
        item = typing.get_args(annotation)[0]
        if item in _SCALARS:
            return f"{_SCALARS[item]}_array"
    raise TypeError(f"no ROS parameter type for {annotation!r} (use bool, int, float, str or a list of one)")


def dynamic_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields of `model` that may change while the node runs."""
    declared = frozenset(getattr(model, "DYNAMIC", frozenset()))
    marked = {name for name, info in model.model_fields.items()
              if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("dynamic")}
    unknown = (declared | marked) - set(model.model_fields)
    if unknown:
        raise TypeError(f"{model.__name__}.DYNAMIC names unknown fields {sorted(unknown)}")
    return frozenset(declared | marked)


def _constraint(model: type[BaseModel], field: str, attr: str):
    for meta in model.model_fields[field].metadata:
        value = getattr(meta, attr, None)
        if value is not None:
            return value
    return None


def describe_constraints(model: type[BaseModel], field: str) -> str:
    info = model.model_fields[field]
    parts = []
    for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"),
                      ("min_length", "min length"), ("max_length", "max length"), ("pattern", "matching")):
        value = _constraint(model, field, attr)
        if value is not None:
            parts.append(f"{sym} {value}")
    return ", ".join(parts) if parts else f"type {getattr(info.annotation, '__name__', info.annotation)}"


@dataclass(frozen=True)
class ParameterSpec:
    """What ROS is told about one field (rclpy-free; `ros_descriptor` turns it into a descriptor)."""
    name: str
    type_name: str                      # bool, integer, double, string, <scalar>_array
    default: Any                        # None when required
    required: bool
    description: str
    constraints: str                    # human-readable, includes exclusive bounds and lengths
    read_only: bool
    range: tuple[float, float] | None   # inclusive bounds ROS checks itself (exclusive ones by the model)
    max_length: int                     # characters (string) or elements (array)


def parameter_specs(model: type[BaseModel]) -> dict[str, ParameterSpec]:
    dynamic = dynamic_fields(model)
    specs = {}
    for name, info in model.model_fields.items():
        type_name = ros_type_name(info.annotation)
        lower = next((v for v in (_constraint(model, name, "ge"), _constraint(model, name, "gt")) if v is not None),
                     None)
        upper = next((v for v in (_constraint(model, name, "le"), _constraint(model, name, "lt")) if v is not None),
                     None)
        bounds = None
        if type_name in ("integer", "double") and (lower is not None or upper is not None):
            if type_name == "integer":
                bounds = (int(lower) if lower is not None else INT64_MIN, int(upper) if upper is not None else INT64_MAX)
            else:
                bounds = (float(lower) if lower is not None else -math.inf,
                          float(upper) if upper is not None else math.inf)
        required = info.is_required()
        specs[name] = ParameterSpec(
            name=name, type_name=type_name,
            default=None if required else info.get_default(call_default_factory=True),
            required=required, description=info.description or "",
            constraints=describe_constraints(model, name), read_only=name not in dynamic, range=bounds,
            max_length=min(_constraint(model, name, "max_length") or MAX_STRING_LENGTH,
                           MAX_STRING_LENGTH if type_name == "string" else MAX_ARRAY_LENGTH))
    return specs


def _value_problem(spec: ParameterSpec, value) -> str | None:
    """Why `value` cannot be a value of this parameter before the model even looks at it, or None."""
    scalar = spec.type_name.removesuffix("_array")
    python = {"bool": bool, "integer": int, "double": float, "string": str}[scalar]
    items = value if spec.type_name.endswith("_array") else [value]
    if spec.type_name.endswith("_array") and isinstance(value, (str, bytes)) or not hasattr(items, "__len__"):
        return f"expected {spec.type_name}, got {type(value).__name__}"
    if len(items) > spec.max_length and spec.type_name.endswith("_array"):
        return f"{len(items)} elements (at most {spec.max_length})"
    for item in items:
        if type(item) is not python and not (python is float and isinstance(item, float)) \
                and not (python is int and isinstance(item, int) and not isinstance(item, bool)):
            return f"expected {spec.type_name}, got {type(item).__name__}"
        if python is float and not math.isfinite(item):
            return f"{item} is not finite"
        if python is int and not INT64_MIN <= item <= INT64_MAX:
            return f"{item} does not fit a 64-bit integer"
        if python is str and len(item) > MAX_STRING_LENGTH:
            return f"string of {len(item)} characters (at most {MAX_STRING_LENGTH})"
    if spec.type_name == "string" and len(value) > spec.max_length:
        return f"string of {len(value)} characters (at most {spec.max_length})"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_parameters(model: type[M], values: dict) -> M:
    """`values` -> model, or ParameterError naming each bad field with its allowed range."""
    specs = parameter_specs(model)
    problems = [f"parameter '{name}' = {_short(value)}: {why} (allowed: {specs[name].constraints})"
                for name, value in values.items()
                if name in specs and (why := _value_problem(specs[name], value)) is not None]
    if problems:
        raise ParameterError("; ".join(problems))
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            top = str(err["loc"][0]) if err["loc"] else ""
            allowed = describe_constraints(model, top) if top in model.model_fields else "unknown field"
            shown = f" = {_short(err.get('input'))}" if err["loc"] else ""
            lines.append(f"parameter '{field}'{shown}: {err['msg']} (allowed: {allowed})")
        raise ParameterError("; ".join(lines)) from None


def check_update(current: M, changes: dict[str, Any]) -> M:
    """The model after setting `changes` on `current`, or ParameterError saying why not (nothing
    changes then). Read-only and unknown fields are refused; the whole model is validated again,
    so cross-field rules hold too."""
    model = type(current)
    specs = parameter_specs(model)
    problems = []
    for name, value in changes.items():
        if name not in specs:
            problems.append(f"'{name}' is not a parameter of {model.__name__}")
        elif specs[name].read_only:
            problems.append(f"'{name}' is {READ_ONLY_REASON}")
        elif (why := _value_problem(specs[name], value)) is not None:
            problems.append(f"parameter '{name}' = {_short(value)}: {why} (allowed: {specs[name].constraints})")
    if problems:
        raise ParameterError("; ".join(problems))
    return validate_parameters(model, {**current.model_dump(), **changes})


# -- rclpy glue ---------------------------------------------------------------------------------
def ros_descriptor(spec: ParameterSpec):
    """rcl_interfaces/ParameterDescriptor for a spec (static type, range, read-only flag)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    descriptor = ParameterDescriptor(
        name=spec.name, type=getattr(ParameterType, f"PARAMETER_{spec.type_name.upper()}"),
        description=spec.description, additional_constraints=spec.constraints, read_only=spec.read_only,
        dynamic_typing=False)
    if spec.range is not None and spec.type_name == "integer":
        descriptor.integer_range = [IntegerRange(from_value=spec.range[0], to_value=spec.range[1], step=0)]
    elif spec.range is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=spec.range[0], to_value=spec.range[1],
                                                              step=0.0)]
    return descriptor


def _python_value(value):
    """rclpy hands arrays over as array.array or tuples; the models want lists."""
    return list(value) if not isinstance(value, (str, bytes, bool, int, float)) and value is not None else value


def parameter_files_for(node_name: str) -> list[str]:
    """The parameter files config/stack.yaml gives the node named `node_name` (any stack)."""
    try:
        import yaml

        from harness_nodes.common.paths import resolve_config_file

        stacks = yaml.safe_load(resolve_config_file("stack.yaml").read_text()).get("stacks", {})
    except Exception:   # noqa: BLE001 - only used to word an error message
        return []
    files: list[str] = []
    for stack in stacks.values():
        for entry in stack.get("nodes", []):
            if entry.get("name") == node_name:
                files += [f"config/{f}" for f in entry.get("parameters", []) if f"config/{f}" not in files]
    return files


def declare_and_load(node, model: type[M], apply: Callable[[M], None] | None = None) -> M:
    """Declare every field of `model` on `node`, validate the values and return the model.

    From then on `ros2 param set` is checked: read-only fields are refused by ROS (descriptor), a
    dynamic field's new value by `check_update`; an accepted change calls `apply(new_model)`."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter
    from rcl_interfaces.msg import SetParametersResult

    specs = parameter_specs(model)
    values, missing, problems = {}, [], []
    for name, spec in specs.items():
        descriptor = ros_descriptor(spec)
        ros_type = Parameter.Type(descriptor.type)
        try:
            if spec.required or (isinstance(spec.default, list) and not spec.default):
                # No default, or an empty list (rclpy cannot infer an element type from it): declare
                # the type only; a parameter file may set it.
                param = node.declare_parameter(name, ros_type, descriptor)
                if param.type_ == Parameter.Type.NOT_SET and not spec.required:
                    node.set_parameters([Parameter(name, ros_type, spec.default)])
                    param = node.get_parameter(name)
            else:
                param = node.declare_parameter(name, spec.default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            hint = (" (a double needs a decimal point, e.g. 2.0)"
                    if isinstance(exc, InvalidParameterTypeException) and spec.type_name.startswith("double") else "")
            problems.append(f"parameter '{name}': {exc}{hint} (allowed: {spec.type_name}, {spec.constraints})")
            continue
        if param.type_ == Parameter.Type.NOT_SET:
            missing.append(name)
        else:
            values[name] = _python_value(param.value)
    if missing:
        raise MissingParameters(missing, parameter_files_for(node.get_name()))
    if problems:
        raise ParameterError("; ".join(problems))
    loaded = validate_parameters(model, values)
    _watch(node, model, loaded, apply, SetParametersResult)
    return loaded


def _watch(node, model, loaded, apply, SetParametersResult) -> None:
    state = {"current": loaded, "pending": None}

    def on_set(parameters) -> "SetParametersResult":
        changes = {p.name: _python_value(p.value) for p in parameters if p.name in model.model_fields}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            state["pending"] = check_update(state["current"], changes)
        except ParameterError as exc:
            node.get_logger().warning(f"parameter change refused: {exc}", throttle_duration_sec=1.0)
            return SetParametersResult(successful=False, reason=str(exc))
        except Exception as exc:   # noqa: BLE001 - a set request must always get an answer
            return SetParametersResult(successful=False, reason=f"cannot check the change: {exc!r}")
        return SetParametersResult(successful=True)

    def after_set(parameters) -> None:
        new, state["pending"] = state["pending"], None
        if new is None or not any(p.name in model.model_fields for p in parameters):
            return
        old, state["current"] = state["current"], new
        changed = {n: _short(getattr(new, n)) for n in model.model_fields if getattr(new, n) != getattr(old, n)}
        node.get_logger().info(f"parameters changed: {changed}")
        if apply is not None:
            apply(new)

    node.add_on_set_parameters_callback(on_set)
    # An exception while applying is logged and counted (diagnostics), never raised into the executor.
    node.add_post_set_parameters_callback(guarded(node, after_set, "apply_parameters"))
