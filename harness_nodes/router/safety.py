"""Safety checks the router applies inside its own loop, on planned joint paths (pure, no rclpy):
self-collision and table collision (Pinocchio + coal), velocity scaling near singularities
(manipulability) and the per-step change limit (LeRobot's `max_relative_target`).

Collision model: the URDF's collision geometry plus a box for the table (top at `table_height`
in the base frame). Pairs that can never collide meaningfully are disabled once, like MoveIt's
SRDF "Adjacent"/"Default": geometries on the same or adjacent bodies, pairs already in contact at
the home configuration with the gripper open, the links fixed to the base against the table, and
the description's `collision_ignore` pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pinocchio as pin

from harness_nodes.router.trajectory import JointTrajectory, knot_velocities

TABLE_EXTENT = 3.0      # m, table half-extent in x and y (covers the reachable workspace)
TABLE_THICKNESS = 0.1   # m


@dataclass(frozen=True)
class CollisionHit:
    a: str
    b: str

    def __str__(self) -> str:
        return f"{self.a} <-> {self.b}"


def _link_of(geom_name: str) -> str:
    """pinocchio names collision geometries '<link>_<k>'."""
    head, _, tail = geom_name.rpartition("_")
    return head if tail.isdigit() else geom_name


class CollisionChecker:
    """Self- and table-collision checks for one arm (shares the kinematics' pinocchio model)."""

    def __init__(self, kinematics, home: Sequence[float], open_fingers: dict[str, float] | None = None,
                 table_height: float | None = 0.0, ignore: Sequence[Sequence[str]] = (),
                 gripper_joints: Sequence[str] = ()):
        import coal   # pinocchio's collision backend (hpp-fcl's successor)

        self.kin = kinematics
        model = kinematics.model
        urdf = Path(kinematics.urdf_path)
        self.geom = pin.buildGeomFromUrdf(model, str(urdf), pin.GeometryType.COLLISION,
                                          package_dirs=[str(urdf.parent), str(urdf.parent.parent)])
        robot_geoms = list(range(len(self.geom.geometryObjects)))
        self.table_index = None
        if table_height is not None:
            box = coal.Box(2 * TABLE_EXTENT, 2 * TABLE_EXTENT, TABLE_THICKNESS)
            placement = pin.SE3(np.eye(3), np.array([0.0, 0.0, table_height - TABLE_THICKNESS / 2]))
            table = pin.GeometryObject("table_0", 0, 0, placement, box)
            self.table_index = self.geom.addGeometryObject(table)
        parents = {i: self.geom.geometryObjects[i].parentJoint for i in robot_geoms}
        gripper_ids = {model.getJointId(n) for n in gripper_joints if model.existJointName(n)}
        ignore_links = {frozenset(p) for p in ignore}
        q_home = kinematics.full_q(home, open_fingers)
        data = model.createData()
        pin.forwardKinematics(model, data, q_home)
        pairs = []
        for i in robot_geoms:
            for j in robot_geoms:
                if j <= i:
                    continue
                ji, jj = parents[i], parents[j]
                if ji == jj or model.parents[ji] == jj or model.parents[jj] == ji:
                    continue
                if ji in gripper_ids and jj in gripper_ids:
                    continue   # fingers and knuckles of one gripper: the gripper limits itself
                la, lb = _link_of(self.geom.geometryObjects[i].name), _link_of(self.geom.geometryObjects[j].name)
                if frozenset((la, lb)) in ignore_links:
                    continue
                pairs.append((i, j))
            if self.table_index is not None and parents[i] != 0 and model.parents[parents[i]] != 0:
                pairs.append((i, self.table_index))   # links on the base or the first joint sit on the table
        for i, j in pairs:
            self.geom.addCollisionPair(pin.CollisionPair(i, j))
        self.gdata = pin.GeometryData(self.geom)
        # Disable the pairs already touching at home (meshes that overlap by construction).
        self.data = model.createData()
        pin.computeCollisions(model, self.data, self.geom, self.gdata, q_home, False)
        touching = [k for k, r in enumerate(self.gdata.collisionResults) if r.isCollision()]
        for k in reversed(touching):
            pair = self.geom.collisionPairs[k]
            if pair.second != self.table_index:
                self.geom.removeCollisionPair(pair)
        self.gdata = pin.GeometryData(self.geom)
        self.pair_count = len(self.geom.collisionPairs)

    def check(self, arm_q: Sequence[float], others: dict[str, float] | None = None) -> CollisionHit | None:
        q = self.kin.full_q(arm_q, others)
        if not pin.computeCollisions(self.kin.model, self.data, self.geom, self.gdata, q, True):
            return None
        for k, r in enumerate(self.gdata.collisionResults):
            if r.isCollision():
                pair = self.geom.collisionPairs[k]
                return CollisionHit(self.geom.geometryObjects[pair.first].name,
                                    self.geom.geometryObjects[pair.second].name)
        return None   # pragma: no cover


def check_path_collisions(traj: JointTrajectory, checker: CollisionChecker, others: dict[str, float] | None,
                          samples: int) -> str | None:
    """None if every sampled configuration of the (linearly interpolated) path is collision free.
    A start that is already in collision is exempt for its first segment (to move out)."""
    start_hit = checker.check(traj.positions[0], others)
    for s in range(len(traj.times) - 1):
        for k in range(1, samples + 1):
            a = k / samples
            if s == 0 and start_hit is not None and a < 1.0:
                continue
            q = (1 - a) * traj.positions[s] + a * traj.positions[s + 1]
            hit = checker.check(q, others)
            if hit is not None:
                return f"collision {hit} at segment {s} ({a:.2f}) of the planned path"
    return None


def slow_near_singularities(traj: JointTrajectory, kinematics, others: dict[str, float] | None,
                            threshold: float, min_scale: float, samples: int) -> tuple[JointTrajectory, int, float]:
    """Stretch every segment whose minimum manipulability w is below `threshold` by
    1 / max(w / threshold, min_scale) (velocity scaling, as MoveIt Servo does near singularities).
    Returns the trajectory, how many segments were slowed and the minimum w seen."""
    if threshold <= 0.0 or len(traj.times) < 2:
        return traj, 0, float("nan")
    durations = np.diff(traj.times)
    slowed, w_min = 0, np.inf
    for s in range(len(durations)):
        w = min(kinematics.manipulability((1 - a) * traj.positions[s] + a * traj.positions[s + 1], others)
                for a in np.linspace(0.0, 1.0, samples + 1))
        w_min = min(w_min, w)
        if w < threshold:
            durations[s] /= max(w / threshold, min_scale)
            slowed += 1
    if not slowed:
        return traj, 0, float(w_min)
    times = np.concatenate([[0.0], np.cumsum(durations)])
    return replace(traj, times=times, velocities=knot_velocities(times, traj.positions)), slowed, float(w_min)


def limit_steps(start: np.ndarray, targets: np.ndarray, max_step: float) -> tuple[np.ndarray, int]:
    """Clamp each target so no joint moves more than `max_step` rad from the previous one (the first
    from `start`); returns the clamped targets and how many joint values were clamped."""
    out = np.array(targets, dtype=float, copy=True)
    prev = np.asarray(start, dtype=float)
    clamps = 0
    for i in range(len(out)):
        delta = out[i] - prev
        over = np.abs(delta) > max_step + 1e-12
        if over.any():
            clamps += int(over.sum())
            out[i] = prev + np.clip(delta, -max_step, max_step)
        prev = out[i]
    return out, clamps
