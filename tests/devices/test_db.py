"""The state-DB layer (devices/db.py, devices/postgres.py) on both engines: the same SQL, the
same rows, versioned migrations, and writers serialised across connections."""

from __future__ import annotations

import threading
import time

import pytest

from devices import db
from devices.postgres import translate

SCHEMA = """
CREATE TABLE IF NOT EXISTS t (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name  TEXT NOT NULL,
    ratio REAL,
    flag  INTEGER NOT NULL DEFAULT 0,
    blob  BLOB,
    ts_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS t_name ON t (name)
"""


@pytest.fixture
def conn(state_url):
    c = db.connect(db.parse_url(state_url))
    db.migrate(c, "test", [SCHEMA])
    yield c
    c.close()


def test_translate_placeholders_quotes_and_sqlite_words():
    assert translate("SELECT * FROM t WHERE a = ? AND b LIKE 'x%?' LIMIT ? OFFSET ?") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%?' LIMIT NULLIF(%s::bigint, -1) OFFSET %s")
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?)") == "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?) RETURNING id") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id")
    with pytest.raises(ValueError, match="ON CONFLICT"):
        translate("INSERT OR REPLACE INTO t (a) VALUES (?)")


def test_same_rows_on_both_engines(conn):
    with db.write_transaction(conn):
        conn.execute("INSERT INTO t (name, ratio, flag, blob, ts_ms) VALUES (?, ?, ?, ?, ?)",
                     ("50%", 0.5, True, b"\x00\xff", 1_780_000_000_123))
        db.execute_values(conn, "INSERT OR IGNORE INTO t (name, flag) VALUES {values}", [("50%", 0), ("b", 0)])
    rows = conn.execute("SELECT id, name, ratio, flag, blob, ts_ms FROM t ORDER BY id LIMIT ?", (-1,)).fetchall()
    assert [tuple(r) for r in rows][0][1:] == ("50%", 0.5, 1, b"\x00\xff", 1_780_000_000_123)
    assert [r["name"] for r in rows] == ["50%", "b"]
    assert dict(zip(rows[0].keys(), rows[0], strict=True))["flag"] == 1
    total, mean, count = conn.execute("SELECT sum(flag), avg(ratio), count(*) FROM t").fetchone()
    assert (total, mean, count) == (1, 0.5, 2) and isinstance(total, int)
    assert db.tables(conn) >= {"t", "schema_versions"} and {"id", "blob", "ts_ms"} <= db.columns(conn, "t")
    assert "t_name" in db.indexes(conn)
    doc = conn.execute(f"SELECT {db.json_text(conn, '?', 'a', 'b')}", ('{"a": {"b": "x"}}',)).fetchone()[0]
    assert doc == "x"


def test_a_failed_transaction_leaves_nothing(conn):
    with pytest.raises(RuntimeError), db.write_transaction(conn):
        conn.execute("INSERT INTO t (name) VALUES (?)", ("gone",))
        raise RuntimeError("boom")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    with pytest.raises(db.DBError), db.write_transaction(conn):
        conn.execute("INSERT INTO t (name) VALUES (?)", ("once",))
        conn.execute("INSERT INTO t (name) VALUES (?)", ("once",))
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_migrations_run_once_in_order_and_refuse_a_newer_database(conn):
    seen = []
    steps = [SCHEMA, "ALTER TABLE t ADD COLUMN note TEXT", lambda c: seen.append(db.schema_version(c, "test"))]
    assert db.migrate(conn, "test", steps) == 3
    assert seen == [2] and "note" in db.columns(conn, "t")
    assert db.migrate(conn, "test", steps) == 3 and seen == [2]
    with pytest.raises(db.SchemaTooNew, match="version 3, newer than this release knows \\(1\\)"):
        db.migrate(conn, "test", [SCHEMA])


def test_a_failing_migration_leaves_the_version_where_it_was(conn):
    with pytest.raises(db.DBError):
        db.migrate(conn, "test", [SCHEMA, "ALTER TABLE missing ADD COLUMN x TEXT"])
    assert db.schema_version(conn, "test") == 1


def test_writers_on_two_connections_take_turns(state_url, conn):
    """Read-then-write inside a write transaction is safe across connections (and, on
    PostgreSQL, across nodes): the second writer waits for the first's commit."""
    other = db.connect(db.parse_url(state_url))
    inside = threading.Event()
    order = []

    def first():
        with db.write_transaction(conn):
            inside.set()
            time.sleep(0.3)  # holds the writer lock: the other writer must wait for it
            order.append("first")

    th = threading.Thread(target=first)
    th.start()
    assert inside.wait(5)
    with db.write_transaction(other):
        order.append("second")
    th.join()
    assert order == ["first", "second"]
    other.close()


def test_bad_urls_name_the_problem():
    with pytest.raises(ValueError, match="postgresql://user@host"):
        db.parse_url("postgresql://")
    with pytest.raises(ValueError, match="postgresql://"):
        db.parse_url("mysql://x/y")
    assert isinstance(db.parse_url("postgres://u@h/d"), db.PostgresURL)


def test_a_session_the_server_ended_is_replaced_between_transactions_never_inside_one(pg_state_url):
    """PostgreSQL only (a server restart, a failover): a statement that meets the lost session
    fails, the next one outside a write transaction runs in a new session; a write transaction
    begun on it begins in a new one. Inside one, the transaction fails as a whole: its remaining
    statements never run in a new session."""
    conn = db.connect(db.parse_url(pg_state_url))
    db.migrate(conn, "test", [SCHEMA])
    other = db.connect(db.parse_url(pg_state_url))

    def end_session() -> None:
        other.execute("SELECT pg_terminate_backend(?)", (conn.raw.info.backend_pid,))

    end_session()
    with pytest.raises(db.DBError):
        conn.execute("SELECT 1")
    assert conn.execute("SELECT 1").fetchone()[0] == 1
    with pytest.raises(db.DBError), db.write_transaction(conn):
        conn.execute("INSERT INTO t (name) VALUES (?)", ("first",))
        end_session()
        conn.execute("INSERT INTO t (name) VALUES (?)", ("second",))
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    end_session()
    with db.write_transaction(conn):
        conn.execute("INSERT INTO t (name) VALUES (?)", ("again",))
    assert [r[0] for r in conn.execute("SELECT name FROM t")] == ["again"]

def test_tuple_cursor_gives_plain_tuples_of_the_same_values(conn):
    with db.write_transaction(conn):
        db.execute_values(conn, "INSERT INTO t (name, ratio, ts_ms) VALUES {values}",
                          [("a", 0.5, 1_780_000_000_123), ("b", None, None)])
    sql = "SELECT name, ratio, ts_ms FROM t WHERE name >= ? ORDER BY name LIMIT ?"
    rows = db.tuple_cursor(conn).execute(sql, ("a", -1)).fetchall()
    assert rows == [("a", 0.5, 1_780_000_000_123), ("b", None, None)]
    assert all(type(r) is tuple for r in rows)
    assert [tuple(r) for r in conn.execute(sql, ("a", 10))] == rows
