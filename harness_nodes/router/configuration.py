"""The router's parameters (`RouterParameters`): one pydantic model with each field's range, its
default and its description, checked when the node starts and on every `ros2 param set`; which of
them may change at run time (`DYNAMIC`). Pure: no rclpy."""
from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RouterParameters(BaseModel):
    """The controller router's ROS parameters (config/router.yaml); extra fields have defaults."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Changeable at run time (`ros2 param set`), applied by the node; every other field is read-only.
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({
        "velocity_scale", "acceleration_scale", "min_segment_time", "ik_max_iterations", "ik_tolerance",
        "tracking_tolerance", "settle_time", "gripper_settle_time", "state_timeout", "gripper_tolerance",
        "path_check_samples", "max_joint_step", "singularity_min_scale", "collision_min_scale", "path_tolerance",
        "contact_effort_ratio", "contact_time", "grasp_min_width", "grip_effort_ratio", "command_timeout",
        "max_stream_step", "heartbeat_timeout"})

    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml")
    command_topic: str = Field("harness/command", min_length=1)
    feedback_topic: str = Field("harness/execution", min_length=1)
    joint_limit_margin: float = Field(0.02, ge=0.0, le=0.2, description="rad kept inside every position limit")
    velocity_scale: float = Field(0.5, gt=0.0, le=1.0, description="fraction of each velocity limit")
    min_segment_time: float = Field(0.2, gt=0.0, le=10.0, description="s between two waypoints, at least")
    max_chunk_duration: float = Field(30.0, gt=0.0, le=600.0, description="s, longer chunks are rejected")
    ik_max_iterations: int = Field(200, ge=1, le=10000)
    ik_tolerance: float = Field(0.001, gt=0.0, le=0.05, description="m and rad")
    tracking_tolerance: float = Field(0.05, gt=0.0, le=0.5, description="rad after settling")
    settle_time: float = Field(0.5, ge=0.0, le=30.0, description="s allowed after the trajectory ends")
    gripper_settle_time: float = Field(1.0, ge=0.0, le=30.0, description="s allowed for the gripper")
    workspace_min: list[float] = Field([-0.9, -0.9, -0.02], min_length=3, max_length=3)
    workspace_max: list[float] = Field([0.9, 0.9, 1.2], min_length=3, max_length=3)
    # Not in the first router.yaml (defaults used before v2):
    acceleration_scale: float = Field(0.5, gt=0.0, le=1.0, description="fraction of each acceleration limit")
    state_timeout: float = Field(1.0, gt=0.0, le=60.0, description="s, older joint states count as no state")
    max_chunk_points: int = Field(200, ge=1, le=10000, description="waypoints per chunk, at most")
    gripper_tolerance: float = Field(0.002, gt=0.0, le=0.05, description="m of width counted as reached")
    path_check_samples: int = Field(8, ge=1, le=100, description="FK workspace checks per segment")
    # -- router v2: safety in the loop
    max_joint_step: float = Field(1.5, gt=0.0, le=6.3, description="rad a joint may move between two waypoints (clamped)")
    collision_check: bool = Field(True, description="self- and table-collision check of every planned path")
    table_height: float = Field(0.0, ge=-2.0, le=2.0, description="m, table top in the base frame")
    singularity_threshold: float = Field(-1.0, ge=-1.0, le=1.0, description="manipulability below which motion slows; -1 = the robot description's, 0 = off")
    singularity_min_scale: float = Field(0.2, gt=0.0, le=1.0, description="slowest velocity scale near a singularity")
    collision_slowdown_distance: float = Field(0.03, ge=0.0, le=0.5,
                                               description="m; motion closing in on the table or a self-collision "
                                                           "below this distance slows; 0 = off")
    collision_min_scale: float = Field(0.2, gt=0.0, le=1.0, description="slowest velocity scale near a collision")
    path_tolerance: float = Field(0.3, gt=0.0, le=3.0, description="rad, max joint error while moving (then hold)")
    contact_effort_ratio: float = Field(0.95, ge=0.0, le=1.0, description="|effort| / effort_limit counted as contact; 0 = off")
    contact_time: float = Field(0.15, ge=0.0, le=5.0, description="s the effort must stay that high to count as contact")
    grasp_min_width: float = Field(0.004, ge=0.0, le=0.1, description="m; a close ending narrower held nothing")
    grip_effort_ratio: float = Field(0.9, ge=0.0, le=1.0, description="finger |effort| / the gripper's effort held for the stall window while closing = gripping an object; 0 = off")
    # -- watchdog, e-stop, streaming, lifecycle, routing (node)
    stream_topic: str = Field("harness/command_stream", min_length=1, description="single-point ActionChunks, servo style")
    command_timeout: float = Field(0.1, gt=0.0, le=10.0, description="s without a stream command -> hold")
    max_stream_step: float = Field(0.1, gt=0.0, le=1.0, description="rad per stream command (clamped)")
    heartbeat_topic: str = Field("harness/heartbeat", min_length=1, description="std_msgs/Header from the supervisor")
    heartbeat_timeout: float = Field(0.0, ge=0.0, le=60.0, description="s; once a heartbeat was seen, silence -> hold; 0 = off")
    estop_topic: str = Field("harness/estop", min_length=1, description="std_msgs/Bool; true latches a hold")
    autostart: bool = Field(True, description="configure and activate on start (else wait for lifecycle calls)")
    controller: str = Field("", pattern="^(|joint_trajectory|forward_position|follow_joint_trajectory)$",
                            description="arm controller at start; empty = the robot description's")
    monitor_rate: float = Field(100.0, ge=10.0, le=1000.0, description="Hz of the router loop (monitor, watchdog, forward streaming)")
    realtime_priority: int = Field(0, ge=0, le=98, description="SCHED_FIFO priority of the router's threads; 0 = normal scheduling")

    @field_validator("workspace_min", "workspace_max", mode="before")
    @classmethod
    def _listify(cls, value):
        return list(value) if not isinstance(value, (list, str)) and hasattr(value, "__iter__") else value

    @model_validator(mode="after")
    def _box(self) -> "RouterParameters":
        for name in ("workspace_min", "workspace_max"):
            if not all(math.isfinite(v) for v in getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if not all(a < b for a, b in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be < workspace_max on every axis")
        return self
