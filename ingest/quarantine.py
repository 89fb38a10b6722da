"""The quarantine: rejected messages, kept with their reason (device-protocol.md "Bad input").

Rows live in the state DB. ``add`` commits before it returns, so a rejected QoS 1 message may
be acknowledged right after: it is durable here instead of in the store.

Bounded, so that one device (or a flood of junk) cannot fill the state DB:

- **Per-source rate limit.** At most ``per_source_per_minute`` entries a minute are kept whole
  for one source (its device id; for a topic with no usable device id, the topic's first
  levels). Beyond that, what the source sends in the rest of the minute is counted, not kept:
  when the minute is over one ``rate_limited`` entry says how many of its messages were
  rejected unkept and for which reasons (codes), so nothing is rejected without a trace. The
  sources tracked at once are bounded too (``max_sources``): past that, every further source
  shares one budget.
- **Retention.** :meth:`prune` deletes entries older than ``max_age_ms`` and, while the kept
  payloads exceed ``max_bytes``, the oldest entries. The write stage calls it about once a
  minute (:meth:`maintain`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devices import db
from devices.db import execute_values, write_transaction
from ingest.model import Rejection

MAX_KEPT_PAYLOAD = 4096
WINDOW_MS = 60_000
OVERFLOW_SOURCE = "(other sources)"  # the shared budget once max_sources are tracked

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    device_id   TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT '',
    code        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    payload     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_code ON quarantine(code);
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine(received_at);
CREATE INDEX IF NOT EXISTS quarantine_device ON quarantine(device_id);
"""


@dataclass(frozen=True, slots=True)
class Retention:
    """How much the quarantine keeps (``[ingest] quarantine_*`` settings)."""

    max_age_ms: int = 30 * 86_400_000
    max_bytes: int = 1024 * 1024 * 1024
    per_source_per_minute: int = 60
    max_sources: int = 100_000


@dataclass(slots=True)
class _Window:
    start: int
    kept: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)  # code -> rejections counted, not kept
    topic: str = ""
    device_id: str = ""
    kind: str = ""


def source_of(r: Rejection) -> str:
    """What a rate limit is kept per: the device id, else the topic's first three levels."""
    if r.device_id:
        return r.device_id
    return "/".join(r.topic.split("/", 3)[:3])[:200]


def _text(s: str) -> str:
    """``s`` as either engine can store it: lone surrogates (which UTF-8 cannot carry) and NUL
    (which PostgreSQL's text cannot) escaped."""
    if "\x00" in s:
        s = s.replace("\x00", "\\x00")
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


class Quarantine:
    def __init__(self, conn: Any, retention: Retention | None = None,
                 clock: Callable[[], float] = time.time):
        self._conn = conn
        self.retention = retention or Retention()
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._pruned_at = 0.0
        self.suppressed_total = 0  # rejections counted but not kept whole (rate limit)
        self.pruned_total = 0  # entries deleted by retention
        db.migrate(conn, "quarantine", [_SCHEMA])

    def add(self, rejections: Iterable[Rejection]) -> int:
        """Keep ``rejections`` (within each source's rate limit; the rest are counted into the
        source's ``rate_limited`` entry); returns how many entries were written."""
        rows = []
        limit = self.retention.per_source_per_minute
        for r in rejections:
            start = r.received_at - r.received_at % WINDOW_MS
            key = source_of(r)
            w = self._windows.get(key)
            if w is None and len(self._windows) >= self.retention.max_sources:
                key = OVERFLOW_SOURCE
                w = self._windows.get(key)
            if w is not None and w.start != start:  # that source's minute is over
                if w.suppressed:
                    rows.append(self._summary(key, w))
                w = None
            if w is None:
                w = self._windows[key] = _Window(start)
            code = r.reason.split(":", 1)[0]
            if w.kept < limit:
                w.kept += 1
                rows.append(self._row(r, code, r.reason))
            else:
                w.suppressed[code] = w.suppressed.get(code, 0) + 1
                w.topic, w.device_id, w.kind = r.topic, r.device_id, r.kind
                self.suppressed_total += 1
        return self._insert(rows)

    def maintain(self, now_ms: int | None = None, every_s: float = 60.0) -> None:
        """At most every ``every_s``: write the ``rate_limited`` entries of the minutes that are
        over, and :meth:`prune`."""
        if now_ms is None:
            now_ms = int(self._clock() * 1000)
        if now_ms / 1000 - self._pruned_at < every_s:
            return
        self._pruned_at = now_ms / 1000
        rows = []
        for key, w in list(self._windows.items()):
            if now_ms >= w.start + WINDOW_MS:
                if w.suppressed:
                    rows.append(self._summary(key, w))
                del self._windows[key]
        self._insert(rows)
        self.prune(now_ms)

    def prune(self, now_ms: int | None = None) -> int:
        """Delete entries older than the retention age, then the oldest while the kept payloads
        are over the size limit; returns how many were deleted."""
        if now_ms is None:
            now_ms = int(self._clock() * 1000)
        with write_transaction(self._conn) as c:
            deleted = c.execute("DELETE FROM quarantine WHERE received_at < ?",
                                (now_ms - self.retention.max_age_ms,)).rowcount
        # read outside the write transaction (a scan of lengths, not of the payloads)
        size, n = self._conn.execute("SELECT coalesce(sum(length(payload) + length(reason)), 0), count(*)"
                                     " FROM quarantine").fetchone()
        if size > self.retention.max_bytes and n:
            # the oldest entries, by the average entry's share of the excess (and one more)
            k = min(n, int((size - self.retention.max_bytes) / (size / n)) + 1)
            with write_transaction(self._conn) as c:
                deleted += c.execute("DELETE FROM quarantine WHERE id IN"
                                     " (SELECT id FROM quarantine ORDER BY id LIMIT ?)", (k,)).rowcount
        self.pruned_total += deleted
        return deleted

    def flush_limits(self) -> int:
        """Write every pending ``rate_limited`` entry now (at stop)."""
        rows = [self._summary(k, w) for k, w in self._windows.items() if w.suppressed]
        self._windows.clear()
        return self._insert(rows)

    def _insert(self, rows: list[tuple]) -> int:
        if not rows:
            return 0
        with write_transaction(self._conn) as c:
            execute_values(
                c, "INSERT INTO quarantine (received_at, topic, device_id, kind, code, reason, size, payload)"
                " VALUES {values}", rows)
        return len(rows)

    @staticmethod
    def _row(r: Rejection, code: str, reason: str) -> tuple:
        return (r.received_at, _text(r.topic), _text(r.device_id), _text(r.kind), _text(code)[:64],
                _text(reason)[:2000], len(r.payload), bytes(r.payload[:MAX_KEPT_PAYLOAD]))

    def _summary(self, key: str, w: _Window) -> tuple:
        n = sum(w.suppressed.values())
        codes = ", ".join(f"{c} {k}" for c, k in sorted(w.suppressed.items(), key=lambda x: -x[1]))
        reason = (f"rate_limited: {n} more rejected messages from {key!r} in the minute from {w.start} were "
                  f"counted, not kept (over {self.retention.per_source_per_minute} a minute): {codes}")
        summary = Rejection(w.topic, b"", w.start + WINDOW_MS - 1, reason, w.device_id, w.kind)
        w.suppressed = {}
        return self._row(summary, "rate_limited", reason)

    def recent(self, limit: int = 100, before_id: int | None = None, *, device_id: str | None = None,
               kind: str | None = None, code: str | None = None,
               districts: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before_id`` pages further back; ``device_id``, ``kind`` and ``code``
        (the reason's code: ``unregistered``, ``json``, ...) filter; ``districts``: only entries
        of registered devices of those districts."""
        where, args = _filters(device_id, kind, code, districts)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        sql = "SELECT * FROM quarantine" + (" WHERE " + " AND ".join(where) if where else "")
        return [_row(r) for r in self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    def count(self, code: str | None = None, *, device_id: str | None = None, kind: str | None = None,
              districts: Sequence[str] | None = None) -> int:
        where, args = _filters(device_id, kind, code, districts)
        sql = "SELECT count(*) FROM quarantine" + (" WHERE " + " AND ".join(where) if where else "")
        return self._conn.execute(sql, args).fetchone()[0]

    def counts_by_code(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT code, count(*) FROM quarantine GROUP BY code").fetchall())


def _filters(device_id: str | None, kind: str | None, code: str | None,
             districts: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    """The WHERE conditions and their arguments; ``districts``: "of a device registered in one
    of them" (the registry's table, in the same state DB), none for None."""
    pairs = (("device_id", device_id), ("kind", kind), ("code", code))
    where, args = [f"{col} = ?" for col, v in pairs if v is not None], [v for _, v in pairs if v is not None]
    if districts is not None:
        marks = ", ".join("?" * len(districts))
        where.append(f"device_id IN (SELECT device_id FROM devices WHERE district IN ({marks}))")
        args.extend(districts)
    return where, args


def _row(r: Any) -> dict[str, Any]:
    payload: bytes = r["payload"]
    return {
        "id": r["id"], "received_at": r["received_at"], "topic": r["topic"],
        "device_id": r["device_id"], "kind": r["kind"], "code": r["code"], "reason": r["reason"],
        "size": r["size"], "truncated": r["size"] > len(payload),
        "payload": payload.decode("utf-8", "replace"),
    }
