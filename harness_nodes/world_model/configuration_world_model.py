"""Configuration of the world model: state layout, step length, object geometry, ensemble size,
selection and serving limits. One pydantic model, shared by the cores, the training command and
the node (config/world_model.yaml sets the node's copy).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Subjects in state-slot order (slot 0 is the task's target, see state.py) and their box sizes.
DEFAULT_SUBJECTS = ["red_cube", "green_cube", "blue_cube", "tray", "obstacle"]


class WorldModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml")
    subjects: list[str] = Field(DEFAULT_SUBJECTS, min_length=2, max_length=16,
                                description="object slots of the state: movable target candidates, tray, props")
    tray_subject: str = Field("tray", min_length=1)
    default_target: str = Field("red_cube", min_length=1, description="target when the goal names none")
    # Half extents (m) of each subject's box in the physics shadow world; the tray is modelled as
    # its floor plus four walls of these outer half extents.
    object_half_extents: dict[str, list[float]] = Field(
        {"red_cube": [0.025, 0.025, 0.025], "green_cube": [0.025, 0.025, 0.025],
         "blue_cube": [0.025, 0.025, 0.025], "tray": [0.12, 0.12, 0.03], "obstacle": [0.02, 0.02, 0.12]})
    object_mass: dict[str, float] = Field({"red_cube": 0.1, "green_cube": 0.1, "blue_cube": 0.1,
                                           "tray": 0.0, "obstacle": 0.3})
    step_time: float = Field(0.25, gt=0.0, le=2.0, description="s of robot time per model step")
    gripper_steps: int = Field(3, ge=1, le=20, description="model steps a gripper command takes")
    max_horizon: int = Field(64, ge=1, le=1000, description="model steps per candidate, at most")
    max_candidates: int = Field(256, ge=1, le=4096, description="candidates per request, at most")
    min_confidence: float = Field(0.05, ge=0.0, le=1.0, description="facts below this count as absent")
    table_height: float = Field(0.0, ge=-2.0, le=2.0, description="m, table top in the base frame")
    reach: float = Field(0.855, gt=0.0, le=5.0, description="m from the shoulder the tool can reach")
    shoulder_height: float = Field(0.333, ge=0.0, le=2.0, description="m, first shoulder axis above the base")
    workspace_min: list[float] = Field([-0.9, -0.9, -0.02], min_length=3, max_length=3)
    workspace_max: list[float] = Field([0.9, 0.9, 1.2], min_length=3, max_length=3)
    # physics shadow world (same gains as the simulated arm's position motors)
    physics_rate: float = Field(120.0, ge=60.0, le=2000.0,
                                description="Hz of the shadow world and of the training rollouts (the sim runs 240)")
    arm_position_gain: float = Field(0.3, gt=0.0, le=1.0)
    arm_velocity_gain: float = Field(1.0, gt=0.0, le=2.0)
    gripper_position_gain: float = Field(0.3, gt=0.0, le=1.0)
    # failure labels
    disturb_distance: float = Field(0.01, gt=0.0, le=0.5, description="m a non-target object may move")
    unreachable_error: float = Field(0.01, gt=0.0, le=0.5, description="m of IK error counted as unreachable")
    # selection
    uncertainty_penalty: float = Field(2.0, ge=0.0, le=1000.0, description="progress per m of disagreement")
    veto_threshold: float = Field(0.5, gt=0.0, le=1.0,
                                  description="failure score above which a candidate is vetoed "
                                              "(the model's calibrated value replaces it unless fixed)")
    use_calibrated_threshold: bool = Field(True, description="take the conformal threshold from the model metadata")

    @model_validator(mode="after")
    def _consistent(self) -> "WorldModelConfig":
        if len(set(self.subjects)) != len(self.subjects):
            raise ValueError("subjects must be unique")
        if self.tray_subject not in self.subjects or self.default_target not in self.subjects:
            raise ValueError("tray_subject and default_target must be among subjects")
        missing = [s for s in self.subjects if s not in self.object_half_extents]
        if missing:
            raise ValueError(f"object_half_extents lacks {missing}")
        if not all(a < b for a, b in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be < workspace_max on every axis")
        return self
