"""Typed robot descriptions (config/robots/<name>.yaml): joints, limits, frames, controller topics.

Loading validates everything a node relies on, so a malformed description stops the node at
start-up with the offending field named, never later in the control loop.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
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
    """The gripper's command interface. Every joint in `joint_names` is commanded with the same
    position, `position_for_width(width)`: linear between `open_position` (at max_width) and
    `closed_position` (at min_width), or interpolated in a measured `width_table`. Defaults give a
    Panda-style parallel gripper (each finger at width / 2). `mimic_joints` (name -> multiplier of
    the first commanded joint) are not commanded over ROS; the linkage moves them (a simulator
    couples them to the first commanded joint)."""
    joint_names: list[str] = Field(min_length=1)
    min_width: float = Field(ge=0.0)
    max_width: float = Field(gt=0.0, le=0.5)
    max_speed: float = Field(gt=0.0)
    effort: float = Field(gt=0.0)
    open_position: float | None = None      # joint position at max_width (default max_width / 2)
    closed_position: float | None = None    # joint position at min_width (default min_width / 2)
    mimic_joints: dict[str, float] = {}
    finger_links: list[str] = []            # links that touch a held object (default: the joints' links)
    # Measured (joint position, width m) pairs of a linkage gripper whose width is not linear in its
    # joint; interpolated, and it replaces the linear open/closed map. Must cover min..max_width.
    width_table: list[tuple[float, float]] = []

    @model_validator(mode="after")
    def _range(self) -> "GripperDescription":
        if not self.min_width < self.max_width:
            raise ValueError("gripper.min_width must be < gripper.max_width")
        if (self.open_position is None) != (self.closed_position is None):
            raise ValueError("gripper.open_position and closed_position must be given together")
        if self.open_position is not None:
            _finite([self.open_position, self.closed_position], "gripper.open/closed_position")
            if self.open_position == self.closed_position:
                raise ValueError("gripper.open_position must differ from closed_position")
        overlap = set(self.mimic_joints) & set(self.joint_names)
        if overlap:
            raise ValueError(f"gripper.mimic_joints {sorted(overlap)} are also commanded joints")
        if self.width_table:
            if self.open_position is not None:
                raise ValueError("give either gripper.open/closed_position (linear map) or gripper.width_table")
            table = np.asarray(self.width_table, dtype=float)
            if len(table) < 2 or not np.all(np.isfinite(table)):
                raise ValueError("gripper.width_table needs at least 2 finite (position, width) pairs")
            dq, dw = np.diff(table[:, 0]), np.diff(table[:, 1])
            if not (np.all(dq > 0) and (np.all(dw > 0) or np.all(dw < 0))):
                raise ValueError("gripper.width_table must be sorted by position with width strictly monotonic")
            if table[:, 1].min() > self.min_width or table[:, 1].max() < self.max_width:
                raise ValueError(f"gripper.width_table widths [{table[:, 1].min()}, {table[:, 1].max()}] m must "
                                 f"cover min_width..max_width [{self.min_width}, {self.max_width}] m")
        return self

    @functools.cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The width table as arrays for np.interp (which needs increasing x), built once: positions
        and widths by position, and widths and positions by width."""
        table = np.asarray(self.width_table, dtype=float)
        by_width = table[np.argsort(table[:, 1])]
        return table[:, 0], table[:, 1], by_width[:, 1], by_width[:, 0]

    @property
    def open_q(self) -> float:
        if self.width_table:
            return self.position_for_width(self.max_width)
        return self.max_width / 2 if self.open_position is None else self.open_position

    @property
    def closed_q(self) -> float:
        if self.width_table:
            return self.position_for_width(self.min_width)
        return self.min_width / 2 if self.closed_position is None else self.closed_position

    def position_for_width(self, width: float) -> float:
        """Commanded joint position for a width (m), width clamped to [min_width, max_width]."""
        w = min(max(float(width), self.min_width), self.max_width)
        if self.width_table:
            _, _, widths, positions = self._table
            return float(np.interp(w, widths, positions))
        a = (w - self.min_width) / (self.max_width - self.min_width)
        return self.closed_q + a * (self.open_q - self.closed_q)

    def width_for_position(self, position: float) -> float:
        """Width (m) for a measured joint position (inverse of position_for_width; the linear map
        extrapolates, a width table clamps to its ends)."""
        if self.width_table:
            positions, widths, _, _ = self._table
            return float(np.interp(float(position), positions, widths))
        a = (float(position) - self.closed_q) / (self.open_q - self.closed_q)
        return self.min_width + a * (self.max_width - self.min_width)

    def width_from_joints(self, positions: list[float]) -> float:
        """Width from the commanded joints' measured positions (their mean)."""
        return self.width_for_position(sum(positions) / len(positions))

    @property
    def position_bounds(self) -> tuple[float, float]:
        return min(self.open_q, self.closed_q), max(self.open_q, self.closed_q)


class ControllerTopics(_Strict):
    """Where the router sends commands. `type` picks the arm controller interface the router uses
    at start (switchable at run time): joint_trajectory (trajectory_msgs/JointTrajectory on
    arm_topic), forward_position (std_msgs/Float64MultiArray on forward_position_topic, streamed)
    or follow_joint_trajectory (control_msgs action at follow_joint_trajectory_action)."""
    type: str = Field("joint_trajectory", pattern="^(joint_trajectory|forward_position|follow_joint_trajectory)$")
    arm_topic: str = "arm_controller/joint_trajectory"
    gripper_topic: str = "gripper_controller/joint_trajectory"
    joint_states_topic: str = "joint_states"
    forward_position_topic: str = "forward_position_controller/commands"
    follow_joint_trajectory_action: str = "arm_controller/follow_joint_trajectory"


class ToolFrame(_Strict):
    """A tool centre point not in the URDF: a fixed offset from a URDF link (both sim and IK use it)."""
    name: str = Field(min_length=1)
    parent_link: str = Field(min_length=1)
    xyz: list[float] = Field([0.0, 0.0, 0.0], min_length=3, max_length=3)
    rpy: list[float] = Field([0.0, 0.0, 0.0], min_length=3, max_length=3)


class RobotDescription(_Strict):
    name: str
    urdf: str
    base_frame: str
    end_effector_frame: str
    arm: ArmDescription
    gripper: GripperDescription
    controllers: ControllerTopics = ControllerTopics()
    tool_frame: ToolFrame | None = None     # defines end_effector_frame when the URDF lacks it
    camera_link: str = "panda_hand"          # wrist camera mount (sim)
    collision_ignore: list[list[str]] = []   # link pairs never checked against each other
    # Manipulability (Yoshikawa, sqrt det J J^T at the end-effector frame) below which the router
    # slows motion. It scales with the arm's size and layout, so each arm states its own.
    singularity_threshold: float = Field(0.01, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _tool(self) -> "RobotDescription":
        if self.tool_frame is not None and self.tool_frame.name != self.end_effector_frame:
            raise ValueError(f"tool_frame.name '{self.tool_frame.name}' must equal end_effector_frame "
                             f"'{self.end_effector_frame}'")
        return self

    @property
    def urdf_path(self) -> Path:
        return resolve_model_file(self.urdf)

    @property
    def all_joint_names(self) -> list[str]:
        """Joints reported in /joint_states: arm, commanded gripper joints, gripper mimic joints."""
        return [*self.arm.joint_names, *self.gripper.joint_names, *self.gripper.mimic_joints]


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
