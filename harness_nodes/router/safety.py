"""Safety checks the router applies inside its own loop, on planned joint paths (pure, no rclpy):
self-collision and table collision (Pinocchio + coal), velocity scaling near collisions (minimum
distance) and near singularities (manipulability), and the per-step change limit (LeRobot's
`max_relative_target`).

Collision model: the URDF's collision geometry plus a box for the table (top at `table_height`
in the base frame). Pairs that can never collide meaningfully are disabled once, like MoveIt's
SRDF "Adjacent"/"Default": geometries on the same or adjacent bodies, pairs already in contact at
the home configuration with the gripper open, the links fixed to the base against the table, and
the description's `collision_ignore` pairs.

Proximity (velocity scaling near collisions, as MoveIt Servo does): distances are computed between
the convex hulls of the collision meshes (GJK, tens of microseconds for every pair; a hull contains
its mesh, so the distance is a lower bound of the mesh distance: conservative). Monitored pairs are
the enabled collision pairs, except self pairs whose hulls are already closer than the slowdown
distance at home with the gripper open or closed (they sit that close by construction, e.g. a
finger beside its gripper body); they stay collision-checked on the exact meshes.
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
PROXIMITY_EPS = 1e-4    # m: a distance growing by more than this moves away from the obstacle


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
                 gripper_joints: Sequence[str] = (), proximity_distance: float = 0.0,
                 closed_fingers: dict[str, float] | None = None):
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
        self.proximity_distance = float(proximity_distance)
        self.hulls = None
        if self.proximity_distance > 0.0:
            self._build_hulls(coal, [q_home, kinematics.full_q(home, closed_fingers)])

    def _build_hulls(self, coal, exempt_at: list[np.ndarray]) -> None:
        """Convex-hull copy of the collision model for distance queries (see the module doc)."""
        hulls = pin.GeometryModel()
        for go in self.geom.geometryObjects:
            shape = go.geometry
            if isinstance(shape, coal.BVHModelBase):
                points = coal.StdVec_Vec3s()
                for v in np.array(shape.vertices(), dtype=float):
                    points.append(v)
                shape = coal.Convex.convexHull(points, False, "")
            hulls.addGeometryObject(pin.GeometryObject(go.name, go.parentJoint, go.parentFrame, go.placement, shape))
        for pair in self.geom.collisionPairs:
            hulls.addCollisionPair(pin.CollisionPair(pair.first, pair.second))
        hdata = pin.GeometryData(hulls)
        near = set()
        for q in exempt_at:
            pin.computeDistances(self.kin.model, self.data, hulls, hdata, q)
            for k, r in enumerate(hdata.distanceResults):
                if hulls.collisionPairs[k].second != self.table_index and r.min_distance < self.proximity_distance:
                    near.add(k)
        for k in sorted(near, reverse=True):
            hulls.removeCollisionPair(hulls.collisionPairs[k])
        self.hulls = hulls
        self.hdata = pin.GeometryData(hulls)
        self.proximity_pairs = len(hulls.collisionPairs)
        self.proximity_exempt = len(near)

    def min_distance(self, arm_q: Sequence[float], others: dict[str, float] | None = None) -> tuple[float, str]:
        """Smallest hull distance (m) over the monitored pairs, and which pair; (inf, '') if none."""
        if self.hulls is None or not self.hulls.collisionPairs:
            return float("inf"), ""
        q = self.kin.full_q(arm_q, others)
        k = pin.computeDistances(self.kin.model, self.data, self.hulls, self.hdata, q)
        pair = self.hulls.collisionPairs[k]
        name = f"{self.hulls.geometryObjects[pair.first].name} <-> {self.hulls.geometryObjects[pair.second].name}"
        return float(self.hdata.distanceResults[k].min_distance), name

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


def _stretch(traj: JointTrajectory, scales: np.ndarray) -> JointTrajectory:
    """Divide each segment's duration by its velocity scale (0 < scale <= 1)."""
    durations = np.diff(traj.times) / np.asarray(scales, dtype=float)
    times = np.concatenate([[0.0], np.cumsum(durations)])
    return replace(traj, times=times, velocities=knot_velocities(times, traj.positions))


def proximity_scale(distance: float, previous: float, slowdown_distance: float, min_scale: float) -> float:
    """Velocity scale for moving to a configuration `distance` m from the nearest obstacle, coming
    from one `previous` m away: max(distance / slowdown_distance, min_scale) when the motion closes
    in below `slowdown_distance`; 1 when it is farther or moves away (MoveIt Servo lets the arm
    back off at full speed)."""
    if slowdown_distance <= 0.0 or distance >= slowdown_distance or distance > previous + PROXIMITY_EPS:
        return 1.0
    return float(max(distance / slowdown_distance, min_scale))


def slow_near_collisions(traj: JointTrajectory, checker: CollisionChecker, others: dict[str, float] | None,
                         slowdown_distance: float, min_scale: float,
                         samples: int) -> tuple[JointTrajectory, int, float, str]:
    """Stretch every segment that closes in on an obstacle (table or a monitored self pair) below
    `slowdown_distance`, by 1 / max(d / slowdown_distance, min_scale) with d the smallest distance
    reached while approaching (velocity scaling near collisions, as MoveIt Servo does). Samples that
    move away from the obstacle do not slow the segment. Returns the trajectory, how many segments
    were slowed, the minimum distance seen (m) and the pair where it was seen."""
    if slowdown_distance <= 0.0 or checker.hulls is None or len(traj.times) < 2:
        return traj, 0, float("nan"), ""
    d_prev, pair_min = checker.min_distance(traj.positions[0], others)
    d_min = d_prev
    scales = np.ones(len(traj.times) - 1)
    for s in range(len(scales)):
        for k in range(1, samples + 1):
            a = k / samples
            d, pair = checker.min_distance((1 - a) * traj.positions[s] + a * traj.positions[s + 1], others)
            scales[s] = min(scales[s], proximity_scale(d, d_prev, slowdown_distance, min_scale))
            if d < d_min:
                d_min, pair_min = d, pair
            d_prev = d
    slowed = int(np.sum(scales < 1.0))
    if not slowed:
        return traj, 0, float(d_min), pair_min
    return _stretch(traj, scales), slowed, float(d_min), pair_min


def slow_near_singularities(traj: JointTrajectory, kinematics, others: dict[str, float] | None,
                            threshold: float, min_scale: float, samples: int) -> tuple[JointTrajectory, int, float]:
    """Stretch every segment whose minimum manipulability w is below `threshold` by
    1 / max(w / threshold, min_scale) (velocity scaling, as MoveIt Servo does near singularities).
    Returns the trajectory, how many segments were slowed and the minimum w seen."""
    if threshold <= 0.0 or len(traj.times) < 2:
        return traj, 0, float("nan")
    scales = np.ones(len(traj.times) - 1)
    w_min = np.inf
    for s in range(len(scales)):
        w = min(kinematics.manipulability((1 - a) * traj.positions[s] + a * traj.positions[s + 1], others)
                for a in np.linspace(0.0, 1.0, samples + 1))
        w_min = min(w_min, w)
        if w < threshold:
            scales[s] = max(w / threshold, min_scale)
    slowed = int(np.sum(scales < 1.0))
    if not slowed:
        return traj, 0, float(w_min)
    return _stretch(traj, scales), slowed, float(w_min)


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
