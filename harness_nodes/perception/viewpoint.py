"""Active viewpoint selection (pure): where should a camera look next so that the facts the task
depends on become certain again?

* `ElevationMap`: a 2.5-D height grid of the workspace built from every depth image (what is
  known to stand where); it predicts whether a ray from a hypothetical camera to a point is
  blocked (a taller box in front of the target).
* `Target`: a fact to resolve (memory's uncertain or stale facts, re-check requests), a Gaussian
  over its position plus its confidence. A re-checked object memory holds no fact about is searched
  for: the largest table area no depth image has seen yet (`ElevationMap.hidden_regions`, e.g.
  behind a taller box as the scene camera sees it) becomes its target (`search_target`).
* `ViewpointPlanner`: candidate wrist-camera poses on a hemisphere around the region of interest
  (several radii and elevations, 8 azimuths), each scored by the expected information gain
  E[gain] = sum over targets of P(visible) * (0.5 log det(prior) / det(posterior) - log confidence)
  (visibility from deterministic samples of the prior: frustum (through the camera's lens
  distortion, `geometry.project`), range, large enough in pixels, not blocked in the elevation map), minus `cost_weight` * motion time; reachability is checked
  with the router's IK (`ArmKinematics.ik`) through the wrist-camera mount transform, lazily for
  the best-scoring candidates only. Fixed cameras are ranked with the same gain (cost 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from harness_nodes.perception.config import PerceptionParameters
from harness_nodes.common.geometry import CameraModel, look_at_rotation, project

SAMPLES = 24
IK_CANDIDATES = 6          # best-scoring candidates checked with IK per plan


@dataclass
class Target:
    subject: str
    position: np.ndarray
    covariance: np.ndarray            # 3x3
    confidence: float = 1.0
    weight: float = 1.0
    size: float = 0.05


@dataclass
class View:
    camera: str
    position: np.ndarray
    rotation: np.ndarray
    gain: float = 0.0
    cost: float = 0.0
    visible: dict = field(default_factory=dict)   # subject -> P(visible)
    q: np.ndarray | None = None                   # arm joints (movable camera)
    reachable: bool = True

    @property
    def score(self) -> float:
        return self.gain - self.cost


class ElevationMap:
    """Max height per cell of the workspace (m above the table); unobserved cells are 0."""

    def __init__(self, lo, hi, cell: float):
        self.lo = np.asarray(lo[:2], dtype=float)
        self.cell = float(cell)
        self.shape = tuple(int(math.ceil(v)) for v in (np.asarray(hi[:2]) - self.lo) / self.cell)
        self.height = np.zeros(self.shape, np.float32)
        self.observed = np.zeros(self.shape, bool)

    def update(self, points: np.ndarray) -> None:
        """World points (N, 3) of one depth image: the cells they fall in take this image's maximum."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        ij = np.floor((pts[:, :2] - self.lo) / self.cell).astype(int)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < self.shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < self.shape[1])
        ij, z = ij[ok], np.maximum(pts[ok, 2], 0.0)
        if not len(z):
            return
        flat = ij[:, 0] * self.shape[1] + ij[:, 1]
        tmp = np.full(self.height.size, -np.inf, np.float32)
        np.maximum.at(tmp, flat, z.astype(np.float32))
        seen = np.isfinite(tmp)
        h = self.height.reshape(-1)
        h[seen] = tmp[seen]
        self.observed.reshape(-1)[seen] = True

    def observe(self, points: np.ndarray) -> None:
        """Mark the cells that any of these world points (N, 3) fall in as seen (table top included:
        a cell whose table a camera has seen cannot hide an object), heights unchanged."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.abs(pts) < 1e6, axis=1)]    # finite and sane (NaN compares false)
        ij = np.floor((pts[:, :2] - self.lo) / self.cell).astype(int)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < self.shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < self.shape[1])
        self.observed[ij[ok, 0], ij[ok, 1]] = True

    def hidden_regions(self, region_min, region_max, min_extent: float) -> list["HiddenRegion"]:
        """Connected areas of `region` (x, y box, m) that no depth image has seen yet and that are at
        least `min_extent` m wide in x and y (room for the object): where something no camera has
        seen can be. Largest first."""
        xs = self.lo[0] + (np.arange(self.shape[0]) + 0.5) * self.cell
        ys = self.lo[1] + (np.arange(self.shape[1]) + 0.5) * self.cell
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        inside = (gx >= region_min[0]) & (gx <= region_max[0]) & (gy >= region_min[1]) & (gy <= region_max[1])
        hidden = (inside & ~self.observed).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(hidden, connectivity=4)
        need = max(1, int(math.ceil(min_extent / self.cell)))
        out = []
        for k in range(1, n):
            if stats[k, cv2.CC_STAT_WIDTH] < need or stats[k, cv2.CC_STAT_HEIGHT] < need:
                continue
            m = labels == k
            xy = np.stack([gx[m], gy[m]], axis=1)
            out.append(HiddenRegion(xy.mean(axis=0), np.cov(xy.T) + np.eye(2) * self.cell ** 2 / 12, int(m.sum())))
        out.sort(key=lambda r: -r.cells)
        return out

    def heights_at(self, xy: np.ndarray) -> np.ndarray:
        ij = np.floor((xy - self.lo) / self.cell).astype(int)
        ok = (ij[..., 0] >= 0) & (ij[..., 0] < self.shape[0]) & (ij[..., 1] >= 0) & (ij[..., 1] < self.shape[1])
        out = np.zeros(xy.shape[:-1], np.float32)
        out[ok] = self.height[ij[ok][:, 0], ij[ok][:, 1]]
        return out

    def blocked(self, eye, points: np.ndarray, ignore: float = 0.04, margin: float = 0.01) -> np.ndarray:
        """For each point, does the segment eye -> point pass below the height map (before the last
        `ignore` m, which belong to the object itself)?"""
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        eye = np.asarray(eye, dtype=float)
        seg = pts - eye
        length = np.linalg.norm(seg, axis=1)
        n = int(min(200, max(8, math.ceil(float(length.max(initial=0.0)) / (self.cell / 2)))))
        t = np.linspace(0.0, 1.0, n)[None, :] * np.clip(1.0 - ignore / np.maximum(length, 1e-9), 0.0, 1.0)[:, None]
        samples = eye + t[..., None] * seg[:, None, :]                        # (N, n, 3)
        h = self.heights_at(samples[..., :2])
        return np.any(samples[..., 2] < h - margin, axis=1)


@dataclass
class HiddenRegion:
    centre: np.ndarray          # (x, y) m
    covariance: np.ndarray      # 2x2, m^2: spread of the region's cells
    cells: int


def search_target(subject: str, region: HiddenRegion, size: float, confidence: float = 0.1,
                  weight: float = 2.0) -> Target:
    """A target for an object no camera has seen: somewhere in `region`, resting on the table."""
    cov = np.zeros((3, 3))
    cov[:2, :2] = region.covariance + np.eye(2) * (size / 2) ** 2
    cov[2, 2] = (size / 4) ** 2
    return Target(subject, np.array([region.centre[0], region.centre[1], size / 2]), cov, confidence, weight, size)


def prior_samples(mean, cov, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """Deterministic samples of a Gaussian: the mean, +-sqrt(3) sigma points, then random ones."""
    mean = np.asarray(mean, dtype=float)
    cov = 0.5 * (np.asarray(cov, dtype=float) + np.asarray(cov, dtype=float).T) + np.eye(3) * 1e-8
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        chol = np.diag(np.sqrt(np.clip(np.diag(cov), 1e-8, None)))
    pts = [mean] + [mean + s * math.sqrt(3.0) * chol[:, i] for i in range(3) for s in (-1, 1)]
    rng = np.random.default_rng(seed)
    extra = max(0, n - len(pts))
    if extra:
        pts += list(mean + rng.standard_normal((extra, 3)) @ chol.T)
    out = np.array(pts)
    out[:, 2] = np.maximum(out[:, 2], 0.0)    # nothing lies below the table top
    return out


class ViewpointPlanner:
    def __init__(self, params: PerceptionParameters, kinematics=None, ee_cam=None, velocity_limit=None,
                 arm_speed_factor: float = 0.5):
        self.p = params
        self.kin = kinematics
        self.ee_cam = ee_cam
        self.vmax = None if velocity_limit is None else np.asarray(velocity_limit, dtype=float) * arm_speed_factor
        self.emap = ElevationMap(params.workspace_min, params.workspace_max, params.grid_cell)
        self.ik_calls = 0

    # -- prediction ------------------------------------------------------
    def measurement_cov(self, z: float, pixels: float, model: CameraModel, rotation: np.ndarray) -> np.ndarray:
        p = self.p
        n = max(1.0, min(pixels, p.max_support))
        s_ax = (p.depth_noise_a + p.depth_noise_b * z * z) ** 2 / n
        s_lat = (z * p.pixel_noise / model.fx) ** 2 / n
        floor = p.model_sigma ** 2 + (p.calibration_sigma * z) ** 2
        c = np.diag([s_lat + floor, s_lat + floor, s_ax + floor])
        return rotation @ c @ rotation.T

    def visibility(self, position, rotation, model: CameraModel, t: Target) -> tuple[float, float]:
        """P(target visible from this pose) over samples of its prior, and the mean range."""
        p = self.p
        pts = prior_samples(t.position, t.covariance)
        u, v, z = project(pts, position, rotation, model)
        pix = (model.fx * t.size / np.maximum(z, 1e-6)) ** 2
        b = p.border_px
        with np.errstate(invalid="ignore"):
            ok = ((z > p.min_negative_range) & (z < p.depth_max) & (u >= b) & (u <= model.width - 1 - b)
                  & (v >= b) & (v <= model.height - 1 - b) & (pix >= 2 * p.min_pixels))
        if ok.any():
            idx = np.flatnonzero(ok)
            ok[idx] = ~self.emap.blocked(position, pts[idx], ignore=t.size * 0.9)
        zmean = float(np.mean(z[ok])) if ok.any() else float(np.mean(np.abs(z)))
        return float(np.mean(ok)), zmean

    def gain(self, position, rotation, model: CameraModel, targets: list[Target]) -> tuple[float, dict]:
        total, vis = 0.0, {}
        for t in targets:
            pv, z = self.visibility(position, rotation, model, t)
            vis[t.subject] = pv
            if pv <= 0:
                continue
            prior = 0.5 * (t.covariance + t.covariance.T) + np.eye(3) * 1e-6
            r = self.measurement_cov(z, (model.fx * t.size / max(z, 1e-6)) ** 2, model, rotation)
            post = np.linalg.inv(np.linalg.inv(prior) + np.linalg.inv(r))
            ig = 0.5 * math.log(max(np.linalg.det(prior), 1e-30) / max(np.linalg.det(post), 1e-30))
            ig += -math.log(max(min(t.confidence, 1.0), 1e-2))
            total += t.weight * pv * max(ig, 0.0)
        return total, vis

    # -- candidates ------------------------------------------------------
    def candidates(self, look_at) -> list[tuple[np.ndarray, np.ndarray]]:
        p = self.p
        look = np.asarray(look_at, dtype=float)
        out = []
        for radius in p.view_radii:
            for elev in p.view_elevations:
                azimuths = [0.0] if elev >= 89.9 else [2 * math.pi * k / p.view_azimuths for k in range(p.view_azimuths)]
                for az in azimuths:
                    e = math.radians(elev)
                    eye = look + radius * np.array([math.cos(e) * math.cos(az), math.cos(e) * math.sin(az), math.sin(e)])
                    if eye[2] < p.min_camera_height:
                        continue
                    # image "down" away from the robot base (as at the Panda's home pose)
                    hint = np.array([look[0], look[1], 0.0])
                    hint = hint / np.linalg.norm(hint) if np.linalg.norm(hint) > 1e-6 else np.array([1.0, 0, 0])
                    rot = look_at_rotation(eye, look, hint)
                    if rot is None:
                        rot = look_at_rotation(eye, look, np.array([0.0, 0.0, -1.0]))
                    if rot is not None:
                        out.append((eye, rot))
        return out

    def reach(self, position, rotation, q_now) -> tuple[np.ndarray | None, float]:
        """IK for the end-effector pose that puts the camera there; (q, motion time) or (None, inf)."""
        from harness_nodes.common.camera_mount import ee_target_for_camera
        import pinocchio as pin
        if self.kin is None or self.ee_cam is None:
            return None, math.inf
        ee_pos, ee_rot = ee_target_for_camera(position, rotation, self.ee_cam)
        seed = self.kin.home if q_now is None else q_now
        self.ik_calls += 1
        res = self.kin.ik(pin.SE3(ee_rot, ee_pos), seed, max_iterations=150, extra_starts=2, margin=0.02)
        if not res.success:
            return None, math.inf
        dq = np.abs(res.q - (self.kin.home if q_now is None else np.asarray(q_now)))
        vmax = self.vmax if self.vmax is not None else np.ones_like(dq)
        return res.q, float(np.max(dq / vmax)) + 1.0

    def plan(self, targets: list[Target], model: CameraModel, q_now=None, camera: str = "wrist",
             exclude: list[np.ndarray] | None = None) -> tuple[View | None, list[View]]:
        """Best reachable view of the movable camera for `targets` (None if nothing is worth it),
        and all scored candidates (best first)."""
        if not targets:
            return None, []
        w = np.array([t.weight for t in targets])
        look = (np.array([t.position for t in targets]) * w[:, None]).sum(axis=0) / w.sum()
        views = []
        for eye, rot in self.candidates(look):
            if exclude and any(np.linalg.norm(eye - x) < 0.03 for x in exclude):
                continue
            g, vis = self.gain(eye, rot, model, targets)
            views.append(View(camera, eye, rot, g, 0.0, vis))
        views.sort(key=lambda v: -v.gain)
        best = None
        checked = 0
        for v in views:
            if v.gain < self.p.min_gain or checked >= IK_CANDIDATES:
                break
            if best is not None and v.gain <= best.score:
                break     # cost >= 0: cannot beat the best so far
            checked += 1
            q, t = self.reach(v.position, v.rotation, q_now)
            v.q, v.reachable = q, q is not None
            if q is None:
                continue
            v.cost = self.p.cost_weight * t
            if best is None or v.score > best.score:
                best = v
        if best is not None and best.score < self.p.min_gain:
            best = None
        return best, views

    def rank_fixed(self, cameras: dict[str, tuple], targets: list[Target]) -> list[View]:
        """Fixed cameras {name: (position, rotation, model)} by expected gain, best first."""
        out = []
        for name, (pos, rot, model) in cameras.items():
            g, vis = self.gain(pos, rot, model, targets)
            out.append(View(name, np.asarray(pos), np.asarray(rot), g, 0.0, vis))
        return sorted(out, key=lambda v: -v.gain)
