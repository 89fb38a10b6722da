"""The durable outbox: one row per (notice, receiver) in the state database (SQLite or
PostgreSQL, devices/db.py: the same SQL but for SQLite's index hints in :func:`claim_due`;
its table versioned as the component ``dispatch_outbox``).

Guarantees:

* :meth:`Outbox.listener` writes through the connection it is given, inside the caller's open
  transaction, and never commits or rolls back: the delivery rows commit or roll back with the
  alert change that caused them, so a crash between the two loses nothing.
* Each row carries its final JSON body (webhooks.md), built once, and a ``delivery_id`` (ULID)
  that stays the same on every attempt, so receivers can drop repeats.
* For one receiver and one alert, deliveries go out in the order they were written: a
  ``resolved`` never overtakes the ``firing`` still being retried (see :func:`claim_due`).
* A ``firing`` notice of a ``major``/``critical`` alert on a route with ``escalate_after``
  also writes ``scheduled`` rows (status ``escalated``) for the route's ``escalate_to``
  receivers, due at ``started_at + escalate_after`` (or ``now + escalate_after`` when an
  ``escalated`` notice of the lifecycle says the alert's severity rose to major/critical; one
  such escalation per alert); a later ``acknowledged`` or ``resolved``
  notice of that alert cancels those not yet attempted, and goes, besides the route's
  receivers, to every receiver the escalation did reach (or is still trying to reach).
* Rows stay visible (:meth:`Outbox.page`); only :func:`prune` deletes, and only delivered and
  cancelled rows (the dispatcher prunes those older than its retention, 30 days by default).

Delivery states: ``scheduled`` (escalation not yet due or not yet attempted), ``pending``
(to be sent or being retried), ``delivered`` (a 2xx answer), ``failed`` (not retryable, or no
2xx within the retry horizon), ``cancelled`` (an escalation made moot in time).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from alerts.notice import NOTICE_STATUSES, AlertNotice
from devices import db as statedb
from devices.times import rfc3339

from .config import DispatchConfig
from .errors import DispatchError
from .ulid import CROCKFORD, UlidGenerator

STATES = ("scheduled", "pending", "delivered", "failed", "cancelled")
ESCALATING_SEVERITIES = frozenset({"major", "critical"})
ALERT_FIELDS = ("id", "rule", "severity", "summary", "metric", "value", "threshold", "started_at",
                "ended_at", "acknowledged_by", "url")
DEVICE_FIELDS = ("id", "kind", "district", "asset_id", "lat", "lon", "responsible_unit")
BODY_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatch_deliveries (
    delivery_id      TEXT PRIMARY KEY,       -- ULID, also the X-Citywatch-Delivery header
    alert_id         TEXT NOT NULL,
    receiver         TEXT NOT NULL,
    notice           TEXT NOT NULL,          -- firing | resolved | acknowledged | escalated
    state            TEXT NOT NULL CHECK (state IN
                         ('scheduled', 'pending', 'delivered', 'failed', 'cancelled')),
    body             BLOB NOT NULL,          -- the exact JSON bytes sent on every attempt
    created_at       REAL NOT NULL,          -- unix seconds
    next_attempt_at  REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    last_attempt_at  REAL,
    last_error       TEXT,
    done_at          REAL,                   -- when delivered, failed or cancelled
    escalation       INTEGER NOT NULL DEFAULT 0  -- 1: scheduled by a route's escalate_after
);
CREATE INDEX IF NOT EXISTS dispatch_deliveries_due
    ON dispatch_deliveries (receiver, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS dispatch_deliveries_alert
    ON dispatch_deliveries (alert_id, receiver, state, delivery_id);
CREATE INDEX IF NOT EXISTS dispatch_deliveries_list
    ON dispatch_deliveries (state, delivery_id);
"""

_IDS = UlidGenerator()


def _version_1(conn: Any) -> None:
    """The outbox as it was before versions: created where missing, and the ``escalation``
    column added to an outbox of an older release (before escalation rows were marked)."""
    statedb.run_script(conn, SCHEMA)
    if "escalation" not in statedb.columns(conn, "dispatch_deliveries"):
        conn.execute("ALTER TABLE dispatch_deliveries ADD COLUMN escalation INTEGER NOT NULL DEFAULT 0")


def _version_2(conn: Any) -> None:
    """PostgreSQL: the index a claim checks "no older pending delivery of this alert" in
    (:func:`claim_due`); SQLite's claim names the indexes it walks and needs none."""
    if statedb.is_postgres(conn):
        conn.execute("CREATE INDEX IF NOT EXISTS dispatch_deliveries_pending_alert"
                     " ON dispatch_deliveries (alert_id, receiver, delivery_id) WHERE state = 'pending'")


_STEPS = [_version_1, _version_2]  # the versions of the outbox's table (devices.db.migrate)


def ensure_schema(conn: Any) -> None:
    """Create or upgrade the outbox table (devices.db.migrate). Inside a caller's open
    transaction it never commits it: the steps run in it (each is idempotent) and the version
    is recorded by the next open outside a transaction."""
    if not conn.in_transaction:
        statedb.migrate(conn, "dispatch_outbox", _STEPS)
        return
    for step in _STEPS[statedb.schema_version(conn, "dispatch_outbox"):]:
        step(conn)


def _body_text(conn: Any) -> str:
    """SQL for a delivery's body (JSON bytes) as text."""
    return "convert_from(body, 'UTF8')" if statedb.is_postgres(conn) else "CAST(body AS TEXT)"


def build_body(delivery_id: str, status: str, alert: Mapping[str, Any], device: Mapping[str, Any],
               public_url: str, top: Mapping[str, Any] | None = None) -> bytes:
    """The webhook body (webhooks.md) as UTF-8 JSON bytes.

    Every field of the contract is present (``null`` when the notice lacks it); fields the
    notice carries beyond the contract follow them (receivers ignore unknown fields).
    ``alert.url`` defaults to ``{public_url}/alerts/{id}``. ``top``: top-level fields after
    ``status``, e.g. an ``escalated`` notice's ``reason`` (:func:`escalation_fields`).
    """
    a = {k: alert.get(k) for k in ALERT_FIELDS}
    a.update((k, v) for k, v in alert.items() if k not in a)
    if a["url"] is None and a["id"] is not None:
        a["url"] = f"{public_url.rstrip('/')}/alerts/{quote(str(a['id']), safe='')}"
    d = {k: device.get(k) for k in DEVICE_FIELDS}
    d.update((k, v) for k, v in device.items() if k not in d)
    doc = {"version": BODY_VERSION, "delivery_id": delivery_id, "status": status, **(top or {}),
           "alert": a, "device": d}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()


def escalation_fields(status: str, scheduled: bool, previous_severity: str | None) -> dict[str, Any]:
    """The top-level fields webhooks.md gives an ``escalated`` notice: ``reason``
    ``escalate_after`` for a route's escalation (a ``scheduled`` row), else ``severity_raised``
    with the ``previous_severity``; none for other statuses."""
    if status != "escalated":
        return {}
    if scheduled:
        return {"reason": "escalate_after"}
    return {"reason": "severity_raised", "previous_severity": previous_severity}


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable in an alert notice: {type(obj).__name__}")


def _epoch(rfc3339: object) -> float | None:
    if not isinstance(rfc3339, str):
        return None
    try:
        dt = datetime.fromisoformat(rfc3339)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def _rfc3339(ts: float | None, tz: tzinfo) -> str | None:
    """Epoch seconds as the API shows every time (devices.times.rfc3339: the zone's offset)."""
    return None if ts is None else rfc3339(ts * 1000, tz)


class Outbox:
    """Writes deliveries for alert notices (:meth:`listener`) and lists them (:meth:`page`).

    ``conn`` is used to create the tables and by :meth:`page`/:meth:`counts` (thread-safe: a lock
    guards it), so give the Outbox a connection of its own when the API reads from another
    thread; the listener only ever uses the connection it is called with.
    """

    def __init__(self, conn: Any, config: DispatchConfig, *,
                 clock: Callable[[], float] = time.time,
                 public_url: str = "http://127.0.0.1:8080", tz: str = "Asia/Shanghai") -> None:
        self._conn = conn
        self.tz = ZoneInfo(tz)  # of the times :meth:`page` shows
        self._config = config
        self._clock = clock
        self._public_url = public_url
        self._lock = threading.Lock()
        with self._lock:
            ensure_schema(conn)
        self._district_sql = statedb.json_text(conn, _body_text(conn), "device", "district")

    def listener(self, conn: Any, notice: AlertNotice) -> None:
        """The NoticeListener: record the deliveries this notice causes, in ``conn``'s transaction.

        Silenced notices, and notices no route matches, write no deliveries (an ``acknowledged``
        or ``resolved`` one still cancels scheduled escalations). Raises DispatchError when called
        outside a transaction (the outbox row would not be atomic with the alert change).
        """
        if not conn.in_transaction:
            raise DispatchError("Outbox.listener must be called inside the transaction that records "
                                "the alert change (devices.db.write_transaction)")
        if notice.status not in NOTICE_STATUSES:
            raise DispatchError(f"unknown notice status {notice.status!r} "
                                f"(known: {', '.join(NOTICE_STATUSES)})")
        alert_id = notice.alert.get("id")
        if not alert_id:
            raise DispatchError("alert notice without alert.id")
        alert_id = str(alert_id)
        now = self._clock()
        if notice.status in ("acknowledged", "resolved"):
            conn.execute(
                "UPDATE dispatch_deliveries SET state = 'cancelled', done_at = ?"
                " WHERE alert_id = ? AND state = 'scheduled'", (now, alert_id))
        if notice.silenced:
            return
        route = self._config.route_for(notice.alert, notice.device)
        targets = list(route.receivers) if route is not None else []
        if notice.status in ("acknowledged", "resolved"):
            # whoever an escalation reached (or is reaching) hears how the alert ended
            for (name,) in conn.execute(
                    "SELECT DISTINCT receiver FROM dispatch_deliveries WHERE alert_id = ?"
                    " AND escalation = 1 AND state IN ('pending', 'delivered')", (alert_id,)):
                if name not in targets and name in self._config.receivers:
                    targets.append(name)
        rows = [(r, notice.status, "pending", now, 0) for r in targets]
        if (route is not None and route.escalate_after_s is not None
                and notice.status in ("firing", "escalated")
                and notice.alert.get("severity") in ESCALATING_SEVERITIES
                and not _has_escalation(conn, alert_id)):
            # timed from the start of a firing alert, or from the moment its severity rose
            started = _epoch(notice.alert.get("started_at")) if notice.status == "firing" else None
            due = (now if started is None else started) + route.escalate_after_s
            rows += [(r, "escalated", "scheduled", due, 1) for r in route.escalate_to]
        for receiver, status, state, due, escalation in rows:
            delivery_id = _IDS.new(now)
            top = escalation_fields(status, bool(escalation), notice.previous_severity)
            body = build_body(delivery_id, status, notice.alert, notice.device, self._public_url, top)
            conn.execute(
                "INSERT INTO dispatch_deliveries (delivery_id, alert_id, receiver, notice, state, body,"
                " created_at, next_attempt_at, escalation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, alert_id, receiver, status, state, body, now, due, escalation))

    def page(self, *, status: str | None = None, limit: int = 100,
             cursor: str | None = None, districts: Sequence[str] | None = None) -> dict[str, Any]:
        """``{"items", "total", "next"}``, newest first; ``next`` is the cursor of the next page.

        ``status`` filters on the delivery state (:data:`STATES`); ``districts`` to the
        deliveries about devices of those districts (the body's ``device.district``). Raises
        ValueError on a bad status, limit or cursor.
        """
        if status is not None and status not in STATES:
            raise ValueError(f"status: unknown delivery status {status!r} (known: {', '.join(STATES)})")
        if not 1 <= limit <= 1000:
            raise ValueError("limit: must be between 1 and 1000")
        if cursor is not None and (len(cursor) != 26 or any(c not in CROCKFORD for c in cursor)):
            raise ValueError(f"cursor: not a cursor from a previous page: {cursor!r}")
        where, args = [], []
        if status is not None:
            where.append("state = ?")
            args.append(status)
        if districts is not None:  # (no districts: none; "IN ()" is SQLite's alone)
            marks = ", ".join("?" * len(districts))
            where.append(f"{self._district_sql} IN ({marks})" if districts else "1 = 0")
            args.extend(districts)
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        page_where = where + (["delivery_id < ?"] if cursor else [])
        page_args = args + ([cursor] if cursor else [])
        page_cond = f"WHERE {' AND '.join(page_where)}" if page_where else ""
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM dispatch_deliveries {cond}", args).fetchone()[0]
            rows = self._conn.execute(
                "SELECT delivery_id, alert_id, receiver, notice, state, created_at, next_attempt_at,"
                " attempts, first_attempt_at, last_attempt_at, last_error, done_at"
                f" FROM dispatch_deliveries {page_cond} ORDER BY delivery_id DESC LIMIT ?",
                (*page_args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        tz = self.tz
        items = [
            {
                "delivery_id": r[0], "alert_id": r[1], "receiver": r[2], "notice": r[3],
                "status": r[4], "created_at": _rfc3339(r[5], tz),
                "next_attempt_at": _rfc3339(r[6], tz) if r[4] in ("pending", "scheduled") else None,
                "attempts": r[7], "first_attempt_at": _rfc3339(r[8], tz),
                "last_attempt_at": _rfc3339(r[9], tz), "last_error": r[10], "done_at": _rfc3339(r[11], tz),
                # still being retried after a failed attempt (webhooks.md: any non-2xx is retried)
                "failing": r[4] == "pending" and r[10] is not None,
            }
            for r in rows
        ]
        return {"items": items, "total": total, "next": rows[-1][0] if more else None}

    def counts(self) -> dict[str, int]:
        """Number of deliveries in each state (every state present, zero when none)."""
        with self._lock:
            found = dict(self._conn.execute(
                "SELECT state, COUNT(*) FROM dispatch_deliveries GROUP BY state").fetchall())
        return {s: found.get(s, 0) for s in STATES}


def _has_escalation(conn: Any, alert_id: str) -> bool:
    """Whether an escalation of this alert was already scheduled (whatever became of it)."""
    return conn.execute("SELECT 1 FROM dispatch_deliveries WHERE alert_id = ? AND escalation = 1"
                        " LIMIT 1", (alert_id,)).fetchone() is not None


# --- the dispatcher's side -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Due:
    """A delivery whose attempt is due, as the dispatcher claims it."""

    delivery_id: str
    receiver: str
    body: bytes
    attempts: int
    first_attempt_at: float | None
    created_at: float
    due_at: float


_CLAIM = (
    "SELECT d.delivery_id, d.receiver, d.body, d.attempts, d.first_attempt_at, d.created_at,"
    "       d.next_attempt_at"
    "  FROM dispatch_deliveries AS d{due}"
    " WHERE d.receiver = ? AND d.state = ? AND d.next_attempt_at <= ?"
    "   AND NOT EXISTS (SELECT 1 FROM dispatch_deliveries AS e{alert}"
    "                    WHERE e.alert_id = d.alert_id AND e.receiver = d.receiver"
    "                      AND e.state = 'pending' AND e.delivery_id < d.delivery_id{fence})"
    " ORDER BY d.next_attempt_at LIMIT ?")
# SQLite is told which index to walk (an index walk each, no O(n^2) order check). PostgreSQL has no
# hints: ``OFFSET 0`` keeps the NOT EXISTS a subquery per claimed row, which its partial index of
# pending deliveries answers (outbox version 2). Planned as an anti-join before the table's first
# ANALYZE, it read every pending row of the receiver per claimed row (EXPLAIN ANALYZE on PostgreSQL
# 15, 2026-12-06, a dead receiver with 2,000 pending: 10 ms a claim; 20,000: 200 ms; this: 0.1 ms).
# The plans are held by tests/dispatch/test_outbox.py test_a_claim_walks_the_alert_index.
_CLAIM_SQLITE = _CLAIM.format(due=" INDEXED BY dispatch_deliveries_due", alert=" INDEXED BY dispatch_deliveries_alert",
                              fence="")
_CLAIM_POSTGRES = _CLAIM.format(due="", alert="", fence=" OFFSET 0")


def claim_due(conn: Any, receiver: str, now: float, limit: int,
              skip: Collection[str]) -> list[Due]:
    """Up to ``limit`` deliveries of ``receiver`` due at ``now``, oldest first, not in ``skip``.

    A delivery is held back while an older delivery of the same alert to the same receiver is
    still pending, so one receiver sees one alert's notices in order.
    """
    sql = _CLAIM_POSTGRES if statedb.is_postgres(conn) else _CLAIM_SQLITE
    rows = []
    for state in ("pending", "scheduled"):  # one index walk each, stopping at the limit
        rows += conn.execute(sql, (receiver, state, now, limit + len(skip))).fetchall()
    rows.sort(key=lambda r: (r[6], r[0]))
    out = [Due(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], r[6]) for r in rows if r[0] not in skip]
    return out[:limit]


def next_due_after(conn: Any, receiver: str, now: float) -> float | None:
    """The earliest attempt time later than ``now`` of a pending or scheduled delivery of
    ``receiver``."""
    return conn.execute(
        "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM dispatch_deliveries"
        "                     WHERE receiver = ? AND state = 'pending' AND next_attempt_at > ?"
        "                    UNION ALL"
        "                    SELECT MIN(next_attempt_at) FROM dispatch_deliveries"
        "                     WHERE receiver = ? AND state = 'scheduled' AND next_attempt_at > ?) AS due",
        (receiver, now, receiver, now)).fetchone()[0]


def pending_by_receiver(conn: Any) -> dict[str, int]:
    """Pending deliveries (due or in backoff) per receiver."""
    return dict(conn.execute(
        "SELECT receiver, COUNT(*) FROM dispatch_deliveries WHERE state = 'pending'"
        " GROUP BY receiver").fetchall())


def record_delivered(conn: Any, due: Due, attempted_at: float, now: float) -> None:
    """A 2xx answer: the delivery is done."""
    conn.execute(
        "UPDATE dispatch_deliveries SET state = 'delivered', attempts = attempts + 1,"
        " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, last_error = NULL,"
        " done_at = ? WHERE delivery_id = ?",
        (attempted_at, attempted_at, now, due.delivery_id))


def record_retry(conn: Any, due: Due, attempted_at: float, error: str,
                 next_attempt_at: float) -> None:
    """A retryable failure: try again at ``next_attempt_at`` (unless cancelled meanwhile)."""
    conn.execute(
        "UPDATE dispatch_deliveries SET attempts = attempts + 1,"
        " state = CASE state WHEN 'cancelled' THEN 'cancelled' ELSE 'pending' END,"
        " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, last_error = ?,"
        " next_attempt_at = ? WHERE delivery_id = ?",
        (attempted_at, attempted_at, error, next_attempt_at, due.delivery_id))


def record_failed(conn: Any, due: Due, attempted_at: float, error: str,
                  now: float) -> None:
    """Given up (not retryable, or the retry horizon passed): kept as failed."""
    conn.execute(
        "UPDATE dispatch_deliveries SET state = 'failed', attempts = attempts + 1,"
        " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?, last_error = ?,"
        " done_at = ? WHERE delivery_id = ?",
        (attempted_at, attempted_at, error, now, due.delivery_id))


def fail_orphans(conn: Any, known_receivers: Collection[str], now: float) -> int:
    """Mark failed the open deliveries of receivers no longer configured; returns how many."""
    names = list(known_receivers)
    unknown = f"AND receiver NOT IN ({', '.join('?' for _ in names)})" if names else ""
    cur = conn.execute(
        "UPDATE dispatch_deliveries SET state = 'failed', done_at = ?,"
        " last_error = 'receiver ' || receiver || ' is no longer configured'"
        f" WHERE state IN ('pending', 'scheduled') {unknown}", (now, *names))
    return cur.rowcount


def prune(conn: Any, done_before: float) -> int:
    """Delete delivered and cancelled deliveries finished before ``done_before``; failed ones are
    kept. Returns how many rows went."""
    return conn.execute(
        "DELETE FROM dispatch_deliveries WHERE state IN ('delivered', 'cancelled') AND done_at < ?",
        (done_before,)).rowcount
