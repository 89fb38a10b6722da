"""Alert lifecycle persistence in the state DB (SQLite): alerts, their history, silences, and
the rule engine's per-(rule, device) stream state.

Guarantees:
- One open alert per (rule, device): a unique partial index over the open states
  (``firing``, ``acknowledged``) makes a duplicate impossible, also across restarts.
- Every change of one engine call (or one :meth:`AlertState.ack`) commits in ONE transaction
  (:meth:`AlertState.transaction`); notice listeners run inside it, so an outbox row a listener
  writes commits or rolls back with the alert change. A listener that raises rolls back all.
- The engine's stream state (pending start per level, last evaluated ts) is saved in the same
  transaction as the alerts it produced, so after a crash or a restart the engine resumes
  exactly where the last committed call left it. Its per-reading memories (window aggregates in
  ``rule_acc``, the previous value of ``change`` rules in ``rule_prev``) are saved either in
  that transaction too or, by an engine in deferred mode, at its checkpoints, which the ingest
  pipeline takes before it acknowledges the readings (alerts/engine.py).

Alert states: ``pending`` (condition true, waiting for ``for``; never notified; kept only in
the engine's stream state, so the frequent pending-then-dropped case costs no alert rows; its id
is the one the alert gets if it fires), ``firing``, ``acknowledged`` (still open, an operator
took it), ``resolved``. The ``alerts`` table holds the alerts that fired. ``silenced`` is a
flag: the alert is recorded, and its notices carry ``silenced=True`` so dispatch does not send
them on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from devices.catalogue import KINDS, SEVERITIES
from devices.sqlite import execute_values, relax, sync_wal, write_transaction
from devices.times import rfc3339

from .errors import AlertNotFound, AlertsError, InvalidSilence
from .notice import AlertNotice, NoticeListener

log = logging.getLogger("citywatch.alerts")
_encode = msgspec.json.Encoder().encode

ALERT_STATES = ("pending", "firing", "acknowledged", "resolved")
SILENCE_MATCHERS = ("rule", "kind", "district", "device", "severity")

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
    by TEXT,
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


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a (rule, device) stream, as decided by the engine.

    ``from_state``/``to_state`` are ``inactive``, ``pending``, ``firing`` or ``resolved``;
    a severity upgrade is ``firing -> firing`` with ``severity`` above ``prev_severity``.
    ``ts`` is event time (ms). ``alert_id`` is the open alert's id (stable from pending on).
    ``summary`` and ``threshold`` are empty for ``pending`` and ``dropped`` (never notified).
    """

    rule: str
    device_id: str
    kind: str
    alert_id: str
    from_state: str
    to_state: str
    ts: int
    severity: str
    summary: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    started_ms: int | None = None
    prev_severity: str | None = None
    district: str = ""
    asset_id: str = ""
    pending_severity: str | None = None  # pending -> firing: the severity and value when the
    pending_value: float | None = None  # condition started (for the alert's history)

    @property
    def change(self) -> str:
        """What happened: ``pending``, ``dropped``, ``firing``, ``escalated`` or ``resolved``."""
        if self.to_state == "firing":
            return "escalated" if self.from_state == "firing" else "firing"
        if self.to_state == "inactive":
            return "dropped"
        return self.to_state


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: Mapping[str, str]
    start_ms: int
    end_ms: int
    reason: str
    created_by: str
    created_ms: int

    def active(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all(str(labels.get(k)) == v for k, v in self.matchers.items())

    def to_api(self, tz: ZoneInfo) -> dict:
        return {
            "id": self.id, "matchers": dict(self.matchers), "start": rfc3339(self.start_ms, tz),
            "end": rfc3339(self.end_ms, tz), "reason": self.reason, "created_by": self.created_by,
            "created_at": rfc3339(self.created_ms, tz),
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts_ms: int
    change: str  # pending, firing, escalated, acknowledged, resolved
    severity: str | None
    value: float | None
    threshold: float | None
    by: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    rule: str
    device_id: str
    kind: str
    district: str
    state: str
    severity: str
    silenced: bool
    summary: str
    metric: str | None
    value: float | None
    threshold: float | None
    started_ms: int
    fired_ms: int | None
    ended_ms: int | None
    acked_by: str | None
    acked_ms: int | None
    ack_note: str | None
    device: Mapping[str, Any]
    seq: int = 0
    history: tuple[HistoryEntry, ...] = field(default=())

    @classmethod
    def _from_row(cls, r: sqlite3.Row, history: tuple[HistoryEntry, ...] = ()) -> Alert:
        return cls(
            r["id"], r["rule"], r["device_id"], r["kind"], r["district"], r["state"],
            r["severity"], bool(r["silenced"]), r["summary"], r["metric"], r["value"],
            r["threshold"], r["started_ms"], r["fired_ms"], r["ended_ms"], r["acked_by"],
            r["acked_ms"], r["ack_note"], json.loads(r["device"]), r["seq"], history,
        )

    def webhook_alert(self, tz: ZoneInfo, base_url: str = "") -> dict:
        """The ``alert`` object of webhooks.md."""
        return {
            "id": self.id, "rule": self.rule, "severity": self.severity, "summary": self.summary,
            "metric": self.metric, "value": self.value, "threshold": self.threshold,
            "started_at": rfc3339(self.started_ms, tz), "ended_at": rfc3339(self.ended_ms, tz),
            "acknowledged_by": self.acked_by,
            "url": f"{base_url.rstrip('/')}/alerts/{self.id}" if base_url else None,
        }

    def to_api(self, tz: ZoneInfo) -> dict:
        """The alert as the REST API shows it."""
        out = {
            "id": self.id, "rule": self.rule, "state": self.state, "severity": self.severity,
            "silenced": self.silenced, "summary": self.summary, "device_id": self.device_id,
            "kind": self.kind, "district": self.district, "metric": self.metric,
            "value": self.value, "threshold": self.threshold,
            "started_at": rfc3339(self.started_ms, tz), "fired_at": rfc3339(self.fired_ms, tz),
            "ended_at": rfc3339(self.ended_ms, tz), "acknowledged_by": self.acked_by,
            "acknowledged_at": rfc3339(self.acked_ms, tz), "ack_note": self.ack_note,
            "device": dict(self.device),
        }
        if self.history:
            out["history"] = [
                {"at": rfc3339(h.ts_ms, tz), "change": h.change, "severity": h.severity,
                 "value": h.value, "threshold": h.threshold, "by": h.by, "note": h.note}
                for h in self.history
            ]
        return out


@dataclass(slots=True)
class StreamRow:
    """The persisted state of one (rule, device) stream (the engine owns its ``data``)."""

    rule: str
    device_id: str
    state: str  # inactive, pending, firing
    last_ts: int
    data: dict


def _locked(method):
    """Run the method holding the state's lock (one connection, several threads)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class AlertState:
    """Alerts, history, silences and engine stream state in the state DB.

    Thread-safe: the rule engine (ingest thread) and the API (server threads) may share one
    instance; a lock serialises the use of its connection, and a transaction holds it from
    ``BEGIN`` to ``COMMIT``.

    ``conn`` comes from :func:`devices.sqlite.connect` (autocommit mode; this class issues its
    own ``BEGIN IMMEDIATE``/``COMMIT``). ``tz`` is the zone of the RFC 3339 times in notices
    and the API; ``base_url`` (optional) makes the ``url`` of webhook alerts. ``listeners``
    are called with ``(conn, AlertNotice)`` inside the transaction of each notifiable change.
    """

    def __init__(self, conn: sqlite3.Connection, *, tz: str = "Asia/Shanghai", base_url: str = "",
                 listeners: Iterable[NoticeListener] = ()) -> None:
        self.conn = conn
        self.tz = ZoneInfo(tz)
        self.base_url = base_url
        self.listeners: list[NoticeListener] = list(listeners)
        # (rule, device, severity level, value) -> summary of a pending alert; the rule engine
        # sets it (pending alerts store no summary)
        self.summarize: Callable[[str, str, int, float | None], str] | None = None
        self._in_tx = 0  # the thread inside a transaction, 0 if none
        self._lock = threading.RLock()
        conn.executescript(_SCHEMA)

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back and re-raises on any exception."""
        with self._lock:
            if self._in_tx:
                raise AlertsError("nested alert-state transaction")
            with write_transaction(self.conn):
                self._in_tx = threading.get_ident()
                try:
                    yield self.conn
                finally:
                    self._in_tx = 0

    def relax_commits(self) -> None:
        """Commits stop waiting for the disk; :meth:`sync` makes them durable (devices.sqlite)."""
        with self._lock:
            relax(self.conn)

    def sync(self) -> None:
        """Every commit so far is durable when this returns (an fsync of the state DB's WAL)."""
        sync_wal(self.conn)

    def _require_tx(self) -> None:
        if self._in_tx != threading.get_ident():
            raise AlertsError("alert changes must be applied inside AlertState.transaction()")

    # --- engine side --------------------------------------------------------------------------

    @staticmethod
    def pending_alert_id(rule: str, device_id: str, started_ms: int) -> str:
        """The id a pending alert shows: the one :meth:`new_alert_id` gives unless it clashes."""
        return "a-" + hashlib.sha1(f"{rule}|{device_id}|{started_ms}".encode()).hexdigest()[:6]

    @_locked
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

        ``pending``/``dropped`` transitions write nothing here (pending alerts live in the stream
        state); ``firing`` inserts the alert, ``escalated`` raises its severity, ``resolved``
        closes it; each adds a history row and sends a notice (``firing``, ``escalated``,
        ``resolved``), flagged ``silenced`` when an active silence matches at the event time.
        Returns the notices sent. ``device_of(t)`` gives the device object of webhooks.md.
        """
        self._require_tx()
        silences = None
        notices = []
        c = self.conn
        for t in transitions:
            ch = t.change
            if ch in ("pending", "dropped"):
                continue  # pending lives in the stream state only
            if ch == "firing":
                dev = dict(device_of(t))
                started = t.started_ms if t.started_ms is not None else t.ts
                c.execute(
                    "INSERT INTO alerts (id, rule, device_id, kind, district, state, severity,"
                    " summary, metric, value, threshold, started_ms, fired_ms, device)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (t.alert_id, t.rule, t.device_id, t.kind, dev.get("district") or t.district,
                     "firing", t.severity, t.summary, t.metric, t.value, t.threshold, started,
                     t.ts, json.dumps(dev, ensure_ascii=False)),
                )
                if t.from_state == "pending":
                    c.execute("INSERT INTO alert_history (alert_id, ts_ms, change, severity, value,"
                              " threshold) VALUES (?,?,?,?,?,?)",
                              (t.alert_id, started, "pending", t.pending_severity or t.severity,
                               t.pending_value, t.threshold))
            elif ch == "escalated":
                c.execute("UPDATE alerts SET severity = ?, summary = ?, value = ?, threshold = ?"
                          " WHERE id = ?", (t.severity, t.summary, t.value, t.threshold, t.alert_id))
            elif ch == "resolved":
                c.execute("UPDATE alerts SET state = 'resolved', ended_ms = ? WHERE id = ?",
                          (t.ts, t.alert_id))
            c.execute("INSERT INTO alert_history (alert_id, ts_ms, change, severity, value, threshold)"
                      " VALUES (?,?,?,?,?,?)", (t.alert_id, t.ts, ch, t.severity, t.value, t.threshold))
            if ch in ("firing", "escalated", "resolved"):
                if silences is None:
                    silences = self.silences()
                alert = self._get_row(t.alert_id)
                labels = {"rule": alert.rule, "kind": alert.kind, "district": alert.district,
                          "device": alert.device_id, "severity": alert.severity}
                silenced = any(s.active(t.ts) and s.matches(labels) for s in silences)
                if silenced != alert.silenced:
                    c.execute("UPDATE alerts SET silenced = ? WHERE id = ?", (int(silenced), alert.id))
                    alert = replace(alert, silenced=silenced)
                notices.append(self._notify(ch, alert))
        return notices

    def _notify(self, status: str, alert: Alert) -> AlertNotice:
        notice = AlertNotice(status, alert.webhook_alert(self.tz, self.base_url), dict(alert.device),
                             alert.silenced)
        for listener in self.listeners:
            listener(self.conn, notice)
        return notice

    @_locked
    def load_streams(self) -> list[StreamRow]:
        return [StreamRow(r["rule"], r["device_id"], r["state"], r["last_ts"], json.loads(r["data"]))
                for r in self.conn.execute("SELECT * FROM rule_streams")]

    def save_streams(self, rows: Iterable[StreamRow], deleted: Iterable[tuple[str, str]] = ()) -> None:
        """Upsert stream rows and delete ``(rule, device_id)`` ones (inside :meth:`transaction`)."""
        self._require_tx()
        # (no statement for nothing to do, one per table otherwise: each one gives up the GIL,
        # and under load taking it back can wait for other threads, on the alert path; see
        # devices.sqlite.execute_values)
        deleted = list(deleted)
        if deleted:
            execute_values(self.conn, "DELETE FROM rule_streams WHERE (rule, device_id) IN (VALUES {values})",
                           deleted)
        # msgspec: the same JSON as json.dumps(separators=(",", ":")) for this data (finite numbers,
        # str, None, lists, dicts), ~10x faster; a batch saves a stream per device it touched
        rows = [(r.rule, r.device_id, r.state, r.last_ts, _encode(r.data).decode()) for r in rows]
        if rows:
            execute_values(
                self.conn, "INSERT INTO rule_streams (rule, device_id, state, last_ts, data) VALUES {values}"
                " ON CONFLICT (rule, device_id) DO UPDATE SET state = excluded.state,"
                " last_ts = excluded.last_ts, data = excluded.data", rows)

    @_locked
    def load_acc(self) -> list[tuple[str, str, int, float, int, int]]:
        """``(rule, device_id, bucket, sum, n, last_ts)``: each window aggregate in progress."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT rule, device_id, bucket, sum, n, last_ts FROM rule_acc")]

    def save_acc(self, rows: Iterable[tuple[str, str, int, float, int, int]]) -> None:
        """Upsert ``(rule, device_id, bucket, sum, n, last_ts)`` rows (inside :meth:`transaction`)."""
        self._require_tx()
        rows = list(rows)
        if rows:
            execute_values(
                self.conn, "INSERT INTO rule_acc (rule, device_id, bucket, sum, n, last_ts) VALUES {values}"
                " ON CONFLICT (rule, device_id) DO UPDATE SET bucket = excluded.bucket, sum = excluded.sum,"
                " n = excluded.n, last_ts = excluded.last_ts", rows)

    @_locked
    def load_prev(self) -> list[tuple[str, str, int, float]]:
        """``(rule, device_id, ts, value)``: each device's newest value for ``change`` rules."""
        return [tuple(r) for r in self.conn.execute("SELECT rule, device_id, ts, value FROM rule_prev")]

    def save_prev(self, rows: Iterable[tuple[str, str, int, float]]) -> None:
        """Upsert ``(rule, device_id, ts, value)`` rows (inside :meth:`transaction`)."""
        self._require_tx()
        rows = list(rows)
        if rows:
            execute_values(
                self.conn, "INSERT INTO rule_prev (rule, device_id, ts, value) VALUES {values}"
                " ON CONFLICT (rule, device_id) DO UPDATE SET ts = excluded.ts, value = excluded.value",
                rows)

    def forget_rules(self, keep: Iterable[str]) -> int:
        """Delete the engine state (streams, window aggregates, previous values) of every rule
        not in ``keep`` (inside :meth:`transaction`); returns the rows deleted."""
        self._require_tx()
        keep = sorted(set(keep))
        marks = ",".join("?" * len(keep))
        where = f"WHERE rule NOT IN ({marks})" if keep else ""
        return sum(self.conn.execute(f"DELETE FROM {table} {where}", keep).rowcount
                   for table in ("rule_streams", "rule_acc", "rule_prev"))

    # --- operator side ------------------------------------------------------------------------

    def ack(self, alert_id: str, by: str, now_ms: int, note: str = "") -> Alert:
        """Acknowledge an open alert; notifies listeners with ``acknowledged``.

        Acknowledging an already acknowledged alert changes nothing and sends nothing;
        a pending or resolved alert cannot be acknowledged (AlertsError); an unknown id raises
        AlertNotFound.
        """
        if not by or not str(by).strip():
            raise AlertsError("acknowledge needs the name of who acknowledges ('by')")
        with self.transaction():
            try:
                alert = self._get_row(alert_id)
            except AlertNotFound:
                if self._pending(" AND json_extract(data, '$.alert') = ?", (alert_id,)):
                    raise AlertsError(f"alert {alert_id} is pending; only a firing alert can be acknowledged") from None
                raise
            if alert.state == "acknowledged":
                return self.get(alert_id)
            if alert.state != "firing":
                raise AlertsError(f"alert {alert_id} is {alert.state}; only a firing alert can be acknowledged")
            self.conn.execute(
                "UPDATE alerts SET state = 'acknowledged', acked_by = ?, acked_ms = ?, ack_note = ?"
                " WHERE id = ?", (by, now_ms, note or None, alert_id))
            self.conn.execute(
                "INSERT INTO alert_history (alert_id, ts_ms, change, severity, value, threshold, by,"
                " note) VALUES (?,?,?,?,?,?,?,?)",
                (alert_id, now_ms, "acknowledged", alert.severity, alert.value, alert.threshold, by,
                 note or None))
            log.info("%s %s: FIRING => ACKNOWLEDGED by %s", alert.rule, alert.device_id, by)
            self._notify("acknowledged", self._get_row(alert_id))
        return self.get(alert_id)

    def add_silence(self, matchers: Mapping[str, str], start_ms: int, end_ms: int, reason: str,
                    by: str, *, now_ms: int | None = None) -> Silence:
        """Silence alerts matching every given matcher between start and end (epoch ms).

        Matchers: any of rule, kind, district, device, severity (at least one). Raises
        InvalidSilence naming the problem.
        """
        if not isinstance(matchers, Mapping) or not matchers:
            raise InvalidSilence(f"a silence needs at least one matcher of {', '.join(SILENCE_MATCHERS)}")
        unknown = set(matchers) - set(SILENCE_MATCHERS)
        if unknown:
            raise InvalidSilence(f"unknown matcher(s) {sorted(unknown)}; use {', '.join(SILENCE_MATCHERS)}")
        clean = {}
        for k, v in matchers.items():
            if not isinstance(v, str) or not v:
                raise InvalidSilence(f"matcher {k!r} must be a non-empty string, got {v!r}")
            clean[k] = v
        if "kind" in clean and clean["kind"] not in KINDS:
            raise InvalidSilence(f"matcher kind {clean['kind']!r} is not one of {', '.join(KINDS)}")
        if "severity" in clean and clean["severity"] not in SEVERITIES:
            raise InvalidSilence(f"matcher severity {clean['severity']!r} is not one of {', '.join(SEVERITIES)}")
        if not end_ms > start_ms:
            raise InvalidSilence("a silence must end after it starts")
        if not reason or not str(reason).strip():
            raise InvalidSilence("a silence needs a reason")
        if not by or not str(by).strip():
            raise InvalidSilence("a silence needs the name of who sets it ('by')")
        s = Silence("s-" + secrets.token_hex(4), clean, int(start_ms), int(end_ms), str(reason),
                    str(by), int(now_ms if now_ms is not None else start_ms))
        with self.transaction():
            self.conn.execute(
                "INSERT INTO silences (id, matchers, start_ms, end_ms, reason, created_by, created_ms)"
                " VALUES (?,?,?,?,?,?,?)",
                (s.id, json.dumps(s.matchers, ensure_ascii=False, sort_keys=True), s.start_ms,
                 s.end_ms, s.reason, s.created_by, s.created_ms))
        log.info("silence %s %s until %s: %s (by %s)", s.id, s.matchers, s.end_ms, s.reason, by)
        return s

    @_locked
    def silences(self, active_at: int | None = None) -> list[Silence]:
        rows = self.conn.execute("SELECT * FROM silences ORDER BY start_ms").fetchall()
        out = [Silence(r["id"], json.loads(r["matchers"]), r["start_ms"], r["end_ms"], r["reason"],
                       r["created_by"], r["created_ms"]) for r in rows]
        return out if active_at is None else [s for s in out if s.active(active_at)]

    def _get_row(self, alert_id: str) -> Alert:
        r = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if r is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        return Alert._from_row(r)

    def _pending(self, where: str = "", args: tuple = (), limit: int = -1, offset: int = 0) -> list[Alert]:
        rows = self.conn.execute(
            "SELECT * FROM rule_streams WHERE state = 'pending'" + where
            + " ORDER BY json_extract(data, '$.started') DESC, rule, device_id LIMIT ? OFFSET ?",
            (*args, limit, offset)).fetchall()
        out = []
        for r in rows:
            d = json.loads(r["data"])
            v = d.get("view") or {}
            summary = (self.summarize(r["rule"], r["device_id"], v.get("sev", 0), v.get("value"))
                       if self.summarize else "")
            out.append(Alert(
                d.get("alert") or "", r["rule"], r["device_id"], v.get("kind", ""),
                v.get("district", ""), "pending", v.get("severity", ""), False, summary,
                v.get("metric"), v.get("value"), None, d.get("started") or r["last_ts"],
                None, None, None, None, None, {}))
        return out

    @_locked
    def get(self, alert_id: str) -> Alert:
        """The alert with its history; AlertNotFound if there is none."""
        r = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if r is None:
            pending = self._pending(" AND json_extract(data, '$.alert') = ?", (alert_id,))
            if pending:
                return pending[0]
            raise AlertNotFound(f"no alert {alert_id!r}")
        hist = tuple(HistoryEntry(h["ts_ms"], h["change"], h["severity"], h["value"], h["threshold"],
                                  h["by"], h["note"])
                     for h in self.conn.execute(
                         "SELECT * FROM alert_history WHERE alert_id = ? ORDER BY seq", (alert_id,)))
        return Alert._from_row(r, hist)

    @_locked
    def list_alerts(self, state: str | None = None, limit: int = 100,
                    after_cursor: str | None = None) -> tuple[list[Alert], str | None]:
        """Alerts newest first, optionally of one state; ``(items, next_cursor or None)``.

        Without a state: the alerts that fired (firing, acknowledged, resolved); pending ones
        are listed with ``state="pending"`` (newest condition start first).
        """
        if state is not None and state not in ALERT_STATES:
            raise AlertsError(f"unknown alert state {state!r}; use one of {', '.join(ALERT_STATES)}")
        if not 1 <= limit <= 1000:
            raise AlertsError("limit must be between 1 and 1000")
        if state == "pending":
            try:
                offset = int(after_cursor.removeprefix("p")) if after_cursor else 0
            except ValueError:
                raise AlertsError(f"bad cursor {after_cursor!r}; pass the 'next' of a previous page") from None
            items = self._pending(limit=limit + 1, offset=offset)
            return items[:limit], (f"p{offset + limit}" if len(items) > limit else None)
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if after_cursor:
            try:
                seq = int(after_cursor.removeprefix("c"))
            except ValueError:
                raise AlertsError(f"bad cursor {after_cursor!r}; pass the 'next' of a previous page") from None
            where.append("seq < ?")
            args.append(seq)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit + 1)).fetchall()
        items = [Alert._from_row(r) for r in rows[:limit]]
        nxt = f"c{items[-1].seq}" if len(rows) > limit else None
        return items, nxt

    @_locked
    def count_alerts(self, state: str | None = None) -> int:
        if state == "pending":
            return self.conn.execute("SELECT count(*) FROM rule_streams WHERE state = 'pending'").fetchone()[0]
        if state is None:
            return self.conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        return self.conn.execute("SELECT count(*) FROM alerts WHERE state = ?", (state,)).fetchone()[0]

    @_locked
    def open_alerts(self) -> list[Alert]:
        """Firing and acknowledged alerts, oldest first."""
        rows = self.conn.execute(
            "SELECT * FROM alerts WHERE state IN ('firing', 'acknowledged') ORDER BY seq")
        return [Alert._from_row(r) for r in rows]
