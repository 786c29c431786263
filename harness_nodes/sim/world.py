"""Pure PyBullet world for the harness: a Franka Panda on a table, three coloured cubes and a tray.

No ROS here (the node in `node.py` is a thin wrapper), so tests and benchmarks can drive the world
directly. Conventions:

* World frame = robot base frame: the Panda's base sits at the origin on the table top (z = 0).
* Joint commands follow ros2_control's joint_trajectory_controller: a trajectory of points with
  positions (optional velocities) and time_from_start, started at an absolute sim time, sampled
  every physics step (cubic Hermite with velocities, linear without) and sent to PyBullet's
  position motors. Before the first point the trajectory starts from the current desired state;
  after the last point the last point is held. A new trajectory replaces the old one from the
  current desired state (no jump). Joints the trajectory does not name hold their desired position.
  A trajectory with an explicit start whose points all lie in the past is rejected, as the
  controller does (executing it would be a jump faster than any joint limit).
* `move_object` (the sim's /sim/control) refuses positions beyond `MOVE_LIMIT` and poses inside
  the robot's base.
* Gripper: the commanded gripper joints (description `gripper.joint_names`) each take
  `position_for_width(width)` (Panda: each finger width / 2; xArm: drive_joint 0.85 .. 0 rad);
  mimic joints are geared to the first commanded joint (PyBullet gear constraints), as the real
  linkage is: a blocked finger blocks the drive. Limited force.
* Scenario `grasp_slip`: a cube held and lifted SLIP_LIFT_HEIGHT above the table slips out of the
  fingers (as `inject_grasp_slip`) once it has been carried a horizontal distance drawn from the
  seed (SLIP_DISTANCE), once per reset: the transport loses the cube at a reproducible place.
* Quaternions are (x, y, z, w); lengths are metres, angles radians, times seconds of sim time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pybullet as p
import pybullet_data

from harness_nodes.common.camera_mount import CAMERAS
from harness_nodes.common.geometry import matrix_to_quat
from harness_nodes.common.robot_description import RobotDescription, load_robot_description

CUBE_IDS = ("red_cube", "green_cube", "blue_cube")
TRAY_ID = "tray"
OBJECT_IDS = (*CUBE_IDS, TRAY_ID)
SCENARIOS = ("nominal", "occluded", "lookalike", "obstacle", "grasp_slip")
# Scenario props: always built (so a render worker's copy of the world has them too), parked off
# the table where a scenario does not use them.
OCCLUDER_ID = "occluder"        # a tall grey box hiding the target from the scene camera
DISTRACTOR_ID = "distractor"    # a cube of nearly the target's colour (look-alike)
OBSTACLE_ID = "obstacle"        # a tall light box beside the straight path to the tray (world-model veto)
PROP_IDS = (OCCLUDER_ID, DISTRACTOR_ID, OBSTACLE_ID)
OCCLUDER_HALF = (0.025, 0.09, 0.13)   # m: thin along the scene camera's line of sight, 0.26 m tall
OCCLUDER_COLOUR = (0.55, 0.55, 0.58, 1.0)
DISTRACTOR_COLOUR = (0.85, 0.28, 0.1, 1.0)   # hue ~14 deg, next to red's 0 deg
OCCLUDED_TARGET_XY = (0.40, 0.48)   # red cube: outside the wrist camera's view at home
OCCLUDER_DISTANCE = 0.12            # m from the target toward the scene camera
LOOKALIKE_OFFSET = (0.0, -0.08)     # distractor relative to the red cube
PROP_PARK = {OCCLUDER_ID: (3.0, -2.0), DISTRACTOR_ID: (3.0, 2.0), OBSTACLE_ID: (3.0, 0.0)}   # behind the scene camera
OBSTACLE_HALF = (0.02, 0.02, 0.12)    # m: 0.24 m tall, as high as the held cube at transport height
OBSTACLE_MASS = 0.3                   # kg: light enough that a passing arm knocks it over
OBSTACLE_COLOUR = (0.95, 0.85, 0.2, 1.0)
OBSTACLE_PATH_FRACTION = (0.35, 0.45)  # where along the red cube -> tray centre line it stands (seeded)
OBSTACLE_SIDE_OFFSET = (0.05, 0.07)   # m beside that line, on the side away from the robot (seeded)

CUBE_SIZE = 0.05          # m, edge
CUBE_MASS = 0.1           # kg
CUBE_COLOURS = {"red_cube": (0.85, 0.1, 0.1, 1.0), "green_cube": (0.1, 0.75, 0.15, 1.0),
                "blue_cube": (0.1, 0.2, 0.85, 1.0)}
# Nominal layout: cubes on the left of the workspace, tray on the right, all within reach.
CUBE_NOMINAL_XY = {"red_cube": (0.42, 0.06), "green_cube": (0.56, 0.10), "blue_cube": (0.45, 0.22)}
CUBE_JITTER = 0.02        # m, uniform +- per axis, from the seed
CUBE_YAW_JITTER = 0.3     # rad, uniform +-
TRAY_SCALE = 0.4          # traybox.urdf is 0.6 m square: 0.24 m once scaled
TRAY_NOMINAL_XY = (0.50, -0.18)
TRAY_BASE_Z = 0.0042      # the scaled traybox's bottom rests on the table
TRAY_IN_HEIGHT = 0.06     # m above the tray base: an object lower than this inside it is "in" it
TABLE_SIZE = (1.4, 1.4, 0.04)   # m; top surface at z = 0
TABLE_CENTRE_XY = (0.35, 0.0)
FLOOR_Z = -0.75
FINGER_FRICTION = 2.0
MOVE_LIMIT = 5.0          # m per axis from the origin: where /sim/control may put an object
BASE_PENETRATION = 0.002  # m: an object placed deeper than this into the robot's base is refused
CUBE_FRICTION = 1.5
SLIP_DURATION = 0.5       # s of sim time the fingers stop touching the slipping object
SLIP_LIFT_HEIGHT = 0.06   # m above its resting height: a held cube this high is being transported
SLIP_DISTANCE = (0.04, 0.12)  # m carried sideways before the grasp_slip scenario's slip (uniform, seeded)
SLIP_CHECK_STEPS = 12     # physics steps between the grasp_slip scenario's checks (20 Hz at 240 Hz)
ARM_POSITION_GAIN = 0.3   # PyBullet position-motor gains (unitless, 0..1)
ARM_VELOCITY_GAIN = 1.0
GRIPPER_POSITION_GAIN = 0.3
MIMIC_GEAR_FORCE = 1000.0     # N m the linkage constraints may apply (rigid compared with the drive)


@dataclass
class CameraSpec:
    name: str
    width: int
    height: int
    fov_deg: float = 60.0   # vertical field of view
    near: float = 0.01
    far: float = 5.0


@dataclass
class RenderResult:
    rgb: np.ndarray                 # (H, W, 3) uint8
    depth: np.ndarray               # (H, W) float32, metres along the optical axis
    intrinsics: tuple               # fx, fy, cx, cy (pixels)
    position: np.ndarray            # optical frame origin in world, m
    quaternion: np.ndarray          # optical frame orientation in world (x, y, z, w); z fwd, x right, y down
    width: int = 0
    height: int = 0


@dataclass
class JointStates:
    names: list[str]
    positions: np.ndarray
    velocities: np.ndarray
    efforts: np.ndarray


@dataclass
class GroundTruth:
    object_ids: list[str]
    positions: list[np.ndarray]
    quaternions: list[np.ndarray]
    held_object: str = ""
    in_tray: list[str] = field(default_factory=list)

    def pose(self, object_id: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.object_ids.index(object_id)
        return self.positions[i], self.quaternions[i]


@dataclass
class TrajectoryPoint:
    positions: Sequence[float]
    time_from_start: float
    velocities: Sequence[float] | None = None


class TrajectoryError(ValueError):
    """A trajectory the world refuses (unknown joint, wrong lengths, non-finite values...)."""


class JointTrajectoryTracker:
    """Samples a joint trajectory like ros2_control's joint_trajectory_controller."""

    def __init__(self, joint_names: Sequence[str], initial: Sequence[float]):
        self.joint_names = list(joint_names)
        self._index = {n: i for i, n in enumerate(self.joint_names)}
        self.desired = np.array(initial, dtype=float)
        self.desired_velocity = np.zeros(len(self.joint_names))
        self._times: np.ndarray | None = None
        self._positions: np.ndarray | None = None
        self._velocities: np.ndarray | None = None   # None: linear interpolation

    @property
    def active(self) -> bool:
        return self._times is not None

    def reset(self, positions: Sequence[float]) -> None:
        self.desired = np.array(positions, dtype=float)
        self.desired_velocity[:] = 0.0
        self._times = self._positions = self._velocities = None

    def hold(self) -> None:
        """Drop the trajectory, keep the current desired position."""
        self.desired_velocity[:] = 0.0
        self._times = self._positions = self._velocities = None

    def set(self, joint_names: Sequence[str], points: Sequence[TrajectoryPoint], start_time: float,
            now: float) -> None:
        names = list(joint_names)
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise TrajectoryError(f"unknown joint(s) {unknown}; known: {self.joint_names}")
        if len(set(names)) != len(names):
            raise TrajectoryError(f"duplicate joint names {names}")
        if not names:
            raise TrajectoryError("no joint names")
        cols = [self._index[n] for n in names]
        with_velocities = bool(points) and all(pt.velocities is not None and len(pt.velocities) > 0
                                               for pt in points)
        last_t = -math.inf
        for k, pt in enumerate(points):
            if len(pt.positions) != len(names):
                raise TrajectoryError(f"point {k}: {len(pt.positions)} positions for {len(names)} joints")
            if with_velocities and len(pt.velocities) != len(names):
                raise TrajectoryError(f"point {k}: {len(pt.velocities)} velocities for {len(names)} joints")
            values = list(pt.positions) + (list(pt.velocities) if with_velocities else [])
            if not all(math.isfinite(v) for v in values) or not math.isfinite(pt.time_from_start):
                raise TrajectoryError(f"point {k}: non-finite value")
            if pt.time_from_start < 0 or (k > 0 and pt.time_from_start <= last_t):
                raise TrajectoryError(f"point {k}: time_from_start must be >= 0 and increasing")
            last_t = pt.time_from_start
        if not math.isfinite(start_time):
            raise TrajectoryError("non-finite start time")
        # Accepted: replace the current trajectory, starting from the current desired state.
        self.sample(now)
        if not points:   # like JTC: an empty trajectory stops the joints where they are
            self.hold()
            return
        t0 = max(start_time, now)
        times = [t0]
        pos = [self.desired.copy()]
        vel = [self.desired_velocity.copy()]
        for pt in points:
            t = start_time + pt.time_from_start
            if t <= t0 and pt is not points[-1]:
                continue   # already in the past
            row = self.desired.copy()
            row[cols] = pt.positions
            vrow = np.zeros(len(self.joint_names))
            if with_velocities:
                vrow[cols] = pt.velocities
            times.append(max(t, t0))
            pos.append(row)
            vel.append(vrow)
        self._times = np.array(times)
        self._positions = np.array(pos)
        self._velocities = np.array(vel) if with_velocities else None

    def sample(self, t: float) -> np.ndarray:
        """Update and return the desired positions at sim time t."""
        if self._times is None:
            self.desired_velocity[:] = 0.0
            return self.desired
        times, pos = self._times, self._positions
        if t <= times[0]:
            self.desired = pos[0].copy()
            self.desired_velocity = np.zeros_like(self.desired) if self._velocities is None \
                else self._velocities[0].copy()
            return self.desired
        if t >= times[-1]:
            self.desired = pos[-1].copy()
            self.hold()
            return self.desired
        i = int(np.searchsorted(times, t, side="right")) - 1
        t_a, t_b = times[i], times[i + 1]
        dt = t_b - t_a
        if dt <= 1e-12:
            self.desired = pos[i + 1].copy()
            self.desired_velocity[:] = 0.0
            return self.desired
        s = (t - t_a) / dt
        p_a, p_b = pos[i], pos[i + 1]
        if self._velocities is None:
            self.desired = p_a + s * (p_b - p_a)
            self.desired_velocity = (p_b - p_a) / dt
        else:
            v_a, v_b = self._velocities[i] * dt, self._velocities[i + 1] * dt
            h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
            h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
            self.desired = h00 * p_a + h10 * v_a + h01 * p_b + h11 * v_b
            d00, d10 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1
            d01, d11 = -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
            self.desired_velocity = (d00 * p_a + d10 * v_a + d01 * p_b + d11 * v_b) / dt
        return self.desired


def _normalize(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


class SimWorld:
    """The simulated cell. Create, `connect()`, then `step()`; one PyBullet client per instance."""

    SCENE_EYE = (1.3, 0.0, 0.9)
    SCENE_TARGET = (0.5, 0.0, 0.05)
    # Wrist camera in the panda_hand link frame: offset from the flange, looking along +z (fingers).
    WRIST_OFFSET = (0.06, 0.0, 0.02)

    def __init__(self, robot: str | RobotDescription = "panda", physics_rate: float = 240.0,
                 image_width: int = 320, image_height: int = 240, scenario: str = "nominal",
                 seed: int = 0):
        self.description = robot if isinstance(robot, RobotDescription) else load_robot_description(robot)
        if not physics_rate > 0:
            raise ValueError("physics_rate must be > 0")
        self.physics_rate = float(physics_rate)
        self.dt = 1.0 / self.physics_rate
        self.scenario = scenario
        self.seed = int(seed)
        self.cameras = {name: CameraSpec(name, image_width, image_height) for name in CAMERAS}
        self.client: int | None = None
        self.sim_time = 0.0
        self.step_count = 0
        self.robot: int = -1
        self.objects: dict[str, int] = {}
        self._joint_index: dict[str, int] = {}
        self._link_index: dict[str, int] = {}
        arm, grip = self.description.arm, self.description.gripper
        self.arm = JointTrajectoryTracker(arm.joint_names, arm.home)
        self.gripper = JointTrajectoryTracker(grip.joint_names, [grip.open_q] * len(grip.joint_names))
        self.finger_lower, self.finger_upper = grip.position_bounds
        self._slip: tuple[str, float] | None = None   # (object id, sim time until which it slips)
        # grasp_slip scenario: seeded carry distance, where the lifted cube was first seen, when it slipped
        self.grasp_slip_distance: float | None = None
        self._lifted_at: np.ndarray | None = None
        self.grasp_slip_time: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def connect(self, gui: bool = False) -> "SimWorld":
        if self.client is not None:
            return self
        self.client = p.connect(p.GUI if gui else p.DIRECT)
        if self.client < 0:
            raise RuntimeError("could not connect to PyBullet" + (" GUI (no display?)" if gui else ""))
        c = self.client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=self.dt, numSolverIterations=50, physicsClientId=c)
        if gui:
            p.configureDebugVisualizer(p.COV_ENABLE_GUI, 0, physicsClientId=c)
        self._build()
        self.reset(self.scenario, self.seed)
        return self

    def disconnect(self) -> None:
        if self.client is not None:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:
                pass
            self.client = None

    def __enter__(self) -> "SimWorld":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _build(self) -> None:
        c = self.client
        floor = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        p.createMultiBody(0, floor, basePosition=(0, 0, FLOOR_Z), physicsClientId=c)
        half = [s / 2 for s in TABLE_SIZE]
        table_col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
        table_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=(0.75, 0.65, 0.5, 1),
                                        physicsClientId=c)
        self.table = p.createMultiBody(0, table_col, table_vis,
                                       basePosition=(*TABLE_CENTRE_XY, -half[2]), physicsClientId=c)
        p.changeDynamics(self.table, -1, lateralFriction=1.0, physicsClientId=c)
        self.robot = p.loadURDF(str(self.description.urdf_path), (0, 0, 0), useFixedBase=True,
                                flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, physicsClientId=c)
        for j in range(p.getNumJoints(self.robot, physicsClientId=c)):
            info = p.getJointInfo(self.robot, j, physicsClientId=c)
            self._joint_index[info[1].decode()] = j
            self._link_index[info[12].decode()] = j
        missing = [n for n in self.description.all_joint_names if n not in self._joint_index]
        if missing:
            raise RuntimeError(f"URDF {self.description.urdf_path} lacks joints {missing}")
        self._arm_j = [self._joint_index[n] for n in self.description.arm.joint_names]
        self._grip_j = [self._joint_index[n] for n in self.description.gripper.joint_names]
        grip = self.description.gripper
        self._mimic = [(self._joint_index[n], m) for n, m in grip.mimic_joints.items()]
        self._all_j = self._arm_j + self._grip_j + [j for j, _ in self._mimic]
        # The linkage: each mimic joint geared to the first commanded joint (q = multiplier x lead),
        # unpowered itself, so a finger blocked by an object also blocks the drive joint, as the
        # real closed linkage does (independent position motors would let the drive close on).
        for j, m in self._mimic:
            gear = p.createConstraint(self.robot, self._grip_j[0], self.robot, j, p.JOINT_GEAR, (1, 0, 0),
                                      (0, 0, 0), (0, 0, 0), physicsClientId=c)
            p.changeConstraint(gear, gearRatio=-m, maxForce=MIMIC_GEAR_FORCE, erp=1.0, physicsClientId=c)
            p.setJointMotorControl2(self.robot, j, p.VELOCITY_CONTROL, force=0.0, physicsClientId=c)
        self._hand_link = self._link_index.get(self.description.camera_link, self._arm_j[-1])
        missing_links = [n for n in grip.finger_links if n not in self._link_index]
        if missing_links:
            raise RuntimeError(f"URDF {self.description.urdf_path} lacks finger links {missing_links}")
        self._finger_links = [self._link_index[n] for n in grip.finger_links] or list(self._grip_j)
        for j in self._finger_links:
            p.changeDynamics(self.robot, j, lateralFriction=FINGER_FRICTION, spinningFriction=0.01,
                             frictionAnchor=True, physicsClientId=c)
        # Motors of the arm and gripper are driven every step; disable the default velocity motors.
        self.objects = {}
        cube_half = [CUBE_SIZE / 2] * 3
        cube_col = p.createCollisionShape(p.GEOM_BOX, halfExtents=cube_half, physicsClientId=c)
        for cube in CUBE_IDS:
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=cube_half, rgbaColor=CUBE_COLOURS[cube],
                                      physicsClientId=c)
            body = p.createMultiBody(CUBE_MASS, cube_col, vis, basePosition=(0, 0, 1), physicsClientId=c)
            p.changeDynamics(body, -1, lateralFriction=CUBE_FRICTION, spinningFriction=0.01,
                             rollingFriction=0.0001, physicsClientId=c)
            self.objects[cube] = body
        occ_col = p.createCollisionShape(p.GEOM_BOX, halfExtents=OCCLUDER_HALF, physicsClientId=c)
        occ_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=OCCLUDER_HALF, rgbaColor=OCCLUDER_COLOUR,
                                      physicsClientId=c)
        self.objects[OCCLUDER_ID] = p.createMultiBody(0, occ_col, occ_vis, basePosition=(0, 0, -5),
                                                      physicsClientId=c)
        dis_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=cube_half, rgbaColor=DISTRACTOR_COLOUR,
                                      physicsClientId=c)
        body = p.createMultiBody(CUBE_MASS, cube_col, dis_vis, basePosition=(0, 0, 1), physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=CUBE_FRICTION, spinningFriction=0.01,
                         rollingFriction=0.0001, physicsClientId=c)
        self.objects[DISTRACTOR_ID] = body
        obs_col = p.createCollisionShape(p.GEOM_BOX, halfExtents=OBSTACLE_HALF, physicsClientId=c)
        obs_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=OBSTACLE_HALF, rgbaColor=OBSTACLE_COLOUR,
                                      physicsClientId=c)
        body = p.createMultiBody(OBSTACLE_MASS, obs_col, obs_vis, basePosition=(0, 0, -5), physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=0.8, physicsClientId=c)
        self.objects[OBSTACLE_ID] = body
        self.objects[TRAY_ID] = p.loadURDF("tray/traybox.urdf", (*TRAY_NOMINAL_XY, TRAY_BASE_Z),
                                           useFixedBase=True, globalScaling=TRAY_SCALE,
                                           physicsClientId=c)

    # ------------------------------------------------------------------ scenarios
    def scenario_poses(self, scenario: str, seed: int) -> dict[str, tuple[tuple, tuple]]:
        """Initial object poses of a scenario; the seed jitters cube positions and yaws."""
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario '{scenario}'; known: {list(SCENARIOS)}")
        rng = np.random.default_rng(int(seed))
        poses = {}
        for cube in CUBE_IDS:
            x, y = CUBE_NOMINAL_XY[cube]
            dx, dy = rng.uniform(-CUBE_JITTER, CUBE_JITTER, size=2) if seed != 0 else (0.0, 0.0)
            yaw = float(rng.uniform(-CUBE_YAW_JITTER, CUBE_YAW_JITTER)) if seed != 0 else 0.0
            poses[cube] = ((x + dx, y + dy, CUBE_SIZE / 2 + 1e-4),
                           tuple(p.getQuaternionFromEuler((0, 0, yaw))))
        poses[TRAY_ID] = ((*TRAY_NOMINAL_XY, TRAY_BASE_Z), (0.0, 0.0, 0.0, 1.0))
        poses[OCCLUDER_ID] = ((*PROP_PARK[OCCLUDER_ID], FLOOR_Z + OCCLUDER_HALF[2]), (0.0, 0.0, 0.0, 1.0))
        poses[DISTRACTOR_ID] = ((*PROP_PARK[DISTRACTOR_ID], FLOOR_Z + CUBE_SIZE / 2), (0.0, 0.0, 0.0, 1.0))
        poses[OBSTACLE_ID] = ((*PROP_PARK[OBSTACLE_ID], FLOOR_Z + OBSTACLE_HALF[2]), (0.0, 0.0, 0.0, 1.0))
        if scenario == "occluded":
            # The red cube sits behind a taller box as seen from the scene camera, outside the
            # wrist camera's view at home: only moving the wrist camera finds it.
            dx, dy = rng.uniform(-0.01, 0.01, size=2) if seed != 0 else (0.0, 0.0)
            tx, ty = OCCLUDED_TARGET_XY[0] + dx, OCCLUDED_TARGET_XY[1] + dy
            poses["red_cube"] = ((tx, ty, CUBE_SIZE / 2 + 1e-4), poses["red_cube"][1])
            to_cam = np.array([self.SCENE_EYE[0] - tx, self.SCENE_EYE[1] - ty])
            to_cam /= np.linalg.norm(to_cam)
            ox, oy = np.array([tx, ty]) + OCCLUDER_DISTANCE * to_cam
            yaw = math.atan2(to_cam[1], to_cam[0])
            poses[OCCLUDER_ID] = ((float(ox), float(oy), OCCLUDER_HALF[2] + 1e-4),
                                  tuple(p.getQuaternionFromEuler((0, 0, yaw))))
        elif scenario == "lookalike":
            (rx, ry, rz), _ = poses["red_cube"]
            poses[DISTRACTOR_ID] = ((rx + LOOKALIKE_OFFSET[0], ry + LOOKALIKE_OFFSET[1], rz), (0.0, 0.0, 0.0, 1.0))
        elif scenario == "obstacle":
            # A tall box stands beside the straight line from the red cube to the tray: a low or
            # sideways transport knocks it over, a high or wide one passes.
            start = np.array(poses["red_cube"][0][:2])
            line = np.array(TRAY_NOMINAL_XY) - start
            side = np.array([-line[1], line[0]]) / np.linalg.norm(line)
            along = rng.uniform(*OBSTACLE_PATH_FRACTION)
            offset = rng.uniform(*OBSTACLE_SIDE_OFFSET)
            if side[0] < 0:
                side = -side   # away from the robot: the other side is inside the tray
            ox, oy = start + along * line + offset * side
            poses[OBSTACLE_ID] = ((float(ox), float(oy), OBSTACLE_HALF[2] + 1e-4), (0.0, 0.0, 0.0, 1.0))
        return poses

    def reset(self, scenario: str | None = None, seed: int | None = None) -> None:
        """Reload a scenario: robot at home with the gripper open, objects at their (seeded) poses.
        Sim time keeps running (it never jumps backwards)."""
        scenario = self.scenario if scenario is None else scenario
        seed = self.seed if seed is None else int(seed)
        poses = self.scenario_poses(scenario, seed)   # validates before touching anything
        self.scenario, self.seed = scenario, seed
        c = self.client
        self._end_slip()
        self._lifted_at = self.grasp_slip_time = None
        self.grasp_slip_distance = None
        if scenario == "grasp_slip":
            # its own stream, so the layout of a seed is the same as in the other scenarios
            self.grasp_slip_distance = float(np.random.default_rng([seed, 4242]).uniform(*SLIP_DISTANCE))
        home = self.description.arm.home
        open_finger = self.description.gripper.open_q
        for j, q in zip(self._arm_j, home):
            p.resetJointState(self.robot, j, q, 0.0, physicsClientId=c)
        for j in self._grip_j:
            p.resetJointState(self.robot, j, open_finger, 0.0, physicsClientId=c)
        for j, mult in self._mimic:
            p.resetJointState(self.robot, j, open_finger * mult, 0.0, physicsClientId=c)
        self.arm.reset(home)
        self.gripper.reset([open_finger] * len(self._grip_j))
        for obj, (pos, quat) in poses.items():
            body = self.objects[obj]
            p.resetBasePositionAndOrientation(body, pos, quat, physicsClientId=c)
            p.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0), physicsClientId=c)
        self._apply_motors()

    # ------------------------------------------------------------------ commands
    def set_arm_trajectory(self, joint_names: Sequence[str], points: Sequence[TrajectoryPoint],
                           start_time: float | None = None) -> str | None:
        """Replace the arm trajectory; returns None when accepted, else an error message (and the
        arm keeps doing what it did). `start_time` is absolute sim time (None = now)."""
        return self._set(self.arm, joint_names, points, start_time,
                         self.description.arm.position_lower, self.description.arm.position_upper)

    def set_gripper_trajectory(self, joint_names: Sequence[str], points: Sequence[TrajectoryPoint],
                               start_time: float | None = None) -> str | None:
        """Like `set_arm_trajectory` for the gripper joints (positions = position_for_width). A
        trajectory naming only one finger drives both (the second finger mimics the first)."""
        names = list(joint_names)
        fingers = self.description.gripper.joint_names
        if len(names) == 1 and names[0] in fingers and len(fingers) > 1:
            names = list(fingers)
            points = [TrajectoryPoint(list(pt.positions) * len(fingers), pt.time_from_start,
                                      None if not pt.velocities else list(pt.velocities) * len(fingers))
                      for pt in points]
        n = len(fingers)
        return self._set(self.gripper, names, points, start_time,
                         [self.finger_lower] * n, [self.finger_upper] * n)

    def set_gripper_width(self, width: float, duration: float = 0.5) -> str | None:
        """Convenience: move the gripper to `width` (m) in `duration` s."""
        grip = self.description.gripper
        fingers = grip.joint_names
        return self.set_gripper_trajectory(
            fingers, [TrajectoryPoint([grip.position_for_width(width)] * len(fingers), max(duration, 0.0))])

    def _set(self, tracker: JointTrajectoryTracker, joint_names, points, start_time, lower, upper):
        tol = 1e-6
        index = {n: i for i, n in enumerate(tracker.joint_names)}
        for k, pt in enumerate(points):
            for name, q in zip(joint_names, pt.positions):
                i = index.get(name)
                if i is not None and math.isfinite(q) and not (lower[i] - tol <= q <= upper[i] + tol):
                    return f"point {k}: {name} = {q:.4f} outside [{lower[i]:.4f}, {upper[i]:.4f}]"
        if start_time is not None and points and math.isfinite(start_time) \
                and start_time + points[-1].time_from_start < self.sim_time:
            # As joint_trajectory_controller: executing it would be a jump faster than any limit.
            return (f"all {len(points)} point(s) are in the past (trajectory ends at "
                    f"{start_time + points[-1].time_from_start:.3f} s, sim time {self.sim_time:.3f} s)")
        try:
            tracker.set(joint_names, points, self.sim_time if start_time is None else start_time,
                        self.sim_time)
        except TrajectoryError as exc:
            return str(exc)
        return None

    def stop(self) -> None:
        """Hold the current desired positions of the arm and gripper."""
        self.arm.sample(self.sim_time)
        self.gripper.sample(self.sim_time)
        self.arm.hold()
        self.gripper.hold()

    @property
    def arm_trajectory_active(self) -> bool:
        return self.arm.active

    # ------------------------------------------------------------------ stepping
    def _apply_motors(self) -> None:
        c = self.client
        arm = self.description.arm
        p.setJointMotorControlArray(
            self.robot, self._arm_j, p.POSITION_CONTROL,
            targetPositions=self.arm.desired.tolist(),
            targetVelocities=self.arm.desired_velocity.tolist(),
            forces=list(arm.effort_limit),
            positionGains=[ARM_POSITION_GAIN] * len(self._arm_j),
            velocityGains=[ARM_VELOCITY_GAIN] * len(self._arm_j), physicsClientId=c)
        effort = self.description.gripper.effort
        p.setJointMotorControlArray(
            self.robot, self._grip_j, p.POSITION_CONTROL,
            targetPositions=self.gripper.desired.tolist(),
            forces=[effort] * len(self._grip_j),
            positionGains=[GRIPPER_POSITION_GAIN] * len(self._grip_j), physicsClientId=c)

    def step(self, n: int = 1) -> None:
        """Advance n physics steps of 1 / physics_rate s each."""
        for _ in range(int(n)):
            t_next = (self.step_count + 1) * self.dt
            self.arm.sample(t_next)
            self.gripper.sample(t_next)
            self._apply_motors()
            p.stepSimulation(physicsClientId=self.client)
            self.step_count += 1
            self.sim_time = self.step_count * self.dt
            if self._slip is not None:
                self._update_slip()
            elif self.grasp_slip_distance is not None and self.grasp_slip_time is None \
                    and self.step_count % SLIP_CHECK_STEPS == 0:
                self._scenario_slip()

    def run_for(self, seconds: float) -> None:
        self.step(int(round(seconds * self.physics_rate)))

    # ------------------------------------------------------------------ state
    def joint_states(self) -> JointStates:
        states = p.getJointStates(self.robot, self._all_j, physicsClientId=self.client)
        return JointStates(
            names=list(self.description.all_joint_names),
            positions=np.array([s[0] for s in states]),
            velocities=np.array([s[1] for s in states]),
            efforts=np.array([s[3] for s in states]))

    def arm_positions(self) -> np.ndarray:
        return self.joint_states().positions[:len(self._arm_j)]

    def gripper_width(self) -> float:
        n = len(self._arm_j)
        q = self.joint_states().positions[n:n + len(self._grip_j)]
        return float(self.description.gripper.width_from_joints(list(q)))

    def link_pose(self, link: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose (URDF link frame) of a robot link, e.g. 'panda_hand' or 'panda_grasptarget'."""
        state = p.getLinkState(self.robot, self._link_index[link], computeForwardKinematics=True,
                               physicsClientId=self.client)
        return np.array(state[4]), np.array(state[5])

    def object_pose(self, object_id: str) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = p.getBasePositionAndOrientation(self._body(object_id), physicsClientId=self.client)
        return np.array(pos), np.array(quat)

    def _body(self, object_id: str) -> int:
        if object_id not in self.objects:
            raise KeyError(f"unknown object '{object_id}'; known: {list(self.objects)}")
        return self.objects[object_id]

    def held_object(self) -> str:
        """The cube touching both fingers, or '' if none."""
        c = self.client
        for obj in CUBE_IDS:
            body = self.objects[obj]
            if all(p.getContactPoints(self.robot, body, linkIndexA=j, physicsClientId=c)
                   for j in self._finger_links):
                return obj
        return ""

    def tray_footprint(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = p.getAABB(self.objects[TRAY_ID], physicsClientId=self.client)
        return np.array(lo), np.array(hi)

    def objects_in_tray(self, held: str | None = None) -> list[str]:
        held = self.held_object() if held is None else held
        lo, hi = self.tray_footprint()
        tray_z = self.object_pose(TRAY_ID)[0][2]
        inside = []
        for obj in CUBE_IDS:
            if obj == held:
                continue
            pos, _ = self.object_pose(obj)
            if lo[0] <= pos[0] <= hi[0] and lo[1] <= pos[1] <= hi[1] and \
                    tray_z - 0.01 <= pos[2] <= tray_z + TRAY_IN_HEIGHT:
                inside.append(obj)
        return inside

    def ground_truth(self) -> GroundTruth:
        ids = list(OBJECT_IDS)
        poses = [self.object_pose(o) for o in ids]
        held = self.held_object()
        return GroundTruth(object_ids=ids, positions=[pp for pp, _ in poses],
                           quaternions=[q for _, q in poses], held_object=held,
                           in_tray=self.objects_in_tray(held))

    # ------------------------------------------------------------------ perturbations
    def move_object(self, object_id: str, position: Sequence[float],
                    quaternion: Sequence[float] = (0, 0, 0, 1)) -> None:
        """Teleport an object (at rest) to a pose. Raises KeyError / ValueError on bad input: not
        finite, beyond MOVE_LIMIT, zero quaternion, or inside the robot's base (the object stays)."""
        body = self._body(object_id)
        pos = np.asarray(position, dtype=float)
        quat = np.asarray(quaternion, dtype=float)
        if pos.shape != (3,) or quat.shape != (4,) or not np.all(np.isfinite(pos)) or \
                not np.all(np.isfinite(quat)):
            raise ValueError("pose must be 3 finite position values and 4 finite quaternion values")
        norm = float(np.linalg.norm(quat))
        if norm < 1e-6:
            raise ValueError("quaternion has zero norm")
        if np.any(np.abs(pos) > MOVE_LIMIT):
            raise ValueError(f"position {pos.tolist()} outside the cell (|x|, |y|, |z| <= {MOVE_LIMIT} m)")
        if object_id == self._slip_object():
            self._end_slip()
        c = self.client
        old_pos, old_quat = p.getBasePositionAndOrientation(body, physicsClientId=c)
        p.resetBasePositionAndOrientation(body, pos.tolist(), (quat / norm).tolist(), physicsClientId=c)
        p.performCollisionDetection(physicsClientId=c)
        inside = [pt for pt in p.getClosestPoints(body, self.robot, 0.0, physicsClientId=c)
                  if pt[4] == -1 and pt[8] < -BASE_PENETRATION]
        if inside:
            p.resetBasePositionAndOrientation(body, old_pos, old_quat, physicsClientId=c)
            raise ValueError(f"{object_id} at {pos.round(3).tolist()} would be inside the robot base "
                             f"({-min(pt[8] for pt in inside) * 1000:.1f} mm deep)")
        p.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0), physicsClientId=c)

    def remove_object(self, object_id: str) -> None:
        """Take an object off the table: it is parked on the floor far from the cell."""
        self._body(object_id)
        k = (list(OBJECT_IDS) + list(PROP_IDS)).index(object_id)
        self.move_object(object_id, (-2.0 - 0.5 * k, 2.0, FLOOR_Z + 0.1))

    def inject_grasp_slip(self) -> str:
        """Make the held cube slip out of the fingers: finger/cube contacts are switched off until
        the cube has fallen clear of the fingers (at least SLIP_DURATION s). Returns the slipping
        object; raises RuntimeError if nothing is held."""
        held = self.held_object()
        if not held:
            raise RuntimeError("no object is held")
        self._end_slip()
        body = self.objects[held]
        for j in self._finger_links:
            p.setCollisionFilterPair(self.robot, body, j, -1, 0, physicsClientId=self.client)
        # A small push down and sideways so it leaves the fingers even when resting on something.
        p.resetBaseVelocity(body, (0.0, 0.0, -0.3), (0, 0, 0), physicsClientId=self.client)
        self._slip = (held, self.sim_time + SLIP_DURATION)
        return held

    def _scenario_slip(self) -> None:
        """grasp_slip scenario: slip the held cube once it has been carried its seeded distance."""
        held = self.held_object()
        position = self.object_pose(held)[0] if held else None
        if position is None or position[2] < CUBE_SIZE / 2 + SLIP_LIFT_HEIGHT:
            self._lifted_at = None
            return
        if self._lifted_at is None:
            self._lifted_at = position
        elif np.linalg.norm(position[:2] - self._lifted_at[:2]) >= self.grasp_slip_distance:
            self.inject_grasp_slip()
            self.grasp_slip_time = self.sim_time

    def _slip_object(self) -> str:
        return self._slip[0] if self._slip else ""

    def _update_slip(self) -> None:
        obj, until = self._slip
        if self.sim_time < until:
            return
        body = self.objects[obj]
        clear = all(not p.getClosestPoints(self.robot, body, 0.002, linkIndexA=j,
                                           physicsClientId=self.client) for j in self._finger_links)
        if clear:
            self._end_slip()

    def _end_slip(self) -> None:
        if self._slip is None:
            return
        body = self.objects[self._slip[0]]
        for j in self._finger_links:
            p.setCollisionFilterPair(self.robot, body, j, -1, 1, physicsClientId=self.client)
        self._slip = None

    # ------------------------------------------------------------------ snapshots (for rendering)
    def snapshot(self) -> dict:
        """Everything a renderer needs to reproduce the current scene: joint and object poses."""
        return {"sim_time": self.sim_time,
                "joints": self.joint_states().positions.tolist(),
                "objects": {o: tuple(np.concatenate(self.object_pose(o)).tolist()) for o in self.objects}}

    def apply_snapshot(self, snap: dict) -> None:
        """Teleport robot joints and objects to a `snapshot()` (no physics step)."""
        c = self.client
        for j, q in zip(self._all_j, snap["joints"]):
            p.resetJointState(self.robot, j, q, 0.0, physicsClientId=c)
        for obj, pose in snap["objects"].items():
            p.resetBasePositionAndOrientation(self.objects[obj], pose[:3], pose[3:], physicsClientId=c)

    # ------------------------------------------------------------------ cameras
    def camera_pose(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """Optical frame (z forward, x right, y down) of a camera: position, rotation matrix."""
        if camera == "scene":
            eye = np.array(self.SCENE_EYE)
            forward = _normalize(np.array(self.SCENE_TARGET) - eye)
            right = _normalize(np.cross(forward, (0.0, 0.0, 1.0)))
            down = np.cross(forward, right)
            return eye, np.column_stack([right, down, forward])
        if camera == "wrist":
            pos, quat = self.link_pose(self.description.camera_link)
            r_hand = np.array(p.getMatrixFromQuaternion(quat.tolist())).reshape(3, 3)
            eye = pos + r_hand @ np.array(self.WRIST_OFFSET)
            forward, down = r_hand[:, 2], r_hand[:, 0]
            right = np.cross(down, forward)
            return eye, np.column_stack([right, down, forward])
        raise KeyError(f"unknown camera '{camera}'; known: {list(CAMERAS)}")

    def render(self, camera: str) -> RenderResult:
        spec = self.cameras.get(camera)
        if spec is None:
            raise KeyError(f"unknown camera '{camera}'; known: {list(CAMERAS)}")
        eye, rot = self.camera_pose(camera)
        forward, down = rot[:, 2], rot[:, 1]
        view = p.computeViewMatrix(eye.tolist(), (eye + forward).tolist(), (-down).tolist(),
                                   physicsClientId=self.client)
        w, h = spec.width, spec.height
        proj = p.computeProjectionMatrixFOV(spec.fov_deg, w / h, spec.near, spec.far,
                                            physicsClientId=self.client)
        _, _, rgba, depth_buf, _ = p.getCameraImage(
            w, h, view, proj, renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3].copy()
        d = np.asarray(depth_buf, dtype=np.float32).reshape(h, w)
        near, far = spec.near, spec.far
        depth = (far * near / (far - (far - near) * d)).astype(np.float32)
        return RenderResult(rgb=rgb, depth=depth, intrinsics=self.intrinsics(camera), position=eye,
                            quaternion=matrix_to_quat(rot), width=w, height=h)

    def intrinsics(self, camera: str) -> tuple[float, float, float, float]:
        """Pinhole fx, fy, cx, cy in pixels (pixel centres at integer coordinates)."""
        spec = self.cameras[camera]
        fy = spec.height / (2.0 * math.tan(math.radians(spec.fov_deg) / 2.0))
        return fy, fy, spec.width / 2.0 - 0.5, spec.height / 2.0 - 0.5
