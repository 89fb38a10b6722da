"""The rule engine's checkpoint store: its per-(rule, device) stream state in the state DB.

Owned by the engine (alerts/engine.py), which alone reads and writes it: ``rule_streams`` (each
stream's state and the engine's JSON of it), ``rule_acc`` (window aggregates in progress) and
``rule_prev`` (the previous value of ``change`` rules). What operators and the API see of a
pending alert is the alert store's (alerts/store.py ``pending_alerts``), not this.

The stream rows are saved in the transaction of the alert changes they produced (the shared
:class:`~alerts.statedb.StateDB`), so after a crash or a restart the engine resumes exactly where
the last committed call left it. The per-reading memories (``rule_acc``, ``rule_prev``) are saved
either in that transaction too or, by an engine in deferred mode, at its checkpoints, which the
ingest pipeline takes before it acknowledges the readings.

:class:`CheckpointStore` lists what the engine uses; :class:`Checkpoints` keeps it in the state
DB on either engine (devices/db.py: the same SQL; ``WITHOUT ROWID`` is SQLite's storage hint,
dropped on PostgreSQL), its tables versioned as the component ``rule_checkpoints``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from devices.db import execute_values

from .statedb import StateDB, as_statedb, locked

_encode = msgspec.json.Encoder().encode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rule_streams (
    rule TEXT NOT NULL,
    device_id TEXT NOT NULL,
    state TEXT NOT NULL,
    last_ts INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (rule, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rule_acc (
    rule TEXT NOT NULL,
    device_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    sum REAL NOT NULL,
    n INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (rule, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rule_prev (
    rule TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (rule, device_id)
) WITHOUT ROWID;
"""

AccRow = tuple[str, str, int, float, int, int]  # rule, device_id, bucket, sum, n, last_ts
PrevRow = tuple[str, str, int, float]  # rule, device_id, ts, value


@dataclass(slots=True)
class StreamRow:
    """The persisted state of one (rule, device) stream (the engine owns its ``data``)."""

    rule: str
    device_id: str
    state: str  # inactive, pending, firing
    last_ts: int
    data: dict


class CheckpointStore(Protocol):
    """What the rule engine saves and restores; the ``save_*``/``forget_rules`` calls run inside
    the shared state DB's transaction (the alert store's ``transaction()``)."""

    def load_streams(self) -> list[StreamRow]: ...
    def save_streams(self, rows: Iterable[StreamRow], deleted: Iterable[tuple[str, str]] = ()) -> None: ...
    def load_acc(self) -> list[AccRow]: ...
    def save_acc(self, rows: Iterable[AccRow]) -> None: ...
    def load_prev(self) -> list[PrevRow]: ...
    def save_prev(self, rows: Iterable[PrevRow]) -> None: ...
    def forget_rules(self, keep: Iterable[str]) -> int: ...


# the versions of the checkpoint tables (devices.db.migrate); 1: as they were before versions
_STEPS = [_SCHEMA]


class Checkpoints:
    """The engine's checkpoint tables in the state DB (created or upgraded at open).

    ``db``: the :class:`StateDB` shared with the alert store (``AlertState(...).db``; one
    transaction for both), or a connection or ``[state] url`` of its own (:func:`as_statedb`).
    """

    def __init__(self, db: StateDB | Any) -> None:
        self.db = as_statedb(db)
        self.db.migrate("rule_checkpoints", _STEPS)

    @locked
    def load_streams(self) -> list[StreamRow]:
        return [StreamRow(r["rule"], r["device_id"], r["state"], r["last_ts"], json.loads(r["data"]))
                for r in self.db.conn.execute("SELECT * FROM rule_streams")]

    def save_streams(self, rows: Iterable[StreamRow], deleted: Iterable[tuple[str, str]] = ()) -> None:
        """Upsert stream rows and delete ``(rule, device_id)`` ones (inside :meth:`transaction`)."""
        self.db.require_tx()
        # (no statement for nothing to do, one per table otherwise: each one gives up the GIL,
        # and under load taking it back can wait for other threads, on the alert path; see
        # devices.sqlite.execute_values)
        deleted = list(deleted)
        if deleted:
            execute_values(self.db.conn, "DELETE FROM rule_streams WHERE (rule, device_id) IN (VALUES {values})",
                           deleted)
        # msgspec: the same JSON as json.dumps(separators=(",", ":")) for this data (finite numbers,
        # str, None, lists, dicts), ~10x faster; a batch saves a stream per device it touched
        rows = [(r.rule, r.device_id, r.state, r.last_ts, _encode(r.data).decode()) for r in rows]
        if rows:
            execute_values(
                self.db.conn, "INSERT INTO rule_streams (rule, device_id, state, last_ts, data) VALUES {values}"
                " ON CONFLICT (rule, device_id) DO UPDATE SET state = excluded.state,"
                " last_ts = excluded.last_ts, data = excluded.data", rows)

    @locked
    def load_acc(self) -> list[tuple[str, str, int, float, int, int]]:
        """``(rule, device_id, bucket, sum, n, last_ts)``: each window aggregate in progress."""
        return [tuple(r) for r in self.db.conn.execute(
            "SELECT rule, device_id, bucket, sum, n, last_ts FROM rule_acc")]

    def save_acc(self, rows: Iterable[tuple[str, str, int, float, int, int]]) -> None:
        """Upsert ``(rule, device_id, bucket, sum, n, last_ts)`` rows (inside :meth:`transaction`)."""
        self.db.require_tx()
        rows = list(rows)
        if rows:
            execute_values(
                self.db.conn, "INSERT INTO rule_acc (rule, device_id, bucket, sum, n, last_ts) VALUES {values}"
                " ON CONFLICT (rule, device_id) DO UPDATE SET bucket = excluded.bucket, sum = excluded.sum,"
                " n = excluded.n, last_ts = excluded.last_ts", rows)

    @locked
    def load_prev(self) -> list[tuple[str, str, int, float]]:
        """``(rule, device_id, ts, value)``: each device's newest value for ``change`` rules."""
        return [tuple(r) for r in self.db.conn.execute("SELECT rule, device_id, ts, value FROM rule_prev")]

    def save_prev(self, rows: Iterable[tuple[str, str, int, float]]) -> None:
        """Upsert ``(rule, device_id, ts, value)`` rows (inside :meth:`transaction`)."""
        self.db.require_tx()
        rows = list(rows)
        if rows:
            execute_values(
                self.db.conn, "INSERT INTO rule_prev (rule, device_id, ts, value) VALUES {values}"
                " ON CONFLICT (rule, device_id) DO UPDATE SET ts = excluded.ts, value = excluded.value",
                rows)

    def forget_rules(self, keep: Iterable[str]) -> int:
        """Delete the engine state (streams, window aggregates, previous values) of every rule
        not in ``keep`` (inside :meth:`transaction`); returns the rows deleted."""
        self.db.require_tx()
        keep = sorted(set(keep))
        marks = ",".join("?" * len(keep))
        where = f"WHERE rule NOT IN ({marks})" if keep else ""
        return sum(self.db.conn.execute(f"DELETE FROM {table} {where}", keep).rowcount
                   for table in ("rule_streams", "rule_acc", "rule_prev"))
