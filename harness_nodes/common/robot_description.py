"""Typed robot descriptions (config/robots/<name>.yaml): joints, limits, frames, controller topics.

Loading validates everything a node relies on, so a malformed description stops the node at
start-up with the offending field named, never later in the control loop.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness_nodes.common.paths import resolve_config_file, resolve_model_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(values: list[float], field: str) -> None:
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"{field} must be finite, got {v}")


class ArmDescription(_Strict):
    joint_names: list[str] = Field(min_length=1)
    position_lower: list[float]
    position_upper: list[float]
    velocity_limit: list[float]
    acceleration_limit: list[float]
    effort_limit: list[float]
    home: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> "ArmDescription":
        n = len(self.joint_names)
        if len(set(self.joint_names)) != n:
            raise ValueError("arm.joint_names has duplicates")
        for field in ("position_lower", "position_upper", "velocity_limit",
                      "acceleration_limit", "effort_limit", "home"):
            values = getattr(self, field)
            if len(values) != n:
                raise ValueError(f"arm.{field} has {len(values)} entries, expected {n} (one per joint)")
            _finite(values, f"arm.{field}")
        for i, name in enumerate(self.joint_names):
            lo, hi = self.position_lower[i], self.position_upper[i]
            if not lo < hi:
                raise ValueError(f"arm.position_lower[{i}] ({name}) must be < position_upper ({lo} >= {hi})")
            if not lo <= self.home[i] <= hi:
                raise ValueError(f"arm.home[{i}] ({name}) = {self.home[i]} outside [{lo}, {hi}]")
            if self.velocity_limit[i] <= 0 or self.acceleration_limit[i] <= 0:
                raise ValueError(f"arm velocity/acceleration limits of {name} must be > 0")
        return self


class GripperDescription(_Strict):
    joint_names: list[str] = Field(min_length=1)
    min_width: float = Field(ge=0.0)
    max_width: float = Field(gt=0.0, le=0.5)
    max_speed: float = Field(gt=0.0)
    effort: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _range(self) -> "GripperDescription":
        if not self.min_width < self.max_width:
            raise ValueError("gripper.min_width must be < gripper.max_width")
        return self


class ControllerTopics(_Strict):
    arm_topic: str = "/arm_controller/joint_trajectory"
    gripper_topic: str = "/gripper_controller/joint_trajectory"
    joint_states_topic: str = "/joint_states"


class RobotDescription(_Strict):
    name: str
    urdf: str
    base_frame: str
    end_effector_frame: str
    arm: ArmDescription
    gripper: GripperDescription
    controllers: ControllerTopics = ControllerTopics()

    @property
    def urdf_path(self) -> Path:
        return resolve_model_file(self.urdf)

    @property
    def all_joint_names(self) -> list[str]:
        return [*self.arm.joint_names, *self.gripper.joint_names]


def load_robot_description(robot: str) -> RobotDescription:
    """Load `config/robots/<robot>.yaml` (or a path to such a file) and validate it."""
    path = Path(robot) if robot.endswith((".yaml", ".yml")) else Path("robots") / f"{robot}.yaml"
    path = resolve_config_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"robot description '{robot}' not found at {path}")
    with open(path) as f:
        data = yaml.safe_load(f)
    description = RobotDescription.model_validate(data)
    if not description.urdf_path.is_file():
        raise FileNotFoundError(f"robot '{description.name}': URDF not found at {description.urdf_path}")
    return description
