"""ROS 2 node `state_publisher`: what robot_state_publisher gives other robot software.

  pub robot_description   std_msgs/String   the URDF the sim and router load; reliable, transient-local, depth 1
  pub /tf_static          tf2_msgs/TFMessage  fixed joints, world -> robot root, tool frame, camera
                          optical frames; reliable, transient-local, depth 1 (all in one message)
  pub /tf                 tf2_msgs/TFMessage  moving joints by forward kinematics (Pinocchio), one
                          message per accepted joint state, stamped with it; reliable, volatile, depth 100
  pub /diagnostics        diagnostic_msgs/DiagnosticArray  1 Hz: joint states taken / refused
  sub <controllers.joint_states_topic>  sensor_msgs/JointState  best effort (matches any publisher)

A malformed joint state (more than 1024 names, names and positions of different lengths,
duplicates) changes nothing; non-finite or absurd values of a joint are dropped and the other
joints are used; joints the robot does not have are ignored, as robot_state_publisher does.
/tf and /tf_static keep their absolute names under a namespace (tf2 listens there).
"""
from __future__ import annotations

import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from harness_nodes.common.callbacks import guarded
from harness_nodes.common.diagnostics import diagnostic_status, publish_diagnostics
from harness_nodes.common.node_main import run_node
from harness_nodes.common.params import declare_and_load
from harness_nodes.common.qos import DIAGNOSTICS_QOS, JOINT_STATE_QOS, LATCHED
from harness_nodes.common.robot_description import load_robot_description
from harness_nodes.state_publisher.core import StatePublisherParameters, Transform, TransformTree

NODE_NAME = "state_publisher"
ROBOT_DESCRIPTION_TOPIC = "robot_description"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
DIAGNOSTICS_TOPIC = "/diagnostics"
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = LATCHED
DIAGNOSTICS_PERIOD = 1.0   # s


def to_msg(t: Transform, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = t.parent
    msg.child_frame_id = t.child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t.translation
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = t.rotation
    return msg


class StatePublisher(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.params = p = declare_and_load(self, StatePublisherParameters)
        self.description = load_robot_description(p.robot)
        self.tree = TransformTree(self.description, p)
        self.accepted = 0
        self.refused = 0
        self.last_problem = ""

        self.description_pub = self.create_publisher(String, ROBOT_DESCRIPTION_TOPIC, LATCHED)
        self.static_pub = self.create_publisher(TFMessage, TF_STATIC_TOPIC, TF_STATIC_QOS)
        self.tf_pub = self.create_publisher(TFMessage, TF_TOPIC, TF_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self.create_subscription(JointState, self.description.controllers.joint_states_topic,
                                 guarded(self, self._on_joint_state), JOINT_STATE_QOS)
        self.create_timer(DIAGNOSTICS_PERIOD, guarded(self, self._on_diagnostics))

        self.description_pub.publish(String(data=self.description.urdf_path.read_text()))
        stamp = self.get_clock().now().to_msg()
        self.static_pub.publish(TFMessage(transforms=[to_msg(t, stamp) for t in self.tree.static_transforms()]))
        self.get_logger().info(
            f"{p.robot}: robot_description from {self.description.urdf_path}, "
            f"{len(self.tree.static_transforms())} static and {len(self.tree.moving_transforms())} moving transforms")

    def _on_joint_state(self, msg: JointState) -> None:
        verdict = self.tree.accept_joint_state(msg.name, msg.position)
        if verdict.error or verdict.dropped:
            self.refused += 1
            self.last_problem = verdict.error or f"non-finite or absurd values dropped for {list(verdict.dropped)[:8]}"
            self.get_logger().warn(f"joint state: {self.last_problem}", throttle_duration_sec=2.0)
        if verdict.error or verdict.accepted == 0:
            return
        self.accepted += 1
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            stamp = self.get_clock().now().to_msg()
        self.tf_pub.publish(TFMessage(transforms=[to_msg(t, stamp) for t in self.tree.moving_transforms()]))

    def _on_diagnostics(self) -> None:
        errors = sum(getattr(self, "callback_errors", {}).values())
        if self.accepted == 0:
            level, message = DiagnosticStatus.WARN, "no joint state of this robot yet: /tf has no moving links"
        elif self.last_problem or errors:
            level, message = DiagnosticStatus.WARN, self.last_problem or f"{errors} callback errors"
        else:
            level, message = DiagnosticStatus.OK, "publishing /tf"
        status = diagnostic_status(level, f"{self.get_name()}: transforms", self.params.robot, message[:256],
                                   {"joint_states_used": self.accepted, "joint_states_with_problems": self.refused,
                                    "callback_errors": errors})
        publish_diagnostics(self.diagnostics_pub, self.get_clock().now().to_msg(), [status])


def main(args=None) -> int:
    return run_node(NODE_NAME, StatePublisher, args)


if __name__ == "__main__":
    sys.exit(main())
