"""The state DB connection the alert store and the engine's checkpoint store share: one SQLite
connection, one lock, one transaction at a time, so that an engine call's alert changes and its
stream state commit together (alerts/store.py, alerts/checkpoints.py).

Thread-safe: the rule engine (ingest thread) and the API (server threads) may share one; the
lock serialises the use of the connection, and a transaction holds it from ``BEGIN`` to
``COMMIT``. ``conn`` comes from :func:`devices.sqlite.connect` (autocommit mode; this class
issues its own ``BEGIN IMMEDIATE``/``COMMIT``).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from devices.sqlite import relax, sync_wal, write_transaction

from .errors import AlertsError


class StateDB:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.RLock()
        self._in_tx = 0  # the thread inside a transaction, 0 if none

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back and re-raises on any exception."""
        with self.lock:
            if self._in_tx:
                raise AlertsError("nested alert-state transaction")
            with write_transaction(self.conn):
                self._in_tx = threading.get_ident()
                try:
                    yield self.conn
                finally:
                    self._in_tx = 0

    def require_tx(self) -> None:
        if self._in_tx != threading.get_ident():
            raise AlertsError("alert changes must be applied inside AlertState.transaction()")

    def relax_commits(self) -> None:
        """Commits stop waiting for the disk; :meth:`sync` makes them durable (devices.sqlite)."""
        with self.lock:
            relax(self.conn)

    def sync(self) -> None:
        """Every commit so far is durable when this returns (an fsync of the state DB's WAL)."""
        sync_wal(self.conn)

    def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def locked(method):
    """Run the method holding its store's ``db`` lock (one connection, several threads)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.db.lock:
            return method(self, *args, **kwargs)
    return wrapper
