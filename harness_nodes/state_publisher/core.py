"""The robot's transform tree, as robot_state_publisher computes it: every URDF link, the tool
frame, the camera optical frames and `world`, from the robot description and joint positions.

Pure (Pinocchio, numpy; no rclpy). `TransformTree.static_transforms()` are the edges that never
move (fixed joints, world -> robot root, tool frame, camera mounts); `moving_transforms()` are
the edges across the URDF's moving joints, by forward kinematics at the last accepted joint
positions. `accept_joint_state()` validates a joint state message's arrays at the boundary: a
malformed message changes nothing; a non-finite or absurd value is dropped, the rest are used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pinocchio as pin
from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness_nodes.common.geometry import look_at_rotation, matrix_to_quat
from harness_nodes.common.robot_description import RobotDescription
from harness_nodes.common.camera_mount import CAMERAS, LINK_R_OPTICAL, WRIST_CAMERA_OFFSET, camera_list
from harness_nodes.common.kinematics import add_tool_frame

MAX_JOINTS_PER_MESSAGE = 1024   # more names than any arm has: the message is refused, not scanned
MAX_ABS_POSITION = 1000.0       # rad or m; beyond it a joint value is garbage, not a pose


def optical_frame(camera: str) -> str:
    """The frame_id of a camera's images and camera_info (as the sim stamps them)."""
    return f"{camera}_optical_frame"


def _vec3(v):
    v = [float(x) for x in v]
    if len(v) != 3 or not all(math.isfinite(x) for x in v):
        raise ValueError(f"expected 3 finite numbers, got {v}")
    return v


class StatePublisherParameters(BaseModel):
    """Parameters of the `state_publisher` node (config/state_publisher.yaml)."""
    model_config = ConfigDict(extra="forbid")

    robot: str = Field("panda", min_length=1, description="config/robots/<robot>.yaml")
    world_frame: str = Field("world", min_length=1, max_length=256, description="fixed frame of the cell")
    base_xyz: list[float] = Field([0.0, 0.0, 0.0], min_length=3, max_length=3,
                                  description="m: robot root link in world_frame")
    base_rpy: list[float] = Field([0.0, 0.0, 0.0], min_length=3, max_length=3,
                                  description="rad: robot root link orientation in world_frame")
    cameras: list[str] = Field(list(CAMERAS), description=f"subset of {list(CAMERAS)}")
    scene_camera_eye: list[float] = Field([1.3, 0.0, 0.9], min_length=3, max_length=3,
                                          description="m: scene camera position in world_frame")
    scene_camera_target: list[float] = Field([0.5, 0.0, 0.05], min_length=3, max_length=3,
                                             description="m: point the scene camera looks at")
    wrist_camera_offset: list[float] = Field(list(WRIST_CAMERA_OFFSET), min_length=3, max_length=3,
                                             description="m: wrist camera in the description's camera_link")

    @field_validator("base_xyz", "base_rpy", "scene_camera_eye", "scene_camera_target", "wrist_camera_offset")
    @classmethod
    def _finite(cls, v):
        return _vec3(v)

    @field_validator("cameras", mode="before")
    @classmethod
    def _known_cameras(cls, v):
        return camera_list(v)


@dataclass(frozen=True)
class Transform:
    """`child` in `parent`: translation (m) and rotation quaternion (x, y, z, w)."""
    parent: str
    child: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]

    @classmethod
    def from_se3(cls, parent: str, child: str, placement: pin.SE3) -> "Transform":
        t = placement.translation
        q = matrix_to_quat(placement.rotation)
        return cls(parent, child, (float(t[0]), float(t[1]), float(t[2])),
                   (float(q[0]), float(q[1]), float(q[2]), float(q[3])))

    def se3(self) -> pin.SE3:
        x, y, z, w = self.rotation
        return pin.SE3(pin.Quaternion(w, x, y, z).normalized().toRotationMatrix(), np.array(self.translation))


@dataclass(frozen=True)
class JointStateVerdict:
    accepted: int                 # joint values taken
    ignored_unknown: int          # names of joints this robot does not have
    dropped: tuple[str, ...]      # known joints whose value was non-finite or absurd
    error: str = ""               # the whole message refused (nothing changed)


def _parent_link(model: pin.Model, frame_id: int) -> tuple[int, int]:
    """(parent link frame, connecting joint frame) of a link frame; (-1, -1) for the root link."""
    joint_frame = model.frames[frame_id].parentFrame
    if joint_frame == 0 or model.frames[joint_frame].type == pin.FrameType.BODY:
        return -1, -1
    parent = model.frames[joint_frame].parentFrame
    while parent > 0 and model.frames[parent].type != pin.FrameType.BODY:
        parent = model.frames[parent].parentFrame
    return (parent, joint_frame) if parent > 0 else (-1, -1)


class TransformTree:
    """The transform tree of one robot in its cell. Not thread-safe (one pinocchio.Data)."""

    def __init__(self, description: RobotDescription, params: StatePublisherParameters | None = None):
        self.description = description
        self.params = p = params or StatePublisherParameters(robot=description.name)
        self.model = pin.buildModelFromUrdf(str(description.urdf_path))
        if description.tool_frame is not None:
            add_tool_frame(self.model, description.tool_frame)
        self.data = self.model.createData()
        self.q = pin.neutral(self.model)
        # joint name -> (q index, nq): what /joint_states may set
        self.joints = {self.model.names[j]: (self.model.joints[j].idx_q, self.model.joints[j].nq)
                       for j in range(1, self.model.njoints)}
        self._static_edges: list[tuple[int, int]] = []   # (parent frame, child frame), rigid
        self._moving_edges: list[tuple[int, int]] = []
        roots = []
        for fid, frame in enumerate(self.model.frames):
            if frame.type == pin.FrameType.BODY:
                parent, joint_frame = _parent_link(self.model, fid)
                if parent < 0:
                    roots.append(fid)
                elif self.model.frames[joint_frame].type == pin.FrameType.FIXED_JOINT:
                    self._static_edges.append((parent, fid))
                else:
                    self._moving_edges.append((parent, fid))
            elif frame.type == pin.FrameType.OP_FRAME:     # the description's tool frame
                parent = frame.parentFrame
                while parent > 0 and self.model.frames[parent].type != pin.FrameType.BODY:
                    parent = self.model.frames[parent].parentFrame
                if self.model.frames[parent].parentJoint != frame.parentJoint:
                    raise ValueError(f"tool frame '{frame.name}' does not sit rigidly on a link")
                self._static_edges.append((parent, fid))
        if len(roots) != 1:
            raise ValueError(f"URDF {description.urdf_path} has {len(roots)} root links, expected 1")
        self.root_link = self.model.frames[roots[0]].name
        if p.world_frame in self.link_names and p.world_frame != self.root_link:
            raise ValueError(f"world_frame '{p.world_frame}' is a non-root link of the URDF")
        if "wrist" in p.cameras and not self.model.existFrame(description.camera_link):
            raise ValueError(f"camera_link '{description.camera_link}' not in URDF {description.urdf_path}")
        pin.framesForwardKinematics(self.model, self.data, self.q)

    @property
    def link_names(self) -> list[str]:
        return [f.name for f in self.model.frames if f.type == pin.FrameType.BODY]

    def frame_names(self) -> set[str]:
        """Every frame the tree connects."""
        return {t.child for t in self.static_transforms()} | {t.parent for t in self.static_transforms()} \
            | {t.child for t in self.moving_transforms()}

    def _edge(self, parent: int, child: int) -> Transform:
        placement = self.data.oMf[parent].inverse() * self.data.oMf[child]
        return Transform.from_se3(self.model.frames[parent].name, self.model.frames[child].name, placement)

    def static_transforms(self) -> list[Transform]:
        """Fixed joints, the tool frame, world -> root link and the camera mounts."""
        p, d = self.params, self.description
        pin.framesForwardKinematics(self.model, self.data, self.q)
        out = [self._edge(a, b) for a, b in self._static_edges]
        if p.world_frame != self.root_link:
            base = pin.SE3(pin.rpy.rpyToMatrix(*p.base_rpy), np.array(p.base_xyz))
            out.append(Transform.from_se3(p.world_frame, self.root_link, base))
        if "scene" in p.cameras:
            rotation = look_at_rotation(p.scene_camera_eye, p.scene_camera_target, (0.0, 0.0, -1.0))
            if rotation is None:
                raise ValueError("scene camera looks straight down or at its own position: orientation undefined")
            out.append(Transform.from_se3(p.world_frame, optical_frame("scene"),
                                          pin.SE3(rotation, np.array(p.scene_camera_eye))))
        if "wrist" in p.cameras:
            out.append(Transform.from_se3(d.camera_link, optical_frame("wrist"),
                                          pin.SE3(LINK_R_OPTICAL, np.array(p.wrist_camera_offset))))
        return out

    def moving_transforms(self) -> list[Transform]:
        """Edges across moving joints at the last accepted joint positions."""
        pin.framesForwardKinematics(self.model, self.data, self.q)
        return [self._edge(a, b) for a, b in self._moving_edges]

    def accept_joint_state(self, names: Sequence[str], positions: Sequence[float]) -> JointStateVerdict:
        """Take the positions of this robot's joints from a joint state's arrays."""
        if len(names) > MAX_JOINTS_PER_MESSAGE:
            return JointStateVerdict(0, 0, (), f"{len(names)} joint names (at most {MAX_JOINTS_PER_MESSAGE})")
        if len(positions) != len(names):
            return JointStateVerdict(0, 0, (), f"{len(names)} names but {len(positions)} positions")
        if len(set(names)) != len(names):
            return JointStateVerdict(0, 0, (), "duplicate joint names")
        accepted, unknown, dropped = 0, 0, []
        for name, value in zip(names, positions):
            slot = self.joints.get(name)
            if slot is None:
                unknown += 1
                continue
            value = float(value)
            if not math.isfinite(value) or abs(value) > MAX_ABS_POSITION:
                dropped.append(name)
                continue
            idx, nq = slot
            if nq == 1:
                self.q[idx] = value
            elif nq == 2:          # continuous joint: (cos, sin)
                self.q[idx:idx + 2] = (math.cos(value), math.sin(value))
            else:
                dropped.append(name)
                continue
            accepted += 1
        return JointStateVerdict(accepted, unknown, tuple(dropped))


def reachable(transforms: Sequence[Transform], root: str) -> set[str]:
    """Frames connected to `root` through the given transforms (either direction), as a tf2
    buffer would resolve them."""
    neighbours: dict[str, set[str]] = {}
    for t in transforms:
        neighbours.setdefault(t.parent, set()).add(t.child)
        neighbours.setdefault(t.child, set()).add(t.parent)
    seen, todo = {root}, [root]
    while todo:
        for n in neighbours.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen
