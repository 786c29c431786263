"""The physics backend: a PyBullet shadow world (DIRECT mode) built from the harness's belief,
never from the simulator: the robot's URDF at the believed joint state, a table, and one box per
object memory holds (sizes from the configuration; the tray as a floor with four walls). Every
candidate is replayed from the same saved state (saveState / restoreState) with the same stepping
as the learned backend's training data: IK to each step's tool target, joint targets interpolated
over the step, position motors with the simulated arm's gains, the gripper command, physics.

It reports the same things as the ensemble (end state, progress, failure flags) so the two can be
compared; it is the reference in evaluation and the cross-check when the ensemble is uncertain.
"""
from __future__ import annotations

import numpy as np
import pybullet as p
import pybullet_data

from harness_nodes.common.kinematics import ArmKinematics, pose_to_se3
from harness_nodes.common.geometry import matrix_to_quat
from harness_nodes.world_model.actions import StepPlan
from harness_nodes.world_model.configuration_world_model import WorldModelConfig
from harness_nodes.world_model.modeling_ensemble import FAILURE_FLAGS, task_progress
from harness_nodes.world_model.state import Belief, ObjectBelief, StateLayout, build_state

TRAY_WALL = 0.01   # m, wall thickness of the shadow tray
SETTLE_STEPS = 12  # physics steps run after syncing, before the state every candidate starts from


class PhysicsBackend:
    """One shadow world per instance (not thread-safe; the server uses one worker thread)."""

    def __init__(self, config: WorldModelConfig, description, kinematics: ArmKinematics | None = None):
        self.config = config
        self.description = description
        self.kin = kinematics or ArmKinematics.from_description(description)
        self.n_physics = max(1, int(round(config.step_time * config.physics_rate)))
        c = self.client = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / config.physics_rate, numSolverIterations=50,
                                    physicsClientId=c)
        half = (0.7, 0.7, 0.02)
        table = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
        self.table = p.createMultiBody(0, table, basePosition=(0.35, 0.0, config.table_height - half[2]),
                                       physicsClientId=c)
        p.changeDynamics(self.table, -1, lateralFriction=1.0, physicsClientId=c)
        self.robot = p.loadURDF(str(description.urdf_path), (0, 0, 0), useFixedBase=True,
                                flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, physicsClientId=c)
        index, links = {}, {}
        for j in range(p.getNumJoints(self.robot, physicsClientId=c)):
            info = p.getJointInfo(self.robot, j, physicsClientId=c)
            index[info[1].decode()] = j
            links[info[12].decode()] = j
        self.arm_j = [index[n] for n in description.arm.joint_names]
        self.grip_j = [index[n] for n in description.gripper.joint_names]
        self.finger_links = [links[n] for n in description.gripper.finger_links if n in links] or self.grip_j
        for j in self.finger_links:
            p.changeDynamics(self.robot, j, lateralFriction=2.0, spinningFriction=0.01, frictionAnchor=True,
                             physicsClientId=c)
        self.bodies = {s: self._make_body(s) for s in config.subjects}
        self.park = {s: (3.0 + 0.5 * k, 3.0, 0.5) for k, s in enumerate(config.subjects)}
        self.present: set[str] = set()
        self.saved: int | None = None

    def _make_body(self, subject: str) -> int:
        c, he = self.client, self.config.object_half_extents[subject]
        mass = self.config.object_mass.get(subject, 0.1)
        if subject == self.config.tray_subject:
            hx, hy, hz = he
            w = TRAY_WALL / 2
            shapes = [((hx, hy, w), (0, 0, w)), ((w, hy, hz), (hx - w, 0, hz)), ((w, hy, hz), (-hx + w, 0, hz)),
                      ((hx, w, hz), (0, hy - w, hz)), ((hx, w, hz), (0, -hy + w, hz))]
            col = p.createCollisionShapeArray([p.GEOM_BOX] * 5, halfExtents=[s for s, _ in shapes],
                                              collisionFramePositions=[o for _, o in shapes], physicsClientId=c)
            return p.createMultiBody(0, col, basePosition=(3, 3, 0), physicsClientId=c)
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=he, physicsClientId=c)
        body = p.createMultiBody(mass, col, basePosition=(3, 3, 0.5), physicsClientId=c)
        p.changeDynamics(body, -1, lateralFriction=1.5 if mass <= 0.15 else 0.8, spinningFriction=0.01,
                         physicsClientId=c)
        return body

    def close(self) -> None:
        try:
            p.disconnect(physicsClientId=self.client)
        except p.error:
            pass

    # -- belief -> shadow world
    def sync(self, belief: Belief) -> None:
        """Put the shadow world in the believed state and save it."""
        c = self.client
        for j, q in zip(self.arm_j, belief.arm_positions):
            p.resetJointState(self.robot, j, float(q), 0.0, physicsClientId=c)
        finger = self.description.gripper.position_for_width(float(belief.gripper_width))
        for j in self.grip_j:
            p.resetJointState(self.robot, j, finger, 0.0, physicsClientId=c)
        self.present = set()
        for subject, body in self.bodies.items():
            obj = belief.objects.get(subject)
            if obj is None:
                p.resetBasePositionAndOrientation(body, self.park[subject], (0, 0, 0, 1), physicsClientId=c)
            else:
                p.resetBasePositionAndOrientation(body, obj.position.tolist(), obj.quaternion.tolist(),
                                                  physicsClientId=c)
                self.present.add(subject)
            p.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0), physicsClientId=c)
        self.held_at_start = any(o.held for o in belief.objects.values())
        self.start_width = float(belief.gripper_width)
        # Let beliefs that interpenetrate a little (perception noise) settle before the snapshot, so
        # that settling is not mistaken for a candidate disturbing an object.
        arm_q = np.asarray(belief.arm_positions, dtype=float)
        grip = self.description.gripper
        hold = grip.position_for_width(grip.min_width if self.held_at_start else self.start_width)
        for _ in range(SETTLE_STEPS):
            self._motors(arm_q, hold)
            p.stepSimulation(physicsClientId=c)
        if self.saved is not None:
            p.removeState(self.saved, physicsClientId=c)
        self.saved = p.saveState(physicsClientId=c)

    def belief(self) -> Belief:
        c = self.client
        q = np.array([s[0] for s in p.getJointStates(self.robot, self.arm_j, physicsClientId=c)])
        fingers = [s[0] for s in p.getJointStates(self.robot, self.grip_j, physicsClientId=c)]
        held = self.held_object()
        objects = {}
        for s in self.present:
            pos, quat = p.getBasePositionAndOrientation(self.bodies[s], physicsClientId=c)
            objects[s] = ObjectBelief(np.array(pos), np.array(quat), 1.0, s == held)
        return Belief(q, float(self.description.gripper.width_from_joints(fingers)), objects)

    def held_object(self) -> str:
        for s in self.present:
            if s == self.config.tray_subject:
                continue
            if all(p.getContactPoints(self.robot, self.bodies[s], linkIndexA=j, physicsClientId=self.client)
                   for j in self.finger_links):
                return s
        return ""

    # -- replay
    def _motors(self, arm_q: np.ndarray, finger_q: float) -> None:
        c, arm = self.client, self.description.arm
        n = len(self.arm_j)
        p.setJointMotorControlArray(self.robot, self.arm_j, p.POSITION_CONTROL, targetPositions=arm_q.tolist(),
                                    forces=list(arm.effort_limit), positionGains=[self.config.arm_position_gain] * n,
                                    velocityGains=[self.config.arm_velocity_gain] * n, physicsClientId=c)
        g = len(self.grip_j)
        p.setJointMotorControlArray(self.robot, self.grip_j, p.POSITION_CONTROL, targetPositions=[finger_q] * g,
                                    forces=[self.description.gripper.effort] * g,
                                    positionGains=[self.config.gripper_position_gain] * g, physicsClientId=c)

    def replay(self, plan: StepPlan, layout: StateLayout) -> dict:
        """Run one candidate from the saved state; end state, progress and failure flags."""
        c, cfg = self.client, self.config
        p.restoreState(self.saved, physicsClientId=c)
        grip = self.description.gripper
        target = layout.slots[0]
        desired = np.array([s[0] for s in p.getJointStates(self.robot, self.arm_j, physicsClientId=c)])
        width = grip.min_width if self.held_at_start else self.start_width
        finger = grip.position_for_width(width)
        flags = np.zeros(len(FAILURE_FLAGS), dtype=bool)
        for t in range(plan.steps):
            a = plan.actions[t]
            if plan.joint_targets is not None:
                goal = plan.joint_targets[t]
            else:
                rot = np.stack([a[3:6], a[6:9], np.cross(a[3:6], a[6:9])], axis=1)
                res = self.kin.ik(pose_to_se3(a[:3], matrix_to_quat(rot)), desired, max_iterations=60,
                                  tolerance=1e-3, extra_starts=1)
                if res.position_error > cfg.unreachable_error:
                    flags[3] = True
                    goal = desired
                else:
                    goal = res.q
            new_finger = finger
            if a[9] > 0.5 or a[10] > 0.5:
                new_finger = grip.position_for_width(float(a[11]))
            held_before = self.held_object()
            others = {s: np.array(p.getBasePositionAndOrientation(self.bodies[s], physicsClientId=c)[0])
                      for s in self.present if s not in (target, cfg.tray_subject)}
            grip_n = max(1, int(self.n_physics * cfg.gripper_steps * 0.6))
            for k in range(1, self.n_physics + 1):
                s = k / self.n_physics
                f = finger + (new_finger - finger) * min(1.0, k / grip_n)
                self._motors(desired + s * (goal - desired), f)
                p.stepSimulation(physicsClientId=c)
            finger = finger + (new_finger - finger) * min(1.0, self.n_physics / grip_n)
            if abs(finger - new_finger) > 1e-9 and t + 1 < plan.steps and not (
                    plan.actions[t + 1][9] > 0.5 or plan.actions[t + 1][10] > 0.5):
                finger = new_finger
            desired = goal
            bodies = [self.table] + [self.bodies[s] for s in self.present if s not in (target, cfg.tray_subject)]
            if any(p.getContactPoints(self.robot, b, physicsClientId=c) for b in bodies):
                flags[1] = True
            held_after = self.held_object()
            if held_before and not held_after and a[9] < 0.5:
                flags[0] = True
            for s, pos in others.items():
                now = np.array(p.getBasePositionAndOrientation(self.bodies[s], physicsClientId=c)[0])
                if s != held_before and np.linalg.norm(now - pos) > cfg.disturb_distance:
                    flags[2] = True
        state = build_state(self.belief(), layout, self.fk)
        return {"state": state, "progress": float(task_progress(state, layout, layout.slots.index(cfg.tray_subject))),
                "flags": flags, "failure_probability": float(flags.any())}

    def fk(self, q):
        m = self.kin.fk(q)
        return m.translation.copy(), m.rotation.copy()

    def evaluate(self, belief: Belief, plans: list[StepPlan], layout: StateLayout) -> list[dict]:
        self.sync(belief)
        return [self.replay(plan, layout) for plan in plans]
