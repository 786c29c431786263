"""Pure supervisor core: goal parsing, retry budget and recovery choice, and the task loop over an
in-process world (no ROS): success, each failure type's recovery, capped retries, escalation and
acting on the answer, node loss, cancel, ablation switches."""
from __future__ import annotations

import math

import pytest

from harness_nodes.supervisor.planner import Belief, Candidate, Planner, STATE_CONTRADICTED, STATE_STALE
from harness_nodes.supervisor.recovery import (RECOVERY_FOR, Failure, FailureType, Recovery, RetryBudget, Subgoal,
                                               decide, restart_point)
from harness_nodes.supervisor.runner import (KIND_ABORT, KIND_APPROVE, KIND_CORRECT, Answer, Evaluation, ExecResult,
                                             NodeLost, RunnerConfig, TaskRunner, parse_position)
from harness_nodes.supervisor.task import Task, TaskError, TaskKind, parse_task

OBJECTS = {"red_cube", "green_cube", "blue_cube"}
PLACES = {"tray"}


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, kind, obj, dest", [
    ("put the red cube in the tray", TaskKind.PICK_PLACE, "red_cube", "tray"),
    ("put red_cube in tray", TaskKind.PICK_PLACE, "red_cube", "tray"),
    ("Please PLACE the Red Cube into the tray", TaskKind.PICK_PLACE, "red_cube", "tray"),
    ("stack blue on green", TaskKind.STACK, "blue_cube", "green_cube"),
    ("put red on top of blue", TaskKind.STACK, "red_cube", "blue_cube"),
    ("stack green_cube onto tray", TaskKind.PICK_PLACE, "green_cube", "tray"),
])
def test_goals_parse_to_typed_tasks(text, kind, obj, dest):
    task = parse_task(text, OBJECTS, PLACES)
    assert (task.kind, task.object_id, task.destination) == (kind, obj, dest)


@pytest.mark.parametrize("text, reason", [
    ("put the purple cube in the tray", "unknown object 'purple cube'"),
    ("put red_cube in the bin", "unknown object 'bin'"),
    ("stack red on red", "impossible"),
    ("put the tray in red_cube", "impossible: 'tray' is a place"),
    ("", "empty goal"),
    ("   ", "empty goal"),
    ("dance", "cannot understand"),
    ("put red_cube in tray" + " x" * 300, "characters (at most"),
    ("put red\x00cube in tray", "control"),
    ("put 红色 in tray", "unknown object"),
])
def test_bad_goals_are_refused_with_the_reason(text, reason):
    with pytest.raises(TaskError, match=reason.replace("(", r"\(")):
        parse_task(text, OBJECTS, PLACES)


def test_ambiguous_short_name_is_refused():
    with pytest.raises(TaskError, match="ambiguous"):
        parse_task("put red in tray", {"red_cube", "red_ball"}, PLACES)


def test_object_not_believed_is_unknown_even_if_it_exists_elsewhere():
    with pytest.raises(TaskError, match="no belief"):
        parse_task("put red_cube in tray", {"green_cube"}, PLACES)


# ---------------------------------------------------------------- recovery and budget
def test_every_failure_type_has_a_recovery():
    assert set(RECOVERY_FOR) == set(FailureType)
    assert RECOVERY_FOR[FailureType.GRASP_MISSED] is Recovery.REGRASP
    assert RECOVERY_FOR[FailureType.OBJECT_MOVED] is Recovery.LOOK_AGAIN
    assert RECOVERY_FOR[FailureType.CONTACT] is Recovery.BACK_OFF
    assert RECOVERY_FOR[FailureType.UNREACHABLE] is Recovery.REPLAN_FRESH


def test_budget_caps_per_subgoal_and_per_task():
    budget = RetryBudget(per_subgoal=2, per_task=3)
    f = Failure(FailureType.GRASP_MISSED, Subgoal.GRASP, "empty")
    assert decide(f, budget, holding=False).recovery is Recovery.REGRASP
    assert decide(f, budget, holding=False).recovery is Recovery.REGRASP
    third = decide(f, budget, holding=False)
    assert third.recovery is None and "2 retries of 'grasp' spent" in third.reason
    g = Failure(FailureType.CONTACT, Subgoal.MOVE, "bump")
    assert decide(g, budget, holding=True).recovery is Recovery.BACK_OFF
    last = decide(g, budget, holding=True)
    assert last.recovery is None and "task's 3 retries spent" in last.reason
    budget.grant()
    assert decide(g, budget, holding=True).recovery is Recovery.BACK_OFF


def test_recovery_off_escalates_at_once():
    d = decide(Failure(FailureType.SLIP, Subgoal.MOVE, "x"), RetryBudget(2, 4), False, recovery_enabled=False)
    assert d.recovery is None and "switched off" in d.reason


def test_restart_never_reopens_the_gripper_while_holding():
    assert restart_point(Recovery.BACK_OFF, Subgoal.MOVE, holding=True) is Subgoal.LIFT
    assert restart_point(Recovery.BACK_OFF, Subgoal.MOVE, holding=False) is Subgoal.APPROACH
    assert restart_point(Recovery.REPLAN_FRESH, Subgoal.PLACE, holding=True) is Subgoal.PLACE
    assert restart_point(Recovery.LOOK_AGAIN, Subgoal.GRASP, holding=False) is Subgoal.LOOK


def test_human_positions_parse_and_absurd_ones_do_not():
    assert parse_position("object_is_at 0.4 -0.1 0.025") == (0.4, -0.1, 0.025)
    assert parse_position("0.4, 0.1, 0.02") == (0.4, 0.1, 0.02)
    assert parse_position("object_is_at 1e308 0 0") is None
    assert parse_position("object_is_at 99 0 0") is None
    assert parse_position("somewhere") is None


def test_planner_chunks_follow_the_beliefs():
    task = parse_task("put red_cube in tray", OBJECTS, PLACES)
    obj = Belief("red_cube", (0.4, 0.1, 0.025))
    tray = Belief("tray", (0.5, -0.18, 0.004))
    p = Planner()
    approach = p.chunk(Subgoal.APPROACH, task, obj, tray)
    assert approach.positions[0][:2] == pytest.approx((0.4, 0.1)) and approach.positions[0][2] > 0.1
    assert p.chunk(Subgoal.GRASP, task, obj, tray).gripper == 2
    assert p.chunk(Subgoal.MOVE, task, obj, tray).positions[0][:2] == pytest.approx((0.5, -0.18))
    variants = p.candidates(Subgoal.GRASP, task, obj, tray, 4)
    assert len(variants) == 4 and len({c.quaternion for c in variants}) == 4
    assert p.placed(task, Belief("red_cube", (0.52, -0.15, 0.03)), tray)
    assert not p.placed(task, Belief("red_cube", (0.4, 0.1, 0.025)), tray)
    stack = parse_task("stack blue on green", OBJECTS, PLACES)
    assert p.placed(stack, Belief("blue_cube", (0.56, 0.1, 0.075)), Belief("green_cube", (0.56, 0.1, 0.025)))


# ---------------------------------------------------------------- the task loop
class World:
    """In-process ports: memory beliefs, an arm that grasps what is under it, scripted faults."""

    def __init__(self, **faults):
        self.objects = {"red_cube": [0.4, 0.1, 0.025], "tray": [0.5, -0.18, 0.004]}
        self.states = {"red_cube": 0}
        self.held = False
        self.tool = [0.3, 0.0, 0.4]
        self.faults = dict(faults)
        self.sent: list[tuple[str, int]] = []
        self.rechecks: list[list[str]] = []
        self.holds: list[str] = []
        self.questions = []
        self.answers: list[Answer | None] = faults.pop("answers", [])
        self.texts: list[str] = []
        self.positions: list = []
        self.reports = []
        self.clock = 0.0
        self.cancel_after: int | None = faults.get("cancel_after")
        self.evaluations = 0
        self.proposals = 0

    def beliefs(self, subjects):
        if self.faults.get("memory_dead"):
            raise NodeLost("memory", "query timed out")
        if getattr(self, "lands_at", None) is not None and self.clock >= self.lands_at:
            self.objects["red_cube"][2], self.lands_at = 0.025, None
        out = {}
        for s in subjects:
            if s in self.objects:
                value = '{"held": true}' if s == "red_cube" and self.held else ""
                out[s] = Belief(s, tuple(self.objects[s]), confidence=0.9, state=self.states.get(s, 0), value=value)
        return out

    def request_recheck(self, subjects, reason):
        self.rechecks.append(list(subjects))
        if self.faults.get("stale_until_recheck"):
            self.states["red_cube"] = 0
            self.faults["stale_until_recheck"] = False

    def propose(self, task, subgoal, count):
        self.proposals += 1
        if self.faults.get("policy_dead"):
            raise NodeLost("policy", "no answer in 2 s")
        return self.faults["policy"](subgoal) if "policy" in self.faults else []

    def evaluate(self, task, candidates):
        self.evaluations += 1
        if self.faults.get("veto") and self.faults["veto"] > 0:
            self.faults["veto"] -= 1
            return Evaluation(-1, "all predicted to collide", tuple(range(len(candidates))))
        return Evaluation(len(candidates) - 1, "lowest risk")

    def execute(self, c: Candidate, attempt, subgoal):
        self.sent.append((c.name, attempt))
        if self.cancel_after is not None and len(self.sent) > self.cancel_after:
            return ExecResult(False, cancelled=True)
        fault = self.faults.get(f"fail_{c.name}")
        if fault and fault[1] > 0:
            self.faults[f"fail_{c.name}"] = (fault[0], fault[1] - 1)
            return ExecResult(False, fault[0], f"scripted {fault[0].value}")
        if c.delta:
            self.tool = [self.tool[0], self.tool[1], self.tool[2] + c.positions[0][2]]
        else:
            self.tool = list(c.positions[-1])
        if c.gripper == 2:
            near = math.dist(self.tool, self.objects["red_cube"]) < 0.03
            if near and not self.faults.get("miss_grasps"):
                self.held = True
            elif self.faults.get("miss_grasps"):
                self.faults["miss_grasps"] -= 1
        if c.gripper == 1 and self.held:
            self.held = False
            self.objects["red_cube"] = [self.tool[0], self.tool[1], 0.03]
        if self.held:
            if self.faults.get("slip_on") == c.name:
                self.held = False
                self.faults["slip_on"] = None
                # memory's beliefs may still come from frames of the fall for `airborne` s
                z = self.tool[2] if self.faults.get("airborne") else 0.025
                self.objects["red_cube"] = [self.tool[0], self.tool[1], z]
                self.lands_at = self.clock + self.faults.get("airborne", 0.0)
            else:
                self.objects["red_cube"] = list(self.tool)
        if self.faults.get("move_after") == c.name:
            self.objects["red_cube"] = [0.35, 0.2, 0.025]
            self.faults["move_after"] = None
        return ExecResult(True, chunk_id=f"{c.name}-{len(self.sent)}")

    def tool_position(self):
        return tuple(self.tool)

    def surprise(self, chunk_id, subject, timeout):
        """Scripted world-model surprise: `surprise_after={chunk name: metres}`, reported once."""
        scripted = self.faults.get("surprise_after", {})
        name = chunk_id.rsplit("-", 1)[0]
        self.surprise_asked = getattr(self, "surprise_asked", 0) + 1
        return scripted.pop(name, 0.001) if subject == "red_cube" else None

    def hold(self, reason):
        self.holds.append(reason)
        return True

    def ask_human(self, q):
        self.questions.append(q)
        return self.answers.pop(0) if self.answers else None

    def remember_text(self, subject, text):
        self.texts.append(text)

    def remember_position(self, subject, position):
        self.positions.append(position)
        self.objects[subject] = list(position)

    def report(self, state):
        self.reports.append((state.phase, state.subtask, state.attempt, state.waiting_for_human))

    def log(self, line):
        pass

    def cancelled(self):
        return self.cancel_after is not None and len(self.sent) > self.cancel_after

    def sleep(self, s):
        self.clock += s

    def now(self):
        return self.clock


def run(world, text="put red_cube in tray", **config):
    task = parse_task(text, {"red_cube"}, {"tray"})
    cfg = RunnerConfig(**{"look_timeout": 2.0, "verify_timeout": 1.0, "grasp_check_timeout": 0.5, **config})
    return TaskRunner(world, task, "t1", cfg).run()


def names(world):
    return [n for n, _ in world.sent]


def test_nominal_task_runs_every_subgoal_and_succeeds():
    w = World()
    out = run(w)
    assert out.success and out.outcome == "succeeded" and out.attempts == 1, out.steps
    assert names(w) == ["approach", "grasp", "lift", "move", "place", "release", "verify"]
    assert w.evaluations == 7 and w.proposals == 7            # policy asked (nothing), world model ranked


def test_policy_and_world_model_off_use_the_planner_alone():
    w = World()
    out = run(w, use_policy=False, use_world_model=False)
    assert out.success and w.evaluations == 0 and w.proposals == 0


def test_grasp_missed_regrasps_with_a_new_yaw_and_counts_attempts():
    w = World(miss_grasps=1)
    out = run(w)
    assert out.success and out.attempts == 2, out.steps
    assert "back_off" in names(w) and names(w).count("grasp") == 2
    assert ("grasp", 2) in w.sent                              # the attempt travels with the chunk
    assert any("yaw offset +0.20" in s for s in out.steps)


def test_contact_backs_off_and_reapproaches():
    w = World(fail_approach=(FailureType.CONTACT, 1))
    out = run(w)
    assert out.success, out.steps
    assert names(w)[:3] == ["approach", "back_off", "approach"]


def test_contact_while_carrying_carries_higher_on_each_retry_up_to_the_cap():
    w = World(fail_move=(FailureType.CONTACT, 2))
    sent: list[Candidate] = []
    execute = w.execute
    w.execute = lambda c, attempt, subgoal: (sent.append(c), execute(c, attempt, subgoal))[1]
    out = run(w, carry_raise_step=0.15, max_carry_raise=0.2)
    assert out.success, out.steps
    assert any("next carry 0.15 m higher" in s for s in out.steps)
    assert any("next carry 0.20 m higher" in s for s in out.steps)       # capped
    lifts = [c.positions[-1][2] for c in sent if c.name == "lift"]
    moves = [c.positions for c in sent if c.name == "move"]
    assert lifts[1] == pytest.approx(lifts[0] + 0.15) and lifts[2] == pytest.approx(lifts[0] + 0.2)
    assert len(moves[0]) == 1 and len(moves[-1]) == 2                     # over the top, then down
    assert moves[-1][0][2] == pytest.approx(moves[-1][1][2] + 0.2) and moves[-1][1] == moves[0][0]


def test_contact_while_grasping_turns_the_next_grasp_90_degrees():
    w = World(fail_grasp=(FailureType.CONTACT, 1))
    sent: list[Candidate] = []
    execute = w.execute
    w.execute = lambda c, attempt, subgoal: (sent.append(c), execute(c, attempt, subgoal))[1]
    out = run(w, use_world_model=False)
    assert out.success and any("next grasp turned 90 deg" in s for s in out.steps), out.steps
    grasps = [c.quaternion for c in sent if c.name == "grasp"]
    yaws = [math.atan2(2 * (q[3] * q[2] + q[0] * q[1]), 1 - 2 * (q[1] ** 2 + q[2] ** 2)) for q in grasps]
    turned = abs((yaws[1] - yaws[0] + math.pi) % (2 * math.pi) - math.pi)
    assert turned == pytest.approx(math.pi / 2, abs=1e-6)


def test_a_dropped_object_still_in_the_air_is_looked_at_again_before_it_is_used():
    w = World(slip_on="move", airborne=1.5)
    out = run(w, max_rest_height=0.15)
    assert out.success, out.steps
    assert any("m up and not held" in s for s in out.steps), out.steps   # the belief while it fell
    looks = [s for s in out.steps if s.startswith("look: believes 'red_cube'")]
    heights = [float(s.split("[", 1)[1].split("]", 1)[0].split(",")[2]) for s in looks]
    assert len(looks) == 2 and all(z <= 0.15 for z in heights), looks   # used only once it had landed


def test_contact_at_the_approach_does_not_raise_the_carry():
    w = World(fail_approach=(FailureType.CONTACT, 1))
    out = run(w)
    assert out.success and not any("carry" in s for s in out.steps), out.steps


def test_object_moved_is_looked_at_again_and_replanned():
    w = World(move_after="approach")
    out = run(w)
    assert out.success, out.steps
    assert any("object_moved at grasp" in s for s in out.steps)
    assert w.rechecks                                          # asked perception to look again
    grasp_targets = [s for s in out.steps if s.startswith("look: believes 'red_cube' at [0.35, 0.2")]
    assert grasp_targets


def test_slip_while_carrying_replans_from_fresh_perception():
    w = World(slip_on="move")
    out = run(w)
    assert out.success, out.steps
    assert any("slip at move" in s for s in out.steps)
    assert names(w).count("grasp") == 2


def test_veto_all_replans_and_unreachable_replans():
    w = World(veto=1, fail_move=(FailureType.UNREACHABLE, 1))
    out = run(w)
    assert out.success and out.attempts == 3, out.steps
    assert any("veto_all" in s for s in out.steps) and any("unreachable at move" in s for s in out.steps)


def test_stale_belief_asks_for_a_recheck_before_acting():
    w = World(stale_until_recheck=True)
    w.states["red_cube"] = STATE_STALE
    out = run(w)
    assert out.success and w.rechecks[0] == ["red_cube"]


def test_memory_validity_off_trusts_a_contradicted_belief():
    w = World()
    w.states["red_cube"] = STATE_CONTRADICTED
    out = run(w, use_memory_validity=False, use_viewpoint=False)
    assert out.success and not w.rechecks


def test_spent_budget_escalates_and_no_answer_ends_escalated():
    w = World(fail_approach=(FailureType.TIMEOUT, 10))
    out = run(w, retries_per_subgoal=2)
    assert out.outcome == "escalated" and not out.success
    assert len(w.questions) == 1 and "retry" in w.questions[0].options
    assert w.questions[0].context["failures"] and w.questions[0].context["beliefs"]["object"]["subject"] == "red_cube"
    assert names(w).count("approach") == 3                     # first try + 2 retries, then asked
    assert any(r[3] for r in w.reports)                         # waiting_for_human was reported


def test_escalation_answer_retry_is_acted_on_and_remembered():
    w = World(fail_approach=(FailureType.TIMEOUT, 3), answers=[Answer(KIND_APPROVE, "retry", "try once more")])
    out = run(w, retries_per_subgoal=2)
    assert out.success, out.steps
    assert w.texts and "try once more" in w.texts[0]


def test_escalation_answer_with_a_position_replans_there():
    w = World(answers=[Answer(KIND_CORRECT, "object_is_at 0.45 0.05 0.025", "it is by the blue one")])
    w.objects.pop("red_cube")
    w.objects["hidden"] = [0, 0, 0]
    w.states["red_cube"] = 0
    task = Task(TaskKind.PICK_PLACE, "red_cube", "tray", "put red_cube in tray")
    out = TaskRunner(w, task, "t2", RunnerConfig(look_timeout=1.0, verify_timeout=1.0, retries_per_task=0)).run()
    assert out.success, out.steps
    assert w.positions == [(0.45, 0.05, 0.025)]


def test_escalation_abort_and_skip():
    w = World(fail_approach=(FailureType.CONTACT, 10), answers=[Answer(KIND_ABORT, "abort")])
    out = run(w, use_recovery=False)
    assert out.outcome == "aborted" and len(w.questions) == 1
    w = World(answers=[Answer(KIND_APPROVE, "skip")], miss_grasps=0)
    w.faults["fail_verify"] = (FailureType.TIMEOUT, 5)
    out = run(w, use_recovery=False)
    assert out.success and "skipped by a human" in out.message


def test_escalation_off_fails_instead_of_asking():
    w = World(fail_approach=(FailureType.CONTACT, 10))
    out = run(w, use_recovery=False, use_escalation=False)
    assert out.outcome == "failed" and not w.questions


def test_dead_policy_holds_reports_and_falls_back_to_the_planner():
    w = World(policy_dead=True)
    out = run(w)
    assert out.success, out.steps
    assert w.holds and "policy not answering" in w.holds[0]
    assert w.proposals == 1                                    # not asked again after it was lost


def test_dead_memory_holds_and_escalates_at_once():
    w = World(memory_dead=True)
    out = run(w)
    assert not out.success and out.outcome == "escalated"
    assert w.holds and "memory not answering" in w.holds[0]
    assert "cannot go on without ['memory']" in w.questions[0].question


def test_cancel_mid_task_holds_and_says_cancelled():
    w = World(cancel_after=2)
    out = run(w)
    assert out.outcome == "aborted" and "cancelled" in out.message
    assert w.holds == []                # the port held when the chunk was cancelled: no second hold
    assert len(w.sent) == 3
    w = World()
    w.cancel_after = 0
    w.sent.append(("earlier", 1))        # cancelled before anything is sent: the runner holds
    out = run(w)
    assert out.outcome == "aborted" and w.holds == ["task cancelled"]


def test_task_timeout_holds_and_fails():
    w = World(stale_until_recheck=False)
    w.states["red_cube"] = STATE_STALE
    task = parse_task("put red_cube in tray", {"red_cube"}, {"tray"})
    out = TaskRunner(w, task, "t", RunnerConfig(look_timeout=5.0), timeout=1.0).run()
    assert out.outcome in ("failed", "escalated") and not out.success


def test_measured_grip_overrides_memorys_note():
    assert Belief("red_cube", (0, 0, 0), value='{"held": true}').held
    assert not Belief("red_cube", (0, 0, 0), value='{"held": true}', gripped=False).held
    assert Belief("red_cube", (0, 0, 0), value='{"label": "cube"}', gripped=True).held
    assert not Belief("red_cube", (0, 0, 0), value="not json").held


def test_harness_stack_and_parameter_file_match_the_model():
    from harness_nodes.bringup.stack import load_stack_description, node_parameters
    from harness_nodes.supervisor.config import SupervisorParameters

    stacks = load_stack_description()
    names = [n.name for n in stacks.stack("harness").nodes]
    assert names == [n.name for n in stacks.stack("sim_perception").nodes] + ["latent_policy", "supervisor"]
    values = node_parameters("supervisor.yaml", "supervisor")
    assert set(values) == set(SupervisorParameters.model_fields)
    assert SupervisorParameters.model_validate(values) == SupervisorParameters()
    with pytest.raises(ValueError, match="3 values per place"):
        SupervisorParameters(places=["tray", "bin"])


def test_operator_answer_kinds():
    from harness_nodes.supervisor.operator import kind_for

    assert kind_for("retry") == KIND_APPROVE and kind_for("skip") == KIND_APPROVE
    assert kind_for("Abort now") == KIND_ABORT
    assert kind_for("object_is_at 0.4 0.1 0.03") == KIND_CORRECT
    assert kind_for("retry", "reject") == 1


# ---------------------------------------------------------------- surprise, policy screening, metrics
def test_world_model_surprise_is_an_object_moved_cue_and_the_task_looks_again():
    w = World(surprise_after={"approach": 0.2})
    out = run(w)
    assert out.success, out.steps
    assert out.metrics.surprises == 1 and any("world model surprised" in s and "object_moved at approach" in s
                                              for s in out.steps), out.steps
    assert names(w).count("approach") == 2 and w.rechecks      # looked again, approached again
    assert out.attempts == 2


@pytest.mark.parametrize("config, distance", [({}, 0.02), ({"surprise_threshold": 0.0}, 0.5),
                                              ({"use_world_model": False}, 0.5)])
def test_small_surprise_threshold_off_or_no_world_model_is_not_a_failure(config, distance):
    w = World(surprise_after={"approach": distance})
    out = run(w, **config)
    assert out.success and out.attempts == 1 and out.metrics.surprises == 0, out.steps
    assert names(w).count("approach") == 1


def _policy(reaching: bool):
    """A policy double: for the approach, one chunk ending at the planner's target (if `reaching`)
    and one 20 cm off; nothing for the other subgoals."""
    planner = Planner()
    task = parse_task("put red_cube in tray", {"red_cube"}, {"tray"})

    def propose(subgoal):
        if subgoal is not Subgoal.APPROACH:
            return []
        target = planner.chunk(subgoal, task, Belief("red_cube", (0.4, 0.1, 0.025)),
                               Belief("tray", (0.5, -0.18, 0.004)))
        end = target.positions[-1]
        far = Candidate("policy1", positions=((end[0] + 0.2, end[1], end[2]),), gripper=target.gripper,
                        source="policy", score=-1.0)
        near = Candidate("policy0", positions=(end,), gripper=target.gripper, source="policy", score=-0.5)
        return [near, far] if reaching else [far]
    return propose


def test_policy_chunks_finish_a_subgoal_only_when_they_reach_it():
    w = World(policy=_policy(reaching=True))
    out = run(w, use_world_model=False, policy_steps=0)           # the policy's own ranking decides
    assert out.success, out.steps
    assert out.metrics.policy_proposed == 2 and out.metrics.policy_admitted == 1
    assert out.metrics.policy_executed == 1 and out.metrics.planner_executed == 6
    assert "policy0" in names(w) and "policy1" not in names(w)
    w = World(policy=_policy(reaching=False))
    out = run(w, policy_steps=0)
    assert out.success and out.metrics.policy_executed == 0 and "policy1" not in names(w)
    assert any("none reaches the subgoal" in s for s in out.steps), out.steps


def _stepping_policy(step: float, gripper=None, reach_with_close=False):
    """A policy double that moves the tool `step` m toward the subgoal's target per chunk (the way
    the latent policy's short delta chunks do), with `gripper` (default: the target's)."""
    planner = Planner()
    task = parse_task("put red_cube in tray", {"red_cube"}, {"tray"})

    def propose_for(world):
        def propose(subgoal):
            obj = Belief("red_cube", tuple(world.objects["red_cube"]))
            target = planner.chunk(subgoal, task, obj, Belief("tray", tuple(world.objects["tray"])))
            end, tool = target.positions[-1], world.tool
            gap = math.dist(tool, end)
            frac = 1.0 if gap <= step else step / gap
            nxt = tuple(t + frac * (e - t) for t, e in zip(tool, end))
            g = target.gripper if gripper is None else gripper
            return [Candidate(f"policy-{subgoal.value}", positions=(nxt,), gripper=g, source="policy", score=-0.1)]
        return propose
    return propose_for


def test_the_policy_drives_each_motion_subgoal_in_closed_loop_and_the_harness_finishes_it():
    w = World()
    w.faults["policy"] = _stepping_policy(0.08)(w)
    out = run(w, policy_steps=3)
    assert out.success, out.steps
    m = out.metrics
    assert m.policy_steps >= 5 and m.policy_executed == m.policy_steps, m
    assert any("done by the policy" in s for s in out.steps), out.steps      # a step that reached the target
    assert any("policy step 1: 'policy-approach' executed" in s for s in out.steps), out.steps
    assert "release" in names(w) and "verify" in names(w)                     # no policy steps there
    assert w.evaluations >= m.policy_steps                                    # every step went to the world model


def test_policy_steps_never_close_early_or_open_while_holding_and_vetoes_stop_them():
    # a policy that closes the gripper on its way down (the failure of the policy alone: closing
    # 4 cm above the cube) or opens it while carrying: those chunks never run as steps
    w = World()
    w.faults["policy"] = _stepping_policy(0.05, gripper=2)(w)                 # always "close"
    out = run(w, policy_steps=3)
    assert out.success, out.steps
    steps_run = [n for n in names(w) if n.startswith("policy-")]
    assert all(n == "policy-grasp" for n in steps_run), steps_run              # only the one that reaches the cube
    w = World()
    w.faults["policy"] = _stepping_policy(0.05, gripper=1)(w)                 # always "open"
    out = run(w, policy_steps=3)
    assert out.success, out.steps
    assert not any(n in names(w) for n in ("policy-lift", "policy-move", "policy-place")), names(w)
    # every step vetoed by the world model: the subgoal is finished by the planner
    w = World(veto=100)
    w.faults["policy"] = _stepping_policy(0.08)(w)
    out = run(w, policy_steps=3, use_recovery=False, use_escalation=False)
    assert not any(n.startswith("policy-") for n in names(w)), names(w)
    # no progress (the policy proposes where the tool already is): one proposal, then the planner
    w = World()
    w.faults["policy"] = _stepping_policy(0.0)(w)
    out = run(w, policy_steps=3)
    assert out.success and out.metrics.policy_steps == 0, out.steps
    assert w.proposals == 7 and any("none of 1 chunk(s) brings the tool" in s for s in out.steps)


def test_metrics_count_vetoes_false_vetoes_rechecks_and_decision_latency():
    w = World(veto=1)
    out = run(w)
    assert out.success, out.steps
    m = out.metrics
    assert m.vetoes == 4                                          # every candidate of the first evaluation
    assert m.false_vetoes == 1                                    # the same approach then ran and succeeded
    assert m.retries == 1 and m.escalations == 0 and m.re_observations >= 2
    assert len(m.decision_latency_ms) == len(w.sent) and all(v >= 0 for v in m.decision_latency_ms)
    assert m.stale_fact_uses == 0
    w = World(stale_until_recheck=True)
    w.states["red_cube"] = STATE_STALE
    assert run(w).metrics.re_observations >= 2                    # the look's re-check and the verify's


def test_stale_fact_uses_are_counted_when_memory_validity_is_off():
    w = World()
    w.states["red_cube"] = STATE_CONTRADICTED
    out = run(w, use_memory_validity=False, use_viewpoint=False)
    assert out.success and out.metrics.stale_fact_uses == 2, out.steps     # approach and grasp
    assert any("not current" in s for s in out.steps)


def test_memory_validity_off_does_not_recheck_the_plan_before_moving():
    w = World(move_after="approach")
    out = run(w, use_memory_validity=False, use_viewpoint=False, use_recovery=False, use_escalation=False)
    assert not out.success and out.outcome == "failed"           # grasped where the cube was
    assert out.metrics.stale_fact_uses == 1                       # the grasp was sent on the old belief
    w = World(move_after="approach")
    out = run(w)
    assert out.success and any("object_moved at grasp" in s for s in out.steps), out.steps
