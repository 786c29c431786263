"""Closed-loop rollouts of the latent policy in the PyBullet world without ROS (for evaluation):
observe (64x64 frames, tool state, the target's position standing in for memory's belief) ->
propose -> execute the best candidate's action chunk with the same end-effector-delta executor the
data was recorded with -> repeat, until the target is in the tray or the step budget is spent."""
from __future__ import annotations

import numpy as np

from harness_nodes.dataset.sim_episodes import (CUBE_IDS, DeltaArm, EpisodeSpec, make_world, randomise_layout,
                                                render_frames, target_in_tray, task_for)


def run_policy_episode(core, robot: str, seed: int, max_chunks: int = 40, target: str | None = None) -> dict:
    spec = EpisodeSpec(seed=seed, robot=robot)
    rng = np.random.default_rng(seed)
    world = make_world(robot, seed, spec)
    try:
        randomise_layout(world, rng, spec.colour_jitter)
        target = target or CUBE_IDS[int(rng.integers(len(CUBE_IDS)))]
        arm = DeltaArm(world)
        success, chunks = False, 0
        for chunks in range(1, max_chunks + 1):
            frames = render_frames(world)
            state = arm.state()
            proposal = core.propose(frames, state, task_for(target), world.object_pose(target)[0], 1)
            cand = proposal.candidates[0]
            for step, grip in zip(cand.displacements, cand.grip_open):
                arm.apply(np.array([*step, 1.0 if grip >= 0.5 else 0.0], dtype=np.float32))
            if target_in_tray(world, target):
                success = True
                break
        return {"seed": seed, "robot": robot, "target": target, "success": success, "chunks": chunks}
    finally:
        world.disconnect()
