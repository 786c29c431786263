"""Plain data types of the memory tracker: fact kinds and states (same numbers as
robot_harness/MemoryFact), a fact as the core hands it out, observation inputs and events."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    VISUAL = 0        # object identity and pose
    ACTION = 1        # what was tried, with what outcome
    ENVIRONMENT = 2   # must be re-observed rather than trusted
    TEXT = 3          # instructions, notes from human feedback
    LATENT = 4        # cached model-internal encodings


class State(IntEnum):
    VALID = 0
    STALE = 1
    INVALID = 2
    CONTRADICTED = 3


class EventType(IntEnum):   # robot_harness/MemoryEvent.EVENT_*
    CREATED = 0
    VERIFIED = 1
    STALE = 2
    INVALIDATED = 3
    CONTRADICTED = 4


class ObsStatus(IntEnum):   # robot_harness/ObjectObservation.STATUS_*
    SEEN = 0
    EXPECTED_NOT_SEEN = 1


NAN3 = (float("nan"),) * 3
IDENTITY_Q = (0.0, 0.0, 0.0, 1.0)
ZERO_COV = (0.0,) * 9


@dataclass(slots=True)
class Fact:
    """One fact with its validity. Times are seconds on the tracker's clock. Slotted: queries build
    many of them, and a slotted object is quicker to build and smaller."""
    fact_id: str
    kind: Kind
    subject: str
    value: str = ""                                   # JSON payload for non-pose values
    position: tuple = NAN3                            # m, world; NaN = no pose
    orientation: tuple = IDENTITY_Q                   # x, y, z, w
    covariance: tuple = ZERO_COV                      # row-major 3x3, m^2
    confidence: float = 1.0                           # 0..1, at `now` when handed out
    first_seen: float = 0.0
    last_verified: float = 0.0
    source: str = ""
    camera: str = ""
    state: State = State.VALID
    invalidated_by: str = ""

    @property
    def has_pose(self) -> bool:
        return bool(np.all(np.isfinite(self.position)))


@dataclass
class ObjectObs:
    """One object in one camera frame (robot_harness/ObjectObservation as plain data)."""
    object_id: str
    label: str = ""
    status: int = ObsStatus.SEEN
    position: tuple = (0.0, 0.0, 0.0)
    orientation: tuple = IDENTITY_Q
    covariance: tuple = ZERO_COV
    identity_confidence: float = 1.0
    visible_fraction: float = 1.0
    pixel_support: int = 0
    camera: str = ""
    frame_id: str = ""                                # empty = the scene's frame
    stamp: float | None = None                        # None = the scene's stamp


@dataclass
class SceneObs:
    """Everything one perception pass over one camera frame produced (robot_harness/SceneObservation)."""
    camera: str
    stamp: float
    frame_id: str
    camera_position: tuple = (0.0, 0.0, 0.0)
    camera_orientation: tuple = IDENTITY_Q
    objects: list[ObjectObs] = field(default_factory=list)
    latency: float = 0.0


@dataclass
class Event:
    """A change in a fact's validity (robot_harness/MemoryEvent as plain data)."""
    event: EventType
    fact_id: str
    subject: str
    reason: str
    confidence_before: float
    confidence_after: float
    stamp: float = 0.0


@dataclass
class RecheckRequest:
    """Where to look to re-check facts, and why (sent as robot_harness/ViewpointRequest)."""
    request_id: str
    camera: str
    camera_position: tuple
    camera_orientation: tuple
    look_at: tuple
    subjects: list[str]
    fact_ids: list[str]
    reason: str
    information_gain: float   # nats
    cost: float               # s
