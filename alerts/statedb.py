"""The state DB connection the alert store and the engine's checkpoint store share: one
connection, one lock, one transaction at a time, so that an engine call's alert changes and its
stream state commit together (alerts/store.py, alerts/checkpoints.py).

Either engine (devices/db.py): SQLite (the embedded default) or PostgreSQL, with the same SQL.
Open one with :meth:`StateDB.open` from a ``[state] url`` (or a connection of
:func:`devices.db.connect`); the stores take a StateDB, a connection or a URL (:func:`as_statedb`).

Thread-safe: the rule engine (ingest thread) and the API (server threads) may share one; the
lock serialises the use of the connection, and a transaction holds it from ``BEGIN`` to
``COMMIT`` (autocommit mode otherwise; devices/db.py :func:`~devices.db.write_transaction`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devices import db as statedb

from .errors import AlertsError


class StateDB:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.RLock()
        self._in_tx = 0  # the thread inside a transaction, 0 if none

    @classmethod
    def open(cls, url: str | statedb.Target) -> StateDB:
        """A StateDB on a new connection to ``url`` (:func:`target_of`: a ``[state] url``, a
        path, or what :func:`devices.db.parse_url` gave); ValueError naming a bad URL."""
        return cls(statedb.connect(target_of(url)))

    @property
    def postgres(self) -> bool:
        return statedb.is_postgres(self.conn)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction (devices.db); rolls back and re-raises on any exception."""
        with self.lock:
            if self._in_tx:
                raise AlertsError("nested alert-state transaction")
            with statedb.write_transaction(self.conn):
                self._in_tx = threading.get_ident()
                try:
                    yield self.conn
                finally:
                    self._in_tx = 0

    def require_tx(self) -> None:
        if self._in_tx != threading.get_ident():
            raise AlertsError("alert changes must be applied inside AlertState.transaction()")

    def relax_commits(self) -> None:
        """Commits stop waiting for the disk (SQLite); :meth:`sync` makes them durable."""
        with self.lock:
            statedb.relax(self.conn)

    def sync(self) -> None:
        """Every commit so far is durable when this returns (SQLite: an fsync of the WAL;
        PostgreSQL: already so)."""
        statedb.sync(self.conn)

    def tables(self) -> set[str]:
        return statedb.tables(self.conn)

    def migrate(self, component: str, steps: list[statedb.Step]) -> int:
        """``component``'s tables brought to the newest version (devices.db :func:`~devices.db.migrate`)."""
        with self.lock:
            return statedb.migrate(self.conn, component, steps)


def target_of(location: str | statedb.Target) -> statedb.Target:
    """What :func:`devices.db.connect` opens for ``location``: a ``[state] url`` (``sqlite://``,
    ``postgresql://``) parsed (ValueError naming a bad one), a path or what parse_url gave as is."""
    if isinstance(location, str) and not isinstance(location, statedb.PostgresURL) and "://" in location:
        return statedb.parse_url(location)
    return location


def as_statedb(target: StateDB | Any) -> StateDB:
    """``target`` itself if a StateDB; a new one on a ``[state] url`` (a str) or a Path; else one
    on ``target`` taken as a connection of :func:`devices.db.connect`."""
    if isinstance(target, StateDB):
        return target
    if isinstance(target, str | Path):
        return StateDB.open(target)
    return StateDB(target)


def locked(method):
    """Run the method holding its store's ``db`` lock (one connection, several threads)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.db.lock:
            return method(self, *args, **kwargs)
    return wrapper
