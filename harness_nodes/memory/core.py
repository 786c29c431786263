"""MemoryCore: the validity rules of the memory tracker, pure (no rclpy), clock passed in.

- Confidence decays per kind (half-lives); a VALID fact below `stale_threshold` becomes STALE.
- An executed action lowers the confidence of facts near its swept end-effector path (capsule
  distance) and near contacts; facts within `action_invalidate_radius` become INVALID. The path is
  the measured one (FK of joint states); motion no chunk accounts for is segmented by
  `MeasuredMotion` (motion.py) and applied the same way, so every motion of the arm counts.
- A grasped object's pose follows the gripper until release; at release it stays where let go
  (grasp.py: `GraspTracking`).
- Negative evidence (STATUS_EXPECTED_NOT_SEEN, or a fact inside a camera's frustum, not occluded
  by the depth image, and not detected) multiplies confidence by `negative_evidence_factor`.
- An observation that disagrees with a fact beyond its uncertainty (chi-square gate on the
  Mahalanobis distance) marks the old belief CONTRADICTED (kept as `<id>@<stamp>`), emits an event,
  and the observation wins; an agreeing one is fused and re-verifies the fact.
- Re-check requests for stale or uncertain facts the task depends on, cheapest first (recheck.py:
  `RecheckPlanner`).
- Latent cache entries are dropped when facts of their region change.
- Every change is written to SQLite on `flush()` (facts and latent entries in one transaction); a
  restart re-bases times and ages facts by the downtime, reloads the latent entries (same bounds),
  and drops those whose region's facts were changed by anything but this core while it was down.
"""
from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from harness_nodes.memory.config import MemoryParameters
from harness_nodes.memory.grasp import GraspTracking, Held
from harness_nodes.memory.recheck import RecheckPlanner
from harness_nodes.common.geometry import CameraModel
from harness_nodes.memory.facts import (Event, EventType, Fact, Kind, ObjectObs, ObsStatus,
                                        SceneObs, State, NAN3, IDENTITY_Q, ZERO_COV)
from harness_nodes.memory.latent import LatentCache, LatentEntry, StaleEncoding
from harness_nodes.memory.persistence import SqliteStore
from harness_nodes.memory.table import FactTable
from harness_nodes.memory.validity import (CHI2_3DOF, covariance_ok, expected_visible, fuse, mahalanobis2,
                                           path_bounds, path_distance)

POSED_KINDS = (Kind.VISUAL, Kind.ENVIRONMENT)
MAX_ID_LENGTH = 256
DUPLICATE_WINDOW = 256        # recent (camera, stamp) pairs remembered to reject duplicates


def visual_id(object_id: str) -> str:
    return f"visual/{object_id}"


class InputError(ValueError):
    """Input rejected; the store is untouched."""


@dataclass
class Counters:
    observations: int = 0
    rejected: int = 0
    objects: int = 0
    created: int = 0
    verified: int = 0
    contradicted: int = 0
    invalidated: int = 0
    stale: int = 0
    negative_evidence: int = 0
    actions: int = 0
    grasps: int = 0
    releases: int = 0
    pruned: int = 0
    flushes: int = 0
    flush_seconds: float = 0.0


def _finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def _quat_ok(q) -> bool:
    return _finite(q) and abs(math.sqrt(sum(float(v) ** 2 for v in q)) - 1.0) < 0.05


def _normalise(q) -> tuple:
    n = math.sqrt(sum(float(v) ** 2 for v in q))
    return tuple(float(v) / n for v in q)


class MemoryCore(GraspTracking, RecheckPlanner):
    def __init__(self, params: MemoryParameters | None = None, store: SqliteStore | None = None,
                 now: float = 0.0):
        self.p = params or MemoryParameters()
        p = self.p
        self.table = FactTable(p.grid_cell)
        self.latent = LatentCache(p.latent_resolution, p.latent_max_entries, p.latent_max_bytes)
        self.store = store
        self.half_lives = {Kind.VISUAL: p.half_life_visual, Kind.ACTION: p.half_life_action,
                           Kind.ENVIRONMENT: p.half_life_environment, Kind.TEXT: p.half_life_text,
                           Kind.LATENT: p.half_life_latent}
        self.gate = CHI2_3DOF[p.gate_probability]
        self.counters = Counters()
        self.events: list[Event] = []
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()
        self.held: Held | None = None
        self.exempt: dict[str, str] = {}              # fact_id -> chunk during which it was released
        self.queried: dict[str, float] = {}           # subject -> last query time
        self._recent_obs: OrderedDict = OrderedDict()
        self.ee: tuple[np.ndarray, np.ndarray, float] | None = None   # position, rotation, gripper width
        self.loaded = 0
        self.latent_loaded = 0
        self.latent_foreign_dropped = 0           # entries dropped at load for facts changed by another writer
        if store is not None:
            self._load(now)

    # ================================================================== helpers
    def _hl(self, kind: Kind) -> float:
        hl = self.half_lives[Kind(kind)]
        return hl if hl > 0 else math.inf

    def _put(self, fact: Fact, now: float) -> int:
        slot = self.table.put(fact, self._hl(fact.kind), now)
        self.dirty.add(fact.fact_id)
        self.deleted.discard(fact.fact_id)
        return slot

    def _emit(self, kind: EventType, fact_id: str, subject: str, reason: str, before: float, after: float,
              now: float) -> None:
        self.events.append(Event(kind, fact_id, subject, reason, float(before), float(after), now))
        name = {EventType.CREATED: "created", EventType.VERIFIED: "verified", EventType.STALE: "stale",
                EventType.INVALIDATED: "invalidated", EventType.CONTRADICTED: "contradicted"}[kind]
        setattr(self.counters, name, getattr(self.counters, name) + 1)

    def drain_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    def get(self, fact_id: str, now: float) -> Fact | None:
        return self.table.get(fact_id, now)

    def __len__(self) -> int:
        return len(self.table)

    def _changed_region(self, points, now: float | None = None) -> None:
        """Facts at `points` changed (at `now`): drop latent entries of those regions (and their
        latent facts); encodings captured before `now` there are refused from then on."""
        for key in self.latent.invalidate_points(points, now):
            fid = f"latent/{key}"
            slot = self.table.slot_of.get(fid)
            if slot is not None:
                self._remove(fid)

    def _remove(self, fact_id: str) -> None:
        if self.table.remove(fact_id):
            self.deleted.add(fact_id)
            self.dirty.discard(fact_id)

    # ================================================================== observations
    def validate_scene(self, s: SceneObs, now: float) -> str | None:
        """Why `s` must be rejected, or None. Checks everything before anything is stored."""
        p = self.p
        if not s.camera or len(s.camera) > MAX_ID_LENGTH:
            return "camera name empty or too long"
        if s.frame_id not in p.world_frames:
            return f"unknown frame '{s.frame_id}' (accepted: {p.world_frames})"
        if not math.isfinite(s.stamp):
            return "stamp not finite"
        if s.stamp > now + p.max_future:
            return f"stamp {s.stamp - now:.3f} s in the future (max {p.max_future} s)"
        if s.stamp < now - p.max_age:
            return f"stamp {now - s.stamp:.3f} s old (max {p.max_age} s)"
        if not _finite(s.camera_position) or not _quat_ok(s.camera_orientation):
            return "camera pose not finite or quaternion not unit"
        if len(s.objects) > p.max_objects:
            return f"{len(s.objects)} objects (max {p.max_objects})"
        if (s.camera, s.stamp) in self._recent_obs:
            return f"duplicate observation (camera '{s.camera}', stamp {s.stamp:.6f})"
        ids = [o.object_id for o in s.objects]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            return f"duplicate object ids {dup[:5]}"
        for o in s.objects:
            why = self._validate_object(o, s, now)
            if why:
                return f"object '{o.object_id[:64]}': {why}"
        return None

    def _validate_object(self, o: ObjectObs, s: SceneObs, now: float) -> str | None:
        p = self.p
        if not o.object_id or len(o.object_id) > MAX_ID_LENGTH or "@" in o.object_id:
            return "object_id empty, too long or containing '@'"
        if len(o.label) > MAX_ID_LENGTH or len(o.camera) > MAX_ID_LENGTH or len(o.frame_id) > MAX_ID_LENGTH:
            return f"label, camera or frame_id longer than {MAX_ID_LENGTH} characters"
        if o.status not in (ObsStatus.SEEN, ObsStatus.EXPECTED_NOT_SEEN):
            return f"unknown status {o.status}"
        if o.frame_id and o.frame_id not in p.world_frames:
            return f"unknown frame '{o.frame_id}'"
        if o.stamp is not None and (not math.isfinite(o.stamp) or o.stamp > now + p.max_future
                                    or o.stamp < now - p.max_age):
            return "stamp outside the accepted window"
        if not (0.0 <= o.identity_confidence <= 1.0) or not (0.0 <= o.visible_fraction <= 1.0):
            return "identity_confidence or visible_fraction outside [0, 1]"
        if o.status == ObsStatus.SEEN:
            if not _finite(o.position):
                return "position not finite"
            if max(abs(float(v)) for v in o.position) > p.max_position:
                return f"position beyond {p.max_position} m"
            if not _quat_ok(o.orientation):
                return "orientation not a unit quaternion"
            if not covariance_ok(o.covariance, p.max_variance):
                return "covariance not finite, symmetric, PSD and bounded"
        return None

    def ingest(self, s: SceneObs, now: float, camera: CameraModel | None = None,
               depth: np.ndarray | None = None) -> int:
        """Apply one scene observation. Raises InputError (store untouched) if invalid.
        `camera` and `depth` (same frame) enable frustum negative evidence. Returns events emitted."""
        why = self.validate_scene(s, now)
        if why:
            self.counters.rejected += 1
            raise InputError(why)
        self._recent_obs[(s.camera, s.stamp)] = True
        while len(self._recent_obs) > DUPLICATE_WINDOW:
            self._recent_obs.popitem(last=False)
        n0 = len(self.events)
        self.counters.observations += 1
        obs_ref = f"{s.camera}@{s.stamp:.3f}"
        handled = set()
        for o in s.objects:
            self.counters.objects += 1
            fid = visual_id(o.object_id)
            handled.add(fid)
            if o.status == ObsStatus.EXPECTED_NOT_SEEN:
                slot = self.table.slot_of.get(fid)
                if slot is not None:
                    self._negative(np.array([slot]), f"expected by {s.camera} and not seen ({obs_ref})", now)
            else:
                self._observe(o, s, obs_ref, now)
        if camera is not None:
            self._frustum_negative(s, camera, depth, handled, obs_ref, now)
        return len(self.events) - n0

    def _observe(self, o: ObjectObs, s: SceneObs, obs_ref: str, now: float) -> None:
        p = self.p
        fid = visual_id(o.object_id)
        stamp = s.stamp if o.stamp is None else o.stamp
        cov = np.asarray(o.covariance, dtype=float)
        if not np.any(cov):
            cov = (np.eye(3) * p.default_position_sigma ** 2).ravel()
        pos = np.asarray(o.position, dtype=float)
        quat = _normalise(o.orientation)
        conf_obs = float(o.identity_confidence) if o.identity_confidence > 0 else 1.0
        camera = o.camera or s.camera
        value = json.dumps({"label": o.label}) if o.label else ""
        slot = self.table.slot_of.get(fid)
        if slot is None:
            f = Fact(fid, Kind.VISUAL, o.object_id, value, tuple(pos), quat, tuple(cov), conf_obs, stamp, stamp,
                     "perception", camera, State.VALID, "")
            self._put(f, now)
            self._emit(EventType.CREATED, fid, o.object_id, f"first seen by {obs_ref}", 0.0, conf_obs, now)
            self._changed_region([pos], now)
            return
        old = self.table.fact(slot, now)
        before = old.confidence
        if self.held is not None and self.held.fact_id == fid:
            # The gripper's belief is replaced by what is seen; the offset follows the observation.
            self._set_held_offset(pos, quat)
        m2 = mahalanobis2(pos - np.asarray(old.position), old.covariance, cov, p.gate_min_sigma) \
            if old.has_pose else math.inf
        if old.state != State.INVALID and old.has_pose and m2 > self.gate:
            archived = replace(old, fact_id=f"{fid}@{old.last_verified:.3f}", state=State.CONTRADICTED,
                               invalidated_by=obs_ref)
            self._put(archived, now)
            dist = float(np.linalg.norm(pos - np.asarray(old.position)))
            new = replace(old, position=tuple(pos), orientation=quat, covariance=tuple(cov), confidence=conf_obs,
                          last_verified=stamp, source="perception", camera=camera, state=State.VALID,
                          invalidated_by="", value=value or old.value)
            self._put(new, now)
            self._emit(EventType.CONTRADICTED, fid, o.object_id,
                       f"{obs_ref} saw it {dist:.3f} m away (Mahalanobis^2 {m2:.1f} > {self.gate}); "
                       f"observation wins, old belief kept as {archived.fact_id}", before, conf_obs, now)
            self._changed_region([pos, old.position], now)
            return
        if old.has_pose and old.state != State.INVALID:
            mean, fused = fuse(old.position, old.covariance, pos, cov, p.gate_min_sigma)
            fused_cov = tuple(fused.ravel())
        else:
            mean, fused_cov = pos, tuple(cov)
        conf = max(before, conf_obs)
        new = replace(old, position=tuple(mean), orientation=quat, covariance=fused_cov, confidence=conf,
                      last_verified=stamp, source="perception", camera=camera, state=State.VALID,
                      invalidated_by="" if old.state != State.VALID else old.invalidated_by,
                      value=value or old.value)
        self._put(new, now)
        if old.state != State.VALID or before < p.stale_threshold:
            self._emit(EventType.VERIFIED, fid, o.object_id,
                       f"re-observed by {obs_ref} (was {old.state.name.lower()})", before, conf, now)
        moved = float(np.linalg.norm(np.asarray(mean) - np.asarray(old.position))) if old.has_pose else math.inf
        if moved > p.gate_min_sigma:
            self._changed_region([mean] + ([old.position] if old.has_pose else []), now)

    def _negative(self, slots: np.ndarray, reason: str, now: float) -> None:
        """Negative evidence on `slots`: confidence times the factor; STALE if it falls below."""
        if not len(slots):
            return
        self.counters.negative_evidence += len(slots)
        self._scale(slots, np.full(len(slots), self.p.negative_evidence_factor), np.zeros(len(slots), bool),
                    None, reason, now)

    def _scale(self, slots, factor, invalidate, dist, reason: str, now: float) -> list[str]:
        """Vectorised: confidence of `slots` times `factor`; INVALID where `invalidate`, STALE where a
        VALID fact falls below the threshold. Events only for state changes. Returns the subjects
        newly invalidated."""
        t = self.table
        before = t.confidence(slots, now)
        after = before * factor
        t.set_confidence(slots, after, now)
        state = t.state[slots]
        new_inv = invalidate & (state != State.INVALID) & (state != State.CONTRADICTED)
        new_stale = ~invalidate & (state == State.VALID) & (after < self.p.stale_threshold)
        t.state[slots[new_inv]] = State.INVALID
        t.state[slots[new_stale]] = State.STALE
        subjects = []
        recs = t.records
        for i in np.flatnonzero(new_inv | new_stale).tolist():
            rec = recs[int(slots[i])]
            rec.invalidated_by = reason
            why = reason if dist is None else f"{reason} passed {dist[i]:.3f} m away"
            if new_inv[i]:
                subjects.append(rec.subject)
                self._emit(EventType.INVALIDATED, rec.fact_id, rec.subject, why, before[i], after[i], now)
            else:
                self._emit(EventType.STALE, rec.fact_id, rec.subject, why, before[i], after[i], now)
        self._changed_region(t.pos[slots], now)
        return subjects

    def _frustum_negative(self, s: SceneObs, camera: CameraModel, depth, handled: set, obs_ref: str,
                          now: float) -> None:
        t = self.table
        live = t.live_slots()
        mask = ((t.kind[live] == Kind.VISUAL) & (t.state[live] != State.CONTRADICTED)
                & np.all(np.isfinite(t.pos[live]), axis=1))
        cand = live[mask]
        if not len(cand):
            return
        skip = [t.slot_of[f] for f in handled if f in t.slot_of]
        if self.held is not None and self.held.fact_id in t.slot_of:
            skip.append(t.slot_of[self.held.fact_id])
        if skip:
            cand = cand[~np.isin(cand, skip)]
        if not len(cand):
            return
        vis = expected_visible(t.pos[cand], s.camera_position, s.camera_orientation, camera, depth,
                               self.p.occlusion_margin, self.p.frustum_border_px,
                               self.p.require_depth_for_negative_evidence)
        self._negative(cand[vis], f"in view of {s.camera} and not occluded, but not detected ({obs_ref})", now)

    # ================================================================== actions and the gripper
    def apply_action(self, chunk_id: str, path, now: float, outcome: str = "succeeded", source: str = "",
                     contacts=()) -> int:
        """An executed action swept the tool along `path` (M,3, m, world): facts near it lose confidence,
        facts within `action_invalidate_radius` become INVALID; facts near `contacts` more so.
        Records an action fact. Returns the number of facts affected."""
        p = self.p
        path = np.asarray(path, dtype=float).reshape(-1, 3)
        path = path[np.all(np.isfinite(path), axis=1)]
        contacts = np.asarray(contacts, dtype=float).reshape(-1, 3)
        contacts = contacts[np.all(np.isfinite(contacts), axis=1)]
        self.counters.actions += 1
        t = self.table
        affected = 0
        invalidated_subjects = []
        if len(path):
            centre, radius = path_bounds(path, p.action_influence_radius)
            cand = t.in_region(centre, radius)
            cand = self._action_candidates(cand, chunk_id)
            if len(cand):
                d = path_distance(t.pos[cand], path)
                factor = np.ones(len(cand))
                span = max(p.action_influence_radius - p.action_invalidate_radius, 1e-9)
                near = d <= p.action_influence_radius
                factor[near] = p.action_min_factor + (1 - p.action_min_factor) * np.clip(
                    (d[near] - p.action_invalidate_radius) / span, 0.0, 1.0)
                if len(contacts) and p.contact_radius > 0:
                    dc = path_distance(t.pos[cand], contacts) if len(contacts) > 1 else \
                        np.linalg.norm(t.pos[cand] - contacts[0], axis=1)
                    factor = np.where(dc <= p.contact_radius, factor * p.contact_factor, factor)
                    d = np.minimum(d, dc)
                hit = factor < 1.0
                affected, invalidated_subjects = self._lower(cand[hit], factor[hit], d[hit],
                                                             d[hit] <= p.action_invalidate_radius,
                                                             f"action {chunk_id}", now)
        elif len(contacts):
            for c in contacts:
                cand = self._action_candidates(t.in_region(c, p.contact_radius), chunk_id)
                if len(cand):
                    d = np.linalg.norm(t.pos[cand] - c, axis=1)
                    n, subj = self._lower(cand, np.full(len(cand), p.contact_factor), d,
                                          d <= p.action_invalidate_radius, f"contact in {chunk_id}", now)
                    affected += n
                    invalidated_subjects += subj
        end = tuple(path[-1]) if len(path) else (tuple(contacts[-1]) if len(contacts) else NAN3)
        length = float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))) if len(path) > 1 else 0.0
        value = json.dumps({"chunk_id": chunk_id, "outcome": outcome, "source": source,
                            "path_points": int(len(path)), "path_length": round(length, 4),
                            "contacts": contacts.round(4).tolist(), "invalidated": invalidated_subjects})
        fid = f"action/{chunk_id}"
        self._put(Fact(fid, Kind.ACTION, chunk_id, value, end, IDENTITY_Q, ZERO_COV, 1.0, now, now,
                       source or "controller", "", State.VALID, ""), now)
        # The chunk is over: releases during it are no longer exempt.
        self.exempt = {k: v for k, v in self.exempt.items() if v != chunk_id}
        return affected

    def _action_candidates(self, cand: np.ndarray, chunk_id: str) -> np.ndarray:
        t = self.table
        if not len(cand):
            return cand
        ok = np.isin(t.kind[cand], [int(k) for k in POSED_KINDS]) & (t.state[cand] != State.CONTRADICTED)
        cand = cand[ok]
        skip = set()
        if self.held is not None:
            skip.add(self.held.fact_id)
        skip |= {f for f, c in self.exempt.items() if c == chunk_id}
        if skip:
            cand = np.array([s for s in cand.tolist() if t.records[s].fact_id not in skip], dtype=np.intp)
        return cand

    def _lower(self, slots, factor, dist, invalidate, reason: str, now: float) -> tuple[int, list[str]]:
        """Multiply confidence of `slots` by `factor`; INVALID where `invalidate`, STALE where it falls
        below the threshold. Emits events, drops latent entries there."""
        if not len(slots):
            return 0, []
        return len(slots), self._scale(slots, factor, np.asarray(invalidate, bool), dist, reason, now)

    # ================================================================== time
    def tick(self, now: float) -> int:
        """Mark VALID facts whose decayed confidence fell below the threshold STALE; prune to
        `max_facts`. Returns events emitted."""
        t = self.table
        n0 = len(self.events)
        live = t.live_slots()
        if len(live):
            valid = live[t.state[live] == State.VALID]
            if len(valid):
                conf = t.confidence(valid, now)
                gone = valid[conf < self.p.stale_threshold]
                for s, c in zip(gone.tolist(), conf[conf < self.p.stale_threshold].tolist()):
                    rec = t.records[s]
                    t.state[s] = State.STALE
                    rec.invalidated_by = "time"
                    self.dirty.add(rec.fact_id)
                    self._emit(EventType.STALE, rec.fact_id, rec.subject,
                               f"confidence decayed below {self.p.stale_threshold} "
                               f"(last verified {now - rec.last_verified:.1f} s ago)", c, c, now)
        if len(t) > self.p.max_facts:
            self.prune(now, int(self.p.max_facts * 0.9))
        return len(self.events) - n0

    def prune(self, now: float, keep: int) -> int:
        """Drop facts beyond `keep`: superseded (contradicted) beliefs first, then invalid, stale, old
        actions, then the least confident. The held object and text facts are kept."""
        t = self.table
        live = t.live_slots()
        excess = len(live) - keep
        if excess <= 0:
            return 0
        state = t.state[live]
        kind = t.kind[live]
        cls = np.full(len(live), 5)
        cls[kind == Kind.ACTION] = 3
        cls[state == State.STALE] = 2
        cls[state == State.INVALID] = 1
        cls[state == State.CONTRADICTED] = 0
        cls[kind == Kind.TEXT] = 9
        if self.held is not None and self.held.fact_id in t.slot_of:
            cls[live == t.slot_of[self.held.fact_id]] = 10
        order = np.lexsort((t.conf_t[live], t.confidence(live, now), cls))
        victims = live[order[:excess]]
        victims = victims[cls[order[:excess]] < 9]
        for s in victims.tolist():
            self._remove(t.records[s].fact_id)
        self.counters.pruned += len(victims)
        return len(victims)

    # ================================================================== queries
    def query(self, now: float, subject: str = "", kind: int | None = None, center=None, radius: float = 0.0,
              min_confidence: float = 0.0, include_superseded: bool = True) -> list[Fact]:
        return self.query_page(now, subject, kind, center, radius, min_confidence, include_superseded)[0]

    def query_page(self, now: float, subject: str = "", kind: int | None = None, center=None, radius: float = 0.0,
                   min_confidence: float = 0.0, include_superseded: bool = True,
                   limit: int | None = None) -> tuple[list[Fact], int]:
        """`query(...)[:limit]` and the number of facts matched: Fact objects are built only for the
        slots returned, in one vectorised pass (the confidence computed for the filter is reused)."""
        slots, conf = self._select(now, subject, kind, center, radius, min_confidence, include_superseded)
        total = len(slots)
        if limit is not None and total > limit:
            slots = slots[:max(0, int(limit))]
            conf = None if conf is None else conf[:len(slots)]
        return self.table.facts(slots, now, conf), total

    def _select(self, now: float, subject: str, kind: int | None, center, radius: float, min_confidence: float,
                include_superseded: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Slots matching a query, in answer order, and their confidence at `now` if it was computed."""
        t = self.table
        if subject:
            self.queried[subject] = now
            slots = t.slots_of_subject(subject)
        elif center is not None:
            slots = t.in_region(center, radius)
        else:
            slots = t.live_slots()
        if subject and center is not None and len(slots):
            d = t.pos[slots] - np.asarray(center, dtype=float)
            with np.errstate(invalid="ignore"):
                slots = slots[np.einsum("ij,ij->i", d, d) <= radius * radius]
        if kind is not None and len(slots):
            slots = slots[t.kind[slots] == kind]
        if not include_superseded and len(slots):
            slots = slots[t.state[slots] != State.CONTRADICTED]
        conf = None
        if min_confidence > 0 and len(slots):
            conf = t.confidence(slots, now)
            keep = conf >= min_confidence
            slots, conf = slots[keep], conf[keep]
        return slots, conf

    def query_slots(self, now: float, center, radius: float, min_confidence: float = 0.0) -> np.ndarray:
        """Region query without building Fact objects (for the benchmark and markers)."""
        t = self.table
        slots = t.in_region(center, radius)
        if min_confidence > 0 and len(slots):
            slots = slots[t.confidence(slots, now) >= min_confidence]
        return slots

    def invalidate_region(self, center, radius: float, reason: str, now: float) -> int:
        """Invalidate every posed fact within `radius` of `center` (e.g. a reported disturbance)."""
        t = self.table
        cand = t.in_region(center, radius)
        if len(cand):
            cand = cand[np.isin(t.kind[cand], [int(k) for k in POSED_KINDS])]
        if not len(cand):
            return 0
        d = np.linalg.norm(t.pos[cand] - np.asarray(center, dtype=float), axis=1)
        n, _ = self._lower(cand, np.full(len(cand), self.p.action_min_factor), d, np.ones(len(cand), bool),
                           reason, now)
        return n

    def assert_fact(self, fact: Fact, now: float) -> str:
        """Add or replace a fact from another source (text, environment, action, visual). Validated."""
        p = self.p
        try:
            kind = Kind(int(fact.kind))
            state = State(int(fact.state))
        except ValueError:
            raise InputError(f"unknown kind {fact.kind} or state {fact.state}") from None
        if not fact.subject or len(fact.subject) > MAX_ID_LENGTH:
            raise InputError("subject empty or too long")
        if max(len(fact.source), len(fact.camera)) > MAX_ID_LENGTH or len(fact.invalidated_by) > 4 * MAX_ID_LENGTH:
            raise InputError(f"source or camera longer than {MAX_ID_LENGTH} characters, or invalidated_by "
                             f"longer than {4 * MAX_ID_LENGTH}")
        if len(fact.value.encode()) > p.max_value_bytes:
            raise InputError(f"value longer than {p.max_value_bytes} bytes")
        if not (0.0 <= fact.confidence <= 1.0) or not math.isfinite(fact.confidence):
            raise InputError("confidence outside [0, 1]")
        has_pose = _finite(fact.position)
        if kind == Kind.VISUAL and not has_pose:
            raise InputError("a visual fact needs a finite position")
        if has_pose and max(abs(float(v)) for v in fact.position) > p.max_position:
            raise InputError(f"position beyond {p.max_position} m")
        if not _quat_ok(fact.orientation):
            raise InputError("orientation not a unit quaternion")
        if not covariance_ok(fact.covariance, p.max_variance):
            raise InputError("covariance not finite, symmetric, PSD and bounded")
        fid = fact.fact_id or (visual_id(fact.subject) if kind == Kind.VISUAL
                               else f"{kind.name.lower()}/{fact.subject}")
        if len(fid) > 2 * MAX_ID_LENGTH:
            raise InputError("fact_id too long")
        existing = self.table.get(fid, now)
        f = replace(fact, fact_id=fid, kind=kind, state=state,
                    position=tuple(float(v) for v in fact.position) if has_pose else NAN3,
                    orientation=_normalise(fact.orientation), first_seen=existing.first_seen if existing else now,
                    last_verified=now)
        self._put(f, now)
        if existing is None:
            self._emit(EventType.CREATED, fid, f.subject, f"asserted by {f.source or 'a client'}", 0.0,
                       f.confidence, now)
        else:
            self._emit(EventType.VERIFIED, fid, f.subject, f"re-asserted by {f.source or 'a client'}",
                       existing.confidence, f.confidence, now)
        if has_pose and kind in POSED_KINDS:
            self._changed_region([f.position] + ([existing.position] if existing and existing.has_pose else []), now)
        return fid

    # ================================================================== latent cache
    def latent_store(self, camera: str, model: str, center, radius: float, stamp: float, shape, data,
                     now: float) -> str:
        try:
            key = self.latent.store(camera, model, center, radius, stamp, shape, data)
        except StaleEncoding:
            raise                         # not bad input: the frames were older than the region
        except ValueError as exc:
            raise InputError(str(exc)) from None
        fid = f"latent/{key}"
        value = json.dumps({"camera": camera, "model": model, "shape": list(map(int, shape)), "radius": radius})
        self._put(Fact(fid, Kind.LATENT, f"latent/{camera}/{model}", value, tuple(map(float, center)), IDENTITY_Q,
                       ZERO_COV, 1.0, stamp, stamp, "latent_cache", camera, State.VALID, ""), now)
        # Entries the cache evicted for size lose their facts too.
        evicted, self.latent.evicted = self.latent.evicted, []
        for k in evicted:
            self._remove(f"latent/{k}")
        return key

    def latent_fetch(self, camera: str, model: str, center, radius: float) -> LatentEntry | None:
        try:
            return self.latent.fetch(camera, model, center, radius)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    # ================================================================== persistence
    def flush(self, now: float) -> int:
        """Write changed and deleted facts in one transaction. Returns rows written."""
        if self.store is None:
            self.dirty.clear()
            self.deleted.clear()
            self.table.dirty[:] = False
            self.latent.written()
            return 0
        t0 = time.perf_counter()
        t = self.table
        rows = []
        slots = set(t.dirty_slots().tolist())
        slots.update(t.slot_of[f] for f in self.dirty if f in t.slot_of)
        if slots:
            arr = np.fromiter(slots, dtype=np.intp, count=len(slots))
            # Stored: the confidence at conf_time (not decayed to now), so a reload decays it further.
            rows = list(zip(t.facts(arr, now, t.conf[arr]), t.conf_t[arr].tolist()))
        deleted = list(self.deleted)
        latent, latent_deleted, latent_used = self.latent.pending()
        self.store.write(rows, deleted, now, latent, latent_deleted, latent_used)
        t.dirty[:] = False                 # only once written: a failed write is retried by the next flush
        self.latent.written()
        self.dirty.clear()
        self.deleted.clear()
        self.counters.flushes += 1
        self.counters.flush_seconds += time.perf_counter() - t0
        return len(rows) + len(deleted) + len(latent) + len(latent_deleted)

    def _load(self, now: float) -> None:
        """Reload facts; re-base their times so their age includes the downtime; re-mark by time.
        Reload latent entries; drop those whose region holds a fact changed by another writer."""
        meta = self.store.meta()
        rows = self.store.load()
        entries, bad = self.store.load_latent()
        self.latent.restore(entries, bad)
        clock = float(meta.get("clock", now))
        wall = float(meta.get("wall", time.time()))
        downtime = max(0.0, time.time() - wall)
        offset = now - downtime - clock
        stale_latent = []
        for fact, conf_time in rows:
            if fact.kind == Kind.LATENT and fact.fact_id.removeprefix("latent/") not in self.latent.entries:
                stale_latent.append(fact.fact_id)          # its encoding was not kept: the fact goes too
                continue
            fact.first_seen += offset
            fact.last_verified += offset
            self.table.put(fact, self._hl(fact.kind), conf_time + offset)
        self.deleted.update(stale_latent)
        # Facts written by anything but this core since its last write (the triggers' log): the
        # cache's rule, as if this core had made the change.
        changes = self.store.changed_positions()
        if len(changes):
            n0 = len(self.latent.entries)
            self._changed_region(np.unique(changes, axis=0))
            self.latent_foreign_dropped = n0 - len(self.latent.entries)
        self.loaded = len(self.table)
        self.latent_loaded = len(self.latent.entries)
        self.downtime = downtime
        self.tick(now)
        # Rows are rewritten on the new clock, so the next restart re-bases from here.
        self.dirty.update(self.table.slot_of)
        self.flush(now)
