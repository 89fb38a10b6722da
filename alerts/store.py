"""The alert store: alerts, their history, pending alerts, silences and maintenance windows in
the state DB (SQLite or PostgreSQL: devices/db.py), and the notices of their changes to
listeners (dispatch's outbox rows, the board's live stream, the store's ``alerts`` measurement).

Guarantees:
- One open alert per (rule, device): a unique partial index over the open states
  (``firing``, ``acknowledged``) makes a duplicate impossible, also across restarts.
- Every change of one engine call (or one :meth:`AlertState.ack`) commits in ONE transaction
  (:meth:`AlertState.transaction`, of the :class:`~alerts.statedb.StateDB` it shares with the
  engine's checkpoint store, alerts/checkpoints.py, so the engine's stream state commits with
  the alerts it produced); notice listeners run inside it, so an outbox row a listener writes
  commits or rolls back with the alert change. A listener that raises rolls back all.
- Every change of an alert is decided by one pure function (alerts/lifecycle.py
  :func:`~alerts.lifecycle.transition`); this store reads the alert, calls it, and writes what it
  returns (the alert or pending row, history rows, notices).

Alert states: ``pending`` (condition true, waiting for ``for``; never notified; a row of
``pending_alerts``, written with its summary by the engine's transitions; its id is the one the
alert gets if it fires), ``firing``, ``acknowledged`` (still open, an operator took it),
``resolved``. The ``alerts`` table holds the alerts that fired. ``silenced`` is a flag: the
alert is recorded, and its notices carry ``silenced=True`` so dispatch does not send them on;
it is set when a silence or a maintenance window (alerts/maintenance.py) matching the alert is
active at the transition's time.

Operators' changes (acknowledge and take back, resolve by hand, assign, comment) are history
rows with who made them. A manual resolve leaves a row in ``alert_resets``: the engine forgets
that stream before its next evaluation (engine.py ``_take_resets``), so a condition that still
holds starts over as a new alert; an engine transition of an alert already resolved by hand is
skipped.

Schema: the component ``alerts`` of devices.db's versioned migrations (:data:`_STEPS`); its
version 1 is the schema as it was before versions, with the upgrades of state DBs of older
releases (columns added where missing, pending alerts copied once out of the engine's JSON:
SQLite only, as only SQLite files are that old).

:class:`AlertStore` lists what the engine, the API and the board use; :class:`AlertState` keeps
it in the state DB on either engine, with the same SQL (devices/db.py translates for PostgreSQL).
Open it with ``AlertState(url_or_connection)``; the engine's checkpoint store then shares its
``db`` (alerts/checkpoints.py), so ``RuleEngine(pack, AlertState("postgresql://..."))`` is all
a node on PostgreSQL needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from devices import db as statedb
from devices.catalogue import SEVERITIES

from .errors import AlertNotFound, AlertsError, InvalidSilence
from .lifecycle import SILENCING_EVENTS, AlertEvent, Outcome, transition
from .maintenance import EVERY, PERIOD_MS, MaintenanceWindow
from .model import (
    ALERT_STATES,
    Alert,
    HistoryEntry,
    Silence,
    Transition,
    check_matchers,
    require_text,
    require_who,
)
from .notice import AlertNotice, NoticeListener
from .statedb import StateDB, as_statedb, locked

log = logging.getLogger("citywatch.alerts")


# (``"by"`` is quoted wherever it is written: a reserved word of PostgreSQL)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    rule TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    district TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    silenced INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '',
    metric TEXT,
    value REAL,
    threshold REAL,
    started_ms INTEGER NOT NULL,
    fired_ms INTEGER,
    ended_ms INTEGER,
    acked_by TEXT,
    acked_ms INTEGER,
    ack_note TEXT,
    device TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open
    ON alerts(rule, device_id) WHERE state IN ('firing', 'acknowledged');
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts(state, seq);
CREATE TABLE IF NOT EXISTS alert_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    change TEXT NOT NULL,
    severity TEXT,
    value REAL,
    threshold REAL,
    "by" TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS alert_history_by_alert ON alert_history(alert_id, seq);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS maintenance (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    first_start_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    every TEXT,
    tz TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    ended_by TEXT
);
CREATE TABLE IF NOT EXISTS alert_resets (
    alert_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_alerts (
    id TEXT NOT NULL,
    rule TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    district TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    metric TEXT,
    value REAL,
    started_ms INTEGER NOT NULL,
    PRIMARY KEY (rule, device_id)
);
CREATE INDEX IF NOT EXISTS pending_alerts_by_id ON pending_alerts(id);
"""

# Columns added since the first state DBs: (table, column, definition), added where missing.
_MIGRATIONS = (
    ("alerts", "assignee", "TEXT"),
    ("silences", "ended_by", "TEXT"),
)

# the lifecycle event of each change of an engine Transition
_ENGINE_EVENTS = {"pending": "pend", "dropped": "drop", "firing": "fire", "escalated": "escalate",
                  "resolved": "resolve"}

# most severe first: the rank of a severity (critical 3 .. info 0), as SQL over a column
_RANK = {sev: i for i, sev in enumerate(SEVERITIES)}
_FIRED_CURSOR = re.compile(r"c(-?[0-9])-([0-9]{1,18})")  # rank-seq of the last item shown
_PENDING_CURSOR = re.compile(r"p([0-9]{1,18})")  # offset


def _rank_sql(column: str) -> str:
    return "(CASE " + column + "".join(f" WHEN '{s}' THEN {i}" for s, i in _RANK.items()) + " ELSE -1 END)"


_RANK_COL = _rank_sql("severity")


# pending alerts of a state DB from before ``pending_alerts``: kept in the engine's stream rows
# (a JSON ``view``); copied once, without a summary (they had none stored)
_PENDING_FROM_STREAMS = """
INSERT OR IGNORE INTO pending_alerts (id, rule, device_id, kind, district, severity, summary, metric, value,
                                      started_ms)
SELECT coalesce(json_extract(data, '$.alert'), ''), rule, device_id, coalesce(json_extract(data, '$.view.kind'), ''),
       coalesce(json_extract(data, '$.view.district'), ''), coalesce(json_extract(data, '$.view.severity'), ''),
       '', json_extract(data, '$.view.metric'), json_extract(data, '$.view.value'),
       coalesce(json_extract(data, '$.started'), last_ts)
FROM rule_streams WHERE state = 'pending'
"""


def _version_1(conn: Any) -> None:
    """The tables as they were before versions: created where missing, and a state DB made by
    an older release upgraded (the columns of :data:`_MIGRATIONS` it lacks, the pending alerts
    it kept in the engine's stream rows: SQLite files only, none on PostgreSQL is that old)."""
    tables_before = statedb.tables(conn)
    statedb.run_script(conn, _SCHEMA)
    if not statedb.is_postgres(conn) and "pending_alerts" not in tables_before and "rule_streams" in tables_before:
        conn.execute(_PENDING_FROM_STREAMS)
    for table, column, definition in _MIGRATIONS:
        if column not in statedb.columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    conn.execute(f"CREATE INDEX IF NOT EXISTS alerts_by_rank ON alerts({_RANK_COL} DESC, seq DESC)")


# the versions of the alert store's tables (devices.db.migrate)
_STEPS = [_version_1]


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What a list of alerts is narrowed to; ``districts`` is a token's district scope (None: all)."""

    district: str | None = None
    kind: str | None = None
    severity: str | None = None
    device_id: str | None = None
    districts: Sequence[str] | None = None

    def sql(self) -> tuple[list[str], list]:
        """``(conditions, args)`` over the ``alerts`` or the ``pending_alerts`` table."""
        where, args = [], []
        for name in ("district", "kind", "severity", "device_id"):
            value = getattr(self, name)
            if value is not None:
                where.append(f"{name} = ?")
                args.append(value)
        if self.districts is not None:
            where.append(f"district IN ({','.join('?' * len(self.districts))})" if self.districts else "1 = 0")
            args.extend(self.districts)
        return where, args



class AlertStore(Protocol):
    """What callers use of the alert store."""

    tz: ZoneInfo
    db: StateDB  # the state DB connection it shares with the engine's checkpoint store
    listeners: list[NoticeListener]

    # the shared state DB's transaction, and its durability (deferred mode: alerts/engine.py)
    def transaction(self) -> AbstractContextManager[Any]: ...
    def relax_commits(self) -> None: ...
    def sync(self) -> None: ...

    # the engine's side (inside transaction())
    def new_alert_id(self, rule: str, device_id: str, started_ms: int, reserved: set[str]) -> str: ...
    def apply(self, transitions: Sequence[Transition],
              device_of: Callable[[Transition], Mapping[str, Any]]) -> list[AlertNotice]: ...
    def retire_rules(self, keep: Iterable[str], now_ms: int) -> list[Alert]: ...
    def take_resets(self) -> list[tuple[str, str, str]]: ...
    def clear_resets(self, alert_ids: Iterable[str]) -> None: ...

    # operators' side (each its own transaction)
    def ack(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert: ...
    def unack(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert: ...
    def resolve(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert: ...
    def assign(self, alert_id: str, unit: str, by: str, now_ms: int) -> Alert: ...
    def comment(self, alert_id: str, text: str, by: str, now_ms: int) -> Alert: ...
    def add_silence(self, matchers: Mapping[str, str], start_ms: int, end_ms: int, reason: str,
                    by: str, *, now_ms: int | None = None) -> Silence: ...
    def silences(self, active_at: int | None = None) -> list[Silence]: ...
    def end_silence(self, silence_id: str, by: str, now_ms: int) -> Silence: ...
    def add_maintenance(self, matchers: Mapping[str, str], first_start_ms: int, duration_ms: int,
                        every: str | None, reason: str, by: str, *, now_ms: int, tz: str | None = None
                        ) -> MaintenanceWindow: ...
    def maintenance_windows(self, include_ended: bool = True) -> list[MaintenanceWindow]: ...
    def end_maintenance(self, window_id: str, by: str, now_ms: int) -> MaintenanceWindow: ...

    # reads
    def get(self, alert_id: str) -> Alert: ...
    def list_alerts(self, state: str | None = None, limit: int = 100, after_cursor: str | None = None,
                    where: AlertFilter = ...) -> tuple[list[Alert], str | None]: ...
    def count_alerts(self, state: str | None = None, where: AlertFilter = ...) -> int: ...
    def open_alerts(self) -> list[Alert]: ...


class AlertState:
    """The alert store in the state DB, SQLite or PostgreSQL (:class:`AlertStore`).

    Thread-safe: the rule engine (ingest thread) and the API (server threads) may share one
    instance (the :class:`~alerts.statedb.StateDB`'s lock). ``conn``: a ``[state] url``, a
    connection from :func:`devices.db.connect`, or a StateDB (alerts/statedb.py
    :func:`~alerts.statedb.as_statedb`); the engine's checkpoint store shares it.
    ``tz`` is the zone of the RFC 3339 times in notices and the API; ``base_url`` (optional)
    makes the ``url`` of webhook alerts. ``listeners`` are called with ``(conn, AlertNotice)``
    inside the transaction of each notifiable change.
    """

    def __init__(self, conn: StateDB | Any, *, tz: str = "Asia/Shanghai", base_url: str = "",
                 listeners: Iterable[NoticeListener] = ()) -> None:
        self.db = as_statedb(conn)
        self.conn = self.db.conn
        self.tz = ZoneInfo(tz)
        self.base_url = base_url
        self.listeners: list[NoticeListener] = list(listeners)
        self.db.migrate("alerts", _STEPS)

    # --- transactions (of the state DB it shares with the engine's checkpoint store) -----------

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction (devices.db); rolls back and re-raises on any exception."""
        return self.db.transaction()

    def relax_commits(self) -> None:
        """Commits stop waiting for the disk (SQLite); :meth:`sync` makes them durable."""
        self.db.relax_commits()

    def sync(self) -> None:
        """Every commit so far is durable when this returns (SQLite: an fsync of the WAL)."""
        self.db.sync()

    def _require_tx(self) -> None:
        self.db.require_tx()

    # --- engine side --------------------------------------------------------------------------

    @staticmethod
    def pending_alert_id(rule: str, device_id: str, started_ms: int) -> str:
        """The id a pending alert shows: the one :meth:`new_alert_id` gives unless it clashes."""
        return "a-" + hashlib.sha1(f"{rule}|{device_id}|{started_ms}".encode()).hexdigest()[:6]

    @locked
    def new_alert_id(self, rule: str, device_id: str, started_ms: int, reserved: set[str]) -> str:
        """A short id (``a-7f3c2e``) derived from (rule, device, start); longer on a clash."""
        digest = hashlib.sha1(f"{rule}|{device_id}|{started_ms}".encode()).hexdigest()
        for n in range(6, len(digest) + 1, 2):
            aid = "a-" + digest[:n]
            if aid in reserved:
                continue
            if self.conn.execute("SELECT 1 FROM alerts WHERE id = ?", (aid,)).fetchone() is None:
                reserved.add(aid)
                return aid
        aid = "a-" + secrets.token_hex(12)
        reserved.add(aid)
        return aid

    def apply(self, transitions: Sequence[Transition],
              device_of: Callable[[Transition], Mapping[str, Any]]) -> list[AlertNotice]:
        """Record the engine's transitions (inside :meth:`transaction`) and notify listeners.

        Each becomes an event of :func:`alerts.lifecycle.transition` on the alert it concerns:
        ``pending`` (a row in ``pending_alerts``), ``dropped`` (that row deleted), ``firing``
        (the alert inserted), ``escalated``, ``resolved``; each change of a fired alert adds
        history rows and sends its notice, flagged ``silenced`` when an active silence matches
        at the event time. Returns the notices sent. ``device_of(t)`` gives the device object
        of webhooks.md.
        """
        self._require_tx()
        notify = ("firing", "escalated", "resolved")
        silencers = self._silencers() if any(t.change in notify for t in transitions) else ()
        notices: list[AlertNotice] = []
        for t in transitions:
            ch = t.change
            ev = AlertEvent(_ENGINE_EVENTS[ch], alert=self._described(t, device_of) if ch in ("pending", "firing")
                            else None, severity=t.severity, summary=t.summary, value=t.value, threshold=t.threshold)
            before = self._engine_target(t)
            out = self._change(before, ev, t.ts, silencers, notices)
            if not out.changed and before is not None and before.state == "resolved":
                log.info("%s %s: %s of %s skipped: resolved by hand", t.rule, t.device_id, ch, t.alert_id)
        return notices

    def _engine_target(self, t: Transition) -> Alert | None:
        """The alert an engine transition concerns: the pending one of its stream (or none) for
        ``pending``/``dropped``/``firing``, else the fired alert (AlertNotFound if there is none)."""
        if t.change == "pending" and t.from_state == "inactive":
            return None  # a stream starting: it has no pending row (most transitions; no query)
        if t.change == "dropped" and t.from_state == "pending":
            # its pending row, deleted by (rule, device): only its being there matters
            return Alert(t.alert_id, t.rule, t.device_id, t.kind, t.district, "pending", t.pending_severity
                         or t.severity, False, "", t.metric, t.pending_value, None, t.started_ms or t.ts,
                         None, None, None, None, None, {})
        if t.change in ("pending", "dropped", "firing"):
            pending = self._pending(" AND rule = ? AND device_id = ?", (t.rule, t.device_id))
            if pending:
                return pending[0]
            if t.change == "firing" and t.from_state == "pending":  # pending before pending_alerts existed
                started = t.started_ms if t.started_ms is not None else t.ts
                return Alert(t.alert_id, t.rule, t.device_id, t.kind, t.district, "pending",
                             t.pending_severity or t.severity, False, "", t.metric, t.pending_value, None,
                             started, None, None, None, None, None, {})
            return None
        return self._get_row(t.alert_id)

    @staticmethod
    def _described(t: Transition, device_of: Callable[[Transition], Mapping[str, Any]]) -> Alert:
        """The alert as an engine's ``pending``/``firing`` transition describes it."""
        dev = dict(device_of(t)) if t.change == "firing" else {}
        started = t.started_ms if t.started_ms is not None else t.ts
        return Alert(t.alert_id, t.rule, t.device_id, t.kind, dev.get("district") or t.district, "pending",
                     t.severity, False, t.summary, t.metric, t.value, t.threshold, started, None, None, None,
                     None, None, dev)

    def _change(self, before: Alert | None, ev: AlertEvent, at_ms: int, silencers: Sequence,
                notices: list[AlertNotice]) -> Outcome:
        """Apply one event (inside :meth:`transaction`): the transition function decides, this
        writes its result (the alert or pending row, history rows) and sends its notices."""
        out = transition(before, ev, at_ms, silencers)
        if not out.changed:
            return out
        self._write(before, out.alert)
        for h in out.history:
            self._history(out.alert.id, h.ts_ms, h.change, h.severity, h.value, h.threshold, h.by, h.note)
        for n in out.notices:
            notices.append(self._notify(n.status, out.alert, n.previous_severity))
        return out

    def _write(self, before: Alert | None, after: Alert | None) -> None:
        c = self.conn
        if before is not None and before.state == "pending" and (after is None or after.state != "pending"):
            c.execute("DELETE FROM pending_alerts WHERE rule = ? AND device_id = ?", (before.rule, before.device_id))
        if after is None:
            return
        if after.state == "pending":
            c.execute("INSERT INTO pending_alerts (id, rule, device_id, kind, district, severity, summary, metric,"
                      " value, started_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (after.id, after.rule, after.device_id, after.kind, after.district, after.severity,
                       after.summary, after.metric, after.value, after.started_ms))
        elif before is None or before.state == "pending":
            c.execute(
                "INSERT INTO alerts (id, rule, device_id, kind, district, state, severity, silenced, summary,"
                " metric, value, threshold, started_ms, fired_ms, device) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (after.id, after.rule, after.device_id, after.kind, after.district, after.state, after.severity,
                 int(after.silenced), after.summary, after.metric, after.value, after.threshold,
                 after.started_ms, after.fired_ms, json.dumps(dict(after.device), ensure_ascii=False)))
        else:
            c.execute("UPDATE alerts SET state = ?, severity = ?, silenced = ?, summary = ?, value = ?,"
                      " threshold = ?, ended_ms = ?, acked_by = ?, acked_ms = ?, ack_note = ? WHERE id = ?",
                      (after.state, after.severity, int(after.silenced), after.summary, after.value,
                       after.threshold, after.ended_ms, after.acked_by, after.acked_ms, after.ack_note, after.id))

    def _history(self, alert_id: str, ts_ms: int, change: str, severity: str | None, value: float | None,
                 threshold: float | None, by: str | None = None, note: str | None = None) -> None:
        self.conn.execute(
            'INSERT INTO alert_history (alert_id, ts_ms, change, severity, value, threshold, "by", note)'
            " VALUES (?,?,?,?,?,?,?,?)", (alert_id, ts_ms, change, severity, value, threshold, by, note or None))


    def _silencers(self) -> list[Silence | MaintenanceWindow]:
        """Every silence and maintenance window: an alert matching one active at a transition's
        event time is silenced."""
        return [*self.silences(), *self.maintenance_windows()]

    def _notify(self, status: str, alert: Alert, previous_severity: str | None = None) -> AlertNotice:
        notice = AlertNotice(status, alert.webhook_alert(self.tz, self.base_url), dict(alert.device),
                             alert.silenced, previous_severity)
        for listener in self.listeners:
            listener(self.conn, notice)
        return notice

    # --- operator side ------------------------------------------------------------------------
    # Every change an operator makes is an alert transition recorded in the alert's history with
    # who made it; state changes that notify (acknowledged, resolved) send their notice through
    # the listeners inside the same transaction, as the engine's do.

    def _open_row(self, alert_id: str, verb: str, states: tuple[str, ...]) -> Alert:
        """The alert (inside a transaction), which must be in one of ``states``: AlertNotFound,
        or AlertsError saying why it cannot be ``verb``-ed."""
        alert = self._fired_or_pending(alert_id)
        if alert.state == "pending":
            raise AlertsError(f"alert {alert_id} is pending (it has not fired); it cannot be {verb}")
        if alert.state not in states:
            raise AlertsError(f"alert {alert_id} is {alert.state}; only a {' or '.join(states)} alert can be {verb}")
        return alert

    def _fired_or_pending(self, alert_id: str) -> Alert:
        try:
            return self._get_row(alert_id)
        except AlertNotFound:
            pending = self._pending(" AND id = ?", (alert_id,))
            if pending:
                return pending[0]
            raise

    def _operate(self, kind: str, alert_id: str, by: str, now_ms: int, note: str) -> Alert:
        """An operator's event on an alert (the transition function decides), in one transaction;
        InvalidTransition (an AlertsError) if the alert's state does not allow it."""
        with self.transaction():
            before = self._fired_or_pending(alert_id)
            silencers = self._silencers() if kind in SILENCING_EVENTS else ()
            out = self._change(before, AlertEvent(kind, by=by, note=note), now_ms, silencers, [])
            if out.changed:
                log.info("%s %s: %s => %s by %s", before.rule, before.device_id, before.state.upper(),
                         out.alert.state.upper(), by)
            if out.changed and kind == "resolve_by_hand":
                self.conn.execute("INSERT INTO alert_resets (alert_id, rule, device_id) VALUES (?,?,?)"
                                  " ON CONFLICT (alert_id) DO UPDATE SET rule = excluded.rule,"
                                  " device_id = excluded.device_id", (before.id, before.rule, before.device_id))
        return self.get(alert_id)

    def ack(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert:
        """Acknowledge an open alert; notifies listeners with ``acknowledged``.

        Acknowledging an already acknowledged alert changes nothing and sends nothing;
        a pending or resolved alert cannot be acknowledged (AlertsError); an unknown id raises
        AlertNotFound.
        """
        return self._operate("ack", alert_id, require_who(by, "acknowledge"), now_ms, note)

    def unack(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert:
        """Take an acknowledgement back: ``acknowledged -> firing`` (a firing alert: no change).

        No notice: webhooks.md has no status for it, and receivers already heard ``firing``; an
        escalation the acknowledgement cancelled stays cancelled.
        """
        return self._operate("unack", alert_id, require_who(by, "un-acknowledge"), now_ms, note)

    def resolve(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert:
        """Resolve an open alert by hand: like the engine's resolve (a history row, a
        ``resolved`` notice, silenced the same way), with who and their note.

        The engine then forgets the condition (:meth:`take_resets`): if it still holds, the next
        evaluation starts it over (pending, then a new alert after the rule's ``for``).
        """
        return self._operate("resolve_by_hand", alert_id, require_who(by, "resolve"), now_ms, note)

    def retire_rules(self, keep: Iterable[str], now_ms: int) -> list[Alert]:
        """Retire the pending and open alerts of every rule not in ``keep`` (inside
        :meth:`transaction`): pending ones vanish, open ones resolve at ``now_ms`` with a
        ``resolved`` notice. Returns the alerts resolved."""
        self._require_tx()
        keep = set(keep)
        gone = [a for a in [*self._pending(), *self.open_alerts()] if a.rule not in keep]
        silencers = self._silencers() if gone else ()
        outs = [self._change(a, AlertEvent("retire"), now_ms, silencers, []) for a in gone]
        return [o.alert for o in outs if o.alert is not None]


    def assign(self, alert_id: str, unit: str, by: str, now_ms: int) -> Alert:
        """Hand a fired alert to a responsible unit ("" takes the assignment back)."""
        by = require_who(by, "assign")
        with self.transaction():
            alert = self._open_row(alert_id, "assigned", ("firing", "acknowledged", "resolved"))
            self.conn.execute("UPDATE alerts SET assignee = ? WHERE id = ?", (unit or None, alert_id))
            self._history(alert_id, now_ms, "assigned", alert.severity, alert.value, alert.threshold, by, unit)
        return self.get(alert_id)

    def comment(self, alert_id: str, text: str, by: str, now_ms: int) -> Alert:
        """Add a comment to a fired alert (its history, and its ``comments``)."""
        by = require_who(by, "comment")
        text = require_text(text, "a comment needs a text")
        with self.transaction():
            alert = self._open_row(alert_id, "commented", ("firing", "acknowledged", "resolved"))
            self._history(alert_id, now_ms, "commented", alert.severity, alert.value, alert.threshold, by, text)
        return self.get(alert_id)

    def take_resets(self) -> list[tuple[str, str, str]]:
        """``(alert_id, rule, device_id)`` of the alerts resolved by hand since the engine last
        cleared them (:meth:`clear_resets`, in the transaction of its commit)."""
        with self.db.lock:
            return [tuple(r) for r in self.conn.execute("SELECT alert_id, rule, device_id FROM alert_resets")]

    def clear_resets(self, alert_ids: Iterable[str]) -> None:
        """Forget resets the engine has applied (inside :meth:`transaction`)."""
        self._require_tx()
        self.conn.executemany("DELETE FROM alert_resets WHERE alert_id = ?", [(a,) for a in alert_ids])

    # --- silences and maintenance windows -----------------------------------------------------

    def add_silence(self, matchers: Mapping[str, str], start_ms: int, end_ms: int, reason: str,
                    by: str, *, now_ms: int | None = None) -> Silence:
        """Silence alerts matching every given matcher between start and end (epoch ms).

        Matchers: any of rule, kind, district, device, severity (at least one). Raises
        InvalidSilence naming the problem.
        """
        clean = check_matchers(matchers)
        if not end_ms > start_ms:
            raise InvalidSilence("a silence must end after it starts")
        reason = require_text(reason, "a silence needs a reason")
        by = require_text(by, "a silence needs the name of who sets it ('by')")
        s = Silence("s-" + secrets.token_hex(4), clean, int(start_ms), int(end_ms), reason,
                    by, int(now_ms if now_ms is not None else start_ms))
        with self.transaction():
            self.conn.execute(
                "INSERT INTO silences (id, matchers, start_ms, end_ms, reason, created_by, created_ms)"
                " VALUES (?,?,?,?,?,?,?)",
                (s.id, json.dumps(s.matchers, ensure_ascii=False, sort_keys=True), s.start_ms,
                 s.end_ms, s.reason, s.created_by, s.created_ms))
        log.info("silence %s %s until %s: %s (by %s)", s.id, s.matchers, s.end_ms, s.reason, by)
        return s

    @locked
    def silences(self, active_at: int | None = None) -> list[Silence]:
        rows = self.conn.execute("SELECT * FROM silences ORDER BY start_ms").fetchall()
        out = [Silence(r["id"], json.loads(r["matchers"]), r["start_ms"], r["end_ms"], r["reason"],
                       r["created_by"], r["created_ms"], r["ended_by"]) for r in rows]
        return out if active_at is None else [s for s in out if s.active(active_at)]

    def end_silence(self, silence_id: str, by: str, now_ms: int) -> Silence:
        """End a silence early (now; a silence not started yet never starts). One already over is
        left as it is. KeyError if there is none."""
        by = require_who(by, "end a silence")
        with self.transaction():
            r = self.conn.execute("SELECT start_ms, end_ms FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if r is None:
                raise KeyError(silence_id)
            if r["end_ms"] > now_ms:
                self.conn.execute("UPDATE silences SET end_ms = ?, ended_by = ? WHERE id = ?",
                                  (max(now_ms, r["start_ms"]), by, silence_id))
                log.info("silence %s ended early by %s", silence_id, by)
        return next(s for s in self.silences() if s.id == silence_id)

    def add_maintenance(self, matchers: Mapping[str, str], first_start_ms: int, duration_ms: int,
                        every: str | None, reason: str, by: str, *, now_ms: int, tz: str | None = None
                        ) -> MaintenanceWindow:
        """A maintenance window (alerts/maintenance.py); InvalidSilence naming the problem."""
        clean = check_matchers(matchers)
        if every is not None and every not in EVERY:
            raise InvalidSilence(f"every must be one of {', '.join(EVERY)} or null (once), got {every!r}")
        longest = PERIOD_MS.get(every or "", None)
        if duration_ms <= 0 or (longest is not None and duration_ms > longest):
            raise InvalidSilence(f"duration must be positive and at most the period ({every}: "
                                 f"{longest and longest // 86_400_000} days), so occurrences never overlap")
        w = MaintenanceWindow("m-" + secrets.token_hex(4), clean, int(first_start_ms), int(duration_ms), every,
                              require_text(reason, "a maintenance window needs a reason"),
                              require_text(by, "a maintenance window needs the name of who sets it ('by')"),
                              int(now_ms), tz or self.tz.key)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO maintenance (id, matchers, first_start_ms, duration_ms, every, tz, reason,"
                " created_by, created_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                (w.id, json.dumps(w.matchers, ensure_ascii=False, sort_keys=True), w.first_start_ms,
                 w.duration_ms, w.every, w.tz, w.reason, w.created_by, w.created_ms))
        log.info("maintenance window %s %s every %s: %s (by %s)", w.id, w.matchers, every or "once", reason, by)
        return w

    @locked
    def maintenance_windows(self, include_ended: bool = True) -> list[MaintenanceWindow]:
        rows = self.conn.execute("SELECT * FROM maintenance" + ("" if include_ended else " WHERE ended_ms IS NULL")
                                 + " ORDER BY created_ms, id").fetchall()
        return [MaintenanceWindow(r["id"], json.loads(r["matchers"]), r["first_start_ms"], r["duration_ms"],
                                  r["every"], r["reason"], r["created_by"], r["created_ms"], r["tz"],
                                  r["ended_ms"], r["ended_by"]) for r in rows]

    def end_maintenance(self, window_id: str, by: str, now_ms: int) -> MaintenanceWindow:
        """End a window (DELETE): it covers nothing from now on; its past stays (replays). KeyError
        if there is none."""
        by = require_who(by, "end a maintenance window")
        with self.transaction():
            r = self.conn.execute("SELECT ended_ms FROM maintenance WHERE id = ?", (window_id,)).fetchone()
            if r is None:
                raise KeyError(window_id)
            if r["ended_ms"] is None:
                self.conn.execute("UPDATE maintenance SET ended_ms = ?, ended_by = ? WHERE id = ?",
                                  (now_ms, by, window_id))
        return next(w for w in self.maintenance_windows() if w.id == window_id)

    def _get_row(self, alert_id: str) -> Alert:
        r = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if r is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        return Alert.from_row(r)

    def _pending(self, where: str = "", args: tuple = (), limit: int = -1, offset: int = 0) -> list[Alert]:
        """Pending alerts, most severe then newest condition start first."""
        rows = self.conn.execute(
            "SELECT * FROM pending_alerts WHERE 1 = 1" + where
            + f" ORDER BY {_RANK_COL} DESC, started_ms DESC, rule, device_id LIMIT ? OFFSET ?",
            (*args, limit, offset)).fetchall()
        return [Alert(r["id"], r["rule"], r["device_id"], r["kind"], r["district"], "pending", r["severity"], False,
                      r["summary"], r["metric"], r["value"], None, r["started_ms"], None, None, None, None, None, {})
                for r in rows]

    @locked
    def get(self, alert_id: str) -> Alert:
        """The alert with its history; AlertNotFound if there is none."""
        r = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if r is None:
            pending = self._pending(" AND id = ?", (alert_id,))
            if pending:
                return pending[0]
            raise AlertNotFound(f"no alert {alert_id!r}")
        hist = tuple(HistoryEntry(h["ts_ms"], h["change"], h["severity"], h["value"], h["threshold"],
                                  h["by"], h["note"])
                     for h in self.conn.execute(
                         "SELECT * FROM alert_history WHERE alert_id = ? ORDER BY seq", (alert_id,)))
        return Alert.from_row(r, hist)

    @locked
    def list_alerts(self, state: str | None = None, limit: int = 100, after_cursor: str | None = None,
                    where: AlertFilter = AlertFilter()) -> tuple[list[Alert], str | None]:
        """Alerts most severe first, then newest, optionally of one state and narrowed by
        ``where``; ``(items, next_cursor or None)``.

        Without a state: the alerts that fired (firing, acknowledged, resolved); pending ones
        are listed with ``state="pending"`` (most severe, then newest condition start first).
        """
        if state is not None and state not in ALERT_STATES:
            raise AlertsError(f"unknown alert state {state!r}; use one of {', '.join(ALERT_STATES)}")
        if not 1 <= limit <= 1000:
            raise AlertsError("limit must be between 1 and 1000")
        if state == "pending":
            m = _PENDING_CURSOR.fullmatch(after_cursor or "p0")
            if m is None:
                raise AlertsError(f"bad cursor {after_cursor!r}; pass the 'next' of a previous page")
            offset = int(m[1])
            cond, args = where.sql()
            items = self._pending("".join(f" AND {c}" for c in cond), tuple(args), limit + 1, offset)
            return items[:limit], (f"p{offset + limit}" if len(items) > limit else None)
        cond, args = self._fired_where(state, where)
        if after_cursor:
            m = _FIRED_CURSOR.fullmatch(after_cursor)
            if m is None:
                raise AlertsError(f"bad cursor {after_cursor!r}; pass the 'next' of a previous page")
            rank, seq = int(m[1]), int(m[2])
            cond.append(f"({_RANK_COL} < ? OR ({_RANK_COL} = ? AND seq < ?))")
            args += [rank, rank, seq]
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(cond) if cond else "")
        rows = self.conn.execute(sql + f" ORDER BY {_RANK_COL} DESC, seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        items = [Alert.from_row(r) for r in rows[:limit]]
        nxt = f"c{_RANK.get(items[-1].severity, -1)}-{items[-1].seq}" if len(rows) > limit else None
        return items, nxt

    @staticmethod
    def _fired_where(state: str | None, where: AlertFilter) -> tuple[list[str], list]:
        cond, args = where.sql()
        if state is not None:
            cond.insert(0, "state = ?")
            args.insert(0, state)
        return cond, args

    @locked
    def count_alerts(self, state: str | None = None, where: AlertFilter = AlertFilter()) -> int:
        if state == "pending":
            cond, args = where.sql()
            return self.conn.execute("SELECT count(*) FROM pending_alerts WHERE 1 = 1"
                                     + "".join(f" AND {c}" for c in cond), args).fetchone()[0]
        cond, args = self._fired_where(state, where)
        return self.conn.execute("SELECT count(*) FROM alerts" + (" WHERE " + " AND ".join(cond) if cond else ""),
                                 args).fetchone()[0]

    @locked
    def open_alerts(self) -> list[Alert]:
        """Firing and acknowledged alerts, oldest first."""
        rows = self.conn.execute(
            "SELECT * FROM alerts WHERE state IN ('firing', 'acknowledged') ORDER BY seq")
        return [Alert.from_row(r) for r in rows]
