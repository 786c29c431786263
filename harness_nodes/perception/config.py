"""Parameters of the perception node (pydantic model; declared as ROS parameters by node.py)."""
from __future__ import annotations

import math

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PerceptionParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Changeable at run time (`ros2 param set`), applied by the node; every other field is read-only.
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({
        "hue_sigma", "hue_gate", "min_saturation", "min_value", "min_pixels", "clutter_likelihood", "depth_edge",
        "max_invalid_depth_fraction", "depth_noise_a", "depth_noise_b", "pixel_noise", "calibration_sigma",
        "model_sigma", "max_support", "negative_evidence", "occlusion_margin", "border_px", "min_negative_range",
        "detection_gate", "max_pose_lag", "pose_wait", "task_subjects", "uncertain_sigma", "stale_threshold",
        "cost_weight", "min_gain", "request_timeout", "settle_frames"})

    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml (IK for viewpoints)")
    world_frame: str = Field("world", min_length=1)
    cameras: list[str] = Field(default_factory=lambda: ["scene", "wrist"], min_length=1)
    camera_topic_prefix: str = "cameras"
    movable_camera: str = Field("wrist", description="camera on the arm; not in `cameras` = no viewpoint selection")
    observation_topic: str = "harness/observations"
    memory_topic: str = "harness/memory"
    recheck_topic: str = "harness/memory/recheck"
    viewpoint_topic: str = "harness/viewpoint"
    execution_topic: str = "harness/execution"
    # objects: parallel lists (ROS parameters cannot be nested)
    object_ids: list[str] = Field(default_factory=lambda: ["red_cube", "green_cube", "blue_cube"], min_length=1)
    object_hues: list[float] = Field(default_factory=lambda: [0.0, 125.0, 229.0],
                                     description="deg, 0..360 reference hue per object")
    object_sizes: list[float] = Field(default_factory=lambda: [0.05, 0.05, 0.05], description="m, cube edge")
    hue_sigma: float = Field(8.0, gt=0.0, le=90.0, description="deg: hue spread of one object")
    hue_gate: float = Field(25.0, gt=0.0, le=90.0, description="deg: pixels further from every reference are background")
    min_saturation: int = Field(110, ge=0, le=255)
    min_value: int = Field(40, ge=0, le=255)
    min_pixels: int = Field(25, ge=1, le=100000, description="smallest segment kept")
    clutter_likelihood: float = Field(0.05, ge=0.0, le=10.0, description="identity: weight of 'something else'")
    workspace_min: list[float] = Field(default_factory=lambda: [-0.4, -0.8, 0.004], min_length=3, max_length=3)
    workspace_max: list[float] = Field(default_factory=lambda: [1.1, 0.8, 0.6], min_length=3, max_length=3)
    depth_edge: float = Field(0.02, gt=0.0, le=1.0, description="m: depth jump that splits segments")
    depth_min: float = Field(0.05, gt=0.0)
    depth_max: float = Field(4.0, gt=0.0)
    max_invalid_depth_fraction: float = Field(0.5, ge=0.0, le=1.0, description="frame rejected above this")
    # noise model
    depth_noise_a: float = Field(0.001, ge=0.0, le=0.1, description="m: depth sigma at 0 m")
    depth_noise_b: float = Field(0.002, ge=0.0, le=0.1, description="1/m: depth sigma grows with z^2")
    pixel_noise: float = Field(0.5, ge=0.0, le=10.0, description="px: centroid pixel sigma")
    calibration_sigma: float = Field(0.0015, ge=0.0, le=0.1, description="m per m of range (extrinsics)")
    model_sigma: float = Field(0.0015, ge=0.0, le=0.1, description="m: shape-model floor")
    max_support: int = Field(400, ge=1, description="pixels beyond which support stops shrinking sigma")
    # negative evidence
    negative_evidence: bool = True
    occlusion_margin: float = Field(0.03, ge=0.0, le=1.0, description="m")
    border_px: float = Field(6.0, ge=0.0)
    min_negative_range: float = Field(0.2, ge=0.0, description="m: nearer facts (e.g. held) are not negated")
    detection_gate: float = Field(0.06, gt=0.0, description="m: a detection this close explains a fact")
    # timing
    max_pose_lag: float = Field(0.02, ge=0.0, le=1.0, description="s between image stamp and camera pose stamp")
    pose_wait: float = Field(0.5, ge=0.0, le=10.0, description="s of wall time to wait for the pose of a frame")
    process_rate: float = Field(50.0, gt=0.0, le=1000.0, description="Hz: poll for the newest frames")
    max_pending_frames: int = Field(8, ge=1, le=1000,
                                    description="colour or depth frames per camera waiting for their pair; "
                                                "older ones are dropped and counted")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="width x height of an accepted image")
    diagnostics_rate: float = Field(1.0, gt=0.0, le=100.0)
    # viewpoint selection
    viewpoint_rate: float = Field(0.5, ge=0.0, le=10.0, description="Hz; 0 = off")
    task_subjects: list[str] = Field(default_factory=lambda: [""], description="subjects the task depends on ('' ignored); memory's re-check requests count too")
    uncertain_sigma: float = Field(0.01, gt=0.0, description="m: a fact with a larger sigma is uncertain")
    stale_threshold: float = Field(0.5, ge=0.0, le=1.0)
    view_radii: list[float] = Field(default_factory=lambda: [0.35, 0.45], min_length=1)
    view_elevations: list[float] = Field(default_factory=lambda: [90.0, 65.0, 50.0], min_length=1,
                                         description="deg above the horizontal")
    view_azimuths: int = Field(8, ge=1, le=64)
    min_camera_height: float = Field(0.2, ge=0.0, description="m above the table")
    cost_weight: float = Field(0.3, ge=0.0, description="nats per s of motion")
    min_gain: float = Field(0.3, ge=0.0, description="nats: below this no view is requested")
    grid_cell: float = Field(0.01, gt=0.001, le=0.1, description="m, elevation map")
    request_timeout: float = Field(20.0, gt=0.0, description="s for a request to finish")
    settle_frames: int = Field(2, ge=0, le=100, description="frames of the moved camera before verifying")
    search_region_min: list[float] = Field(default_factory=lambda: [0.25, -0.6], min_length=2, max_length=2,
                                           description="m (x, y): table area searched for an object no camera has seen")
    search_region_max: list[float] = Field(default_factory=lambda: [0.8, 0.6], min_length=2, max_length=2)

    @model_validator(mode="after")
    def _lists(self) -> "PerceptionParameters":
        n = len(self.object_ids)
        if len(self.object_hues) != n or len(self.object_sizes) != n:
            raise ValueError("object_ids, object_hues and object_sizes must have the same length")
        if len(set(self.object_ids)) != n or any(not o or "@" in o for o in self.object_ids):
            raise ValueError("object_ids must be unique, non-empty, without '@'")
        if any(not (0.0 <= h < 360.0) for h in self.object_hues):
            raise ValueError("object_hues must be in [0, 360)")
        if any(not (0.0 < s < 1.0) for s in self.object_sizes):
            raise ValueError("object_sizes must be in (0, 1) m")
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be below workspace_max")
        if any(not (math.isfinite(lo) and math.isfinite(hi) and lo < hi)
               for lo, hi in zip(self.search_region_min, self.search_region_max)):
            raise ValueError("search_region_min must be finite and below search_region_max")
        if self.depth_min >= self.depth_max:
            raise ValueError("depth_min must be below depth_max")
        return self
