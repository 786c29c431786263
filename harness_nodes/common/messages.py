"""Plain values -> geometry messages shared by the nodes that publish poses (sim, perception)."""
from __future__ import annotations

from geometry_msgs.msg import Pose


def pose_msg(position, quaternion) -> Pose:
    """geometry_msgs/Pose from a position (x, y, z) and a quaternion (x, y, z, w)."""
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quaternion)
    return pose
