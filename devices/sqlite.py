"""Opening the state database (SQLite): registry, alerts, outbox, quarantine share one file.

Every component opens its own connection with :func:`connect`; WAL mode lets readers (the
API) run beside one writer, ``synchronous=FULL`` makes a commit durable when it returns
(what at-least-once delivery relies on before it acknowledges a message). A connection whose
commits are on a latency path may ask for ``synchronous=NORMAL`` instead (:func:`relax`: a
commit then survives a crash of the process, not yet of the machine) and make them durable
later, together, with :func:`sync_wal` before anything relies on them (group commit).

Writers: SQLite lets one connection write at a time and makes the others wait by polling
(sleeps of 1, 2, 5, 10, 15, 20, 25 ... ms). Within one process the writers (the rule engine,
the ingest write stage, the dispatcher, the API) instead queue on one lock per database file
(:func:`write_transaction`), so that a commit waits for the one before it and no longer: the
rule engine's commit is on every alert's path to the dispatch centre. Other processes on the
same file still meet SQLite's own locking.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


class Connection(sqlite3.Connection):
    """A state-DB connection that carries the write lock of its database file."""

    write_lock: threading.RLock
    path: str  # the database file (":memory:" for none)


def _write_lock_for(path: str | Path) -> threading.RLock:
    if str(path) == ":memory:":
        return threading.RLock()  # every in-memory connection is a database of its own
    key = os.path.realpath(path)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.RLock())


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the process-wide write lock of ``conn``'s file;
    rolls back and re-raises on any exception. (A plain ``sqlite3`` connection gets no lock.)"""
    lock = getattr(conn, "write_lock", None)
    if lock is not None:
        lock.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if lock is not None:
            lock.release()


def parse_url(url: str) -> Path | str:
    """``sqlite:///rel/path.db`` (relative), ``sqlite:////abs/path.db``, ``sqlite://:memory:``.

    SQLAlchemy's convention (operator.md). Raises ValueError naming the problem.
    """
    prefix = "sqlite:///"
    if url in ("sqlite://", "sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"expected sqlite:///relative/path.db or sqlite:////absolute/path.db, got {url!r}")
    return Path(url[len(prefix):])


def connect(path: str | Path, *, readonly: bool = False) -> Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), timeout=30.0, isolation_level=None, check_same_thread=False, factory=Connection,
    )
    conn.write_lock = _write_lock_for(path)
    conn.path = str(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    conn.row_factory = sqlite3.Row
    return conn


def relax(conn: sqlite3.Connection) -> None:
    """Commits on ``conn`` stop waiting for the disk (``synchronous=NORMAL``): each is safe
    against a crash of the process at once, against a crash of the machine after the next
    :func:`sync_wal` (or SQLite's next checkpoint of the WAL into the database)."""
    conn.execute("PRAGMA synchronous=NORMAL")


def sync_wal(conn: sqlite3.Connection) -> None:
    """Make every commit so far to ``conn``'s database durable: fsync its write-ahead log.

    In WAL mode a commit appends to the ``-wal`` file, so one fsync of it covers all commits
    before, from every connection (what a ``synchronous=FULL`` commit does for its own). No WAL
    file: everything is in the database file, which SQLite syncs when it checkpoints the WAL
    into it. Raises OSError if the disk refuses."""
    path = getattr(conn, "path", ":memory:")
    if path == ":memory:":
        return
    try:
        fd = os.open(f"{path}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Rows per statement of execute_values: well under SQLite's limit of 32,766 parameters.
VALUES_ROWS = 500
_VALUES_PARAMS = 30_000


def execute_values(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]) -> int:
    """Run ``sql`` once per chunk of up to ``VALUES_ROWS`` rows, ``{values}`` in it standing for
    the chunk's ``(?, ?), (?, ?), ...``; returns the rows the statements changed.

    Use it instead of ``executemany`` on paths that must not wait: ``executemany`` steps the
    statement once per row and gives up the GIL around each step, and a thread that gives it
    up waits for it again up to the switch interval (5 ms) while another thread runs Python.
    Measured with one other busy thread: 256 upserts in one transaction took 107 ms (p50) and
    887 ms (p99) by ``executemany``, 13 and 25 ms as one multi-row statement (1.3 ms either way
    alone). ``sql`` is an ``INSERT ... VALUES {values}``, or uses ``(VALUES {values})`` as a table
    (columns ``column1``, ``column2`` ...) in an ``UPDATE ... FROM`` or a ``DELETE ... IN``.
    All rows must have the same length."""
    if not rows:
        return 0
    width = len(rows[0])
    per = max(1, min(VALUES_ROWS, _VALUES_PARAMS // max(width, 1)))
    one = "(" + ",".join("?" * width) + ")"
    changed = 0
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        params = [v for row in chunk for v in row]
        if len(params) != width * len(chunk):
            raise ValueError(f"execute_values: every row needs {width} values")
        cur = conn.execute(sql.replace("{values}", ",".join([one] * len(chunk))), params)
        changed += max(cur.rowcount, 0)
    return changed
