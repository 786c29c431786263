"""Goal text -> typed task, checked against what memory believes exists.

Accepted forms (case-insensitive, articles and "please" ignored):
    put|place|move|drop <object> in|into|inside|on|onto <destination>
    stack <object> on|onto <object>
Names resolve against the subjects memory has beliefs about plus the configured places
("red cube", "red_cube" and, when unique, "red" all name `red_cube`). A goal that cannot be parsed,
names an unknown or ambiguous thing, or is impossible (an object onto itself, picking a place) raises
`TaskError` with the reason; nothing moves.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

MAX_GOAL_CHARS = 256
MAX_NAME_CHARS = 64
FILLER_WORDS = {"the", "a", "an", "please"}
PUT = re.compile(r"^(?:put|place|move|drop)\s+(?P<obj>.+?)\s+(?P<prep>on top of|into|inside|in|onto|on)\s+(?P<dest>.+)$")
STACK = re.compile(r"^stack\s+(?P<obj>.+?)\s+(?:on top of|onto|on)\s+(?P<dest>.+)$")
USAGE = "expected 'put <object> in <place>' or 'stack <object> on <object>'"


class TaskError(ValueError):
    """The goal is refused; the message is the reason given to the caller."""


class TaskKind(str, Enum):
    PICK_PLACE = "pick_place"     # object into a place (container, area)
    STACK = "stack"               # object on top of another object


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    object_id: str
    destination: str
    text: str                     # the goal as given (trimmed)

    @property
    def canonical(self) -> str:
        return (f"put {self.object_id} in {self.destination}" if self.kind is TaskKind.PICK_PLACE
                else f"stack {self.object_id} on {self.destination}")


def _normalise(text: str) -> str:
    words = re.sub(r"\s+", " ", text.strip().lower()).split(" ")
    return " ".join(w for w in words if w not in FILLER_WORDS)


def resolve_name(phrase: str, known: set[str]) -> str:
    """A phrase ("red cube", "red_cube", "red") -> the one known subject it names, or TaskError."""
    phrase = phrase.strip()
    if not phrase:
        raise TaskError("empty object name")
    if len(phrase) > MAX_NAME_CHARS:
        raise TaskError(f"object name longer than {MAX_NAME_CHARS} characters")
    key = phrase.replace(" ", "_")
    if key in known:
        return key
    matches = sorted(k for k in known if k.split("_")[0] == key or k.replace("_", "") == key.replace("_", ""))
    if len(matches) == 1:
        return matches[0]
    shown = sorted(known)[:20]
    if matches:
        raise TaskError(f"'{phrase}' is ambiguous: it could be any of {matches}")
    raise TaskError(f"unknown object '{phrase}': memory holds no belief about it (known: {shown})")


def parse_task(text, objects: set[str], places: set[str]) -> Task:
    """`text` -> Task. `objects`: movable things memory believes exist; `places`: destinations that
    cannot be picked (trays, areas)."""
    if not isinstance(text, str):
        raise TaskError("the goal must be text")
    if not text.strip():
        raise TaskError(f"empty goal: {USAGE}")
    if len(text) > MAX_GOAL_CHARS:
        raise TaskError(f"goal of {len(text)} characters (at most {MAX_GOAL_CHARS})")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") and not c.isspace() for c in text):
        raise TaskError("the goal contains control or unassigned characters")
    norm = _normalise(text)
    m = STACK.match(norm)
    kind = TaskKind.STACK if m else None
    if m is None:
        m = PUT.match(norm)
    if m is None:
        raise TaskError(f"cannot understand '{text.strip()[:80]}': {USAGE}")
    known = set(objects) | set(places)
    obj = resolve_name(m.group("obj"), known)
    dest = resolve_name(m.group("dest"), known)
    if obj in places:
        raise TaskError(f"impossible: '{obj}' is a place, it cannot be picked up")
    if obj == dest:
        raise TaskError(f"impossible: '{obj}' cannot be put on or in itself")
    if kind is None:
        kind = TaskKind.PICK_PLACE if dest in places else TaskKind.STACK
    elif dest in places:
        kind = TaskKind.PICK_PLACE            # "stack red on tray": into the tray
    return Task(kind=kind, object_id=obj, destination=dest, text=text.strip())
