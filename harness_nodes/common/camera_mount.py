"""Where the wrist camera sits on the arm: the fixed transform between the end-effector (tool)
frame the router commands and the camera's optical frame (z forward, x right, y down).

The camera is mounted on the description's `camera_link` at `WRIST_CAMERA_OFFSET` (m, in that
link's frame), looking along the link's +z with the image's down axis along the link's +x (the
simulator mounts its wrist camera the same way; a test checks they agree). Pure (Pinocchio).
"""
from __future__ import annotations

import numpy as np
import pinocchio as pin

CAMERAS = ("scene", "wrist")   # the cameras of the harness's cells (a fixed scene camera, the wrist camera)
WRIST_CAMERA_OFFSET = (0.06, 0.0, 0.02)
# optical axes in the mount link frame: columns right, down, forward
LINK_R_OPTICAL = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def camera_list(value) -> list[str]:
    """A parameter's list of cameras: empty for none, each one of CAMERAS, no duplicates."""
    if value is None or value == "" or (isinstance(value, (list, tuple)) and len(value) == 0):
        return []
    value = list(value)
    unknown = [c for c in value if c not in CAMERAS]
    if unknown:
        raise ValueError(f"unknown camera(s) {unknown}, known: {list(CAMERAS)}")
    if len(set(value)) != len(value):
        raise ValueError("duplicate cameras")
    return value


def ee_T_camera(kinematics, camera_link: str, offset=WRIST_CAMERA_OFFSET) -> pin.SE3:
    """Camera optical frame expressed in the end-effector frame (both rigid on the last link)."""
    model, data = kinematics.model, kinematics.data
    if not model.existFrame(camera_link):
        raise ValueError(f"camera link '{camera_link}' not in the robot model")
    q = kinematics.full_q(kinematics.home)
    pin.framesForwardKinematics(model, data, q)
    o_link = data.oMf[model.getFrameId(camera_link)]
    o_ee = data.oMf[kinematics.frame_id]
    link_cam = pin.SE3(LINK_R_OPTICAL, np.asarray(offset, dtype=float))
    return o_ee.inverse() * o_link * link_cam


def ee_target_for_camera(camera_position, camera_rotation, ee_cam: pin.SE3) -> tuple[np.ndarray, np.ndarray]:
    """End-effector pose (position, rotation) that puts the camera at the given world pose."""
    o_cam = pin.SE3(np.asarray(camera_rotation, dtype=float), np.asarray(camera_position, dtype=float))
    o_ee = o_cam * ee_cam.inverse()
    return o_ee.translation.copy(), o_ee.rotation.copy()


def camera_for_ee(ee_position, ee_rotation, ee_cam: pin.SE3) -> tuple[np.ndarray, np.ndarray]:
    o_cam = pin.SE3(np.asarray(ee_rotation, dtype=float), np.asarray(ee_position, dtype=float)) * ee_cam
    return o_cam.translation.copy(), o_cam.rotation.copy()
