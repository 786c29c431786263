"""Small pure-numpy geometry shared by the sim, perception and memory: quaternions (x, y, z, w) and
rotation matrices, pinhole camera models, projection in the REP-103 optical frame (z forward,
x right, y down)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics (pixels); images are `height` x `width`."""
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    near: float = 0.05   # m, closest depth the camera reports
    far: float = 5.0     # m

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (x/z, y/z) of the optical ray, each (H, W) float32."""
        u = (np.arange(self.width, dtype=np.float32) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float32) - self.cy) / self.fy
        return np.broadcast_to(u[None, :], (self.height, self.width)), \
            np.broadcast_to(v[:, None], (self.height, self.width))

    def scaled(self, width: int, height: int) -> "CameraModel":
        sx, sy = width / self.width, height / self.height
        return CameraModel(width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                           (self.cy + 0.5) * sy - 0.5)


def model_from_fov(width: int, height: int, fov_deg: float = 60.0) -> CameraModel:
    fy = height / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return CameraModel(width, height, fy, fy, width / 2.0 - 0.5, height / 2.0 - 0.5)


def quat_to_matrix(q) -> np.ndarray:
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not n > 0:
        raise ValueError("zero quaternion")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def project(points, position, rotation: np.ndarray, model: CameraModel):
    """World points (N,3) -> pixel u, v and depth z along the optical axis."""
    pc = (np.asarray(points, dtype=float).reshape(-1, 3) - np.asarray(position, dtype=float)) @ rotation
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = model.fx * pc[:, 0] / z + model.cx
        v = model.fy * pc[:, 1] / z + model.cy
    return u, v, z


def look_at_rotation(eye, target, down_hint) -> np.ndarray | None:
    """Optical-frame rotation (columns right, down, forward) looking from eye at target with the
    image's down axis as close as possible to `down_hint`; None if degenerate."""
    f = np.asarray(target, dtype=float) - np.asarray(eye, dtype=float)
    n = np.linalg.norm(f)
    if n < 1e-9:
        return None
    f /= n
    d = np.asarray(down_hint, dtype=float)
    d = d - (d @ f) * f
    if np.linalg.norm(d) < 1e-6:
        return None
    d /= np.linalg.norm(d)
    r = np.cross(d, f)
    return np.column_stack([r, d, f])


def cube_corners(centre, yaw: float, size: float) -> np.ndarray:
    h = size / 2.0
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    corners = np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)])
    return corners @ rot.T + np.asarray(centre, dtype=float)
