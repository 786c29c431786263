"""The operator command's ROS side: listen for help requests and status, publish an answer."""
from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from harness_nodes.common.callbacks import guarded
from harness_nodes.supervisor.operator import KINDS, kind_for
from robot_harness.msg import HarnessStatus, HelpRequest, HumanFeedback

HELP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
STATUS_GRACE = 10.0      # s `list` listens beyond --wait until the supervisor's status arrives


def _spin(node, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return bool(predicate())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness_nodes.supervisor.operator",
                                     description="list and answer the supervisor's help requests")
    parser.add_argument("--help-topic", default="harness/help_request")
    parser.add_argument("--feedback-topic", default="harness/human_feedback")
    parser.add_argument("--status-topic", default="harness/status")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print help requests, the open one marked")
    ls.add_argument("--wait", type=float, default=3.0, help="s to listen")
    ans = sub.add_parser("answer", help="answer a help request")
    ans.add_argument("request_id")
    ans.add_argument("response", nargs="+", help="retry | skip | abort | object_is_at <x> <y> <z> | free text")
    ans.add_argument("--kind", choices=sorted(KINDS))
    ans.add_argument("--note", default="", help="kept in memory as a text fact")
    ans.add_argument("--wait", type=float, default=10.0, help="s to wait for the supervisor to act")
    args = parser.parse_args(argv)

    rclpy.init()
    node = rclpy.create_node("supervisor_operator")
    requests: dict[str, HelpRequest] = {}
    status: list[HarnessStatus] = []
    node.create_subscription(HelpRequest, args.help_topic,
                             guarded(node, lambda m: requests.__setitem__(m.request_id[:128], m), "help_request"),
                             HELP_QOS)
    node.create_subscription(HarnessStatus, args.status_topic, guarded(node, status.append, "status"), RELIABLE)
    try:
        if args.command == "list":
            _spin(node, lambda: False, args.wait)
            # which request is open needs the supervisor's status: on a slow discovery keep listening
            # (bounded) until one arrives
            _spin(node, lambda: bool(status), STATUS_GRACE)
            latest = status[-1] if status else None
            for rid, req in requests.items():
                is_open = bool(latest and latest.waiting_for_human and latest.task_id == req.task_id
                               and rid == list(requests)[-1])
                print(json.dumps({"request_id": rid, "task_id": req.task_id, "open": is_open,
                                  "question": req.question, "options": list(req.options),
                                  "context": req.context}))
            if not requests:
                print("no help requests heard", file=sys.stderr)
            return 0
        response = " ".join(args.response)
        pub = node.create_publisher(HumanFeedback, args.feedback_topic, RELIABLE)
        if not _spin(node, lambda: pub.get_subscription_count() > 0, 10.0):
            print("no supervisor listens on " + args.feedback_topic, file=sys.stderr)
            return 1
        msg = HumanFeedback(request_id=args.request_id, kind=kind_for(response, args.kind), response=response,
                            note=args.note)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        n = len(status)
        acted = _spin(node, lambda: len(status) > n and not status[-1].waiting_for_human, args.wait)
        print(json.dumps({"request_id": args.request_id, "sent": response, "kind": msg.kind,
                          "supervisor_resumed": acted}))
        return 0 if acted else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
