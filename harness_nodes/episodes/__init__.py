"""Episodes: one task through the harness stack on a scenario, with an ablation of the supervisor,
judged from the sim's ground truth. Used by `make demo` and the benchmarks.

spec.py (pure): EpisodeSpec, EpisodeResult, SCENARIOS (sim scenario + perturbation), ABLATIONS and
their supervisor switches. runner.py: `run_episode(spec)` brings the stack up on the spec's ROS
domain, runs the task, drives the perturbation, collects the metrics and stops the stack.
"""
from harness_nodes.episodes.spec import (ABLATIONS, SCENARIOS, EpisodeResult, EpisodeSpec, Scenario,
                                         moved_pose, supervisor_switches)


def run_episode(spec: EpisodeSpec, on_line=None) -> EpisodeResult:
    """See harness_nodes.episodes.runner.run_episode (imported lazily: ROS only when an episode runs)."""
    from harness_nodes.episodes.runner import run_episode as run
    return run(spec, on_line)


__all__ = ["ABLATIONS", "SCENARIOS", "EpisodeResult", "EpisodeSpec", "Scenario", "moved_pose", "run_episode",
           "supervisor_switches"]
