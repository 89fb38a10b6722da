"""The quarantine: rejected messages, kept with their reason (device-protocol.md "Bad input").

Rows live in the state DB. ``add`` commits before it returns, so a rejected QoS 1 message may
be acknowledged right after: it is durable here instead of in the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from devices.sqlite import execute_values, write_transaction
from ingest.model import Rejection

MAX_KEPT_PAYLOAD = 4096

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
"""


class Quarantine:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        conn.executescript(_SCHEMA)

    def add(self, rejections: Iterable[Rejection]) -> int:
        rows = [
            (r.received_at, r.topic, r.device_id, r.kind, r.reason.split(":", 1)[0], r.reason,
             len(r.payload), bytes(r.payload[:MAX_KEPT_PAYLOAD]))
            for r in rejections
        ]
        if not rows:
            return 0
        with write_transaction(self._conn) as c:
            execute_values(
                c, "INSERT INTO quarantine (received_at, topic, device_id, kind, code, reason, size, payload)"
                " VALUES {values}", rows)
        return len(rows)

    def recent(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before_id`` pages further back."""
        sql = "SELECT * FROM quarantine"
        args: list[Any] = []
        if before_id is not None:
            sql += " WHERE id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_row(r) for r in self._conn.execute(sql, args)]

    def count(self, code: str | None = None) -> int:
        if code is None:
            return self._conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        return self._conn.execute("SELECT count(*) FROM quarantine WHERE code = ?", (code,)).fetchone()[0]

    def counts_by_code(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT code, count(*) FROM quarantine GROUP BY code").fetchall())


def _row(r: sqlite3.Row) -> dict[str, Any]:
    payload: bytes = r["payload"]
    return {
        "id": r["id"], "received_at": r["received_at"], "topic": r["topic"],
        "device_id": r["device_id"], "kind": r["kind"], "code": r["code"], "reason": r["reason"],
        "size": r["size"], "truncated": r["size"] > len(payload),
        "payload": payload.decode("utf-8", "replace"),
    }
