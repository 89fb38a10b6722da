"""devices.sqlite: execute_values (one statement per chunk of rows instead of one step per
row) and group commit (relax, sync_wal)."""

from __future__ import annotations

import pytest

from devices.sqlite import VALUES_ROWS, connect, execute_values, relax, sync_wal


def test_execute_values_inserts_updates_and_deletes_in_chunks(tmp_path):
    conn = connect(tmp_path / "v.db")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    n = 2 * VALUES_ROWS + 7  # three statements
    rows = [(f"k{i:05d}", i) for i in range(n)]
    assert execute_values(conn, "INSERT INTO t (k, v) VALUES {values}", rows) == n
    assert conn.execute("SELECT count(*), sum(v) FROM t").fetchone()[:] == (n, sum(range(n)))
    # an upsert: duplicate keys within one statement apply in order, as executemany would
    execute_values(conn, "INSERT INTO t (k, v) VALUES {values} ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                   [("k00000", 5), ("k00000", 6), ("new", 1)])
    assert conn.execute("SELECT v FROM t WHERE k = 'k00000'").fetchone()[0] == 6
    changed = execute_values(conn, "UPDATE t SET v = x.column2 FROM (VALUES {values}) AS x "
                                   "WHERE t.k = x.column1 AND t.v < x.column2",
                             [("k00001", 100), ("k00002", 0), ("missing", 9)])
    assert changed == 1
    assert conn.execute("SELECT v FROM t WHERE k IN ('k00001', 'k00002') ORDER BY k").fetchall()[0][0] == 100
    gone = execute_values(conn, "DELETE FROM t WHERE (k, v) IN (VALUES {values})",
                          [("k00003", 3), ("k00004", 999)])
    assert gone == 1
    assert execute_values(conn, "DELETE FROM t WHERE k IN (VALUES {values})", []) == 0
    with pytest.raises(ValueError, match="every row needs 2 values"):
        execute_values(conn, "INSERT INTO t (k, v) VALUES {values}", [("a", 1), ("b",)])


def test_a_relaxed_connection_commits_without_fsync_and_sync_wal_makes_it_durable(tmp_path, fsynced):
    synced = fsynced
    path = tmp_path / "s.db"
    conn = connect(path)
    sync_wal(conn)  # no WAL file yet: nothing to sync, no error
    assert synced == []
    relax(conn)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (FULL is 2)
    conn.execute("CREATE TABLE t (k INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    sync_wal(conn)
    assert synced == [f"{path}-wal"]
    # what was committed is in the WAL that was synced, and another connection reads it
    assert connect(path).execute("SELECT k FROM t").fetchall()[0][0] == 1
    sync_wal(connect(":memory:"))  # nothing on disk: a no-op
    assert len(synced) == 1
