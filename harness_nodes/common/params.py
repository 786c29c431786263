"""Declare a node's ROS parameters from a pydantic model and validate them at start-up.

A node lists its parameters once, as a pydantic model with defaults, descriptions and ranges.
`declare_and_load` declares each field as a ROS parameter (so `ros2 param` and YAML files work)
and validates the values; an invalid one raises `ParameterError` naming the field and its allowed
range, and the node refuses to start.
"""
from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ParameterError(ValueError):
    """A parameter value outside its allowed range or of the wrong type."""


def describe_constraints(model: type[BaseModel], field: str) -> str:
    info = model.model_fields[field]
    parts = []
    for meta in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"),
                          ("min_length", "min length"), ("max_length", "max length")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return ", ".join(parts) if parts else f"type {info.annotation}"


def validate_parameters(model: type[M], values: dict) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            top = str(err["loc"][0]) if err["loc"] else ""
            allowed = describe_constraints(model, top) if top in model.model_fields else "unknown field"
            lines.append(f"parameter '{field}' = {err.get('input')!r}: {err['msg']} (allowed: {allowed})")
        raise ParameterError("; ".join(lines)) from None


def declare_and_load(node, model: type[M]) -> M:
    """Declare every field of `model` on `node` with its default, then validate the values."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for name, info in model.model_fields.items():
        default = info.default
        descriptor = ParameterDescriptor(
            description=f"{info.description or ''} ({describe_constraints(model, name)})".strip(),
            dynamic_typing=True,
        )
        param = node.declare_parameter(name, default, descriptor)
        values[name] = param.value
    return validate_parameters(model, values)
