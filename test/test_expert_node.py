"""The scripted expert against a real router process that is not ready yet (no joint state): the
router's NO_STATE rejections are waited out, not counted as failed attempts, and the first phase
runs as soon as the arm's state arrives."""
from __future__ import annotations

import pytest
from geometry_msgs.msg import Pose
from rclpy.qos import QoSProfile, ReliabilityPolicy

from conftest import spin_until
from robot_harness.msg import ExecutionFeedback, SimGroundTruth
from test_router_node import FakeArm

pytestmark = pytest.mark.integration


def pose(x, y, z) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = x, y, z
    p.orientation.w = 1.0
    return p


@pytest.mark.timeout(90)
def test_expert_waits_out_a_router_without_joint_state(start_node, ros_node):
    arm = FakeArm(ros_node, publish_state=False)
    truth_pub = ros_node.create_publisher(SimGroundTruth, "/sim/ground_truth",
                                          QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def publish_truth():
        gt = SimGroundTruth(object_ids=["red_cube", "tray"], poses=[pose(0.5, 0.0, 0.025), pose(0.4, 0.3, 0.01)])
        gt.header.stamp = ros_node.get_clock().now().to_msg()
        truth_pub.publish(gt)

    ros_node.create_timer(0.1, publish_truth)
    start_node("harness_nodes.router.node", "router.yaml")
    expert = start_node("harness_nodes.expert.node", None, max_attempts=1, task_timeout=60.0)

    def first_phase(status):
        return [f for f in arm.feedback if f.chunk_id.startswith("expert-pre_grasp-1-") and f.status == status]

    assert spin_until(ros_node, lambda: len(first_phase(ExecutionFeedback.STATUS_REJECTED)) >= 2, 30), \
        expert.log()[-2000:]
    assert all(f.failure == ExecutionFeedback.FAILURE_NO_STATE for f in first_phase(ExecutionFeedback.STATUS_REJECTED))
    assert expert.alive(), expert.log()[-2000:]
    arm.publish_state = True          # the arm comes up: the same phase (still attempt 1) now runs
    assert spin_until(ros_node, lambda: first_phase(ExecutionFeedback.STATUS_SUCCEEDED), 30), expert.log()[-3000:]
    assert "router not ready" in expert.log()
