"""SQLite persistence of facts (WAL journal): every committed write survives a crash of the process
(kill -9). A file that is not a readable fact store is never wiped: it is renamed beside itself
(`<name>.corrupt-<unix time>`, with its -wal/-shm files) and a fresh store is created; the
rename is reported in `recovered_from` so the caller can raise a clear error.

Times in the database are the tracker's clock at write time; `meta` keeps the clock and the wall
time of the last write so a restart can re-base fact times and age them by the downtime.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from harness_nodes.memory.facts import Fact, Kind, State

SCHEMA_VERSION = 1
_COLUMNS = ("fact_id", "kind", "subject", "value", "px", "py", "pz", "qx", "qy", "qz", "qw", "cov",
            "confidence", "conf_time", "first_seen", "last_verified", "source", "camera", "state",
            "invalidated_by")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
  fact_id TEXT PRIMARY KEY, kind INTEGER NOT NULL, subject TEXT NOT NULL, value TEXT NOT NULL,
  px REAL, py REAL, pz REAL, qx REAL, qy REAL, qz REAL, qw REAL, cov TEXT NOT NULL,
  confidence REAL NOT NULL, conf_time REAL NOT NULL, first_seen REAL NOT NULL,
  last_verified REAL NOT NULL, source TEXT NOT NULL, camera TEXT NOT NULL, state INTEGER NOT NULL,
  invalidated_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreCorrupted(RuntimeError):
    """The database file could not be used; it was kept aside and a fresh store created."""


def _nan_to_none(v: float):
    return None if v != v else float(v)


def _none_to_nan(v):
    return float("nan") if v is None else float(v)


class SqliteStore:
    """Fact rows keyed by fact_id. `write(facts_with_conf_time, deleted, clock)` is one transaction."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.recovered_from: Path | None = None
        self.error: str = ""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = self._open(synchronous)
        except sqlite3.DatabaseError as exc:
            self.error = f"memory database {self.path} unreadable ({exc})"
            self.recovered_from = self._set_aside()
            self.error += f"; kept as {self.recovered_from}, started a fresh store"
            self.conn = self._open(synchronous)

    def _open(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")
            conn.executescript(_SCHEMA)
            cols = [r[1] for r in conn.execute("PRAGMA table_info(facts)")]
            if tuple(cols) != _COLUMNS:
                raise sqlite3.DatabaseError(f"unexpected facts table columns {cols}")
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if version is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif version[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version[0]}, expected {SCHEMA_VERSION}")
            return conn
        except sqlite3.DatabaseError:
            conn.close()
            raise

    def _set_aside(self) -> Path:
        stamp = int(time.time())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 0
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, target)
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.replace(side, Path(str(target) + suffix))
        return target

    # ------------------------------------------------------------------ write
    def write(self, rows: list[tuple[Fact, float]], deleted: list[str], clock: float) -> None:
        """Upsert `rows` ((fact, conf_time): fact.confidence is the confidence at conf_time), delete
        `deleted`, and record the clock, all in one transaction."""
        data = []
        for f, conf_time in rows:
            px, py, pz = (_nan_to_none(v) for v in f.position)
            data.append((f.fact_id, int(f.kind), f.subject, f.value, px, py, pz, *map(float, f.orientation),
                         json.dumps(list(map(float, f.covariance))), float(f.confidence), float(conf_time),
                         float(f.first_seen), float(f.last_verified), f.source, f.camera, int(f.state),
                         f.invalidated_by))
        c = self.conn
        c.execute("BEGIN")
        try:
            if data:
                c.executemany(f"INSERT OR REPLACE INTO facts VALUES ({','.join('?' * len(_COLUMNS))})", data)
            if deleted:
                c.executemany("DELETE FROM facts WHERE fact_id=?", [(d,) for d in deleted])
            c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                          [("clock", repr(float(clock))), ("wall", repr(time.time()))])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ read
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def load(self) -> list[tuple[Fact, float]]:
        out = []
        for r in self.conn.execute(f"SELECT {','.join(_COLUMNS)} FROM facts"):
            (fid, kind, subject, value, px, py, pz, qx, qy, qz, qw, cov, conf, conf_time, first_seen,
             last_verified, source, camera, state, invalidated_by) = r
            fact = Fact(fact_id=fid, kind=Kind(kind), subject=subject, value=value,
                        position=(_none_to_nan(px), _none_to_nan(py), _none_to_nan(pz)),
                        orientation=(qx, qy, qz, qw), covariance=tuple(json.loads(cov)), confidence=conf,
                        first_seen=first_seen, last_verified=last_verified, source=source, camera=camera,
                        state=State(state), invalidated_by=invalidated_by)
            out.append((fact, conf_time))
        return out

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM facts").fetchone()[0])

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
