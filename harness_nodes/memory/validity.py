"""The maths of the validity rules, pure numpy: distance of points to a swept path (a chain of
capsules), camera frustum and depth-occlusion test, Mahalanobis gate, quaternion helpers."""
from __future__ import annotations

import math

import numpy as np

from harness_nodes.common.geometry import CameraModel, quat_to_matrix
from harness_nodes.common.geometry import project as project_rotation

# chi-square quantiles for 3 degrees of freedom
CHI2_3DOF = {0.95: 7.815, 0.99: 11.345, 0.999: 16.266}


def path_distance(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Distance (m) of each of `points` (N,3) to the polyline `path` (M,3): the capsule distance
    of a swept end-effector path. M == 1 is a sphere around one point. Returns inf for M == 0."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    path = np.asarray(path, dtype=float).reshape(-1, 3)
    if len(path) == 0 or len(points) == 0:
        return np.full(len(points), np.inf)
    if len(path) == 1:
        return np.linalg.norm(points - path[0], axis=1)
    a = path[:-1]                                   # (S,3)
    ab = path[1:] - a                               # (S,3)
    ab2 = np.einsum("ij,ij->i", ab, ab)             # (S,)
    ap = points[:, None, :] - a[None, :, :]         # (N,S,3)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(ab2 > 0, np.einsum("nsj,sj->ns", ap, ab) / np.where(ab2 > 0, ab2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    closest = a[None, :, :] + t[..., None] * ab[None, :, :]
    d = np.linalg.norm(points[:, None, :] - closest, axis=2)
    return d.min(axis=1)


def path_bounds(path: np.ndarray, margin: float) -> tuple[np.ndarray, float]:
    """A sphere (centre, radius) enclosing the path inflated by `margin` (for a grid pre-filter)."""
    path = np.asarray(path, dtype=float).reshape(-1, 3)
    lo, hi = path.min(axis=0), path.max(axis=0)
    centre = 0.5 * (lo + hi)
    return centre, float(np.linalg.norm(hi - centre)) + margin


def project(points: np.ndarray, cam_position, cam_orientation, model: CameraModel):
    """Points (N,3, world) into a camera's optical frame given as position + quaternion (x, y, z, w).
    Returns (u, v, z): pixel coordinates and depth along the optical axis (m)."""
    return project_rotation(points, cam_position, quat_to_matrix(cam_orientation), model)


def expected_visible(points: np.ndarray, cam_position, cam_orientation, model: CameraModel,
                     depth: np.ndarray | None, occlusion_margin: float = 0.03,
                     border_px: float = 4.0, require_depth: bool = True) -> np.ndarray:
    """Which points a camera should see: inside the frustum (with a pixel border), within its range,
    and not occluded (the depth image at the pixel is not nearer than the point by more than
    `occlusion_margin`). Without a depth image the occlusion test cannot be made: all False if
    `require_depth`, else frustum only."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    u, v, z = project(points, cam_position, cam_orientation, model)
    with np.errstate(invalid="ignore"):
        inside = ((z > model.near) & (z < model.far) & (u >= border_px) & (u <= model.width - 1 - border_px)
                  & (v >= border_px) & (v <= model.height - 1 - border_px))
    if depth is None:
        return inside if not require_depth else np.zeros(len(points), dtype=bool)
    if depth.shape[:2] != (model.height, model.width):
        return np.zeros(len(points), dtype=bool)
    idx = np.flatnonzero(inside)
    if len(idx):
        ui = np.clip(np.rint(u[idx]).astype(int), 0, model.width - 1)
        vi = np.clip(np.rint(v[idx]).astype(int), 0, model.height - 1)
        d = depth[vi, ui]
        with np.errstate(invalid="ignore"):
            clear = np.isfinite(d) & (d >= z[idx] - occlusion_margin)
        inside[idx] = clear
    return inside


def mahalanobis2(delta, cov_a, cov_b, min_sigma: float) -> float:
    """Squared Mahalanobis distance of a position difference under the sum of two 3x3 covariances
    (plus an isotropic floor `min_sigma`^2, so a fact claiming zero uncertainty stays gateable)."""
    s = (np.asarray(cov_a, dtype=float).reshape(3, 3) + np.asarray(cov_b, dtype=float).reshape(3, 3)
         + np.eye(3) * (min_sigma ** 2))
    s = 0.5 * (s + s.T)
    d = np.asarray(delta, dtype=float).reshape(3)
    try:
        return float(d @ np.linalg.solve(s, d))
    except np.linalg.LinAlgError:
        return math.inf


def fuse(mean_a, cov_a, mean_b, cov_b, min_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Kalman fusion of two position estimates (the fact and an agreeing observation)."""
    pa = np.asarray(cov_a, dtype=float).reshape(3, 3) + np.eye(3) * min_sigma ** 2
    pb = np.asarray(cov_b, dtype=float).reshape(3, 3) + np.eye(3) * min_sigma ** 2
    k = pa @ np.linalg.inv(pa + pb)
    mean = np.asarray(mean_a, dtype=float) + k @ (np.asarray(mean_b, dtype=float) - np.asarray(mean_a, dtype=float))
    cov = (np.eye(3) - k) @ pa
    cov = 0.5 * (cov + cov.T) - np.eye(3) * min_sigma ** 2 * 0.0
    return mean, cov


def covariance_ok(cov, max_variance: float) -> bool:
    """Finite, symmetric, positive semi-definite, not absurdly large."""
    c = np.asarray(cov, dtype=float)
    if c.shape != (9,) and c.shape != (3, 3):
        return False
    c = c.reshape(3, 3)
    if not np.all(np.isfinite(c)):
        return False
    if not np.allclose(c, c.T, atol=1e-9 + 1e-6 * float(np.abs(c).max(initial=0.0))):
        return False
    w = np.linalg.eigvalsh(0.5 * (c + c.T))
    return bool(w.min() >= -1e-12 and w.max() <= max_variance)
