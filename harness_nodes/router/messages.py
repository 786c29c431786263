"""ActionChunk message -> the router's plain chunk data (ChunkInput), for every node that checks or
plans chunks (the router, the world model). No checks here: validation.py does them all."""
from __future__ import annotations

from harness_nodes.common.stamps import to_seconds
from harness_nodes.router.validation import ChunkInput


def chunk_from_msg(msg) -> ChunkInput:
    """robot_harness/ActionChunk -> ChunkInput, field for field."""
    return ChunkInput(
        chunk_id=msg.chunk_id, space=msg.space, source=msg.source, attempt=msg.attempt,
        frame_id=msg.header.frame_id,
        ee_positions=[(p.position.x, p.position.y, p.position.z) for p in msg.ee_poses],
        ee_orientations=[(p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) for p in msg.ee_poses],
        ee_times=[to_seconds(d) for d in msg.ee_times],
        joint_names=list(msg.joint_names),
        joint_positions=[list(p.positions) for p in msg.joint_points],
        joint_velocities=[list(p.velocities) for p in msg.joint_points],
        joint_accelerations=[list(p.accelerations) for p in msg.joint_points],
        joint_times=[to_seconds(p.time_from_start) for p in msg.joint_points],
        gripper_command=msg.gripper_command, gripper_width=msg.gripper_width)
