"""Episodes in the PyBullet world without ROS: end-effector-delta control, the scripted expert as
a closed-loop delta controller, randomisation (layout, colours, camera jitter, distractor motion,
action noise, failed grasps) and the per-step record (64x64 frames, proprioception, action, phase).

Action (one control step of 1 / CONTROL_RATE s) = [dx, dy, dz, dyaw, grip]: tool displacement in
the base frame (m), yaw change about the base z axis (rad), and the gripper state wanted after the
step (1 = open, 0 = closed). This is the router's SPACE_END_EFFECTOR_DELTA with a gripper command.
The executor here applies it the way the router does (Pinocchio IK of the commanded tool pose,
joint trajectory over the step) so episodes run in-process, many per second of CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pybullet as p

from harness_nodes.expert.plan import (GRIPPER_CLOSE, GRIPPER_OPEN, PickPlaceConfig, plan_pick_place,
                                       top_down_quaternion)
from harness_nodes.common.kinematics import ArmKinematics, pose_to_se3
from harness_nodes.dataset.features import (ACTION_NAMES, CAMERA_KEYS, CONTROL_RATE, IMAGE_SIZE,  # noqa: F401
                                          MAX_STEP, MAX_YAW_STEP, PHASES, SCENE_FOV_DEG, STATE_NAMES)
from harness_nodes.sim.world import CUBE_COLOURS, CUBE_IDS, CUBE_SIZE, DISTRACTOR_ID, TRAY_ID, SimWorld, TrajectoryPoint

GRIPPER_SETTLE_STEPS = 3      # control steps waited after a gripper change
REACHED = 0.006               # m: phase target reached
LAYOUT_JITTER = 0.04          # m added to the world's own seeded cube jitter


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that makes one episode; the seed fixes all randomness."""
    seed: int
    robot: str = "panda"
    camera_jitter: bool = False
    distractor_motion: bool = False
    action_noise: float = 0.0          # m, std of Gaussian noise on executed displacements
    failed_grasp: bool = False         # grasp point offset so the cube is missed
    colour_jitter: bool = True
    max_steps: int = 70


@dataclass
class EpisodeRecord:
    spec: EpisodeSpec
    task: str
    target: str
    frames: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in CAMERA_KEYS})
    states: list[np.ndarray] = field(default_factory=list)
    joints: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    phases: list[int] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)   # believed target position (m)
    success: bool = False

    def __len__(self) -> int:
        return len(self.states)


def task_for(target: str) -> str:
    return f"put {target} in tray"


class DeltaArm:
    """Applies end-effector-delta actions to a SimWorld like the router: IK of the commanded tool
    pose (top-down, yaw about z), a joint trajectory over one control step, gripper open/close."""

    def __init__(self, world: SimWorld):
        self.world = world
        self.kinematics = ArmKinematics.from_description(world.description)
        self.arm_names = list(world.description.arm.joint_names)
        grip = world.description.gripper
        self.open_width, self.closed_width = grip.max_width, grip.min_width
        pose = self.kinematics.fk(world.arm_positions())
        self.position = pose.translation.copy()
        self.yaw = 0.0
        self.grip = 1.0
        self.steps_per_action = int(round(world.physics_rate / CONTROL_RATE))

    def state(self) -> np.ndarray:
        pose = self.kinematics.fk(self.world.arm_positions())
        x, y, z = pose.translation
        return np.array([x, y, z, self.yaw, self.world.gripper_width()], dtype=np.float32)

    def apply(self, action: np.ndarray) -> bool:
        """Execute one action for one control step; False when IK could not follow (arm holds)."""
        a = np.asarray(action, dtype=float)
        target = self.position + np.clip(a[:3], -MAX_STEP, MAX_STEP)
        target[2] = max(target[2], 0.005)
        yaw = float(np.clip(self.yaw + np.clip(a[3], -MAX_YAW_STEP, MAX_YAW_STEP), -math.pi / 4, math.pi / 4))
        ok = True
        result = self.kinematics.ik(pose_to_se3(target, top_down_quaternion(yaw)), self.world.arm_positions(),
                                    max_iterations=100, tolerance=1e-3)
        if result.success:
            self.position, self.yaw = target, yaw
            self.world.set_arm_trajectory(self.arm_names, [TrajectoryPoint(result.q.tolist(), 1.0 / CONTROL_RATE)])
        else:
            ok = False
        grip = 1.0 if a[4] >= 0.5 else 0.0
        if grip != self.grip:
            self.grip = grip
            self.world.set_gripper_width(self.open_width if grip else self.closed_width, 0.4)
        self.world.step(self.steps_per_action)
        return ok


class ScriptedDeltaExpert:
    """The pick-and-place plan (expert/plan.py) followed as a closed-loop delta controller."""

    def __init__(self, phases, grasp_offset: np.ndarray | None = None):
        self.phases = list(phases)
        if grasp_offset is not None:
            for i, ph in enumerate(self.phases):
                if ph.name in ("pre_grasp", "descend", "lift"):
                    self.phases[i] = type(ph)(ph.name, [q + grasp_offset for q in ph.positions],
                                              ph.quaternion, ph.gripper)
        self.index = 0
        self.settle = 0
        self.grip = 1.0

    @property
    def phase_index(self) -> int:
        return min(self.index, len(PHASES) - 1)

    def act(self, arm: DeltaArm) -> np.ndarray:
        if self.index >= len(self.phases):
            return np.array([0, 0, 0, 0, self.grip], dtype=np.float32)
        phase = self.phases[self.index]
        if self.settle > 0:
            self.settle -= 1
            if self.settle == 0:
                self.index += 1
            return np.array([0, 0, 0, 0, self.grip], dtype=np.float32)
        delta = phase.positions[-1] - arm.position
        dyaw = float(np.clip(_wrapped_yaw(phase.quaternion) - arm.yaw, -MAX_YAW_STEP, MAX_YAW_STEP))
        norm = float(np.linalg.norm(delta))
        step = delta if norm <= MAX_STEP else delta * (MAX_STEP / norm)
        if norm <= REACHED + MAX_STEP and abs(dyaw) < 0.02:
            # this step reaches the target: then the gripper command, then the next phase
            if phase.gripper in (GRIPPER_OPEN, GRIPPER_CLOSE):
                self.grip = 1.0 if phase.gripper == GRIPPER_OPEN else 0.0
                self.settle = GRIPPER_SETTLE_STEPS
            else:
                self.index += 1
        return np.array([*step, dyaw, self.grip], dtype=np.float32)


def _wrapped_yaw(quaternion) -> float:
    """Yaw of a top-down tool quaternion from `top_down_quaternion` (folded to [-pi/4, pi/4])."""
    x, y, z, w = quaternion
    # top_down_quaternion(yaw) = about_z(yaw) * rot_x(pi): x = cos(yaw/2), y = sin(yaw/2)
    return float(np.clip(2.0 * math.atan2(y, x), -math.pi / 4, math.pi / 4))


def make_world(robot: str, seed: int, spec: EpisodeSpec | None = None) -> SimWorld:
    world = SimWorld(robot, image_width=IMAGE_SIZE, image_height=IMAGE_SIZE, seed=seed)
    world.cameras["scene"].fov_deg = SCENE_FOV_DEG
    rng = np.random.default_rng(seed + 7919)
    if spec is not None and spec.camera_jitter:
        world.SCENE_EYE = tuple(np.array(SimWorld.SCENE_EYE) + rng.uniform(-0.06, 0.06, 3))
        world.SCENE_TARGET = tuple(np.array(SimWorld.SCENE_TARGET) + rng.uniform(-0.03, 0.03, 3))
    world.connect()
    return world


def randomise_layout(world: SimWorld, rng: np.random.Generator, colour_jitter: bool) -> None:
    for cube in CUBE_IDS:
        pos, quat = world.object_pose(cube)
        world.move_object(cube, (pos[0] + rng.uniform(-LAYOUT_JITTER, LAYOUT_JITTER),
                                 pos[1] + rng.uniform(-LAYOUT_JITTER, LAYOUT_JITTER), pos[2]), quat)
        if colour_jitter:
            rgba = np.clip(np.array(CUBE_COLOURS[cube]) + np.r_[rng.uniform(-0.08, 0.08, 3), 0.0], 0, 1)
            p.changeVisualShape(world.objects[cube], -1, rgbaColor=rgba.tolist(), physicsClientId=world.client)
    if colour_jitter:
        table = np.clip(np.array([0.75, 0.65, 0.5]) + rng.uniform(-0.06, 0.06, 3), 0, 1)
        p.changeVisualShape(world.table, -1, rgbaColor=[*table, 1.0], physicsClientId=world.client)
    world.step(24)


class DistractorMotion:
    """The look-alike prop slides back and forth across the back of the table."""

    def __init__(self, world: SimWorld, rng: np.random.Generator):
        self.world = world
        self.start = np.array([rng.uniform(0.65, 0.75), rng.uniform(-0.3, 0.3), CUBE_SIZE / 2 + 1e-3])
        self.velocity = np.array([0.0, rng.choice([-1, 1]) * rng.uniform(0.02, 0.05), 0.0])
        self.position = self.start.copy()

    def step(self) -> None:
        self.position = self.position + self.velocity
        if abs(self.position[1]) > 0.35:
            self.velocity = -self.velocity
        self.world.move_object(DISTRACTOR_ID, self.position)


def render_frames(world: SimWorld) -> dict[str, np.ndarray]:
    return {k: world.render(k).rgb for k in CAMERA_KEYS}


def target_in_tray(world: SimWorld, target: str) -> bool:
    return target in world.objects_in_tray() and world.held_object() == ""


def run_expert_episode(spec: EpisodeSpec) -> EpisodeRecord:
    """One recorded expert episode (maybe perturbed or failing, as the spec says)."""
    rng = np.random.default_rng(spec.seed)
    world = make_world(spec.robot, spec.seed, spec)
    try:
        randomise_layout(world, rng, spec.colour_jitter)
        target = CUBE_IDS[int(rng.integers(len(CUBE_IDS)))]
        arm = DeltaArm(world)
        obj_pos, obj_quat = world.object_pose(target)
        tray_pos, _ = world.object_pose(TRAY_ID)
        offset = None
        if spec.failed_grasp:
            angle = rng.uniform(0, 2 * math.pi)
            offset = np.array([math.cos(angle), math.sin(angle), 0.0]) * rng.uniform(0.045, 0.06)
        expert = ScriptedDeltaExpert(plan_pick_place(obj_pos, obj_quat, tray_pos, PickPlaceConfig()), offset)
        distractor = DistractorMotion(world, rng) if spec.distractor_motion else None
        record = EpisodeRecord(spec=spec, task=task_for(target), target=target)
        for _ in range(spec.max_steps):
            _record_observation(record, world, arm, target, expert.phase_index)
            action = expert.act(arm)
            executed = action.copy()
            if spec.action_noise > 0:
                executed[:3] += rng.normal(0.0, spec.action_noise, 3).astype(np.float32)
                executed[:3] = np.clip(executed[:3], -MAX_STEP, MAX_STEP)
            record.actions.append(executed)
            arm.apply(executed)
            if distractor is not None:
                distractor.step()
            if expert.phase_index == len(PHASES) - 1:
                break
        _record_observation(record, world, arm, target, expert.phase_index)
        record.actions.append(np.array([0, 0, 0, 0, arm.grip], dtype=np.float32))
        record.success = target_in_tray(world, target)
        return record
    finally:
        world.disconnect()


def _record_observation(record: EpisodeRecord, world: SimWorld, arm: DeltaArm, target: str, phase: int) -> None:
    frames = render_frames(world)
    for k in CAMERA_KEYS:
        record.frames[k].append(frames[k])
    record.states.append(arm.state())
    record.joints.append(world.arm_positions().astype(np.float32))
    record.phases.append(int(phase))
    record.targets.append(world.object_pose(target)[0].astype(np.float32))
