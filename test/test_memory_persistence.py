"""Persistence of the memory tracker's facts and latent-cache entries (pure core + SQLite): reload
after restart with re-basing by downtime, bounded size, latent entries kept, bounded and dropped by
the cache's rule across restarts, and corrupted files kept aside with a clear error."""
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


# ---------------------------------------------------------------- latent cache entries
def _restart(db, **kw):
    """A new process on the same file: new store, new core (the old ones are simply dropped)."""
    return MemoryCore(_params(**kw), SqliteStore(db), now=0.0)


def _two_regions(db, **kw):
    c = MemoryCore(_params(**kw), SqliteStore(db), now=0.0)
    c.ingest(_scene(0.0, red=(0.4, 0.0, 0.025), far=(0.0, 0.6, 0.025)), 0.0)
    a = c.latent_store("scene", "enc", (0.4, 0.0, 0.0), 0.1, 0.5, (2, 2), [1.0, 2.0, 3.0, 4.0], 0.0)
    b = c.latent_store("wrist", "enc", (0.0, 0.6, 0.0), 0.1, 0.7, (3,), [5.0, 6.0, 7.0], 0.0)
    c.flush(0.0)
    return c, a, b


def test_latent_entries_survive_a_restart(tmp_path):
    db = tmp_path / "m.sqlite"
    c, a, b = _two_regions(db)
    c.store.close()
    c2 = _restart(db)
    assert c2.latent_loaded == 2 and c2.store.latent_count() == 2
    e = c2.latent_fetch("scene", "enc", (0.41, 0.0, 0.0), 0.1)                  # same quantised key
    assert e is not None and e.entry_id == a and e.shape == (2, 2) and e.stamp == 0.5
    assert e.data.dtype == np.float32 and e.data.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert c2.latent_fetch("wrist", "enc", (0.0, 0.6, 0.0), 0.1).data.tolist() == [5.0, 6.0, 7.0]
    assert (c2.latent.hits, c2.latent.misses) == (2, 0)
    assert c2.get(f"latent/{a}", 0.0).kind == Kind.LATENT and c2.get(f"latent/{b}", 0.0) is not None
    # Changes the cache's rule tolerates keep the entries across a restart: a re-observation in
    # place, and the confidence decay (and STALE marking) of the downtime.
    c2.ingest(_scene(1.0, red=(0.4, 0.0, 0.025)), 1.0)
    c2.tick(400.0)
    assert c2.get("visual/red", 400.0).state == State.STALE
    c2.flush(400.0)
    c2.store.close()
    c3 = _restart(db)
    assert c3.latent_fetch("scene", "enc", (0.4, 0.0, 0.0), 0.1) is not None
    assert c3.latent_foreign_dropped == 0


def test_latent_entry_dropped_while_running_stays_dropped_after_a_restart(tmp_path):
    db = tmp_path / "m.sqlite"
    c, a, b = _two_regions(db)
    c.ingest(_scene(1.0, red=(0.45, 0.0, 0.025)), 1.0)                          # red moved: region a changed
    c.flush(1.0)                                # committed; no close, as after a kill -9
    c2 = _restart(db)
    assert c2.latent_fetch("scene", "enc", (0.4, 0.0, 0.0), 0.1) is None
    assert c2.latent_fetch("wrist", "enc", (0.0, 0.6, 0.0), 0.1) is not None
    assert c2.get(f"latent/{a}", 0.0) is None and c2.store.latent_count() == 1


@pytest.mark.parametrize("change", [
    "UPDATE facts SET px = px + 0.001 WHERE fact_id = 'visual/red'",             # moved a millimetre
    "UPDATE facts SET state = 2 WHERE fact_id = 'visual/red'",                  # invalidated in place
    "DELETE FROM facts WHERE fact_id = 'visual/red'",
    "INSERT INTO facts SELECT 'visual/blue', kind, 'blue', value, 0.42, 0.01, pz, qx, qy, qz, qw, cov, confidence,"
    " conf_time, first_seen, last_verified, source, camera, state, invalidated_by FROM facts"
    " WHERE fact_id = 'visual/far'",                                            # a new fact in the region
    "INSERT OR REPLACE INTO facts SELECT fact_id, kind, subject, value, 0.4, 0.0, 0.025, qx, qy, qz, qw, cov,"
    " confidence, conf_time, first_seen, last_verified, source, camera, state, invalidated_by FROM facts"
    " WHERE fact_id = 'visual/far'",                                            # far replaced, moved into it
])
def test_latent_entries_of_regions_changed_by_another_writer_are_dropped_at_load(tmp_path, change):
    db = tmp_path / "m.sqlite"
    c, a, b = _two_regions(db)
    c.store.close()
    conn = sqlite3.connect(db)                  # anything but the tracker (a script, an older version)
    conn.execute(change)
    conn.commit()
    conn.close()
    c2 = _restart(db)
    assert c2.latent_fetch("scene", "enc", (0.4, 0.0, 0.0), 0.1) is None
    assert c2.get(f"latent/{a}", 0.0) is None
    moved_far = "INSERT OR REPLACE" in change                  # far left region b: b changed too
    assert (c2.latent_fetch("wrist", "enc", (0.0, 0.6, 0.0), 0.1) is None) == moved_far
    assert c2.latent_foreign_dropped == 1 + moved_far
    assert c2.store.latent_count() == 1 - moved_far
    c2.store.close()
    c3 = _restart(db)                           # the log was consumed: nothing more is dropped
    assert c3.latent_foreign_dropped == 0 and c3.latent_loaded == 1 - moved_far


def test_a_non_posed_fact_written_by_another_writer_drops_nothing(tmp_path):
    db = tmp_path / "m.sqlite"
    c, a, b = _two_regions(db)
    c.assert_fact(Fact("", Kind.TEXT, "task", value='"tidy"'), 0.0)
    c.flush(0.0)
    c.store.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE facts SET value = '\"rest\"' WHERE fact_id = 'text/task'")
    conn.commit()
    conn.close()
    c2 = _restart(db)
    assert c2.latent_loaded == 2 and c2.latent_foreign_dropped == 0


def test_persisted_latent_entries_are_bounded_and_evicted_least_recently_used_first(tmp_path):
    db = tmp_path / "m.sqlite"
    c = MemoryCore(_params(latent_max_entries=3), SqliteStore(db), now=0.0)
    keys = [c.latent_store("scene", "enc", (0.3 * i, 0.0, 0.0), 0.1, float(i), (2,), [i, i], 0.0) for i in range(5)]
    c.flush(0.0)
    assert c.store.latent_count() == 3 and list(c.latent.entries) == keys[2:]
    assert c.get(f"latent/{keys[0]}", 0.0) is None                          # evicted entries lose their facts
    assert c.latent_fetch("scene", "enc", (0.6, 0.0, 0.0), 0.1).entry_id == keys[2]   # now the most recent
    c.tick(0.5)
    c.flush(0.5)                                                            # recency written with the next flush
    c2 = _restart(db, latent_max_entries=3)
    assert list(c2.latent.entries) == [keys[3], keys[4], keys[2]]           # least recently used first
    new = c2.latent_store("wrist", "enc", (0.0, 0.5, 0.0), 0.1, 9.0, (1,), [9.0], 0.0)
    c2.flush(0.0)
    assert list(c2.latent.entries) == [keys[4], keys[2], new] and c2.store.latent_count() == 3
    c2.store.close()
    c3 = _restart(db, latent_max_entries=2)                                 # a smaller bound applies at load
    assert list(c3.latent.entries) == [keys[2], new] and c3.store.latent_count() == 2
    assert c3.get(f"latent/{keys[4]}", 0.0) is None
    c3.store.close()
    c4 = _restart(db, latent_max_entries=10, latent_max_bytes=1024)          # and a byte bound
    big = c4.latent_store("scene", "big", (0.0, 0.0, 0.5), 0.1, 1.0, (256,), np.ones(256), 0.0)
    c4.flush(0.0)
    assert list(c4.latent.entries) == [big] and c4.store.latent_count() == 1
    assert c4.latent.bytes <= 1024


def test_undecodable_or_inconsistent_latent_rows_are_dropped_not_the_store(tmp_path):
    db = tmp_path / "m.sqlite"
    c, a, b = _two_regions(db)
    c.latent_store("scene", "enc", (0.0, 0.0, 0.5), 0.1, 0.0, (1,), [1.0], 0.0)
    c.latent_store("scene", "enc", (0.0, 0.0, 0.8), 0.1, 0.0, (1,), [1.0], 0.0)
    c.flush(0.0)
    c.store.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE latent SET data = x'0000' WHERE entry_id = ?", (b,))                  # not float32
    conn.execute("UPDATE latent SET shape = '[5]' WHERE cz = 0.5")                             # shape/data
    conn.execute("UPDATE latent SET data = ? WHERE cz = 0.8", (np.float32([np.nan]).tobytes(),))  # NaN
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    assert store.recovered_from is None
    c2 = MemoryCore(_params(), store, now=0.0)
    assert list(c2.latent.entries) == [a] and store.latent_count() == 1
    assert c2.get("visual/red", 0.0) is not None and c2.get(f"latent/{b}", 0.0) is None


def test_a_store_without_latent_tables_gains_them_and_keeps_its_facts(tmp_path):
    db = tmp_path / "m.sqlite"
    c = MemoryCore(_params(), SqliteStore(db), now=0.0)
    c.ingest(_scene(0.0, red=(0.4, 0.0, 0.025)), 0.0)
    c.flush(0.0)
    c.store.close()
    conn = sqlite3.connect(db)                  # as the file was before the latent tables existed
    for trigger in ("fact_replaced", "fact_inserted", "fact_updated", "fact_deleted"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE latent")
    conn.execute("DROP TABLE fact_changes")
    conn.commit()
    conn.close()
    c2 = _restart(db)
    assert c2.store.recovered_from is None and c2.get("visual/red", 0.0) is not None
    c2.latent_store("scene", "enc", (0.4, 0.0, 0.0), 0.1, 0.0, (1,), [1.0], 0.0)
    c2.flush(0.0)
    assert c2.store.latent_count() == 1


def test_a_latent_table_of_another_layout_is_kept_aside(tmp_path):
    db = tmp_path / "m.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE latent (k TEXT, blob BLOB)")
    conn.execute("INSERT INTO latent VALUES ('x', x'00')")
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    assert store.recovered_from is not None and "latent table columns" in store.error
    assert store.latent_count() == 0


def test_a_zero_byte_file_is_an_error_naming_the_path_and_stays_as_it_is(tmp_path):
    from harness_nodes.memory.persistence import StoreUnusable
    db = tmp_path / "m.sqlite"
    db.write_bytes(b"")
    with pytest.raises(StoreUnusable, match=str(db)):
        SqliteStore(db)
    assert db.exists() and db.stat().st_size == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.sqlite"]


def test_a_directory_as_database_path_is_an_error_and_is_not_renamed(tmp_path):
    from harness_nodes.memory.persistence import StoreUnusable
    db = tmp_path / "m.sqlite"
    db.mkdir()
    with pytest.raises(StoreUnusable, match="is a directory"):
        SqliteStore(db)
    assert db.is_dir() and [p.name for p in tmp_path.iterdir()] == ["m.sqlite"]
