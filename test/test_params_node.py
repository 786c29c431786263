"""`ros2 param` is honest over DDS: real router and sim processes, the test talking to their
standard parameter services (rcl_interfaces SetParameters / GetParameters / DescribeParameters).
A dynamic parameter in range is applied (visible in behaviour and in get); out of range, wrong
type, non-finite or huge values and read-only parameters are refused with the reason, the old
value kept, and the node keeps answering. Nodes started without their parameter file start on the
model's defaults; a field without a default is refused by name with the file that supplies it."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState

from conftest import REPO, ros_env, spin_until
from harness_nodes.common.node_main import EXIT_BAD_PARAMETER
from robot_harness.msg import ExecutionFeedback
from test_router_node import HOME, FakeArm, _secs, joint_chunk

pytestmark = pytest.mark.integration


class ParameterClient:
    """The standard parameter services of one node, called from the test's rclpy node."""

    def __init__(self, node, target: str):
        self.node = node
        self.set_client = node.create_client(SetParameters, f"/{target}/set_parameters")
        self.get_client = node.create_client(GetParameters, f"/{target}/get_parameters")
        self.describe_client = node.create_client(DescribeParameters, f"/{target}/describe_parameters")

    def wait(self, timeout: float = 30.0) -> None:
        clients = (self.set_client, self.get_client, self.describe_client)
        assert spin_until(self.node, lambda: all(c.service_is_ready() for c in clients), timeout), \
            "parameter services not up"

    def _call(self, client, request, timeout: float = 10.0):
        future = client.call_async(request)
        assert spin_until(self.node, future.done, timeout), f"no answer from {client.srv_name}"
        return future.result()

    def set(self, name: str, value):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        (result,) = self._call(self.set_client, request).results
        return result

    def get(self, name: str):
        (value,) = self._call(self.get_client, GetParameters.Request(names=[name])).values
        return parameter_value_to_python(value)

    def describe(self, name: str):
        (descriptor,) = self._call(self.describe_client, DescribeParameters.Request(names=[name])).descriptors
        return descriptor


def assert_refused(params: ParameterClient, name: str, value, kept, *reason_words: str) -> None:
    result = params.set(name, value)
    assert not result.successful, f"{name} := {str(value)[:60]} was accepted"
    for word in reason_words:
        assert word in result.reason, result.reason
    got = params.get(name)
    assert (list(got) if not isinstance(got, (str, float, int, bool)) else got) == kept


@pytest.mark.timeout(120)
def test_router_parameters_are_applied_or_refused(start_node, ros_node):
    arm = FakeArm(ros_node)
    router = start_node("harness_nodes.router.node", "router.yaml")
    params = ParameterClient(ros_node, "controller_router")
    arm.wait_ready()
    params.wait()

    d = params.describe("velocity_scale")
    assert d.type == ParameterType.PARAMETER_DOUBLE and not d.read_only and not d.dynamic_typing
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0.0, 1.0)
    assert "velocity" in d.description and "> 0.0" in d.additional_constraints
    d = params.describe("ik_max_iterations")
    assert d.type == ParameterType.PARAMETER_INTEGER
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 10000)
    d = params.describe("robot")
    assert d.read_only and d.type == ParameterType.PARAMETER_STRING

    original = params.get("velocity_scale")
    assert_refused(params, "velocity_scale", 5.0, original, "out of range")
    assert_refused(params, "velocity_scale", "hello", original, "type")
    assert_refused(params, "velocity_scale", 0.0, original, "velocity_scale", "greater than 0")
    assert_refused(params, "velocity_scale", math.nan, original)
    assert_refused(params, "robot", "xarm6", "panda", "read-only")
    assert_refused(params, "command_topic", "/elsewhere", "harness/command", "read-only")

    # In range: applied. A 0.5 rad move asked for in 1 s takes >= 3 s at a tenth of the velocity limit.
    assert params.set("velocity_scale", 0.1).successful
    assert params.get("velocity_scale") == 0.1
    target = HOME.copy()
    target[0] += 0.5
    slow = arm.send(joint_chunk([target], times=[1.0]))
    assert slow.status == ExecutionFeedback.STATUS_SUCCEEDED, slow.message
    slow_time = _secs(arm.arm_msgs[-1].points[-1].time_from_start)
    assert slow_time >= 3.0, slow_time

    assert params.set("velocity_scale", 1.0).successful
    back = arm.send(joint_chunk([HOME], times=[1.0]))
    assert back.status == ExecutionFeedback.STATUS_SUCCEEDED, back.message
    assert _secs(arm.arm_msgs[-1].points[-1].time_from_start) < 2.0
    assert router.alive()


ALWAYS_BAD = st.sampled_from([
    math.nan, math.inf, -math.inf, 1e308, -1e308, 2**62, -2**62, True, "x" * 100_000, "",
    [1e308] * 100_000, [math.nan, 1.0, 2.0], ["y" * 1000] * 1000, [True, False],
])


@pytest.mark.timeout(240)
def test_router_set_parameters_refuses_garbage_and_keeps_answering(start_node, ros_node):
    router = start_node("harness_nodes.router.node", "router.yaml")
    params = ParameterClient(ros_node, "controller_router")
    params.wait()
    names = ["velocity_scale", "command_timeout", "ik_max_iterations", "max_joint_step",   # dynamic
             "robot", "workspace_min", "collision_check", "monitor_rate"]                   # read-only
    kept = {n: params.get(n) for n in names}

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(name=st.sampled_from(names), value=ALWAYS_BAD)
    def check(name, value):
        result = params.set(name, value)
        assert not result.successful, f"{name} := {str(value)[:60]} accepted"
        got = params.get(name)
        assert (list(got) if isinstance(kept[name], list) or not isinstance(got, (str, float, int, bool))
                else got) == (list(kept[name]) if not isinstance(kept[name], (str, float, int, bool))
                              else kept[name])

    check()
    assert router.alive()
    assert params.set("velocity_scale", 0.3).successful and params.get("velocity_scale") == 0.3


def measured_rtf(node, clock: list, seconds: float) -> float:
    """Sim seconds per wall second over the next `seconds` of /clock."""
    clock.clear()
    spin_until(node, lambda: False, seconds)
    assert len(clock) >= 2, "no /clock"
    (w0, s0), (w1, s1) = clock[0], clock[-1]
    return (s1 - s0) / (w1 - w0)


@pytest.mark.timeout(120)
def test_sim_parameters_are_applied_or_refused(start_node, ros_node):
    clock: list[tuple[float, float]] = []
    ros_node.create_subscription(
        Clock, "/clock", lambda m: clock.append((time.monotonic(), m.clock.sec + m.clock.nanosec * 1e-9)), 10)
    sim = start_node("harness_nodes.sim.node", "sim.yaml", camera_rate=0.0)
    params = ParameterClient(ros_node, "sim")
    params.wait(60.0)
    assert spin_until(ros_node, lambda: len(clock) > 10, 30.0), "no /clock"

    d = params.describe("real_time_factor")
    assert d.type == ParameterType.PARAMETER_DOUBLE and not d.read_only
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0.0, 100.0)
    assert params.describe("physics_rate").read_only

    assert_refused(params, "real_time_factor", 1000.0, 1.0, "out of range")
    assert_refused(params, "real_time_factor", "fast", 1.0, "type")
    assert_refused(params, "joint_state_rate", 500.0, 100.0, "physics_rate")
    assert_refused(params, "physics_rate", 500.0, 240.0, "read-only")
    assert_refused(params, "robot", "xarm6", "panda", "read-only")

    stamps: list[float] = []
    ros_node.create_subscription(JointState, "/joint_states",
                                 lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 50)
    assert spin_until(ros_node, lambda: len(stamps) > 20, 20.0), "no /joint_states"
    assert params.set("joint_state_rate", 20.0).successful
    spin_until(ros_node, lambda: False, 0.3)
    stamps.clear()
    assert spin_until(ros_node, lambda: len(stamps) >= 11, 20.0)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])     # per sim second
    assert 15.0 < rate < 25.0, rate

    before = measured_rtf(ros_node, clock, 2.0)
    assert params.set("real_time_factor", 0.1).successful
    assert params.get("real_time_factor") == 0.1
    spin_until(ros_node, lambda: False, 0.3)
    after = measured_rtf(ros_node, clock, 2.0)
    assert after < 0.15 and before > 2 * after, (before, after)
    assert sim.alive()


@pytest.mark.timeout(90)
def test_node_without_parameter_file_starts_on_defaults(start_node, ros_node):
    """memory_tracker has list fields with default factories (world_frames, cameras, task_subjects):
    without memory.yaml they used to crash the node with a PydanticUndefined TypeError."""
    memory = start_node("harness_nodes.memory.node", None, persist=False)
    params = ParameterClient(ros_node, "memory_tracker")
    params.wait(60.0)
    assert list(params.get("world_frames")) == ["world"]   # the default; the robot base frame is added inside
    assert list(params.get("task_subjects")) == []
    assert params.describe("task_subjects").type == ParameterType.PARAMETER_STRING_ARRAY
    assert params.set("task_subjects", ["red_cube"]).successful
    assert list(params.get("task_subjects")) == ["red_cube"]
    assert memory.alive()


REQUIRED_FIELD_NODE = textwrap.dedent('''
    import sys
    from pydantic import BaseModel, Field
    from rclpy.node import Node
    from harness_nodes.common.node_main import run_node
    from harness_nodes.common.params import declare_and_load

    class Needs(BaseModel):
        robot: str = Field(min_length=1)
        scenario: str
        seed: int = 0

    class Sim(Node):
        def __init__(self):
            super().__init__("sim")
            self.params = declare_and_load(self, Needs)

    sys.exit(run_node("sim", Sim))
''')


@pytest.mark.timeout(60)
def test_missing_required_parameters_are_named_with_their_file(domain_id):
    proc = subprocess.run([sys.executable, "-c", REQUIRED_FIELD_NODE], env=ros_env(domain_id), cwd=REPO,
                          capture_output=True, text=True, timeout=45)
    assert proc.returncode == EXIT_BAD_PARAMETER, proc.stderr
    assert "robot" in proc.stderr and "scenario" in proc.stderr and "seed" not in proc.stderr.split("missing")[1]
    assert "config/sim.yaml" in proc.stderr
    assert "PydanticUndefined" not in proc.stderr and "Traceback" not in proc.stderr


# node module, parameter file, overrides, dynamic (name, valid value, out-of-range value), read-only name
OTHER_NODES = {
    "memory_tracker": ("harness_nodes.memory.node", "memory.yaml", {"persist": False},
                       ("stale_threshold", 0.4, 1.5), "snapshot_topic"),
    "perception": ("harness_nodes.perception.node", "perception.yaml", {},
                   ("min_pixels", 40, 0), "cameras"),
    "pick_place_expert": ("harness_nodes.expert.node", None, {"startup_timeout": 60.0},
                          ("max_attempts", 2, 11), "object_id"),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("node_name", list(OTHER_NODES))
def test_other_nodes_apply_dynamic_and_refuse_read_only_parameters(start_node, ros_node, node_name):
    module, params_file, overrides, (name, good, bad), read_only = OTHER_NODES[node_name]
    process = start_node(module, params_file, **overrides)
    params = ParameterClient(ros_node, node_name)
    params.wait(60.0)
    kept = params.get(read_only)
    kept = kept if isinstance(kept, str) else list(kept)
    assert params.describe(read_only).read_only and not params.describe(name).read_only
    assert_refused(params, read_only, "something_else" if isinstance(kept, str) else ["x"], kept, "read-only")
    assert params.set(name, good).successful
    assert params.get(name) == good
    assert_refused(params, name, bad, good, name)
    assert_refused(params, name, "text", good, "type")
    assert process.alive()
