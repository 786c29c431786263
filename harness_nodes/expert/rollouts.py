"""Labelled rollouts for the world model, generated in the PyBullet world directly (no ROS).

Episodes of the scripted expert's pick-and-place plan, of a perturbed expert (noisy waypoints,
low or sideways transports, early releases, missed grasps) and of random exploratory chunks (random
tool targets, random gripper commands, joint-space moves, unreachable targets), on the nominal and
obstacle scenarios. Every chunk is stepped exactly as the world model steps it
(`world_model.actions.ChunkStepper`) and executed step by step: IK to the step's tool target,
a joint trajectory over `step_time`, the gripper command, physics. Each step is labelled from the
simulator's ground truth (fine for training data, never used at run time): the state before and
after, and four failure flags (object dropped, collision, other object disturbed, target
unreachable).

    python -m harness_nodes.expert.rollouts --episodes 400 --seed 0 --out data/world_model/train.npz
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass

import numpy as np
import pybullet as p

from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.expert.plan import PickPlaceConfig, plan_pick_place, top_down_quaternion, waypoint_times
from harness_nodes.common.kinematics import ArmKinematics, pose_to_se3
from harness_nodes.router.validation import ChunkInput, GripperCommand, Rejection
from harness_nodes.sim.world import CUBE_IDS, OBSTACLE_ID, TRAY_ID, SimWorld, TrajectoryPoint
from harness_nodes.common.geometry import matrix_to_quat
from harness_nodes.world_model.actions import ChunkStepper
from harness_nodes.world_model.configuration_world_model import WorldModelConfig
from harness_nodes.world_model.progress import Progress
from harness_nodes.world_model.state import Belief, ObjectBelief, StateLayout, build_state, slot_order

FLAGS = ("dropped", "collision", "disturbed", "unreachable")
KINDS = ("expert", "perturbed", "random")


@dataclass
class EpisodeData:
    states: np.ndarray       # (T, D) before each step
    actions: np.ndarray      # (T, A)
    next_states: np.ndarray  # (T, D)
    flags: np.ndarray        # (T, 4)
    chunk_index: np.ndarray  # (T,) which chunk of the episode each step belongs to


class RolloutRecorder:
    """One SimWorld plus the world model's stepping; `episode(seed)` returns labelled steps."""

    def __init__(self, config: WorldModelConfig = WorldModelConfig()):
        self.config = config
        self.description = load_robot_description(config.robot)
        self.kin = ArmKinematics.from_description(self.description)
        self.stepper = ChunkStepper(config, self.description, self.fk)
        self.world = SimWorld(self.description, physics_rate=config.physics_rate, image_width=8,
                              image_height=8).connect()
        self.n_physics = int(round(config.step_time * config.physics_rate))
        self.plan_config = PickPlaceConfig()
        self.grip_target: float | None = None

    def fk(self, q):
        m = self.kin.fk(q)
        return m.translation.copy(), m.rotation.copy()

    # -- state from ground truth (training labels only)
    def belief(self, present: set[str]) -> Belief:
        gt = self.world.ground_truth()
        objects = {}
        for subject in self.config.subjects:
            if subject not in present:
                continue
            pos, quat = self.world.object_pose(subject)
            objects[subject] = ObjectBelief(pos, quat, 1.0, gt.held_object == subject)
        return Belief(self.world.arm_positions(), self.world.gripper_width(), objects)

    # -- execution of one model step
    def execute(self, action: np.ndarray, joint_target: np.ndarray | None) -> bool:
        """Run one step; returns False when the tool target was unreachable (the arm then holds)."""
        w, cfg = self.world, self.config
        reachable = True
        if joint_target is None:
            rot = np.stack([action[3:6], action[6:9], np.cross(action[3:6], action[6:9])], axis=1)
            result = self.kin.ik(pose_to_se3(action[:3], matrix_to_quat(rot)), w.arm.desired,
                                 max_iterations=60, tolerance=1e-3, extra_starts=1)
            reachable = result.position_error <= cfg.unreachable_error
            joint_target = result.q if reachable else w.arm.desired.copy()
        w.set_arm_trajectory(self.description.arm.joint_names,
                             [TrajectoryPoint(list(joint_target), cfg.step_time)])
        if action[9] > 0.5 or action[10] > 0.5:
            width = float(action[11])
            if self.grip_target is None or abs(self.grip_target - width) > 1e-6:
                w.set_gripper_width(width, duration=cfg.step_time * cfg.gripper_steps * 0.6)
                self.grip_target = width
        w.step(self.n_physics)
        return reachable

    def contacts(self, target: str, present: set[str]) -> bool:
        w = self.world
        bodies = [w.table] + [w.objects[s] for s in present if s not in (target, TRAY_ID)]
        return any(p.getContactPoints(w.robot, b, physicsClientId=w.client) for b in bodies)

    def run_chunk(self, chunk: ChunkInput, layout: StateLayout, present: set[str], out: dict,
                  chunk_index: int) -> None:
        plan = self.stepper.plan(chunk, self.world.arm_positions())
        if isinstance(plan, Rejection):
            return
        target = layout.slots[0]
        for t in range(plan.steps):
            before = build_state(self.belief(present), layout, self.fk)
            gt_before = self.world.ground_truth()
            others_before = {s: self.world.object_pose(s)[0] for s in present if s not in (target, TRAY_ID)}
            action = plan.actions[t]
            reachable = self.execute(action, None if plan.joint_targets is None else plan.joint_targets[t])
            collision = self.contacts(target, present)
            gt_after = self.world.ground_truth()
            after = build_state(self.belief(present), layout, self.fk)
            dropped = bool(gt_before.held_object) and not gt_after.held_object and action[9] < 0.5
            disturbed = any(np.linalg.norm(self.world.object_pose(s)[0] - pos) > self.config.disturb_distance
                            for s, pos in others_before.items() if s != gt_before.held_object)
            out["states"].append(before)
            out["actions"].append(action)
            out["next_states"].append(after)
            out["flags"].append([dropped, collision, disturbed, not reachable])
            out["chunk_index"].append(chunk_index)

    # -- chunks
    @staticmethod
    def ee_chunk(name: str, positions, quaternion, times, gripper: int) -> ChunkInput:
        return ChunkInput(chunk_id=name, space=0, ee_positions=[list(map(float, q)) for q in positions],
                          ee_orientations=[list(map(float, quaternion))] * len(positions),
                          ee_times=list(times), gripper_command=int(gripper))

    def expert_chunks(self, target: str, rng: np.random.Generator, perturb: bool) -> list[ChunkInput]:
        pos, quat = self.world.object_pose(target)
        tray, _ = self.world.object_pose(TRAY_ID)
        if perturb:
            pos = pos + np.r_[rng.normal(0, 0.015, 2), rng.normal(0, 0.01)]
        phases = plan_pick_place(pos, quat, tray, self.plan_config)
        chunks, start = [], self.fk(self.world.arm_positions())[0]
        for ph in phases:
            positions = list(ph.positions)
            gripper = ph.gripper
            if perturb:
                positions = [q + rng.normal(0, 0.01, 3) for q in positions]
                if ph.name == "transport" and rng.uniform() < 0.7:
                    # a via point: low, high or sideways on the way to the tray
                    mid = 0.5 * (start + positions[-1])
                    via = mid + np.r_[rng.uniform(-0.15, 0.15, 2), rng.uniform(-0.12, 0.2)]
                    via[2] = max(via[2], 0.03)
                    positions = [via] + positions
                if ph.name in ("lift", "transport") and rng.uniform() < 0.08:
                    gripper = GripperCommand.OPEN          # early release: the cube drops
                if ph.name == "descend" and rng.uniform() < 0.08:
                    gripper = GripperCommand.NONE          # never closes: nothing is picked
            times = waypoint_times(start, positions, self.plan_config)
            if perturb:
                times = [t * rng.uniform(0.6, 1.3) for t in times]
            chunks.append(self.ee_chunk(ph.name, positions, ph.quaternion, times, gripper))
            start = positions[-1]
        return chunks

    def random_chunks(self, rng: np.random.Generator, count: int) -> list[ChunkInput]:
        chunks = []
        arm = self.description.arm
        for k in range(count):
            gripper = int(rng.choice([0, 0, 1, 2]))
            u = rng.uniform()
            if u < 0.15:
                q = np.array(arm.home) + rng.normal(0, 0.4, len(arm.home))
                q = np.clip(q, np.array(arm.position_lower) + 0.05, np.array(arm.position_upper) - 0.05)
                chunks.append(ChunkInput(chunk_id=f"joint{k}", space=1, joint_names=list(arm.joint_names),
                                         joint_positions=[q.tolist()], joint_times=[float(rng.uniform(0.5, 2.0))],
                                         gripper_command=gripper))
                continue
            n = int(rng.integers(1, 4))
            lo, hi = np.array([0.2, -0.45, 0.0]), np.array([0.8, 0.45, 0.45])
            if u > 0.93:
                lo, hi = np.array([0.8, -0.9, 0.0]), np.array([0.9, 0.9, 0.8])   # mostly out of reach
            positions = rng.uniform(lo, hi, size=(n, 3))
            positions[:, 2] = np.maximum(positions[:, 2], 0.005)
            times = np.cumsum(rng.uniform(0.3, 1.2, n))
            chunks.append(self.ee_chunk(f"random{k}", positions, top_down_quaternion(rng.uniform(-0.8, 0.8)),
                                        times, gripper))
        return chunks

    def episode(self, seed: int) -> EpisodeData:
        rng = np.random.default_rng(seed)
        scenario = "obstacle" if rng.uniform() < 0.5 else "nominal"
        self.world.reset(scenario, int(seed) + 1)
        self.world.set_gripper_width(self.description.gripper.max_width, 0.1)
        self.grip_target = self.description.gripper.max_width
        self.world.run_for(0.3)
        target = "red_cube" if scenario == "obstacle" or rng.uniform() < 0.6 else str(rng.choice(CUBE_IDS))
        present = set(CUBE_IDS) | {TRAY_ID} | ({OBSTACLE_ID} if scenario == "obstacle" else set())
        layout = StateLayout(len(self.description.arm.joint_names), slot_order(self.config.subjects, target))
        kind = rng.choice(KINDS, p=[0.25, 0.45, 0.3])
        if kind == "random":
            chunks = self.random_chunks(rng, int(rng.integers(4, 9)))
        else:
            chunks = self.expert_chunks(target, rng, kind == "perturbed")
            if kind == "perturbed" and rng.uniform() < 0.4:
                cut = int(rng.integers(3, 5))     # after the lift: wander while holding
                chunks = chunks[:cut] + self.random_chunks(rng, 3)
        out = {k: [] for k in ("states", "actions", "next_states", "flags", "chunk_index")}
        for i, chunk in enumerate(chunks):
            self.run_chunk(chunk, layout, present, out, i)
        return EpisodeData(*(np.asarray(out[k], dtype=float if k != "chunk_index" else int)
                             for k in ("states", "actions", "next_states", "flags", "chunk_index")))


_RECORDER: RolloutRecorder | None = None


def _work(seed: int) -> EpisodeData:
    global _RECORDER
    if _RECORDER is None:
        _RECORDER = RolloutRecorder()
    return _RECORDER.episode(seed)


def generate(episodes: int, seed: int, workers: int = 1, label: str = "rollouts") -> dict[str, np.ndarray]:
    """`episodes` labelled episodes with seeds derived from `seed`; arrays concatenated, plus
    `episode` (T,) and `step` (T,) indices so open-loop rollouts can be cut out again."""
    seeds = [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=episodes)]
    bar = Progress(episodes, label)
    results: list[EpisodeData] = []
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for ep in pool.imap(_work, seeds):
                results.append(ep)
                bar.update(1)
    else:
        for s in seeds:
            results.append(_work(s))
            bar.update(1)
    keep = [r for r in results if len(r.states)]
    data = {k: np.concatenate([getattr(r, k) for r in keep]) for k in
            ("states", "actions", "next_states", "flags", "chunk_index")}
    data["episode"] = np.concatenate([np.full(len(r.states), i) for i, r in enumerate(keep)])
    data["step"] = np.concatenate([np.arange(len(r.states)) for r in keep])
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    data = generate(args.episodes, args.seed, args.workers)
    np.savez_compressed(args.out, **data)
    print(f"{len(data['states'])} steps from {args.episodes} episodes in {time.monotonic() - t0:.0f} s; "
          f"failure rates {dict(zip(FLAGS, np.round(data['flags'].mean(0), 3).tolist()))} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
