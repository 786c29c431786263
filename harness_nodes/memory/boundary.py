"""What the memory tracker accepts from outside, as pydantic models (pure: no rclpy): the service
requests (QueryMemory, StoreLatent, FetchLatent) and the size of every string and array that can
reach the store, so finite but absurd values (a region centre of 1e308, a latent shape whose
product overflows, a 5 MB `source`) are refused with a reason before the core sees them.

Limits that depend on the tracker's parameters (how far from the origin a position may be, how
large a latent encoding may be) come from `MemoryParameters` through the validation context
(`Limits.of(params)`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

MAX_NAME = 256            # characters: subject, camera, model, object id, label, source
MAX_FACT_ID = 512
MAX_REASON = 1000         # characters: invalidated_by
MAX_LATENT_DIMS = 8
FINITE = {"allow_inf_nan": False}


@dataclass(frozen=True)
class Limits:
    max_position: float          # m, |coordinate| of a region centre
    max_radius: float            # m, region radius of a query
    max_latent_elements: int     # float32 values of one latent encoding

    @classmethod
    def of(cls, params) -> "Limits":
        return cls(max_position=float(params.max_position), max_radius=4.0 * float(params.max_position),
                   max_latent_elements=int(params.latent_max_bytes) // 4)


class BoundaryError(ValueError):
    """A request refused at the boundary; the message names the field and why."""


def _check_centre(v: tuple, info: ValidationInfo) -> tuple:
    limit = info.context["limits"].max_position
    if any(abs(c) > limit for c in v):
        raise ValueError(f"region centre coordinates must be within +-{limit} m of the origin")
    return v


class QueryRequest(BaseModel):
    subject: str = Field("", max_length=MAX_NAME)
    kind: int | None = None
    center: tuple[float, float, float] | None = None
    radius: float = Field(0.0, ge=0.0, **FINITE)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, **FINITE)

    @field_validator("center")
    @classmethod
    def _centre(cls, v, info: ValidationInfo):
        if v is None:
            return v
        if not all(math.isfinite(c) for c in v):
            raise ValueError("region centre must be finite")
        return _check_centre(v, info)

    @field_validator("radius")
    @classmethod
    def _radius(cls, v: float, info: ValidationInfo) -> float:
        limit = info.context["limits"].max_radius
        if v > limit:
            raise ValueError(f"region radius must be <= {limit} m")
        return v


class LatentKey(BaseModel):
    """Camera, model and region of a latent entry (FetchLatent; StoreLatent adds the encoding)."""
    camera: str = Field(min_length=1, max_length=MAX_NAME)
    model: str = Field(min_length=1, max_length=MAX_NAME)
    center: tuple[float, float, float]
    radius: float = Field(gt=0.0, **FINITE)

    @field_validator("center")
    @classmethod
    def _centre(cls, v, info: ValidationInfo):
        if not all(math.isfinite(c) for c in v):
            raise ValueError("region centre must be finite")
        return _check_centre(v, info)

    @field_validator("radius")
    @classmethod
    def _radius(cls, v: float, info: ValidationInfo) -> float:
        limit = info.context["limits"].max_position
        if v > limit:
            raise ValueError(f"region radius must be <= {limit} m")
        return v


class LatentStore(LatentKey):
    stamp: float = Field(ge=0.0, **FINITE)
    shape: list[int] = Field(min_length=1, max_length=MAX_LATENT_DIMS)
    length: int = Field(ge=0, description="number of float32 values sent")

    @model_validator(mode="after")
    def _shape(self, info: ValidationInfo) -> "LatentStore":
        limit = info.context["limits"].max_latent_elements
        if any(s < 1 for s in self.shape):
            raise ValueError(f"shape {self.shape}: every dimension must be >= 1")
        elements = math.prod(self.shape)          # Python integers: no overflow
        if elements > limit:
            raise ValueError(f"shape {self.shape[:MAX_LATENT_DIMS]} has {elements} elements (max {limit})")
        if elements != self.length:
            raise ValueError(f"shape {self.shape} has {elements} elements, data has {self.length}")
        return self


class FactStrings(BaseModel):
    """The strings of an asserted MemoryFact (the core checks values, poses and the value's size)."""
    fact_id: str = Field("", max_length=MAX_FACT_ID)
    subject: str = Field(max_length=MAX_NAME)
    source: str = Field("", max_length=MAX_NAME)
    camera: str = Field("", max_length=MAX_NAME)
    invalidated_by: str = Field("", max_length=MAX_REASON)


def validate(schema: type[BaseModel], limits: Limits | None = None, /, **values) -> BaseModel:
    """`schema` validated from `values`; raises BoundaryError naming each bad field (short)."""
    try:
        return schema.model_validate(values, context={"limits": limits})
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"]) or schema.__name__
            parts.append(f"{field}: {e['msg'].removeprefix('Value error, ')}")
        raise BoundaryError("; ".join(parts)[:500]) from None
