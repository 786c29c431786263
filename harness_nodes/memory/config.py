"""Parameters of the memory tracker (pydantic model: one place for defaults, ranges and docs;
declared as ROS parameters by the node, used directly by the pure core and tests)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, model_validator


class MemoryParameters(BaseModel):
    # Changeable at run time (`ros2 param set`), applied by the node; every other field is read-only.
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({
        "stale_threshold", "action_invalidate_radius", "action_influence_radius", "action_min_factor",
        "contact_radius", "contact_factor", "grasp_radius", "gripper_empty_width", "gripper_open_width",
        "release_hysteresis", "held_confidence", "placed_confidence", "negative_evidence_factor",
        "occlusion_margin", "frustum_border_px", "require_depth_for_negative_evidence", "depth_max_age",
        "gate_min_sigma", "default_position_sigma", "max_future", "max_age", "max_objects", "max_position",
        "max_variance", "max_value_bytes", "max_facts", "snapshot_max_facts", "markers_max", "recheck_max",
        "task_subjects", "dependency_window", "ee_speed", "ee_path_min_step"})
    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml (joint states, FK)")
    world_frames: list[str] = Field(default_factory=lambda: ["world"], min_length=1,
                                    description="frames accepted for observation poses (all = world), "
                                                "besides the robot's base frame, always accepted")
    # topics and services
    observation_topic: str = Field("harness/observations", min_length=1)
    execution_topic: str = Field("harness/execution", min_length=1)
    command_topic: str = Field("harness/command", min_length=1)
    snapshot_topic: str = Field("harness/memory", min_length=1)
    events_topic: str = Field("harness/memory/events", min_length=1)
    markers_topic: str = Field("harness/memory/markers", min_length=1)
    recheck_topic: str = Field("harness/memory/recheck", min_length=1)
    service_prefix: str = Field("harness/memory", min_length=1,
                                description="services <prefix>/{query,assert,latent/store,latent/fetch}")
    cameras: list[str] = Field(default_factory=lambda: ["scene", "wrist"],
                               description="cameras whose camera_info and depth feed negative evidence")
    camera_topic_prefix: str = Field("cameras", min_length=1)
    # persistence
    persist: bool = Field(True, description="keep facts in SQLite (WAL)")
    db_path: str = Field("", description="SQLite file; empty = $ROS_HOME/robot_harness/memory.sqlite")
    db_synchronous: str = Field("NORMAL", description="SQLite synchronous: NORMAL survives kill -9; FULL power loss")
    max_facts: int = Field(100000, ge=10, le=10_000_000, description="bound on facts held; older redundant pruned")
    # validity model
    half_life_visual: float = Field(300.0, ge=0.0, description="s; 0 = never decays")
    half_life_action: float = Field(1800.0, ge=0.0, description="s; 0 = never decays")
    half_life_environment: float = Field(30.0, ge=0.0, description="s; 0 = never decays")
    half_life_text: float = Field(0.0, ge=0.0, description="s; 0 = never decays")
    half_life_latent: float = Field(120.0, ge=0.0, description="s; 0 = never decays")
    stale_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="confidence below which a fact is stale")
    action_invalidate_radius: float = Field(0.05, gt=0.0, le=1.0,
                                            description="m from the swept end-effector path: fact invalid")
    action_influence_radius: float = Field(0.2, gt=0.0, le=2.0,
                                           description="m from the swept path: confidence lowered")
    action_min_factor: float = Field(0.3, ge=0.0, le=1.0,
                                     description="confidence factor at the path's edge of invalidation")
    contact_radius: float = Field(0.1, ge=0.0, le=1.0, description="m around a contact (grasp, collision)")
    contact_factor: float = Field(0.3, ge=0.0, le=1.0, description="confidence factor near a contact")
    grasp_radius: float = Field(0.06, gt=0.0, le=0.5, description="m from the tool centre to a graspable fact")
    gripper_empty_width: float = Field(0.004, ge=0.0, le=0.1, description="m; closed below this = nothing held")
    gripper_open_width: float = Field(0.07, gt=0.0, le=0.5, description="m; wider than this = open")
    release_hysteresis: float = Field(0.01, gt=0.0, le=0.1, description="m the fingers open beyond the grip to release")
    held_confidence: float = Field(0.8, ge=0.0, le=1.0, description="confidence of a pose carried by the gripper")
    placed_confidence: float = Field(0.6, ge=0.0, le=1.0, description="confidence of a pose where it was released")
    negative_evidence_factor: float = Field(0.5, ge=0.0, le=1.0,
                                            description="confidence factor when expected and not seen")
    occlusion_margin: float = Field(0.03, ge=0.0, le=1.0, description="m: depth nearer than this = occluded")
    frustum_border_px: float = Field(4.0, ge=0.0, le=100.0)
    require_depth_for_negative_evidence: bool = True
    depth_max_age: float = Field(0.5, gt=0.0, le=10.0, description="s between a depth image and its observation")
    gate_probability: float = Field(0.99, description="chi-square gate (3 dof): 0.95, 0.99 or 0.999")
    gate_min_sigma: float = Field(0.01, gt=0.0, le=1.0, description="m, isotropic floor of gating covariance")
    default_position_sigma: float = Field(0.01, gt=0.0, le=1.0, description="m, when an observation gives no covariance")
    # input checks
    max_future: float = Field(0.5, ge=0.0, le=60.0, description="s an observation stamp may lead the clock")
    max_age: float = Field(30.0, gt=0.0, le=3600.0, description="s an observation stamp may lag the clock")
    max_objects: int = Field(256, ge=1, le=100000, description="objects per SceneObservation")
    max_position: float = Field(20.0, gt=0.0, description="m from the world origin")
    max_variance: float = Field(4.0, gt=0.0, description="m^2, largest accepted covariance eigenvalue")
    max_value_bytes: int = Field(65536, ge=16, description="bytes of a fact's value")
    # outputs
    snapshot_rate: float = Field(2.0, ge=0.0, le=100.0, description="Hz; 0 = off")
    snapshot_max_facts: int = Field(1000, ge=1, le=1_000_000, description="facts per snapshot and query answer")
    markers_rate: float = Field(2.0, ge=0.0, le=100.0, description="Hz; 0 = off")
    markers_max: int = Field(500, ge=1, le=100000)
    tick_rate: float = Field(2.0, gt=0.0, le=100.0, description="Hz: staleness, grasp tracking, persistence heartbeat")
    recheck_rate: float = Field(0.5, ge=0.0, le=10.0, description="Hz; 0 = off")
    recheck_max: int = Field(5, ge=1, le=100, description="re-check requests per round")
    task_subjects: list[str] = Field(default_factory=list,
                                     description="subjects the task depends on (besides recently queried ones)")
    dependency_window: float = Field(60.0, ge=0.0, description="s a queried subject counts as a task dependency")
    ee_speed: float = Field(0.25, gt=0.0, le=5.0, description="m/s, for re-check cost of moving the wrist camera")
    diagnostics_rate: float = Field(1.0, gt=0.0, le=10.0)
    # index and latent cache
    grid_cell: float = Field(0.1, gt=0.001, le=10.0, description="m, spatial grid cell")
    latent_resolution: float = Field(0.05, gt=0.0, le=10.0, description="m, region key quantisation")
    latent_max_entries: int = Field(1000, ge=1, le=1_000_000)
    latent_max_bytes: int = Field(64 << 20, ge=1024)
    ee_path_min_step: float = Field(0.005, gt=0.0, le=0.5, description="m between recorded path points")
    motion_settle_time: float = Field(0.5, gt=0.0, le=10.0,
                                      description="s without tool motion that ends a measured motion no chunk "
                                                  "accounts for (it then invalidates along its path)")

    @model_validator(mode="after")
    def _consistent(self) -> "MemoryParameters":
        if self.gate_probability not in (0.95, 0.99, 0.999):
            raise ValueError("gate_probability must be one of 0.95, 0.99, 0.999")
        if self.action_invalidate_radius > self.action_influence_radius:
            raise ValueError("action_invalidate_radius must be <= action_influence_radius")
        if self.db_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("db_synchronous must be OFF, NORMAL, FULL or EXTRA")
        return self
