"""The state database, on SQLite (embedded, the default) or PostgreSQL (several nodes).

``[state] url`` chooses (operator.md, SQLAlchemy's convention): ``sqlite:////abs/state.db``,
``sqlite:///rel/state.db``, ``sqlite://:memory:``, or ``postgresql://user[:password]@host[:port]/db``
(also ``postgres://``; query options are libpq's, e.g. ``?sslmode=verify-full``).

Every component (registry, alert store, engine checkpoints, outbox, quarantine, events, API
tokens, rollout history) opens its connection with :func:`connect` and writes in
:func:`write_transaction`; the SQL is SQLite's dialect, which devices/postgres.py translates
for PostgreSQL. Where the two differ in more than words, the code asks this module
(:func:`tables`, :func:`columns`, :func:`json_text`, :func:`is_postgres`).

Writers are serialised as SQLite serialises them: in one process by a lock per database, across
processes by SQLite's file lock or, on PostgreSQL, by a transaction-scoped advisory lock
(devices/postgres.py ``WRITER_LOCK``). The state-DB code reads then writes inside a transaction
in places (ids, versions, the outbox's claims) and stays correct with several nodes on one
PostgreSQL database this way; the cost is that state writes do not run in parallel (they are
short: the rule engine commits once per batch).

Schema: each component lists its migrations (:func:`migrate`), numbered from 1, applied in
order at open, each in the transaction that records it in ``schema_versions``. A database newer
than the code is refused (a node of an older release must not write to it). The first migration
of each component creates its tables ``IF NOT EXISTS`` and upgrades files of releases before
this scheme, so such a file simply starts at version 1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from devices import sqlite as _sqlite

# what a state-DB call may raise for a database problem (locked, disk full, server gone)
DBError = (sqlite3.Error, psycopg.Error)
VALUES_ROWS = _sqlite.VALUES_ROWS


class PostgresURL(str):
    """A ``postgresql://`` URL (what :func:`parse_url` gives for PostgreSQL)."""


Target = Path | str | PostgresURL


def parse_url(url: str) -> Target:
    """The database ``[state] url`` names: a Path, ``":memory:"`` or a :class:`PostgresURL`.
    Raises ValueError naming the problem."""
    if url.startswith(("postgresql://", "postgres://")):
        rest = url.split("://", 1)[1]
        if not rest.split("?", 1)[0].strip("/"):
            raise ValueError(f"expected postgresql://user@host[:port]/database, got {url!r}")
        return PostgresURL("postgresql://" + rest)
    try:
        return _sqlite.parse_url(url)
    except ValueError as e:
        raise ValueError(f"{e} or postgresql://user@host[:port]/database") from None


def connect(target: Target, *, readonly: bool = False) -> Any:
    """A connection to the state database (``sqlite3``-like on both engines)."""
    if isinstance(target, PostgresURL):
        from devices.postgres import PgConnection
        return PgConnection(target, readonly=readonly)
    return _sqlite.connect(target, readonly=readonly)


def is_postgres(conn: Any) -> bool:
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def is_shared(target: Target) -> bool:
    """Whether other nodes can reach this database (PostgreSQL), or it is this node's own file."""
    return isinstance(target, PostgresURL)


@contextmanager
def write_transaction(conn: Any, *, serialised: bool = True) -> Iterator[Any]:
    """A write transaction, serialised with every other writer of the database (see above);
    rolls back and re-raises on any exception.

    ``serialised=False`` (PostgreSQL; SQLite has one writer whatever is asked): a transaction
    that does not queue behind the other writers, for statements that stay correct under
    row-level locking alone and must not wait for another writer's long transaction (a node's
    heartbeat, the renewal of a lease it holds)."""
    if is_postgres(conn):
        from devices.postgres import write_transaction as pg_write
        with pg_write(conn, serialised=serialised) as c:
            yield c
    else:
        with _sqlite.write_transaction(conn) as c:
            yield c


def execute_values(conn: Any, sql: str, rows: Sequence[Sequence[object]]) -> int:
    """One statement per chunk of rows (devices/sqlite.py :func:`~devices.sqlite.execute_values`)."""
    return _sqlite.execute_values(conn, sql, rows)


def relax(conn: Any) -> None:
    """Commits stop waiting for the disk (SQLite; PostgreSQL's commits stay synchronous)."""
    if not is_postgres(conn):
        _sqlite.relax(conn)


def sync(conn: Any) -> None:
    """Every commit so far is durable when this returns (SQLite: an fsync of the WAL; on
    PostgreSQL every commit already is)."""
    if not is_postgres(conn):
        _sqlite.sync_wal(conn)


def tuple_cursor(conn: Any) -> Any:
    """A cursor whose rows are plain tuples (no names): for bulk reads, where building
    ``sqlite3.Row``s costs more than the query. Use it for one ``execute`` and its rows."""
    if is_postgres(conn):
        return conn.tuple_cursor()
    cur = conn.cursor()
    cur.row_factory = None
    return cur


def tables(conn: Any) -> set[str]:
    """The names of the database's tables."""
    if is_postgres(conn):
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def indexes(conn: Any) -> set[str]:
    if is_postgres(conn):
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def columns(conn: Any, table: str) -> set[str]:
    """The column names of ``table`` (empty if there is no such table)."""
    if is_postgres(conn):
        return {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ?", (table,))}
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def json_text(conn: Any, expr: str, *keys: str) -> str:
    """SQL for the value at ``keys`` in the JSON text ``expr``, as text (NULL if absent)."""
    if is_postgres(conn):
        return f"(({expr})::jsonb #>> '{{{','.join(keys)}}}')"
    return f"json_extract({expr}, '$.{'.'.join(keys)}')"


def run_script(conn: Any, script: str) -> None:
    """A schema script's statements, one by one (inside the caller's transaction)."""
    if is_postgres(conn):
        from devices.postgres import translate_ddl
        for stmt in translate_ddl(script):
            conn.raw.execute(stmt, ())
        return
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


Step = str | Callable[[Any], None]

_VERSIONS = """CREATE TABLE IF NOT EXISTS schema_versions (
    component  TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    applied_at TEXT NOT NULL
)"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


def schema_version(conn: Any, component: str) -> int:
    """The version ``component``'s tables are at (0: not created yet)."""
    if "schema_versions" not in tables(conn):
        return 0
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: Any, component: str, steps: Sequence[Step]) -> int:
    """Bring ``component``'s tables to version ``len(steps)``: each step after the recorded
    version (a schema script, or a function of the connection) runs in one write transaction
    with the new version recorded. Returns the version. SchemaTooNew if the database is ahead."""
    target = len(steps)
    if schema_version(conn, component) == target:
        return target  # the common case: nothing to do, no write lock taken
    with write_transaction(conn) as c:
        run_script(c, _VERSIONS)
        current = schema_version(c, component)
        if current > target:
            raise SchemaTooNew(f"the state database's {component} tables are at version {current}, newer than this "
                               f"release knows ({target}): upgrade citywatch on this node")
        for version in range(current + 1, target + 1):
            step = steps[version - 1]
            if callable(step):
                step(c)
            else:
                run_script(c, step)
            c.execute("INSERT INTO schema_versions (component, version, applied_at) VALUES (?, ?, ?)"
                      " ON CONFLICT (component) DO UPDATE SET version = excluded.version,"
                      " applied_at = excluded.applied_at",
                      (component, version, datetime.now(UTC).isoformat(timespec="seconds")))
    return target
