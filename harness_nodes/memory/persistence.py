"""SQLite persistence of facts and latent-cache entries (WAL journal): every committed write
survives a crash of the process (kill -9). A file that is not a readable store is never wiped: it
is renamed beside itself (`<name>.corrupt-<unix time>`, with its -wal/-shm files) and a fresh store
is created; the rename is reported in `recovered_from` so the caller can raise a clear error.
A path that is a directory, or an existing 0-byte file (sqlite would silently treat it as an empty
store: facts gone, no error), raises `StoreUnusable` naming the path and touches nothing.

Times in the database are the tracker's clock at write time; `meta` keeps the clock and the wall
time of the last write so a restart can re-base fact times and age them by the downtime.

Latent entries (`latent`: key, region, shape, float32 data, recency) are written in the same
transaction as the facts whose change dropped or kept them, so the persisted cache always obeys
the cache's rule (an entry is dropped when a fact in its region changes). Facts changed by anything
else (another program, an older tracker) are caught by triggers: they log the old and new position
of every posed fact written to `fact_changes`; the core's own writes clear that log in the same
transaction (it has applied the rule itself), so at load the log holds exactly the changes the core
did not see, and `changed_positions()` hands them over to drop the entries of those regions.
One tracker writes a file at a time (another writer is expected only while it is down).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from harness_nodes.memory.facts import Fact, Kind, State
from harness_nodes.memory.latent import LatentEntry

# The latent tables and triggers are additions an older reader ignores (and whose fact writes the
# triggers still log), so they keep the version.
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
CREATE TABLE IF NOT EXISTS latent (
  entry_id TEXT PRIMARY KEY, camera TEXT NOT NULL, model TEXT NOT NULL, cx REAL NOT NULL, cy REAL NOT NULL,
  cz REAL NOT NULL, radius REAL NOT NULL, stamp REAL NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
  used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fact_changes (px REAL, py REAL, pz REAL);
CREATE TRIGGER IF NOT EXISTS fact_replaced BEFORE INSERT ON facts BEGIN
  INSERT INTO fact_changes SELECT px, py, pz FROM facts WHERE fact_id = NEW.fact_id AND kind IN ({posed});
END;
CREATE TRIGGER IF NOT EXISTS fact_inserted AFTER INSERT ON facts WHEN NEW.kind IN ({posed}) BEGIN
  INSERT INTO fact_changes VALUES (NEW.px, NEW.py, NEW.pz);
END;
CREATE TRIGGER IF NOT EXISTS fact_updated AFTER UPDATE ON facts BEGIN
  INSERT INTO fact_changes SELECT OLD.px, OLD.py, OLD.pz WHERE OLD.kind IN ({posed});
  INSERT INTO fact_changes SELECT NEW.px, NEW.py, NEW.pz WHERE NEW.kind IN ({posed});
END;
CREATE TRIGGER IF NOT EXISTS fact_deleted AFTER DELETE ON facts WHEN OLD.kind IN ({posed}) BEGIN
  INSERT INTO fact_changes VALUES (OLD.px, OLD.py, OLD.pz);
END;
""".format(posed=f"{int(Kind.VISUAL)}, {int(Kind.ENVIRONMENT)}")   # the kinds whose changes drop latent entries
_LATENT_COLUMNS = ("entry_id", "camera", "model", "cx", "cy", "cz", "radius", "stamp", "shape", "data", "used")


class StoreUnusable(RuntimeError):
    """The database path cannot be a store and is left as it is (a directory, an empty file): the
    tracker refuses to start rather than start empty and lose what the operator expects to be there."""


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
        if self.path.is_dir():
            raise StoreUnusable(f"memory database path {self.path} is a directory, not a database file")
        if self.path.exists() and self.path.stat().st_size == 0:
            raise StoreUnusable(f"memory database {self.path} is an empty (0-byte) file: its facts are gone or it "
                                f"was never written; remove it to start a fresh store")
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
            for table, expected in (("latent", _LATENT_COLUMNS), ("fact_changes", ("px", "py", "pz"))):
                cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                if tuple(cols) != expected:
                    raise sqlite3.DatabaseError(f"unexpected {table} table columns {cols}")
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
    def write(self, rows: list[tuple[Fact, float]], deleted: list[str], clock: float,
              latent: list[LatentEntry] = (), latent_deleted: list[str] = (),
              latent_used: list[tuple[int, str]] = ()) -> None:
        """Upsert `rows` ((fact, conf_time): fact.confidence is the confidence at conf_time), delete
        `deleted`; upsert the `latent` entries, delete `latent_deleted`, set the recency of
        `latent_used` ((used, entry_id)); clear the change log (the writer applied the latent rule
        to its own changes); and record the clock, all in one transaction."""
        data = []
        for f, conf_time in rows:
            px, py, pz = (_nan_to_none(v) for v in f.position)
            data.append((f.fact_id, int(f.kind), f.subject, f.value, px, py, pz, *map(float, f.orientation),
                         json.dumps(list(map(float, f.covariance))), float(f.confidence), float(conf_time),
                         float(f.first_seen), float(f.last_verified), f.source, f.camera, int(f.state),
                         f.invalidated_by))
        latent_data = [(e.entry_id, e.camera, e.model, *map(float, e.center), float(e.radius), float(e.stamp),
                        json.dumps(list(map(int, e.shape))), np.asarray(e.data, dtype="<f4").tobytes(), int(e.used))
                       for e in latent]
        c = self.conn
        c.execute("BEGIN")
        try:
            if data:
                c.executemany(f"INSERT OR REPLACE INTO facts VALUES ({','.join('?' * len(_COLUMNS))})", data)
            if deleted:
                c.executemany("DELETE FROM facts WHERE fact_id=?", [(d,) for d in deleted])
            if latent_data:
                c.executemany(f"INSERT OR REPLACE INTO latent VALUES ({','.join('?' * len(_LATENT_COLUMNS))})",
                              latent_data)
            if latent_deleted:
                c.executemany("DELETE FROM latent WHERE entry_id=?", [(k,) for k in latent_deleted])
            if latent_used:
                c.executemany("UPDATE latent SET used=? WHERE entry_id=?", [(int(u), k) for u, k in latent_used])
            c.execute("DELETE FROM fact_changes")
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

    def load_latent(self) -> tuple[list[LatentEntry], list[str]]:
        """Persisted latent entries, and the ids of rows that cannot be decoded (to be deleted).
        The cache checks the decoded ones as it checks new entries (`LatentCache.restore`)."""
        entries, bad = [], []
        for r in self.conn.execute(f"SELECT {','.join(_LATENT_COLUMNS)} FROM latent"):
            entry_id, camera, model, cx, cy, cz, radius, stamp, shape, data, used = r
            try:
                shape = tuple(int(v) for v in json.loads(shape))
                if not isinstance(data, bytes) or len(data) % 4:
                    raise ValueError("data is not float32 bytes")
                entries.append(LatentEntry(str(entry_id), str(camera), str(model), (float(cx), float(cy), float(cz)),
                                           float(radius), float(stamp), shape,
                                           np.frombuffer(data, dtype="<f4").astype(np.float32), int(used)))
            except (ValueError, TypeError):
                bad.append(str(entry_id))
        return entries, bad

    def latent_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM latent").fetchone()[0])

    def changed_positions(self) -> np.ndarray:
        """(N,3) positions (old and new) of posed facts written by anything but the core since its
        last write; rows without a position are left out."""
        rows = self.conn.execute("SELECT px, py, pz FROM fact_changes WHERE px IS NOT NULL AND py IS NOT NULL "
                                 "AND pz IS NOT NULL").fetchall()
        return np.array(rows, dtype=float).reshape(-1, 3)

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
