"""API tokens in the state DB: created once, stored hashed, looked up by id, revoked.

A token reads ``cw_<id>_<secret>``: ``id`` is 16 hex digits (public, the row's key), ``secret``
32 random bytes, URL-safe base64. Only ``sha256(id + ":" + secret)`` is stored: a token carries
256 bits of entropy, so a fast hash cannot be brute-forced and a slow password hash would only
cost every request its latency (docs/SECURITY.md). Lookup is by id, then one constant-time
compare.

:class:`TokenStore` keeps the table in memory for the guard, rereading it when the version row
changes: every create and revoke (in any process) bumps it, and the guard checks it at most every
``recheck_s`` (0.5 s), and at once for a token id it does not know: a token made by ``citywatch
tokens create`` works at once in a running ``serve``, one revoked stops working within a second.
Last use is kept in memory and written at most once a minute per token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devices import db
from devices.db import connect, write_transaction

ROLES = ("viewer", "operator", "admin")
PREFIX = "cw_"
ID_HEX = 16
_TOKEN = re.compile(r"^cw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
TOUCH_EVERY_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,         -- unique among active tokens
    role        TEXT NOT NULL,
    districts   TEXT,                  -- JSON list, NULL: all districts
    hash        TEXT NOT NULL,         -- sha256(id ":" secret), hex
    created_ms  INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms  INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_active_name ON api_tokens (name) WHERE revoked_ms IS NULL;
CREATE TABLE IF NOT EXISTS api_tokens_version (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO api_tokens_version VALUES (1, 0);
"""


class TokenError(ValueError):
    """A token could not be created or revoked; the message says why."""


@dataclass(frozen=True, slots=True)
class Token:
    """One stored token (never its secret)."""

    id: str
    name: str
    role: str
    districts: tuple[str, ...] | None
    created_ms: int
    last_used_ms: int | None
    revoked_ms: int | None
    hash: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


def digest(token_id: str, secret: str) -> str:
    return hashlib.sha256(f"{token_id}:{secret}".encode()).hexdigest()


def split(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token; None otherwise."""
    m = _TOKEN.match(token)
    return (m.group(1), m.group(2)) if m else None


def _row(r: Any) -> Token:
    districts = json.loads(r["districts"]) if r["districts"] is not None else None
    return Token(r["id"], r["name"], r["role"], tuple(districts) if districts is not None else None,
                 r["created_ms"], r["last_used_ms"], r["revoked_ms"], r["hash"])


def _now_ms() -> int:
    return int(time.time() * 1000)


class TokenStore:
    """The ``api_tokens`` table of the state DB at ``path``; thread-safe.

    Two connections: the guard's reads (on the event loop, never waiting for SQLite's write
    lock) and the writes (create, revoke, last use; the guard writes last use from a worker
    thread).
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], int] = _now_ms, recheck_s: float = 0.5) -> None:
        self._conn = connect(path)
        self._reader = self._conn if str(path) == ":memory:" else connect(path)
        self._clock = clock
        self._lock = threading.Lock()  # the writer
        self._read_lock = threading.Lock()
        self._recheck_s = recheck_s
        self._cache: dict[str, Token] = {}
        self._version = -1
        self._checked = 0.0
        self._used: dict[str, int] = {}  # id -> last use not yet written
        self._touched: dict[str, int] = {}  # id -> last use noted
        db.migrate(self._conn, "api_tokens", [_SCHEMA])

    def close(self) -> None:
        self._conn.close()
        if self._reader is not self._conn:
            self._reader.close()

    # -- the command line's side ------------------------------------------------------------

    def create(self, name: str, role: str, districts: Iterable[str] | None = None) -> tuple[Token, str]:
        """A new token; ``(record, the token text)``: the text exists only in this answer."""
        name = name.strip()
        if not name or len(name) > 200:
            raise TokenError("--name: 1 to 200 characters")
        if role not in ROLES:
            raise TokenError(f"--role: one of {', '.join(ROLES)}, got {role!r}")
        ds = None if districts is None else tuple(dict.fromkeys(d.strip() for d in districts if d.strip()))
        if ds is not None and not ds:
            raise TokenError("--districts: name at least one district, or leave it out for all")
        token_id, secret = secrets.token_hex(ID_HEX // 2), secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock, write_transaction(self._conn) as c:
            if c.execute("SELECT 1 FROM api_tokens WHERE name = ? AND revoked_ms IS NULL", (name,)).fetchone():
                raise TokenError(f"--name: a token named {name!r} exists (names are unique; revoke it first)")
            c.execute("INSERT INTO api_tokens (id, name, role, districts, hash, created_ms) VALUES (?,?,?,?,?,?)",
                      (token_id, name, role, None if ds is None else json.dumps(ds, ensure_ascii=False),
                       digest(token_id, secret), now))
            c.execute("UPDATE api_tokens_version SET version = version + 1")
        self._checked = 0.0
        return Token(token_id, name, role, ds, now, None, None), f"{PREFIX}{token_id}_{secret}"

    def revoke(self, name_or_id: str) -> Token:
        """Revoke the active token of that name (or the token of that id); TokenError if there is
        none or it is revoked."""
        with self._lock, write_transaction(self._conn) as c:
            r = c.execute("SELECT * FROM api_tokens WHERE name = ? OR id = ?"
                          " ORDER BY revoked_ms IS NULL DESC, name = ? DESC LIMIT 1",
                          (name_or_id, name_or_id, name_or_id)).fetchone()
            if r is None:
                raise TokenError(f"no token named {name_or_id!r} (see citywatch tokens list)")
            if r["revoked_ms"] is not None:
                raise TokenError(f"token {r['name']!r} is already revoked")
            c.execute("UPDATE api_tokens SET revoked_ms = ? WHERE id = ?", (self._clock(), r["id"]))
            c.execute("UPDATE api_tokens_version SET version = version + 1")
        self._checked = 0.0
        return self.get(r["id"])

    def get(self, token_id: str) -> Token:
        """The token of that id, without its hash."""
        with self._lock:
            r = self._conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        return replace(_row(r), hash="")

    def list(self) -> list[Token]:
        """Every token, oldest first (revoked ones too), without hashes."""
        self.flush_used()
        with self._lock:
            rows = self._conn.execute("SELECT * FROM api_tokens ORDER BY created_ms, name").fetchall()
        return [replace(_row(r), hash="") for r in rows]

    def count_active(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM api_tokens WHERE revoked_ms IS NULL").fetchone()[0]

    # -- the guard's side -------------------------------------------------------------------

    def identify(self, token: str) -> Token | None:
        """The active token this text is; None if it is unknown, malformed or revoked."""
        parts = split(token)
        if parts is None:
            return None
        self._refresh()
        found = self._cache.get(parts[0])
        if found is None:  # made since the last look (by the command line)? one row read to know
            self._refresh(force=True)
            found = self._cache.get(parts[0])
        if found is None or not hmac.compare_digest(found.hash, digest(*parts)):
            return None
        now = self._clock()
        if now - self._touched.get(found.id, found.last_used_ms or 0) >= TOUCH_EVERY_MS:
            self._touched[found.id] = self._used[found.id] = now
        return found

    def touch_due(self) -> bool:
        """Whether last uses wait to be written (:meth:`flush_used`, off the event loop)."""
        return bool(self._used)

    def flush_used(self) -> None:
        used, self._used = self._used, {}
        if not used:
            return
        with self._lock, write_transaction(self._conn) as c:
            c.executemany("UPDATE api_tokens SET last_used_ms = ? WHERE id = ? AND coalesce(last_used_ms, 0) < ?",
                          [(ms, i, ms) for i, ms in used.items()])

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._recheck_s:
            return
        with self._read_lock:
            version = self._reader.execute("SELECT version FROM api_tokens_version").fetchone()[0]
            if version != self._version:
                rows = self._reader.execute("SELECT * FROM api_tokens WHERE revoked_ms IS NULL").fetchall()
                self._cache = {r["id"]: _row(r) for r in rows}
                self._version = version
            self._checked = now
