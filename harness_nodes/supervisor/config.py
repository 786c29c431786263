"""Parameters of the supervisor (pydantic model: defaults, ranges and docs in one place; declared
as ROS parameters by the node). The `use_*` switches are the ablations: with all of them off the
same stack runs "policy only" (or planner only)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, model_validator

from harness_nodes.supervisor.runner import RunnerConfig


class SupervisorParameters(BaseModel):
    DYNAMIC: ClassVar[frozenset[str]] = frozenset({
        "use_policy", "use_world_model", "use_memory_validity", "use_viewpoint", "use_recovery", "use_escalation",
        "num_candidates", "min_confidence", "retries_per_subgoal", "retries_per_task", "look_timeout",
        "verify_timeout", "grasp_check_timeout", "moved_tolerance", "service_timeout", "policy_timeout",
        "world_model_timeout", "ack_timeout", "gripper_empty_width", "gripper_open_width", "chunk_timeout", "hold_timeout", "help_timeout", "task_timeout",
        "policy_reach_tolerance", "policy_steps", "policy_min_progress", "surprise_threshold", "surprise_wait"})
    # ablation switches
    use_policy: bool = Field(True, description="ask the latent-action policy for candidates (else the planner)")
    use_world_model: bool = Field(True, description="let the world model rank and veto candidates")
    use_memory_validity: bool = Field(True, description="act only on valid, confident beliefs")
    use_viewpoint: bool = Field(True, description="ask perception to re-check stale beliefs")
    use_recovery: bool = Field(True, description="recover from typed failures within the retry budget")
    use_escalation: bool = Field(True, description="ask a human when the budget is spent")
    robot: str = Field("panda", min_length=1, max_length=64,
                       description="config/robots/<robot>.yaml: gripper width from the finger joints")
    gripper_empty_width: float = Field(0.004, ge=0.0, le=0.5, description="m: fingers closed on nothing")
    gripper_open_width: float = Field(0.07, gt=0.0, le=0.5, description="m: at least this wide holds nothing")
    # decisions
    num_candidates: int = Field(4, ge=1, le=32)
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="belief confidence needed to act on it")
    retries_per_subgoal: int = Field(2, ge=0, le=20)
    retries_per_task: int = Field(4, ge=0, le=100, description="when the goal's max_attempts is 0")
    moved_tolerance: float = Field(0.03, gt=0.0, le=1.0, description="m a belief may move under the plan")
    policy_reach_tolerance: float = Field(0.03, gt=0.0, le=1.0,
                                          description="m from the subgoal's target a policy chunk must end to be used")
    policy_steps: int = Field(0, ge=0, le=50, description="policy chunks run in closed loop per motion subgoal "
                              "before the subgoal is finished (0: the policy only finishes subgoals)")
    policy_min_progress: float = Field(0.01, gt=0.0, le=1.0,
                                       description="m closer to the subgoal's target a policy step must bring the tool")
    surprise_threshold: float = Field(0.05, ge=0.0, le=10.0, description="m between the world model's prediction "
                                      "and memory for the task object after a chunk: failure cue; 0 = off")
    surprise_wait: float = Field(2.0, gt=0.0, le=60.0, description="s to wait for the world model's surprise "
                                 "after the approach (it comes with memory's next snapshot)")
    # bounds (wall s): every wait on another node ends
    look_timeout: float = Field(15.0, gt=0.0, le=600.0, description="for a trustworthy belief after a re-check")
    verify_timeout: float = Field(10.0, gt=0.0, le=600.0)
    grasp_check_timeout: float = Field(3.0, gt=0.0, le=60.0)
    service_timeout: float = Field(3.0, gt=0.0, le=60.0, description="memory query/assert answer")
    policy_timeout: float = Field(10.0, gt=0.0, le=120.0)
    world_model_timeout: float = Field(10.0, gt=0.0, le=120.0)
    ack_timeout: float = Field(5.0, gt=0.0, le=60.0, description="first feedback on a chunk from the router")
    chunk_timeout: float = Field(60.0, gt=0.0, le=600.0, description="a chunk's terminal feedback")
    hold_timeout: float = Field(3.0, gt=0.0, le=60.0, description="router lifecycle transition answer")
    help_timeout: float = Field(300.0, gt=0.0, le=86400.0, description="a human's answer to a help request")
    task_timeout: float = Field(600.0, gt=0.0, le=86400.0, description="when the goal's timeout is 0")
    # rates
    heartbeat_rate: float = Field(10.0, gt=0.0, le=1000.0, description="Hz of harness/heartbeat")
    status_rate: float = Field(2.0, gt=0.0, le=100.0, description="Hz of HarnessStatus")
    # objects perception can recognise: a goal naming one is accepted before memory believes in it
    # (the look step then asks perception to search for it)
    searchable_objects: list[str] = Field(default_factory=lambda: ["red_cube", "green_cube", "blue_cube"],
                                          max_length=256)
    # places: destinations that cannot be picked; their position when memory has no belief
    places: list[str] = Field(default_factory=lambda: ["tray"], min_length=1, max_length=32)
    place_positions: list[float] = Field(default_factory=lambda: [0.50, -0.18, 0.0042],
                                         description="x, y, z (m, world) per place, flattened")
    # names (relative: they follow the namespace)
    action_name: str = Field("harness/execute_task", min_length=1, max_length=256)
    command_topic: str = Field("harness/command", min_length=1, max_length=256)
    execution_topic: str = Field("harness/execution", min_length=1, max_length=256)
    heartbeat_topic: str = Field("harness/heartbeat", min_length=1, max_length=256)
    status_topic: str = Field("harness/status", min_length=1, max_length=256)
    help_topic: str = Field("harness/help_request", min_length=1, max_length=256)
    human_feedback_topic: str = Field("harness/human_feedback", min_length=1, max_length=256)
    recheck_topic: str = Field("harness/memory/recheck", min_length=1, max_length=256)
    memory_topic: str = Field("harness/memory", min_length=1, max_length=256)
    memory_events_topic: str = Field("harness/memory/events", min_length=1, max_length=256)
    memory_service_prefix: str = Field("harness/memory", min_length=1, max_length=256)
    observation_topic: str = Field("harness/observations", min_length=1, max_length=256)
    joint_states_topic: str = Field("joint_states", min_length=1, max_length=256)
    policy_service: str = Field("latent_policy/propose_actions", min_length=1, max_length=256)
    world_model_service: str = Field("harness/world_model/evaluate", min_length=1, max_length=256)
    surprise_topic: str = Field("harness/world_model/surprise", min_length=1, max_length=256)
    router_node: str = Field("controller_router", min_length=1, max_length=256,
                             description="its <name>/change_state holds the arm (deactivate, then activate)")

    @model_validator(mode="after")
    def _places_have_positions(self):
        if not self.gripper_empty_width < self.gripper_open_width:
            raise ValueError("gripper_empty_width must be below gripper_open_width")
        if any(not o or len(o) > 256 for o in self.searchable_objects):
            raise ValueError("searchable_objects must be non-empty names of at most 256 characters")
        if len(self.place_positions) != 3 * len(self.places):
            raise ValueError(f"place_positions needs 3 values per place ({3 * len(self.places)}), "
                             f"got {len(self.place_positions)}")
        return self

    def place_map(self) -> dict[str, tuple[float, float, float]]:
        return {name: tuple(self.place_positions[3 * i:3 * i + 3]) for i, name in enumerate(self.places)}

    def runner_config(self) -> RunnerConfig:
        return RunnerConfig(
            use_policy=self.use_policy, use_world_model=self.use_world_model,
            use_memory_validity=self.use_memory_validity, use_viewpoint=self.use_viewpoint,
            use_recovery=self.use_recovery, use_escalation=self.use_escalation, num_candidates=self.num_candidates,
            min_confidence=self.min_confidence, look_timeout=self.look_timeout, moved_tolerance=self.moved_tolerance,
            grasp_check_timeout=self.grasp_check_timeout, verify_timeout=self.verify_timeout,
            retries_per_subgoal=self.retries_per_subgoal, retries_per_task=self.retries_per_task,
            policy_reach_tolerance=self.policy_reach_tolerance, policy_steps=self.policy_steps,
            policy_min_progress=self.policy_min_progress, surprise_threshold=self.surprise_threshold,
            surprise_wait=self.surprise_wait)
