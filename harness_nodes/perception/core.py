"""Perception core (pure: numpy + OpenCV, no ROS): one RGB-D frame from one camera -> objects in 3-D
with uncertainty, plus negative evidence for facts that should have been seen.

Pipeline per frame:
1. decode and validate (encoding, sizes, intrinsics and lens distortion, finite pose, share of
   invalid depth);
2. back-project every valid depth pixel along its ray (undistorted: CameraInfo's plumb_bob,
   rational_polynomial or equidistant D, see `PerceptionCore.rays`) with the camera pose to world
   points, keep those inside the workspace box (above the table, so floor and table are background);
3. colour segmentation in HSV: saturated pixels whose hue is within `hue_gate` of an object's
   reference hue, split into connected components per reference; depth jumps inside a colour mask
   split look-alikes that touch in the image;
4. per segment: 3-D centre (top face of a known-size cube when it is visible, else the visible
   surface centroid pushed half a size along the view ray), yaw from the top face, covariance from
   a depth-noise model (grows with range) over the pixel support (shrinks with it) plus
   calibration, model and occlusion floors; visible fraction = observed pixels / pixels the object
   would cover unoccluded at that pose; identity confidence = the segment's hue likelihood
   normalised over every segment claiming the same identity, the other identities and clutter
   (a look-alike next to the target lowers both);
5. negative evidence: a remembered object whose centre projects into this image (through the lens
   distortion, so "in view" is what the camera really sees; with a border),
   in range, large enough to be detected and not behind something nearer in the depth image, with
   no detection near it -> EXPECTED_NOT_SEEN.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from harness_nodes.perception.config import PerceptionParameters
from harness_nodes.common.geometry import CameraModel, cube_corners, project, quat_to_matrix, yaw_quat

STATUS_SEEN = 0
STATUS_EXPECTED_NOT_SEEN = 1
RGB_ENCODINGS = ("rgb8", "bgr8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")   # metres, millimetres
MAX_PIXELS = 4096 * 4096
RAY_TABLES = 8             # camera models whose per-pixel ray tables are kept
TABLE_TOLERANCE = 0.02     # m below the table top a depth point still counts as the table (noise)


class FrameError(ValueError):
    """A frame (or one of its parts) that must be rejected; the message says why."""


@dataclass
class Frame:
    camera: str
    stamp: float
    rgb: np.ndarray            # (H, W, 3) uint8, RGB order
    depth: np.ndarray          # (H, W) float32 m; NaN / 0 = invalid
    model: CameraModel
    position: np.ndarray       # optical frame origin in world, m
    rotation: np.ndarray       # optical frame orientation in world (3x3)


@dataclass
class Detection:
    object_id: str
    label: str
    status: int
    position: np.ndarray
    quaternion: np.ndarray
    covariance: np.ndarray     # 3x3 m^2
    identity_confidence: float
    visible_fraction: float
    pixel_support: int
    hue: float = math.nan
    distance: float = math.nan


@dataclass
class ExpectedFact:
    """What memory believes about an object (from its snapshot)."""
    subject: str
    position: np.ndarray
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    confidence: float = 1.0
    size: float = 0.05


@dataclass
class FrameResult:
    camera: str
    stamp: float
    objects: list[Detection]
    process_time: float        # s of wall time in the core
    segments: int = 0
    invalid_depth_fraction: float = 0.0


# ---------------------------------------------------------------------- decoding and validation
def decode_rgb(encoding: str, width: int, height: int, step: int, data: bytes) -> np.ndarray:
    if encoding not in RGB_ENCODINGS:
        raise FrameError(f"colour image encoding '{encoding}' not supported (use {list(RGB_ENCODINGS)})")
    _check_size(width, height, step, 3 * width, len(data), "colour image")
    arr = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :3 * width].reshape(height, width, 3)
    return arr[:, :, ::-1].copy() if encoding == "bgr8" else arr


def decode_depth(encoding: str, width: int, height: int, step: int, data: bytes, bigendian: bool) -> np.ndarray:
    if encoding not in DEPTH_ENCODINGS:
        raise FrameError(f"depth encoding '{encoding}' not supported (use {list(DEPTH_ENCODINGS)})")
    size = 4 if encoding == "32FC1" else 2
    _check_size(width, height, step, size * width, len(data), "depth image")
    if step % size:
        raise FrameError(f"depth step {step} not a multiple of {size}")
    dtype = np.dtype(np.float32 if size == 4 else np.uint16).newbyteorder(">" if bigendian else "<")
    arr = np.frombuffer(data, dtype=dtype).reshape(height, step // size)[:, :width]
    return arr.astype(np.float32) if size == 4 else arr.astype(np.float32) * 0.001


def _check_size(width, height, step, min_step, n, what) -> None:
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise FrameError(f"{what} size {width}x{height} invalid")
    if step < min_step:
        raise FrameError(f"{what} step {step} < {min_step}")
    if n != step * height:
        raise FrameError(f"{what} has {n} bytes, expected step*height = {step * height}")


def camera_model_from_info(width: int, height: int, k, distortion_model: str = "", d=()) -> CameraModel:
    """CameraInfo (size, K, distortion_model, D of the unrectified image) -> CameraModel, or
    FrameError naming what is wrong. Empty or all-zero D is a pinhole camera (as the simulator and
    rectified images publish); see CameraModel for the supported distortion models."""
    k = [float(v) for v in k]
    if len(k) != 9 or not all(math.isfinite(v) for v in k):
        raise FrameError("camera_info K not 9 finite values")
    if width <= 0 or height <= 0:
        raise FrameError(f"camera_info size {width}x{height} invalid")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if fx <= 0 or fy <= 0 or not (-width <= cx <= 2 * width) or not (-height <= cy <= 2 * height):
        raise FrameError(f"camera_info intrinsics implausible (fx {fx}, fy {fy}, cx {cx}, cy {cy})")
    try:
        d = [float(v) for v in d]
    except (TypeError, ValueError):
        raise FrameError("camera_info D not numbers") from None
    try:
        return CameraModel(int(width), int(height), fx, fy, cx, cy, distortion_model=str(distortion_model),
                           d=tuple(d))
    except ValueError as exc:
        raise FrameError(f"camera_info {exc}") from None


def pose_from(position, quaternion) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(position, dtype=float).reshape(3)
    q = np.asarray(quaternion, dtype=float).reshape(4)
    if not np.all(np.isfinite(pos)) or not np.all(np.isfinite(q)) or abs(np.linalg.norm(q) - 1.0) > 1e-3:
        raise FrameError("camera pose not finite or quaternion not unit")
    return pos, quat_to_matrix(q)


def circular_distance(a, b) -> np.ndarray:
    d = np.abs(np.asarray(a, dtype=float) - b) % 360.0
    return np.minimum(d, 360.0 - d)


# ---------------------------------------------------------------------- the core
class PerceptionCore:
    def __init__(self, params: PerceptionParameters | None = None):
        self.p = params or PerceptionParameters()
        self.ids = list(self.p.object_ids)
        self.hues = np.array(self.p.object_hues, dtype=float)
        self.sizes = dict(zip(self.p.object_ids, self.p.object_sizes))
        self._rays: dict[CameraModel, tuple] = {}
        self.last_stamp: dict[str, float] = {}

    # -- checks ---------------------------------------------------------
    def check_frame(self, f: Frame) -> float:
        """Raise FrameError if `f` must be rejected; returns the invalid-depth fraction."""
        m = f.model
        if f.rgb.shape != (m.height, m.width, 3) or f.rgb.dtype != np.uint8:
            raise FrameError(f"colour image {f.rgb.shape[1::-1]} does not match camera_info {m.width}x{m.height}")
        if f.depth.shape != (m.height, m.width):
            raise FrameError(f"depth image {f.depth.shape[::-1]} does not match camera_info {m.width}x{m.height}")
        if not math.isfinite(f.stamp) or f.stamp < 0:
            raise FrameError("stamp not finite")
        last = self.last_stamp.get(f.camera)
        if last is not None and f.stamp <= last:
            raise FrameError(f"stamp {f.stamp:.6f} not after the last processed frame {last:.6f} (out of order)")
        pose_from(f.position, [0, 0, 0, 1])
        if not np.all(np.isfinite(f.rotation)) or abs(np.linalg.det(f.rotation) - 1.0) > 1e-3:
            raise FrameError("camera rotation not a rotation matrix")
        valid = np.isfinite(f.depth) & (f.depth > 0)
        invalid = 1.0 - float(np.count_nonzero(valid)) / valid.size
        if invalid > self.p.max_invalid_depth_fraction:
            raise FrameError(f"{invalid:.0%} of the depth image is NaN/zero (max "
                             f"{self.p.max_invalid_depth_fraction:.0%})")
        return invalid

    # -- processing -----------------------------------------------------
    def rays(self, model: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel undistorted ray (x/z, y/z), computed once per camera model and kept.

        Why a table of every pixel (and not the undistorted centroid of a segment): the centre, the
        top face, the yaw and the visible surface are all computed from the 3-D points of every
        pixel of a segment (a height percentile, the top-face mean, minAreaRect), and the mean of
        distorted pixels is not the image of the mean point, so each pixel needs its own ray.
        Undistorting every segment pixel each frame would be the same maths done again per frame
        (an iterative OpenCV solve per pixel); the table costs one solve per pixel per camera
        model (~0.15 s at 640x480, when CameraInfo first arrives or changes), then a gather per frame,
        the same as the pinhole arithmetic. Pixels OpenCV cannot invert have NaN rays (ignored)."""
        rays = self._rays.get(model)
        if rays is None:
            while len(self._rays) >= RAY_TABLES:
                del self._rays[next(iter(self._rays))]
            rays = self._rays[model] = model.rays()
        return rays

    def world_points(self, f: Frame) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates (H, W, 3) of every pixel and the mask of valid, in-workspace ones."""
        p = self.p
        rays = self.rays(f.model)
        d = np.nan_to_num(f.depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        valid = (d > p.depth_min) & (d < p.depth_max)
        pc = np.stack([rays[0] * d, rays[1] * d, d], axis=-1)
        w = pc @ f.rotation.T.astype(np.float32) + f.position.astype(np.float32)
        lo, hi = np.asarray(p.workspace_min, np.float32), np.asarray(p.workspace_max, np.float32)
        inside = valid & np.all((w >= lo) & (w <= hi), axis=-1)
        return w, inside

    def surface_mask(self, f: Frame, world: np.ndarray) -> np.ndarray:
        """Pixels with a valid depth whose world point lies over the workspace at or above the table
        top (the table itself included): what this image has seen of the workspace."""
        p = self.p
        d = np.nan_to_num(f.depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = np.asarray(p.workspace_min, np.float32), np.asarray(p.workspace_max, np.float32)
        over = np.all((world[..., :2] >= lo[:2]) & (world[..., :2] <= hi[:2]), axis=-1)
        return (d > p.depth_min) & (d < p.depth_max) & over & (world[..., 2] >= -TABLE_TOLERANCE) \
            & (world[..., 2] <= hi[2])

    def process(self, f: Frame, expected: list[ExpectedFact] | None = None) -> FrameResult:
        """Detections (SEEN) and negative evidence (EXPECTED_NOT_SEEN) of one frame.
        Raises FrameError (nothing produced) for a frame that must be rejected."""
        t0 = time.perf_counter()
        invalid = self.check_frame(f)
        p = self.p
        hsv = cv2.cvtColor(f.rgb, cv2.COLOR_RGB2HSV_FULL)   # H 0..255 over 360 deg
        depth = np.nan_to_num(f.depth, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        coloured = (hsv[:, :, 1] >= p.min_saturation) & (hsv[:, :, 2] >= p.min_value) \
            & (depth > p.depth_min) & (depth < p.depth_max)
        vi, ui = np.nonzero(coloured)
        hue = np.zeros(depth.shape, np.float32)
        world = np.zeros(depth.shape + (3,), np.float32)
        segments = []
        if len(vi):
            h = hsv[vi, ui, 0].astype(np.float32) * (360.0 / 256.0)
            hue[vi, ui] = h
            dist = circular_distance(h[:, None], self.hues[None, :])
            nearest = np.argmin(dist, axis=1)
            ok = dist[np.arange(len(h)), nearest] <= p.hue_gate
            d = depth[vi, ui]
            m = f.model
            if m.distorted:
                rx, ry = self.rays(m)
                pc = np.stack([rx[vi, ui] * d, ry[vi, ui] * d, d], axis=1).astype(float)
            else:      # pinhole (D empty or zero): no table needed
                pc = np.stack([(ui - m.cx) / m.fx * d, (vi - m.cy) / m.fy * d, d], axis=1)
            w = pc @ f.rotation.T + f.position
            lo, hi = np.asarray(p.workspace_min), np.asarray(p.workspace_max)
            ok &= np.all((w >= lo) & (w <= hi), axis=1)
            world[vi, ui] = w
            for k, oid in enumerate(self.ids):
                sel = ok & (nearest == k)
                if np.count_nonzero(sel) < p.min_pixels:
                    continue
                mask = np.zeros(depth.shape, bool)
                mask[vi[sel], ui[sel]] = True
                mask = self._split_depth_edges(mask, depth)
                n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
                for c in range(1, n):
                    if stats[c, cv2.CC_STAT_AREA] < p.min_pixels:
                        continue
                    x0, y0 = stats[c, cv2.CC_STAT_LEFT], stats[c, cv2.CC_STAT_TOP]
                    x1, y1 = x0 + stats[c, cv2.CC_STAT_WIDTH], y0 + stats[c, cv2.CC_STAT_HEIGHT]
                    seg = np.zeros(depth.shape, bool)
                    seg[y0:y1, x0:x1] = labels[y0:y1, x0:x1] == c
                    segments.append(self._measure(k, seg, world, hue, depth, f, ((x0 + x1) // 2, (y0 + y1) // 2)))
        detections = self._identities([s for s in segments if s is not None])
        if expected and p.negative_evidence:
            detections += self.negative_evidence(f, expected, detections, depth)
        self.last_stamp[f.camera] = f.stamp
        return FrameResult(f.camera, f.stamp, detections, time.perf_counter() - t0, len(segments), invalid)

    def _split_depth_edges(self, mask: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Remove mask pixels on a depth jump to another mask pixel (two same-colour objects at
        different depths touching in the image); silhouette pixels against background stay."""
        thr = self.p.depth_edge
        out = mask.copy()
        dx = np.abs(np.diff(depth, axis=1)) > thr
        both = mask[:, 1:] & mask[:, :-1] & dx
        dy = np.abs(np.diff(depth, axis=0)) > thr
        both_y = mask[1:, :] & mask[:-1, :] & dy
        # drop the farther pixel of each jump
        far_right = both & (depth[:, 1:] > depth[:, :-1])
        out[:, 1:][far_right] = False
        out[:, :-1][both & ~far_right] = False
        far_down = both_y & (depth[1:, :] > depth[:-1, :])
        out[1:, :][far_down] = False
        out[:-1, :][both_y & ~far_down] = False
        return out

    def _measure(self, k: int, seg: np.ndarray, world: np.ndarray, hue: np.ndarray, depth: np.ndarray,
                 f: Frame, pixel=None):
        p = self.p
        oid = self.ids[k]
        size = self.sizes[oid]
        pts = world[seg].astype(float)
        n = len(pts)
        if n < p.min_pixels:
            return None
        z_top = float(np.percentile(pts[:, 2], 95))
        top = pts[pts[:, 2] >= z_top - 0.004]
        yaw = 0.0
        if len(top) >= max(8, 0.15 * n):
            centre = np.array([top[:, 0].mean(), top[:, 1].mean(), float(np.median(top[:, 2])) - size / 2])
            if len(top) >= 12:
                (_, _), (_, _), angle = cv2.minAreaRect(top[:, :2].astype(np.float32))
                yaw = math.radians(angle) % (math.pi / 2)
                if yaw > math.pi / 4:
                    yaw -= math.pi / 2
        else:
            mean = pts.mean(axis=0)
            ray = mean - f.position
            centre = mean + size / 2 * ray / max(np.linalg.norm(ray), 1e-9)
        rad = np.radians(hue[seg])
        h = math.degrees(math.atan2(float(np.sin(rad).mean()), float(np.cos(rad).mean()))) % 360.0
        z_cam = float(np.median(depth[seg]))
        expected = self.expected_pixels(centre, yaw, size, f)
        vf = float(min(1.0, n / expected)) if expected > 0 else 0.0
        scale = self.pixel_scale(f.model, *pixel) if pixel is not None else None
        cov = self.covariance(z_cam, n, vf, size, f.model, f.rotation, scale)
        return Detection(oid, oid, STATUS_SEEN, centre, yaw_quat(yaw), cov, 0.0, vf, n, h,
                         float(np.linalg.norm(centre - f.position)))

    def pixel_scale(self, model: CameraModel, u: int, v: int) -> float:
        """Ray units (x/z) per pixel around pixel (u, v): 1/fx for a pinhole camera; through a lens
        with distortion a pixel spans more of the scene where the image is compressed (barrel, at
        the edges) and less where it is stretched."""
        if not model.distorted:
            return 1.0 / model.fx
        rx, ry = self.rays(model)
        u = int(np.clip(u, 0, model.width - 2))
        v = int(np.clip(v, 0, model.height - 2))
        s = max(math.hypot(rx[v, u + 1] - rx[v, u], ry[v, u + 1] - ry[v, u]),
                math.hypot(rx[v + 1, u] - rx[v, u], ry[v + 1, u] - ry[v, u]))
        return float(s) if math.isfinite(s) and s > 0 else 1.0 / model.fx

    def expected_pixels(self, centre, yaw: float, size: float, f: Frame) -> float:
        """Pixels a cube at `centre` would cover in this image if nothing hid it (clipped to the
        image; corners projected through the lens distortion, the hull between them straight)."""
        m = f.model
        pc = (cube_corners(centre, yaw, size) - f.position) @ f.rotation
        z = pc[:, 2]
        if np.any(z <= 1e-3):
            return 0.0
        x, y = pc[:, 0] / z, pc[:, 1] / z
        if m.distorted:
            # corners beyond the radius where the distortion stops being monotonic are outside the
            # image (CameraModel checks it reaches past the corners); pulled in to that radius along
            # their direction they still are, and have a finite projection for the clipping below
            r = np.hypot(x, y)
            s = np.minimum(1.0, 0.999 * m.max_radius / np.maximum(r, 1e-12))
            x, y = x * s, y * s
        u, v = m.to_pixels(x, y)
        hull = cv2.convexHull(np.stack([u, v], axis=1).astype(np.float32))
        clip = np.array([[-0.5, -0.5], [m.width - 0.5, -0.5], [m.width - 0.5, m.height - 0.5],
                         [-0.5, m.height - 0.5]], np.float32)
        area, _ = cv2.intersectConvexConvex(hull.reshape(-1, 2), clip)
        return float(area)

    def covariance(self, z: float, n: int, visible_fraction: float, size: float, model: CameraModel,
                   rotation: np.ndarray, pixel_scale: float | None = None) -> np.ndarray:
        """Position covariance (world, m^2): depth noise a + b z^2 along the ray and pixel noise
        across it (`pixel_scale` ray units per pixel, default 1/fx), both averaged over
        min(n, max_support) pixels; calibration (per m of range), shape-model and occlusion floors
        do not average out."""
        p = self.p
        n_eff = max(1, min(int(n), p.max_support))
        s_ax = (p.depth_noise_a + p.depth_noise_b * z * z) ** 2 / n_eff
        scale = 1.0 / model.fx if pixel_scale is None else pixel_scale
        s_lat = (z * p.pixel_noise * scale) ** 2 / n_eff
        floor = p.model_sigma ** 2 + (p.calibration_sigma * z) ** 2 + ((1.0 - visible_fraction) * size / 2) ** 2
        c = np.diag([s_lat + floor, s_lat + floor, s_ax + floor])
        return rotation @ c @ rotation.T

    def _identities(self, segs: list[Detection]) -> list[Detection]:
        """Identity confidence: likelihood of the segment's hue under its identity, normalised over
        all segments claiming that identity, the other identities, and clutter. The best segment
        of an identity keeps its id; the others are `<id>_alt<k>`."""
        p = self.p
        if not segs:
            return []
        hues = np.array([s.hue for s in segs])
        lik = np.exp(-0.5 * (circular_distance(hues[:, None], self.hues[None, :]) / p.hue_sigma) ** 2)   # (S, K)
        out = []
        for k, oid in enumerate(self.ids):
            members = [i for i, s in enumerate(segs) if s.object_id == oid]
            members.sort(key=lambda i: (-lik[i, k], -segs[i].pixel_support))
            for rank, i in enumerate(members):
                s = segs[i]
                denom = lik[members, k].sum() + lik[i].sum() - lik[i, k] + p.clutter_likelihood
                s.identity_confidence = float(np.clip(lik[i, k] / denom, 0.0, 1.0))
                if rank:
                    s.object_id = f"{oid}_alt{rank}"
                out.append(s)
        return out

    # -- negative evidence ---------------------------------------------
    def negative_evidence(self, f: Frame, expected: list[ExpectedFact], detections: list[Detection],
                          depth: np.ndarray) -> list[Detection]:
        p = self.p
        seen_ids = {d.object_id for d in detections}
        seen_pos = np.array([d.position for d in detections]) if detections else np.zeros((0, 3))
        out = []
        m = f.model
        for e in expected:
            pos = np.asarray(e.position, dtype=float)
            if e.subject in seen_ids or not np.all(np.isfinite(pos)):
                continue
            if len(seen_pos) and np.min(np.linalg.norm(seen_pos - pos, axis=1)) <= p.detection_gate:
                continue
            u, v, z = project(pos[None], f.position, f.rotation, m)    # through the distortion: NaN = not imaged
            u, v, z = float(u[0]), float(v[0]), float(z[0])
            if not (z > p.min_negative_range and p.border_px <= u <= m.width - 1 - p.border_px
                    and p.border_px <= v <= m.height - 1 - p.border_px):
                continue
            if self.expected_pixels(pos, 0.0, e.size, f) < 2 * p.min_pixels:
                continue
            ui, vi = int(round(u)), int(round(v))
            patch = depth[max(0, vi - 2):vi + 3, max(0, ui - 2):ui + 3]
            patch = patch[np.isfinite(patch) & (patch > 0)]
            if len(patch) < 5 or float(np.median(patch)) < z - e.size / 2 - p.occlusion_margin:
                continue   # no depth there, or something nearer hides it
            out.append(Detection(e.subject, e.subject, STATUS_EXPECTED_NOT_SEEN, pos, np.array([0, 0, 0, 1.0]),
                                 np.zeros((3, 3)), 0.0, 1.0, 0, math.nan, float(np.linalg.norm(pos - f.position))))
        return out
