"""Device events (``city/{kind}/{id}/event`` and ``status``), kept in the state DB.

Idempotent: an event redelivered (same device, ts, type) is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from devices import db
from devices.db import execute_values, write_transaction
from ingest.model import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    device_id TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    type      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL,
    PRIMARY KEY (device_id, ts, type)
) WITHOUT ROWID;
"""


class EventLog:
    def __init__(self, conn: Any):
        self._conn = conn
        db.migrate(conn, "events", [_SCHEMA])

    def add(self, events: Iterable[Event]) -> int:
        rows = [(e.device_id, e.ts, e.type, e.kind, json.dumps(dict(e.detail), ensure_ascii=False))
                for e in events]
        if not rows:
            return 0
        with write_transaction(self._conn) as c:
            return execute_values(c, "INSERT OR IGNORE INTO events VALUES {values}", rows)

    def for_device(self, device_id: str, start: int, end: int, limit: int = 1000) -> list[dict[str, Any]]:
        cur = self._conn.execute(
            "SELECT ts, type, detail FROM events WHERE device_id = ? AND ts >= ? AND ts < ?"
            " ORDER BY ts DESC LIMIT ?", (device_id, start, end, limit))
        return [{"ts": ts, "type": t, "detail": _detail(d)} for ts, t, d in cur]


def _detail(text: str) -> Any:
    """A stored detail; one an older version stored too deep to decode is shown as a note."""
    try:
        return json.loads(text)
    except (RecursionError, ValueError):
        return {"undecodable": f"{len(text)} characters of JSON nested too deep or malformed"}
