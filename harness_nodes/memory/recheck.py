"""Re-check requests, the tracker's own viewpoint choice: for stale or uncertain facts the task
depends on, the cheapest way to look again (a fixed camera that already sees the fact on its next
frame, else the wrist camera moved above it), grouped per camera and sorted by cost then gain.
`RecheckPlanner` is that part of `MemoryCore` (a mixin over the core's fact table). Perception's
ViewpointPlanner chooses where to look by information gain; this one asks for it. Pure."""
from __future__ import annotations

import math

import numpy as np

from harness_nodes.memory.facts import Kind, RecheckRequest, State
from harness_nodes.memory.validity import expected_visible

NEXT_FRAME_COST = 0.2         # s: a camera that already sees the fact re-checks it on its next frame


class RecheckPlanner:
    """Re-check request methods of MemoryCore (see core.py for the state they use)."""

    def dependencies(self, now: float) -> set[str]:
        w = self.p.dependency_window
        return {s for s in self.p.task_subjects if s} | {s for s, t in self.queried.items() if now - t <= w}

    def recheck_requests(self, now: float, cameras: dict[str, tuple] | None = None,
                         movable_camera: str = "wrist", view_height: float = 0.3) -> list[RecheckRequest]:
        """For each stale or uncertain posed fact the task depends on, the cheapest useful way to look
        again: a camera that already has it in view (next frame), else moving `movable_camera` above it
        (distance from the tool / ee_speed). Grouped per camera, sorted by cost then gain."""
        p = self.p
        t = self.table
        cameras = cameras or {}
        needs = []
        for subject in sorted(self.dependencies(now)):
            for s in t.slots_of_subject(subject).tolist():
                if t.kind[s] not in (Kind.VISUAL, Kind.ENVIRONMENT) or t.state[s] == State.CONTRADICTED:
                    continue
                if not np.all(np.isfinite(t.pos[s])):
                    continue
                if self.held is not None and t.records[s].fact_id == self.held.fact_id:
                    continue
                c = float(t.confidence(s, now))
                if t.state[s] != State.VALID or c < p.stale_threshold:
                    needs.append((s, c))
        if not needs:
            return []
        options: dict[tuple, dict] = {}
        for s, c in needs:
            pos = t.pos[s]
            gain = -math.log(max(c, 1e-3))
            best = None
            for name, (cpos, cquat, model) in cameras.items():
                if name == movable_camera or model is None:
                    continue
                if expected_visible(pos[None], cpos, cquat, model, None, require_depth=False)[0]:
                    best = (NEXT_FRAME_COST, name, tuple(cpos), tuple(cquat))
                    break
            if best is None:
                view = pos + np.array([0.0, 0.0, view_height])
                start = self.ee[0] if self.ee is not None else view
                cost = float(np.linalg.norm(view - start)) / p.ee_speed + NEXT_FRAME_COST
                down = (1.0, 0.0, 0.0, 0.0)   # optical z pointing down
                best = (cost, movable_camera, tuple(view), down)
            key = (best[1], tuple(np.round(best[2], 2)))
            o = options.setdefault(key, {"cost": best[0], "camera": best[1], "pos": best[2], "quat": best[3],
                                         "slots": [], "gain": 0.0})
            o["slots"].append(s)
            o["gain"] += gain
        out = []
        for o in sorted(options.values(), key=lambda o: (o["cost"], -o["gain"])):
            slots = o["slots"]
            look = tuple(np.mean(t.pos[slots], axis=0))
            why = ", ".join(f"{t.records[s].subject} {State(int(t.state[s])).name.lower()} "
                            f"({float(t.confidence(s, now)):.2f})" for s in slots)
            out.append(RecheckRequest(f"recheck-{o['camera']}-{int(now * 1000)}-{len(out)}", o["camera"], o["pos"],
                                      o["quat"], look, sorted({t.records[s].subject for s in slots}),
                                      [t.records[s].fact_id for s in slots], f"re-check: {why}", o["gain"],
                                      o["cost"]))
            if len(out) >= p.recheck_max:
                break
        return out
