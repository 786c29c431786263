"""What an episode is: the spec (scenario, ablation, seed, robot, domain), the result, the scenario
list with each scenario's perturbation, and the ablation -> supervisor-parameter mapping. Pure (no
rclpy): the benchmark suite and tests import it without ROS.

Ablations are cumulative: each adds its supervisor switch(es) to the previous one.
    policy_only       candidates (policy, or the planner from memory's beliefs) executed unchecked
    world_model       + the world model ranks and vetoes candidates (and its surprise is a failure cue)
    memory_validity   + act only on valid, confident beliefs; re-check the plan's belief before moving
    viewpoint         + ask perception to look again at stale or missing beliefs
    full              + recovery from typed failures and escalation when the budget is spent
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Seeds of every scenario: thresholds, gains and calibrations are tuned on TUNING_SEEDS only; the
# benchmarks report on HELDOUT_SEEDS, which no tuning run may use.
TUNING_SEEDS = range(0, 1000)
HELDOUT_SEEDS = range(1000, 2000)
ABLATIONS = ("policy_only", "world_model", "memory_validity", "viewpoint", "full")
_ADDS = {
    "policy_only": ("use_policy",),
    "world_model": ("use_world_model",),
    "memory_validity": ("use_memory_validity",),
    "viewpoint": ("use_viewpoint",),
    "full": ("use_recovery", "use_escalation"),
}
SWITCHES = ("use_policy", "use_world_model", "use_memory_validity", "use_viewpoint", "use_recovery",
            "use_escalation")


@dataclass(frozen=True)
class Scenario:
    """A sim scenario plus what the episode does to it while the task runs."""
    name: str
    sim_scenario: str               # the sim node's `scenario` parameter
    perturbation: str = "none"      # none | move_target_unobserved
    description: str = ""


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("nominal", "nominal", description="three cubes and a tray, nothing changes"),
    Scenario("moved", "nominal", "move_target_unobserved",
             "the target cube is moved to a seeded new pose once the arm has started the approach "
             "(the wrist camera is then pointed at where the cube was, not where it goes)"),
    Scenario("occluded", "occluded", description="the target is hidden from the scene camera"),
    Scenario("lookalike", "lookalike", description="a cube of nearly the target's colour beside it"),
    Scenario("obstacle", "obstacle", description="a tall box beside the straight path to the tray"),
    Scenario("grasp_slip", "grasp_slip", description="the held cube slips out of the fingers after a seeded "
             "carry distance (once per reset)"),
)}

# Where the "moved" scenario may put the target: on the table, within reach, clear of the tray and
# the other cubes' nominal places (seeded uniform, rejection-sampled).
MOVE_REGION_X = (0.32, 0.52)
MOVE_REGION_Y = (0.08, 0.30)
MOVE_MIN_SHIFT = 0.08      # m from where it was: far enough to miss a grasp there
MOVE_CLEARANCE = 0.08      # m from the other cubes' nominal centres
OTHER_CUBES_XY = ((0.56, 0.10), (0.45, 0.22))
CUBE_REST_Z = 0.0251
EPISODE_TASKS = {"pick_place": "put the {obj} in the tray"}


@dataclass(frozen=True)
class EpisodeSpec:
    scenario: str = "moved"      # a key of SCENARIOS; "moved" = target cube moved while the camera is not looking at it
    ablation: str = "full"       # one of ABLATIONS, cumulative
    seed: int = 0
    robot: str = "panda"
    object_id: str = "red_cube"
    domain_id: int | None = None  # ROS_DOMAIN_ID for this episode's whole stack (None: inherit)
    record_dir: str | None = None  # keep the stack log and a recording (rosbag2, MCAP) of the episode here
    timeout: float = 300.0        # wall s
    policy_steps: int = 0         # the supervisor's policy_steps: policy chunks in closed loop per motion subgoal

    def validate(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario '{self.scenario}'; known: {sorted(SCENARIOS)}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation '{self.ablation}'; known: {list(ABLATIONS)}")
        if not 0 <= int(self.seed) <= 2**31 - 1:
            raise ValueError(f"seed {self.seed} not in 0..2^31-1")
        if self.domain_id is not None and not 0 <= int(self.domain_id) <= 232:
            raise ValueError(f"domain_id {self.domain_id} not in 0..232")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and 0 < self.timeout <= 86400):
            raise ValueError(f"timeout {self.timeout} s not in (0, 86400]")
        if not (isinstance(self.policy_steps, int) and 0 <= self.policy_steps <= 50):
            raise ValueError(f"policy_steps {self.policy_steps} not in 0..50")
        if not self.object_id or len(self.object_id) > 64 or not self.object_id.replace("_", "").isalnum():
            raise ValueError(f"object_id '{self.object_id[:80]}' is not a plain object name")

    @property
    def goal(self) -> str:
        return EPISODE_TASKS["pick_place"].format(obj=self.object_id.replace("_", " "))


@dataclass
class EpisodeResult:
    spec: EpisodeSpec
    success: bool                 # judged from sim ground truth (object in the tray, not held) by the runner only
    outcome: str                  # supervisor result outcome / "timeout" / "error"
    wall_time_s: float
    sim_time_s: float
    attempts: int
    retries: int
    escalations: int
    vetoes: int
    false_vetoes: int
    # Chunks sent for approach or grasp while memory's belief about the target, queried just before
    # sending, was not trustworthy (stale, invalid, contradicted, low confidence) or had moved more
    # than the supervisor's moved_tolerance from the belief the plan was made on. This is what the
    # supervisor can know; a cube moved where no camera sees it is not counted until memory learns it.
    stale_fact_uses: int
    re_observations: int          # re-check requests the supervisor sent (viewpoints asked for)
    decision_latency_ms: list[float]  # per motion decision: memory query -> chunk sent, world model included
    log: list[str]                # the step-by-step lines (believed, checked, vetoed, failed, recovered)
    error: str = ""
    surprises: int = 0            # chunks after which the world model's surprise was a failure cue
    policy_chunks: int = 0        # executed chunks proposed by the latent policy
    planner_chunks: int = 0       # executed chunks built by the supervisor's planner
    perturbation: dict = field(default_factory=dict)   # what the episode did to the world, when

    def summary(self) -> dict:
        """One flat dict (JSON-ready) without the log."""
        lat = self.decision_latency_ms
        return {"scenario": self.spec.scenario, "ablation": self.spec.ablation, "seed": self.spec.seed,
                "robot": self.spec.robot, "success": self.success, "outcome": self.outcome,
                "wall_time_s": round(self.wall_time_s, 2), "sim_time_s": round(self.sim_time_s, 2),
                "attempts": self.attempts, "retries": self.retries, "escalations": self.escalations,
                "vetoes": self.vetoes, "false_vetoes": self.false_vetoes, "stale_fact_uses": self.stale_fact_uses,
                "re_observations": self.re_observations, "surprises": self.surprises,
                "policy_chunks": self.policy_chunks, "planner_chunks": self.planner_chunks,
                "decision_latency_ms_median": round(float(np.median(lat)), 1) if lat else None,
                "error": self.error}


def supervisor_switches(ablation: str) -> dict[str, bool]:
    """The supervisor's use_* parameters for an ablation (cumulative)."""
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation '{ablation}'; known: {list(ABLATIONS)}")
    on: set[str] = set()
    for name in ABLATIONS[:ABLATIONS.index(ablation) + 1]:
        on.update(_ADDS[name])
    return {s: s in on for s in SWITCHES}


def moved_pose(seed: int, original_xy: tuple[float, float]) -> tuple[float, float, float, float]:
    """The seeded pose (x, y, z, yaw) the "moved" scenario puts the target at: in the region, at
    least MOVE_MIN_SHIFT from where it was and MOVE_CLEARANCE from the other cubes."""
    rng = np.random.default_rng([int(seed), 7])
    for _ in range(1000):
        x, y = rng.uniform(*MOVE_REGION_X), rng.uniform(*MOVE_REGION_Y)
        if math.dist((x, y), original_xy) < MOVE_MIN_SHIFT:
            continue
        if any(math.dist((x, y), c) < MOVE_CLEARANCE for c in OTHER_CUBES_XY):
            continue
        return float(x), float(y), CUBE_REST_Z, float(rng.uniform(-0.3, 0.3))
    raise RuntimeError("no pose for the moved scenario in its region")   # the region is large enough
