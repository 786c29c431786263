"""Small geometry shared by every node: quaternions (x, y, z, w) and rotation matrices (the one
home of quaternion <-> matrix, quaternion product and yaw), camera models (pinhole intrinsics plus
the lens distortion of sensor_msgs/CameraInfo), projection in the REP-103 optical frame (z forward,
x right, y down).

Pure numpy for undistorted cameras; a model with distortion coefficients uses OpenCV (imported
only then) to undistort pixels (cv2.undistortPoints, cv2.fisheye.undistortPoints) and to project
(cv2.projectPoints, cv2.fisheye.projectPoints)."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

# sensor_msgs/distortion_models -> number of coefficients in D (OpenCV's order)
DISTORTION_COEFFICIENTS = {"plumb_bob": 5,             # k1 k2 p1 p2 k3
                           "rational_polynomial": 8,   # k1 k2 p1 p2 k3 k4 k5 k6
                           "equidistant": 4}           # k1 k2 k3 k4 (OpenCV fisheye)
UNDISTORT_TOLERANCE_PX = 0.01     # a pixel whose undistorted ray re-projects further off has no ray (NaN)
_MAX_VIEW_ANGLE = math.radians(89.0)


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics (pixels) and lens distortion of a camera whose images are `height` x `width`.

    `distortion_model` and `d` are CameraInfo's: plumb_bob and rational_polynomial are OpenCV's
    model, equidistant is OpenCV's fisheye model. Empty or all-zero `d` is a pinhole camera and is
    normalised to ("", ()) so that equal cameras compare (and hash) equal; anything else that is not
    a supported model with the right number of finite coefficients raises ValueError. Only the
    monocular part of CameraInfo is modelled (K, D of the unrectified image; R and P not used)."""
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    near: float = 0.05   # m, closest depth the camera reports
    far: float = 5.0     # m
    distortion_model: str = ""
    d: tuple = ()

    def __post_init__(self):
        name = str(self.distortion_model)
        d = tuple(float(v) for v in self.d)
        if not all(math.isfinite(v) for v in d):
            raise ValueError("D not finite")
        if name and name not in DISTORTION_COEFFICIENTS:
            raise ValueError(f"distortion_model '{name}' not supported (use {', '.join(DISTORTION_COEFFICIENTS)})")
        if not name and any(d):
            raise ValueError("D has non-zero values but no distortion_model")
        if name and d and len(d) != DISTORTION_COEFFICIENTS[name]:
            raise ValueError(f"D has {len(d)} values, {name} needs {DISTORTION_COEFFICIENTS[name]}")
        if not any(d):
            name, d = "", ()
        object.__setattr__(self, "distortion_model", name)
        object.__setattr__(self, "d", d)
        if d:
            corner = max(math.hypot((u - self.cx) / self.fx, (v - self.cy) / self.fy)
                         for u in (0.0, self.width - 1.0) for v in (0.0, self.height - 1.0))
            if _radial_extent(name, d)[1] <= corner:
                raise ValueError("D folds the image: the distortion is not monotonic out to the image corners")

    @property
    def distorted(self) -> bool:
        return bool(self.d)

    @property
    def matrix(self) -> np.ndarray:
        """K (3x3)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def max_radius(self) -> float:
        """Largest undistorted normalised radius (tan of the angle off the optical axis) up to which
        the distortion is monotonic; beyond it a projection would fold back into the image, so
        such points are outside the view. inf for a pinhole camera."""
        return _radial_extent(self.distortion_model, self.d)[0] if self.d else math.inf

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (x/z, y/z) of the optical ray, each (H, W) float32 (NaN: no ray)."""
        if not self.d:
            u = (np.arange(self.width, dtype=np.float32) - self.cx) / self.fx
            v = (np.arange(self.height, dtype=np.float32) - self.cy) / self.fy
            return np.broadcast_to(u[None, :], (self.height, self.width)), \
                np.broadcast_to(v[:, None], (self.height, self.width))
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        x, y = self.undistort_pixels(u, v)
        return x.astype(np.float32), y.astype(np.float32)

    def undistort_pixels(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (any shape) -> normalised undistorted (x/z, y/z). Where OpenCV's
        iterative inversion does not re-project onto the pixel (UNDISTORT_TOLERANCE_PX), NaN."""
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        if not self.d:
            return (u - self.cx) / self.fx, (v - self.cy) / self.fy
        import cv2
        pts = np.stack([u.ravel(), v.ravel()], axis=-1).reshape(-1, 1, 2)
        eye = np.eye(3)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, UNDISTORT_TOLERANCE_PX * 0.01)
        undistort = cv2.fisheye.undistortPoints if self.distortion_model == "equidistant" else cv2.undistortPoints
        xy = undistort(pts, self.matrix, np.array(self.d), None, eye, eye, crit).reshape(-1, 2)
        x, y = xy[:, 0].copy(), xy[:, 1].copy()
        bu, bv = self.to_pixels(x, y)
        bad = ~(np.hypot(bu - pts[:, 0, 0], bv - pts[:, 0, 1]) <= UNDISTORT_TOLERANCE_PX)
        x[bad] = y[bad] = np.nan
        return x.reshape(u.shape), y.reshape(u.shape)

    def to_pixels(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Normalised undistorted (x/z, y/z) -> pixel u, v through the lens distortion. Points beyond
        `max_radius` are outside the view: NaN."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if not self.d:
            return self.fx * x + self.cx, self.fy * y + self.cy
        import cv2
        ok = np.isfinite(x) & np.isfinite(y) & (np.hypot(x, y) <= self.max_radius)
        u = np.full(x.shape, np.nan)
        v = np.full(x.shape, np.nan)
        if ok.any():
            pts = np.stack([x[ok], y[ok], np.ones(int(ok.sum()))], axis=-1).reshape(-1, 1, 3)
            zero = np.zeros(3)
            project_points = cv2.fisheye.projectPoints if self.distortion_model == "equidistant" else cv2.projectPoints
            uv = project_points(pts, zero, zero, self.matrix, np.array(self.d))[0].reshape(-1, 2)
            u[ok], v[ok] = uv[:, 0], uv[:, 1]
        return u, v

    def scaled(self, width: int, height: int) -> "CameraModel":
        sx, sy = width / self.width, height / self.height
        return CameraModel(width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                           (self.cy + 0.5) * sy - 0.5, self.near, self.far, self.distortion_model, self.d)


@functools.lru_cache(maxsize=64)
def _radial_extent(name: str, d: tuple) -> tuple[float, float]:
    """(r_max, rd_max): the undistorted normalised radius up to which the radial part of the
    distortion increases monotonically (capped at 89 deg off axis), and the distorted radius it
    reaches there (normalised: pixels = f * rd + c). Tangential terms are ignored (small)."""
    theta = np.linspace(0.0, _MAX_VIEW_ANGLE, 8001)
    r = np.tan(theta)
    r2 = r * r
    if name == "equidistant":
        k1, k2, k3, k4 = d
        t2 = theta * theta
        rd = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        ok = np.ones_like(r, dtype=bool)
    else:
        k1, k2, _, _, k3, *rest = d
        k4, k5, k6 = rest if rest else (0.0, 0.0, 0.0)
        den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
        ok = den > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rd = r * (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / den
    ok[1:] &= np.diff(rd) > 0
    ok &= np.isfinite(rd)
    if ok[1:].all():     # monotonic over the whole hemisphere a fisheye can see; 89 deg for the others
        return (math.inf if name == "equidistant" else float(r[-1])), float(rd[-1])
    i = int(np.argmin(ok[1:]))       # last index of the increasing prefix
    return float(r[i]), float(rd[i])


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


def quat_multiply(a, b) -> np.ndarray:
    """Hamilton product a * b of two (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def yaw_of(quaternion) -> float:
    """Rotation about z (rad) of an (x, y, z, w) quaternion."""
    x, y, z, w = quaternion
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def project(points, position, rotation: np.ndarray, model: CameraModel):
    """World points (N,3) -> pixel u, v (through the lens distortion; NaN where a distorted camera
    cannot image the point) and depth z along the optical axis."""
    pc = (np.asarray(points, dtype=float).reshape(-1, 3) - np.asarray(position, dtype=float)) @ rotation
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = pc[:, 0] / z, pc[:, 1] / z
    if model.distorted:
        # a point behind the camera or beyond the distortion's monotonic range is not in the image
        x, y = np.where(z > 0, x, np.nan), np.where(z > 0, y, np.nan)
    u, v = model.to_pixels(x, y)
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
