"""Job functions for the scale-out tests: module-level, so child processes and Ray workers import
them by name, as they do the real jobs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness_nodes.episodes.spec import EpisodeResult, EpisodeSpec


@dataclass(frozen=True)
class SleepSpec:
    index: int
    seconds: float = 0.0
    domain_id: int | None = None
    pid_file: str = ""


def report_domain(spec: SleepSpec) -> dict:
    """Holds its domain for `seconds`; says which domain it had (environment and spec) and when."""
    start = time.time()
    time.sleep(spec.seconds)
    return {"index": spec.index, "env_domain": int(os.environ["ROS_DOMAIN_ID"]), "spec_domain": spec.domain_id,
            "start": start, "end": time.time(), "pid": os.getpid()}


def fail_some(spec: SleepSpec) -> int:
    if spec.index == 1:
        raise ValueError(f"job {spec.index} refuses")
    if spec.index == 2:
        os._exit(3)          # the process dies without a word
    return spec.index * 10


def hang_with_grandchild(spec: SleepSpec) -> None:
    """Starts a process in a session of its own (as a node launcher would) and never returns."""
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    Path(spec.pid_file).write_text(str(grandchild.pid))
    time.sleep(120)


# ---- a stand-in episode job for the suite's own logic (the real one brings up a whole stack)
def fake_episode(spec: EpisodeSpec) -> EpisodeResult:
    """Full harness always succeeds, policy only on even seeds; the obstacle scenario's policy-only
    episodes on seed 1001 raise, as a broken episode would."""
    if spec.scenario == "obstacle" and spec.ablation == "policy_only" and spec.seed == 1001:
        raise RuntimeError("episode broke")
    success = spec.ablation == "full" or spec.seed % 2 == 0
    return EpisodeResult(spec, success, "succeeded" if success else "failed", 0.1, 12.0 + spec.seed % 3, 1,
                             0 if success else 2, 0, 1, 0, 0 if spec.ablation == "full" else 1, 2,
                             [10.0 + spec.domain_id % 5, 20.0], [f"domain {spec.domain_id}"])


def unpicklable(spec: SleepSpec):
    return lambda: spec     # a lambda cannot be pickled back to the caller
