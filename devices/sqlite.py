"""Opening the state database (SQLite): registry, alerts, outbox, quarantine share one file.

Every component opens its own connection with :func:`connect`; WAL mode lets readers (the
API) run beside one writer, ``synchronous=FULL`` makes a commit durable when it returns
(what at-least-once delivery relies on before it acknowledges a message).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


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


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), timeout=30.0, isolation_level=None, check_same_thread=False,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    conn.row_factory = sqlite3.Row
    return conn
