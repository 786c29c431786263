"""World-model benchmark (issue #10): learned-backend latency over candidate batches, the physics
backend on the same batch, open-loop object error vs horizon and failure detection on held-out
rollouts, and closed-loop best-of-N against the first proposal on held-out seeds of the
obstacle-near-path scenario and of a perturbed one (noisy belief, off-centre grasp).

    make bench-world-model     # = scripts/env.sh python bench/world_model.py [--seeds 50]

Held-out data: rollouts with a seed the training command never uses (`--heldout-seed`), scenario
seeds from 10000 on. In the closed loop the belief is the simulator's object poses plus noise
(there is no perception in this loop; the node itself only ever sees memory facts). Success =
the red cube ends in the tray and no other object moved more than 1 cm. Figures are printed; the
last line is one JSON object; PNG plots are written beside it when matplotlib is installed.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness_nodes.expert.plan import top_down_quaternion, waypoint_times  # noqa: E402
from harness_nodes.expert.rollouts import RolloutRecorder  # noqa: E402
from harness_nodes.router.validation import ChunkInput  # noqa: E402
from harness_nodes.sim.world import CUBE_IDS, OBSTACLE_ID, TRAY_ID  # noqa: E402
from harness_nodes.world_model.configuration_world_model import WorldModelConfig  # noqa: E402
from harness_nodes.world_model.core import WorldModelCore  # noqa: E402
from harness_nodes.world_model.modeling_physics import PhysicsBackend  # noqa: E402
from harness_nodes.world_model.state import Belief, ObjectBelief, StateLayout, slot_order  # noqa: E402
from harness_nodes.world_model.training import (CALIBRATION_HORIZON, auroc, rollout_data,  # noqa: E402
                                                window_scores, windows)
from harness_nodes.world_model.weights import load_model  # noqa: E402

BATCHES = (16, 64, 128, 256)
SWEEP = (16, 32, 64, 96, 128, 160, 192, 256, 320, 384, 512)
HORIZON = 16
SCENARIO_SEED0 = 10000


def percentiles(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2)}


def time_learned(model, state, actions, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.rollout(state, actions)
        out.append(time.perf_counter() - t0)
    return out


@torch.no_grad()
def horizon_errors(model, data, horizons=(1, 8, 16)) -> dict:
    """Open-loop object position error (mm) at each horizon over held-out windows of 16 steps,
    for the ensemble mean and for the 'nothing moves' baseline."""
    from harness_nodes.world_model.training import batched_rollout
    wins = [(s, n) for s, n in windows(data, max(horizons), stride=4) if n == max(horizons)]
    starts = np.array([s for s, _ in wins])
    lay = model.layout
    xyz = lay.object_position_index()
    present = lay.field_index(9)
    res = {}
    for h in horizons:
        acts = torch.as_tensor(np.stack([data["actions"][s:s + h] for s in starts]), dtype=torch.float32)
        out = batched_rollout(model, torch.as_tensor(data["states"][starts], dtype=torch.float32), acts,
                              torch.full((len(starts),), h))
        pred = out["member_states"].mean(0).numpy()
        true = data["next_states"][starts + h - 1]
        mask = data["states"][starts][:, present] > 0.5
        err = np.linalg.norm(pred[:, xyz] - true[:, xyz], axis=-1)[mask] * 1000
        static = np.linalg.norm(data["states"][starts][:, xyz] - true[:, xyz], axis=-1)[mask] * 1000
        target = np.linalg.norm(pred[:, xyz[0]] - true[:, xyz[0]], axis=-1) * 1000
        res[h] = {"mean": round(float(err.mean()), 2), "p95": round(float(np.percentile(err, 95)), 2),
                  "target_mean": round(float(target.mean()), 2), "static_baseline_mean": round(float(static.mean()), 2)}
    return res


def transport_proposals(rec: RolloutRecorder, rng, n: int, start: np.ndarray, wide: float) -> list[ChunkInput]:
    """N transport chunks from above the cube to above the tray, each through a random via point
    (the perturbed expert's transport): some pass the obstacle, some knock it."""
    tray, _ = rec.world.object_pose(TRAY_ID)
    above_tray = np.array([tray[0], tray[1], tray[2] + 0.27])
    mid = 0.5 * (start + above_tray)
    q = top_down_quaternion(0.0)
    out = []
    for i in range(n):
        via = mid + np.r_[rng.uniform(-wide, wide, 2), rng.uniform(-0.12, 0.2)]
        via[2] = max(via[2], 0.08)
        pts = [via, above_tray]
        out.append(rec.ee_chunk(f"transport{i}", pts, q, waypoint_times(start, pts, rec.plan_config), 0))
    return out


def run_episode(rec: RolloutRecorder, seed: int, choose, n: int, perturbed: bool) -> bool:
    """Pick the red cube, let `choose(proposals, belief)` pick a transport, place; success?"""
    rng = np.random.default_rng(seed)
    w = rec.world
    w.reset("obstacle", seed)
    w.set_gripper_width(rec.description.gripper.max_width, 0.1)
    rec.grip_target = rec.description.gripper.max_width
    w.run_for(0.3)
    present = set(CUBE_IDS) | {TRAY_ID, OBSTACLE_ID}
    layout = StateLayout(len(rec.description.arm.joint_names), slot_order(rec.config.subjects, "red_cube"))
    chunks = rec.expert_chunks("red_cube", np.random.default_rng(seed), False)
    if perturbed:   # an off-centre grasp, as a noisy perception would give
        pos, quat = w.object_pose("red_cube")
        from harness_nodes.expert.plan import plan_pick_place
        off = pos + np.r_[rng.uniform(-0.012, 0.012, 2), 0.0]
        phases = plan_pick_place(off, quat, w.object_pose(TRAY_ID)[0], rec.plan_config)
        start = rec.fk(w.arm_positions())[0]
        chunks = []
        for ph in phases:
            chunks.append(rec.ee_chunk(ph.name, ph.positions, ph.quaternion,
                                       waypoint_times(start, ph.positions, rec.plan_config), ph.gripper))
            start = ph.positions[-1]
    before = {s: w.object_pose(s)[0] for s in present if s not in ("red_cube", TRAY_ID)}
    sink = {k: [] for k in ("states", "actions", "next_states", "flags", "chunk_index")}
    for c in chunks[:3]:                      # pre_grasp, descend, lift
        rec.run_chunk(c, layout, present, sink, 0)
    start = np.asarray(chunks[2].ee_positions[-1])
    proposals = transport_proposals(rec, np.random.default_rng(seed + 7), n, start, 0.15)
    noise = 0.01 if perturbed else 0.003
    gt = w.ground_truth()
    objects = {s: ObjectBelief(w.object_pose(s)[0] + rng.normal(0, noise, 3) * (s != gt.held_object),
                               w.object_pose(s)[1], 0.9, gt.held_object == s) for s in present}
    belief = Belief(w.arm_positions(), w.gripper_width(), objects)
    pick = choose(proposals, belief)
    if pick < 0:
        return False                          # everything vetoed: nothing moves, not a success
    for c in [proposals[pick]] + chunks[4:]:  # transport, lower (open), retreat
        rec.run_chunk(c, layout, present, sink, 0)
    w.run_for(0.5)
    moved = any(np.linalg.norm(w.object_pose(s)[0] - p) > 0.01 for s, p in before.items())
    return "red_cube" in w.ground_truth().in_tray and not moved


def facts_of(belief: Belief) -> list[dict]:
    return [dict(subject=s, kind=0, state=0, position=o.position, quaternion=o.quaternion, confidence=o.confidence,
                 value=json.dumps({"held": bool(o.held)})) for s, o in belief.objects.items()]


def closed_loop(rec, core, seeds, n, perturbed) -> dict:
    names = list(rec.description.arm.joint_names)
    first, best, vetoed_all = [], [], 0

    def learned_choice(proposals, belief):
        nonlocal vetoed_all
        ev = core.evaluate("put red_cube in the tray", names, belief.arm_positions.tolist(), facts_of(belief),
                           proposals, backend="learned")
        vetoed_all += ev.best_index < 0
        return ev.best_index

    for s in seeds:
        first.append(run_episode(rec, s, lambda props, b: 0, n, perturbed))
        best.append(run_episode(rec, s, learned_choice, n, perturbed))
    return {"first_proposal_success": round(float(np.mean(first)), 3),
            "best_of_n_success": round(float(np.mean(best)), 3), "seeds": len(seeds), "n": n,
            "all_vetoed": int(vetoed_all)}


def plots(folder: Path, errors: dict, scores, failed) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    hs = sorted(errors)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(hs, [errors[h]["mean"] for h in hs], "o-", label="ensemble")
    ax.plot(hs, [errors[h]["static_baseline_mean"] for h in hs], "s--", label="nothing moves")
    ax.set_xlabel("horizon (steps of 0.25 s)")
    ax.set_ylabel("object position error (mm)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "world_model_error_vs_horizon.png", dpi=120)
    order = np.argsort(-scores)
    tpr = np.cumsum(failed[order]) / max(1, failed.sum())
    fpr = np.cumsum(~failed[order]) / max(1, (~failed).sum())
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.r_[0, fpr], np.r_[0, tpr])
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    fig.tight_layout()
    fig.savefig(folder / "world_model_roc.png", dpi=120)
    return [str(folder / "world_model_error_vs_horizon.png"), str(folder / "world_model_roc.png")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="held-out obstacle-scenario seeds")
    ap.add_argument("--perturbed-seeds", type=int, default=50)
    ap.add_argument("--proposals", type=int, default=16)
    ap.add_argument("--heldout-episodes", type=int, default=40)
    ap.add_argument("--heldout-seed", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plots", default=str(REPO / "artifacts" / "bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = WorldModelConfig()
    model, meta = load_model(expect={"robot": config.robot, "subjects": list(config.subjects)})
    print(f"model: {meta['shape']['members']} members x {meta['shape']['hidden']} hidden, trained by `{meta['command']}`")

    heldout = rollout_data(args.heldout_episodes, args.heldout_seed, args.workers, REPO / "artifacts" / "world_model")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(heldout["states"]) - HORIZON, max(SWEEP))
    state = torch.as_tensor(heldout["states"][idx[0]], dtype=torch.float32)
    all_actions = torch.as_tensor(np.stack([heldout["actions"][i:i + HORIZON] for i in idx]), dtype=torch.float32)

    latency = {}
    for n in BATCHES:
        latency[str(n)] = percentiles(time_learned(model, state, all_actions[:n], args.repeats))
        print(f"learned rollout {n:4d} x {HORIZON}: p50 {latency[str(n)]['p50']} ms, p95 {latency[str(n)]['p95']} ms")
    max_in_25 = 0
    for n in SWEEP:
        p50 = np.percentile(time_learned(model, state, all_actions[:n], max(5, args.repeats // 3)), 50) * 1000
        if p50 <= 25.0:
            max_in_25 = n
    print(f"max candidates x {HORIZON} steps within 25 ms (p50): {max_in_25}")

    # physics on the same 16-candidate batch (from the same start state)
    rec = RolloutRecorder(config)
    description = rec.description
    core = WorldModelCore(config, description, model, meta, lambda: PhysicsBackend(config, description), "learned")
    layout = StateLayout(len(description.arm.joint_names), slot_order(config.subjects, "red_cube"))
    from harness_nodes.world_model.actions import StepPlan
    plans = [StepPlan(a.numpy().astype(float), None) for a in all_actions[:16]]
    s0 = heldout["states"][idx[0]]
    objects = {}
    for k, subject in enumerate(layout.slots):
        i = layout.slot(k)
        if s0[i + 9] > 0.5:
            objects[subject] = ObjectBelief(s0[i:i + 3], s0[i + 3:i + 7], 1.0, s0[i + 8] > 0.5)
    belief = Belief(s0[:7], float(s0[7]), objects)
    t0 = time.perf_counter()
    core.physics.evaluate(belief, plans, layout)
    physics_s = time.perf_counter() - t0
    speedup = physics_s * 1000 / latency["16"]["p50"]
    print(f"physics backend, same 16 x {HORIZON} batch: {physics_s * 1000:.0f} ms -> learned is {speedup:.0f}x faster")

    errors = horizon_errors(model, heldout)
    for h, e in errors.items():
        print(f"object position error at horizon {h:2d}: mean {e['mean']} mm (p95 {e['p95']}, target {e['target_mean']}), "
              f"nothing-moves baseline {e['static_baseline_mean']} mm")
    scores, failed = window_scores(model, heldout, CALIBRATION_HORIZON, stride=2)
    threshold = float(meta["veto_threshold"])
    au = auroc(scores, failed)
    false_veto = float((scores[~failed] > threshold).mean())
    recall = float((scores[failed] > threshold).mean()) if failed.any() else float("nan")
    print(f"failure detection on {len(scores)} held-out windows of {CALIBRATION_HORIZON} steps ({int(failed.sum())} fail): "
          f"AUROC {au:.3f}; at the calibrated threshold {threshold:.3f}: false vetoes {false_veto:.3f}, "
          f"failures caught {recall:.3f}")

    seeds = list(range(SCENARIO_SEED0, SCENARIO_SEED0 + args.seeds))
    t0 = time.perf_counter()
    obstacle = closed_loop(rec, core, seeds, args.proposals, perturbed=False)
    print(f"obstacle scenario, {obstacle['seeds']} held-out seeds, N={args.proposals}: best-of-N "
          f"{obstacle['best_of_n_success']} vs first proposal {obstacle['first_proposal_success']} "
          f"({time.perf_counter() - t0:.0f} s)")
    pseeds = list(range(SCENARIO_SEED0 + 500, SCENARIO_SEED0 + 500 + args.perturbed_seeds))
    perturbed = closed_loop(rec, core, pseeds, args.proposals, perturbed=True) if pseeds else {}
    if perturbed:
        print(f"perturbed obstacle scenario (1 cm belief noise, off-centre grasp), {perturbed['seeds']} seeds: "
              f"best-of-N {perturbed['best_of_n_success']} vs first proposal {perturbed['first_proposal_success']}")
    png = plots(Path(args.plots), errors, scores, failed)
    print("plots: " + (", ".join(png) if png else "skipped (matplotlib not installed)"))
    result = {
        "learned_eval_ms": {f"{n}x{HORIZON}": latency[str(n)] for n in BATCHES},
        "max_candidates_in_25ms": max_in_25,
        "physics_eval_ms_16x16": round(physics_s * 1000, 1),
        "learned_vs_physics_speedup": round(speedup, 1),
        "object_pos_err_mm": {str(h): e["mean"] for h, e in errors.items()},
        "object_pos_err_static_baseline_mm": {str(h): e["static_baseline_mean"] for h, e in errors.items()},
        "failure_auroc": round(au, 4), "false_veto_rate": round(false_veto, 4),
        "failures_caught_at_threshold": round(recall, 4), "veto_threshold": threshold,
        "best_of_n_success": obstacle["best_of_n_success"], "first_proposal_success": obstacle["first_proposal_success"],
        "obstacle_seeds": obstacle["seeds"], "proposals": args.proposals,
        "perturbed_best_of_n_success": perturbed.get("best_of_n_success"),
        "perturbed_first_proposal_success": perturbed.get("first_proposal_success"),
        "heldout_windows": int(len(scores)), "heldout_episodes": args.heldout_episodes,
        "torch_threads": 1, "cpu": platform.processor() or platform.machine(),
        "plots": png, "command": "make bench-world-model",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
