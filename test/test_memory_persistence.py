"""Persistence of the memory tracker's facts (pure core + SQLite): reload after restart with
re-basing by downtime, bounded size, and corrupted files kept aside with a clear error."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from harness_nodes.memory.config import MemoryParameters
from harness_nodes.memory.core import MemoryCore
from harness_nodes.memory.facts import Fact, Kind, ObjectObs, SceneObs, State
from harness_nodes.memory.persistence import SqliteStore


def _scene(t, **objects):
    return SceneObs("scene", t, "world", objects=[ObjectObs(k, position=v) for k, v in objects.items()])


def _params(**kw):
    return MemoryParameters(**{"half_life_visual": 100.0, **kw})


def test_every_fact_survives_a_restart_with_its_validity(tmp_path):
    db = tmp_path / "m.sqlite"
    c = MemoryCore(_params(), SqliteStore(db), now=0.0)
    c.ingest(_scene(0.0, red=(0.4, 0.0, 0.025), green=(0.5, 0.1, 0.025)), 0.0)
    c.ingest(_scene(1.0, red=(0.6, 0.2, 0.025)), 1.0)                     # contradiction: archived copy
    c.apply_action("chunk-7", [(0.5, 0.1, 0.3), (0.5, 0.1, 0.03)], 2.0)    # green invalid
    c.assert_fact(Fact("", Kind.TEXT, "task", value='"tidy up"'), 2.0)
    c.flush(2.0)
    before = {f.fact_id: f for f in c.query(2.0)}
    c.store.close()
    # A new process whose clock restarted at 0 (sim time): times re-based, nothing lost.
    c2 = MemoryCore(_params(), SqliteStore(db), now=0.0)
    after = {f.fact_id: f for f in c2.query(0.0)}
    assert set(after) == set(before) == {"visual/red", "visual/red@0.000", "visual/green", "action/chunk-7",
                                         "text/task"}
    for fid, f in before.items():
        g = after[fid]
        assert (g.kind, g.subject, g.value, g.state, g.invalidated_by) == \
               (f.kind, f.subject, f.value, f.state, f.invalidated_by)
        np.testing.assert_allclose(g.position, f.position, equal_nan=True)
        assert g.confidence == pytest.approx(f.confidence, abs=0.01)
        assert g.last_verified - 0.0 == pytest.approx(f.last_verified - 2.0, abs=0.5)
    assert after["visual/green"].invalidated_by == "action chunk-7"


def test_restart_ages_facts_by_the_downtime(tmp_path):
    db = tmp_path / "m.sqlite"
    c = MemoryCore(_params(), SqliteStore(db), now=10.0)
    c.ingest(_scene(10.0, red=(0.4, 0.0, 0.025)), 10.0)
    c.flush(10.0)
    c.store.close()
    # Pretend the process was down for 150 s of wall time.
    conn = sqlite3.connect(db)
    wall = float(conn.execute("SELECT value FROM meta WHERE key='wall'").fetchone()[0])
    conn.execute("UPDATE meta SET value=? WHERE key='wall'", (repr(wall - 150.0),))
    conn.commit()
    conn.close()
    c2 = MemoryCore(_params(), SqliteStore(db), now=10.0)
    red = c2.get("visual/red", 10.0)
    assert red.confidence == pytest.approx(2 ** (-150 / 100), rel=0.02)
    assert red.state == State.STALE                              # re-marked by elapsed time
    assert c2.downtime == pytest.approx(150.0, abs=1.0)


def test_a_corrupted_file_is_kept_aside_and_a_fresh_store_created(tmp_path):
    db = tmp_path / "m.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    store = SqliteStore(db)
    assert store.recovered_from is not None and store.recovered_from.exists()
    assert store.recovered_from.read_bytes() == b"this is not a database" * 100   # never wiped
    assert str(db) in store.error and "fresh store" in store.error
    assert store.count() == 0
    c = MemoryCore(_params(), store, now=0.0)
    c.ingest(_scene(0.0, red=(0.4, 0.0, 0.025)), 0.0)
    c.flush(0.0)
    assert SqliteStore(db).count() == 1


def test_a_damaged_database_page_is_detected(tmp_path):
    db = tmp_path / "m.sqlite"
    c = MemoryCore(_params(), SqliteStore(db), now=0.0)
    c.ingest(_scene(0.0, **{f"o{i}": (0.01 * i, 0.0, 0.0) for i in range(200)}), 0.0)
    c.flush(0.0)
    c.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.store.close()
    data = bytearray(db.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = b"\xff" * 4096                              # trash the second page
    db.write_bytes(bytes(data))
    store = SqliteStore(db)
    assert store.recovered_from is not None and store.recovered_from.read_bytes() == bytes(data)
    assert store.count() == 0


def test_size_is_bounded_by_pruning(tmp_path):
    db = tmp_path / "m.sqlite"
    c = MemoryCore(_params(max_facts=50), SqliteStore(db), now=0.0)
    for k in range(10):
        c.ingest(_scene(float(k), **{f"o{k}_{i}": (0.1 * i, 0.1 * k, 0.0) for i in range(10)}), float(k))
        c.tick(float(k))
        c.flush(float(k))
    assert len(c) <= 50
    assert c.store.count() == len(c)
    assert c.counters.pruned > 0
