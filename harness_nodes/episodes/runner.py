"""`run_episode(spec)`: one task through the `harness` stack on its own ROS domain, judged from the
sim's ground truth.

Brings up the stack (config/stack.yaml `harness`: sim, router, memory, perception, world model,
latent policy, supervisor) as its own process group with the scenario, seed and the ablation's
supervisor switches; waits (bounded) until the supervisor accepts the goal (it refuses goals about
objects memory has no belief about yet); drives the scenario's perturbation through /sim/control;
collects the supervisor's result (outcome, attempts and the metrics of TaskMetrics) and its step
lines as they are logged (/rosout, logger `supervisor`); judges success from /sim/ground_truth
(the object in the tray and not held); stops the stack. Every wait is bounded by the spec's
timeout; nothing here acts on the arm.

Episodes on different domain ids run concurrently in separate processes (each process calls
rclpy with its own context and domain; discovery is limited to localhost).
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from harness_nodes.episodes.spec import SCENARIOS, EpisodeResult, EpisodeSpec, moved_pose, supervisor_switches

STARTUP_TIMEOUT = 150.0      # wall s for the stack to come up (bounded by the spec's timeout)
ACCEPT_TIMEOUT = 30.0        # wall s, once it is up, for the supervisor to accept the goal (memory's first
#                              belief follows the first frames by seconds; an object no camera sees never comes)
STOP_TIMEOUT = 20.0          # wall s for the stack to exit after SIGINT before it is killed
CANCEL_TIMEOUT = 10.0        # wall s for a cancelled goal's result
JUDGE_TIMEOUT = 5.0          # wall s for ground truth after the result
EPISODE_HELP_TIMEOUT = 5.0   # nobody answers help requests in an episode: escalation ends it
SIM_REAL_TIME_FACTOR = 1.0
SUPERVISOR_LOGGER = "supervisor"
MAX_LINE = 2000              # characters of one printed step line
MAX_LINES = 5000             # step lines kept per episode


def stack_overrides(spec: EpisodeSpec) -> list[str]:
    """`-p node.param:=value` arguments of the bringup for this episode."""
    scenario = SCENARIOS[spec.scenario]
    out = [f"sim.scenario:={scenario.sim_scenario}", f"sim.seed:={int(spec.seed)}",
           f"sim.real_time_factor:={SIM_REAL_TIME_FACTOR}", f"supervisor.help_timeout:={EPISODE_HELP_TIMEOUT}",
           f"supervisor.policy_steps:={int(spec.policy_steps)}"]
    out += [f"supervisor.{k}:={'true' if v else 'false'}" for k, v in supervisor_switches(spec.ablation).items()]
    return out


def episode_env(domain_id: int | None) -> dict:
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _failed(spec: EpisodeSpec, outcome: str, error: str, started: float, log: list[str]) -> EpisodeResult:
    return EpisodeResult(spec=spec, success=False, outcome=outcome, wall_time_s=time.monotonic() - started,
                         sim_time_s=0.0, attempts=0, retries=0, escalations=0, vetoes=0, false_vetoes=0,
                         stale_fact_uses=0, re_observations=0, decision_latency_ms=[], log=log, error=error)


def run_episode(spec: EpisodeSpec, on_line: Callable[[str], None] | None = None) -> EpisodeResult:
    """Run one episode; never raises for a failing episode (outcome "error" or "timeout" instead)
    and never waits longer than about spec.timeout + STOP_TIMEOUT."""
    started = time.monotonic()
    try:
        spec.validate()
    except ValueError as exc:
        return _failed(spec, "error", f"bad episode spec: {exc}", started, [])
    log_dir = Path(spec.record_dir) if spec.record_dir else Path(tempfile.mkdtemp(prefix="harness-episode-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stack_log = open(log_dir / f"stack-{spec.scenario}-{spec.ablation}-{spec.seed}.log", "w")
    cmd = [sys.executable, "-m", "harness_nodes.bringup.cli", "harness", "--use-sim-time", "--robot", spec.robot]
    for item in stack_overrides(spec):
        cmd += ["-p", item]
    if spec.record_dir:
        cmd += ["--record", str(log_dir)]      # the harness topics, as a rosbag2 (MCAP) directory
    env = episode_env(spec.domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # this process's own participant
    stack = subprocess.Popen(cmd, env=env, stdout=stack_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return _Episode(spec, started, on_line, stack).run()
    except Exception as exc:  # noqa: BLE001 - an episode reports its error, the caller's loop goes on
        return _failed(spec, "error", f"{type(exc).__name__}: {exc}; stack log {stack_log.name}", started, [])
    finally:
        _stop(stack)
        stack_log.close()


def _stop(stack: subprocess.Popen) -> None:
    if stack.poll() is None:
        try:
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait(5)
        except ProcessLookupError:
            pass


class _Episode:
    """The episode's rclpy side: action client, ground truth, sim control, the supervisor's lines."""

    def __init__(self, spec: EpisodeSpec, started: float, on_line, stack: subprocess.Popen):
        self.spec, self.started, self.on_line, self.stack = spec, started, on_line, stack
        self.deadline = started + spec.timeout
        self.lines: list[str] = []
        self.feedback: list = []
        self.gt = None
        self.gt_count = 0
        self.perturbation: dict = {}

    def _line(self, text: str) -> None:
        self.lines.append(text)
        if self.on_line is not None:
            self.on_line(text)

    def _on_rosout(self, msg) -> None:
        if msg.name == SUPERVISOR_LOGGER and len(self.lines) < MAX_LINES:
            self._line(msg.msg[:MAX_LINE])

    def _on_gt(self, msg) -> None:
        self.gt = msg
        self.gt_count += 1

    def run(self) -> EpisodeResult:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rcl_interfaces.msg import Log

        from robot_harness.action import ExecuteTask
        from robot_harness.msg import SimGroundTruth
        from robot_harness.srv import EvaluateCandidates, ProposeActions, SimControl

        context = rclpy.Context()
        kwargs = {} if self.spec.domain_id is None else {"domain_id": int(self.spec.domain_id)}
        rclpy.init(context=context, **kwargs)
        node = rclpy.create_node(f"episode_runner_{os.getpid()}", context=context, enable_rosout=False)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        action = None
        try:
            node.create_subscription(SimGroundTruth, "/sim/ground_truth", self._on_gt, 10)
            node.create_subscription(Log, "/rosout", self._on_rosout,
                                     QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))
            self.control = node.create_client(SimControl, "/sim/control")
            action = ActionClient(node, ExecuteTask, "/harness/execute_task")
            self.SimControl, self.EvaluateCandidates, self.ProposeActions = SimControl, EvaluateCandidates, ProposeActions
            return self._episode(node, action, ExecuteTask)
        finally:
            # An action client is not destroyed with its node: left to the garbage collector, it was
            # finalised during a later episode's spin, after its context had shut down, and Fast DDS
            # waited forever for that context's timer thread (an episode runner hung for minutes).
            if action is not None:
                action.destroy()
            self.executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)

    # -- bounded waiting
    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _spin_until(self, predicate, timeout: float) -> bool:
        end = min(time.monotonic() + timeout, self.deadline)
        while time.monotonic() < end:
            if predicate():
                return True
            if self.stack.poll() is not None:
                raise RuntimeError(f"the stack exited with code {self.stack.returncode}")
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def _episode(self, node, action, ExecuteTask) -> EpisodeResult:
        spec = self.spec
        startup = min(STARTUP_TIMEOUT, self._left())
        # every node the supervisor may ask must answer before the goal goes out, whatever the ablation
        # (the same stack runs for all of them; the switches decide what is used)
        services = [node.create_client(t, n) for t, n in ((self.EvaluateCandidates, "/harness/world_model/evaluate"),
                                                          (self.ProposeActions, "/latent_policy/propose_actions"))]
        if not self._spin_until(lambda: action.server_is_ready() and self.gt is not None
                                and all(c.service_is_ready() for c in services), startup):
            missing = [c.srv_name for c in services if not c.service_is_ready()]
            return self._result("error", None, f"stack not up within {startup:.0f} s (action server, ground truth, "
                                               f"services; missing: {missing})")
        handle = None
        up = time.monotonic()
        while handle is None:                 # the supervisor refuses until memory believes in the object
            future = action.send_goal_async(ExecuteTask.Goal(task=spec.goal, task_id=f"episode-{spec.seed}"),
                                            feedback_callback=lambda f: self.feedback.append(f.feedback))
            if not self._spin_until(future.done, 10.0):
                return self._result("error", None, "goal not answered within 10 s")
            if future.result().accepted:
                handle = future.result()
            elif time.monotonic() - up > ACCEPT_TIMEOUT or time.monotonic() - self.started > startup:
                refusals = [line for line in self.lines if "goal rejected" in line]
                return self._result("error", None, f"goal '{spec.goal}' not accepted within {ACCEPT_TIMEOUT:.0f} s "
                                                   f"of the stack being up: "
                                                   f"{refusals[-1] if refusals else 'no reason logged'}")
            else:
                self._spin_until(lambda: False, 1.0)
        self.sim_start = self._sim_now()
        result_future = handle.get_result_async()
        scenario = SCENARIOS[spec.scenario]
        while not result_future.done() and self._left() > 0:
            self._spin_until(result_future.done, 0.2)
            if scenario.perturbation == "move_target_unobserved" and not self.perturbation:
                self._maybe_move_target()
        if not result_future.done():
            handle.cancel_goal_async()
            self.deadline = time.monotonic() + CANCEL_TIMEOUT
            self._spin_until(result_future.done, CANCEL_TIMEOUT)
            return self._result("timeout", None, f"no result within {spec.timeout:.0f} s (goal cancelled)")
        return self._result(None, result_future.result().result, "")

    def _maybe_move_target(self) -> None:
        """Once the arm executes the approach (the wrist camera heads for where the cube is), move it."""
        if not any(f.subtask == "approach" and f.phase == "execute" for f in self.feedback):
            return
        oid = self.spec.object_id
        if self.gt is None or oid not in self.gt.object_ids:
            self.perturbation = {"error": f"no ground truth for '{oid}'"}
            return
        old = self.gt.poses[list(self.gt.object_ids).index(oid)].position
        x, y, z, yaw = moved_pose(self.spec.seed, (old.x, old.y))
        req = self.SimControl.Request(command=self.SimControl.Request.COMMAND_MOVE_OBJECT, object_id=oid)
        req.pose.position.x, req.pose.position.y, req.pose.position.z = x, y, z
        req.pose.orientation.z, req.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        future = self.control.call_async(req)
        self._spin_until(future.done, 5.0)
        ok = future.done() and future.result().success
        self.perturbation = {"moved": oid, "from": [round(old.x, 3), round(old.y, 3)], "to": [round(x, 3), round(y, 3)],
                             "sim_time_s": round(self._sim_now() - self.sim_start, 2), "ok": bool(ok)}
        self._line(f"[episode] moved '{oid}' from {self.perturbation['from']} to {self.perturbation['to']} "
                   f"while the arm approached it" + ("" if ok else " (FAILED: /sim/control refused)"))

    def _sim_now(self) -> float:
        if self.gt is None:
            return 0.0
        return self.gt.header.stamp.sec + self.gt.header.stamp.nanosec * 1e-9

    def _result(self, outcome: str | None, res, error: str) -> EpisodeResult:
        # ground truth after the result: a fresh message, then judge
        seen = self.gt_count
        self.deadline = max(self.deadline, time.monotonic() + JUDGE_TIMEOUT)
        try:
            self._spin_until(lambda: self.gt_count > seen, JUDGE_TIMEOUT)
        except RuntimeError:
            pass
        if res is not None:
            # /rosout may deliver the last lines after the result: wait for the closing line (bounded),
            # then print any step the result carries that did not come through
            closing = f"task {res.outcome}"
            try:
                self._spin_until(lambda: any(line.startswith(closing) for line in self.lines), JUDGE_TIMEOUT)
            except RuntimeError:
                pass
            seen = set(self.lines)
            for step in res.steps:
                if step not in seen:
                    self._line(step)
        oid = self.spec.object_id
        success = bool(self.gt is not None and oid in self.gt.in_tray and self.gt.held_object == "")
        sim_time = self._sim_now() - getattr(self, "sim_start", self._sim_now())
        if res is None:
            return EpisodeResult(spec=self.spec, success=success if outcome != "error" else False,
                                 outcome=outcome or "error", wall_time_s=time.monotonic() - self.started,
                                 sim_time_s=sim_time, attempts=0, retries=0, escalations=0, vetoes=0,
                                 false_vetoes=0, stale_fact_uses=0, re_observations=0, decision_latency_ms=[],
                                 log=list(self.lines), error=error, perturbation=self.perturbation)
        return EpisodeResult(
            spec=self.spec, success=success, outcome=res.outcome or "failed",
            wall_time_s=time.monotonic() - self.started, sim_time_s=sim_time, attempts=int(res.attempts),
            retries=int(res.retries), escalations=int(res.escalations), vetoes=int(res.vetoes),
            false_vetoes=int(res.false_vetoes), stale_fact_uses=int(res.stale_fact_uses),
            re_observations=int(res.re_observations), decision_latency_ms=[float(v) for v in res.decision_latency_ms],
            log=list(self.lines) or list(res.steps), error=error if not res.message or success else res.message,
            surprises=int(res.surprises), policy_chunks=int(res.policy_chunks), planner_chunks=int(res.planner_chunks),
            perturbation=self.perturbation)
