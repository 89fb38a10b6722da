"""Several nodes on one state database: who is there (membership) and who does what (leases).

Nodes find each other through the state database (PostgreSQL when there are several; the same
tables work on SQLite for one node): each writes a heartbeat row in ``cluster_nodes``, and a
piece of work that must run in one place at a time (the outbox's dispatcher, each partition of
the rule evaluation) is held through a row of ``cluster_leases``.

A lease is a name, an owner, an expiry and an epoch. Times are the database's clock (one clock
for every node, so nodes' clocks may disagree). :meth:`Leases.acquire` takes a free or expired
lease, or renews the caller's own, in one statement; the epoch grows by one at each new holding
(another owner, or the same one after its lease ran out or was released): a fencing token,
:meth:`Leases.holds` lets a commit check inside its own transaction that its lease is still the
one it took. A holder counts its lease as lost at
``start of its acquire call + ttl - margin`` on its own monotonic clock, before the database
lets anyone else take it, and stops the work it guards then.

What it costs: a node that dies holds its leases until they expire (``[node] lease_s``): the
work they guard waits that long (docs/ARCHITECTURE.md, "Several nodes").
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devices import db

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    acquired_ms INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id    TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    listen     TEXT NOT NULL,
    roles      TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    seen_ms    INTEGER NOT NULL
)
"""
MIGRATIONS = [_SCHEMA]


def db_now_sql(conn: Any) -> str:
    """SQL for the database's clock in milliseconds since 1970."""
    if db.is_postgres(conn):
        return "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def new_node_id(listen: str) -> str:
    """This process's name in the cluster: host, API address, pid and a random part (a restarted
    node is a new member; its leases expire and are taken over, as a dead node's are)."""
    return f"{socket.gethostname()}/{listen}/{os.getpid()}/{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    owner: str
    epoch: int
    expires_ms: int  # database clock
    valid_until: float  # the holder's monotonic clock: counted as lost from then on


class Leases:
    """Leases on the state database (``conn`` from :func:`devices.db.connect`, this caller's own)."""

    def __init__(self, conn: Any, owner: str, ttl_s: float, *, margin_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)
        self.margin_s = ttl_s / 5 if margin_s is None else margin_s
        self.monotonic = monotonic
        self._now = db_now_sql(conn)
        db.migrate(conn, "cluster", MIGRATIONS)

    def acquire(self, name: str) -> Lease | None:
        """Take ``name`` if it is free or expired, or renew it if this owner holds it; None if
        another owner holds it."""
        started = self.monotonic()
        now = self._now
        # the same owner before its lease ran out (or was released): the same epoch; anything
        # else is a new holding, under the next epoch (a fence of the last one refuses)
        renewal = "cluster_leases.owner = excluded.owner AND cluster_leases.expires_ms > excluded.acquired_ms"
        with db.write_transaction(self.conn) as c:
            row = c.execute(
                f"INSERT INTO cluster_leases (name, owner, epoch, acquired_ms, expires_ms)"
                f" VALUES (?, ?, 1, {now}, {now} + ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                f" epoch = CASE WHEN {renewal} THEN cluster_leases.epoch ELSE cluster_leases.epoch + 1 END,"
                f" acquired_ms = CASE WHEN {renewal} THEN cluster_leases.acquired_ms ELSE excluded.acquired_ms END,"
                " expires_ms = excluded.expires_ms"
                " WHERE cluster_leases.owner = excluded.owner OR cluster_leases.expires_ms <= excluded.acquired_ms"
                " RETURNING epoch, expires_ms",
                (name, self.owner, self.ttl_ms)).fetchone()
        if row is None:
            return None
        return Lease(name, self.owner, int(row[0]), int(row[1]), started + self.ttl_ms / 1000 - self.margin_s)

    def renew(self, lease: Lease) -> Lease | None:
        """Extend ``lease`` if it is still this owner's, same epoch, unexpired; None if not (it
        ran out, or another owner took it). Not serialised with the other writers
        (``write_transaction(serialised=False)``): a renewal cannot change who holds the lease,
        so row locking is enough, and it must not wait for another writer's transaction (a tick
        raising 30,000 absence alerts in one transaction held every renewal behind it past the
        lease time). Taking a lease over stays serialised, so it still waits for a fenced commit."""
        started = self.monotonic()
        now = self._now
        with db.write_transaction(self.conn, serialised=False) as c:
            row = c.execute(
                f"UPDATE cluster_leases SET expires_ms = {now} + ?"
                f" WHERE name = ? AND owner = ? AND epoch = ? AND expires_ms > {now} RETURNING expires_ms",
                (self.ttl_ms, lease.name, lease.owner, lease.epoch)).fetchone()
        if row is None:
            return None
        return Lease(lease.name, lease.owner, lease.epoch, int(row[0]),
                     started + self.ttl_ms / 1000 - self.margin_s)

    def release(self, lease: Lease) -> None:
        """Give the lease up now (the work it guards has stopped): another node may take it at once."""
        with db.write_transaction(self.conn) as c:
            c.execute(f"UPDATE cluster_leases SET expires_ms = {self._now} WHERE name = ? AND owner = ? AND epoch = ?",
                      (lease.name, lease.owner, lease.epoch))

    def holds(self, conn: Any, lease: Lease) -> bool:
        """Inside a transaction on ``conn``: whether ``lease`` is still this owner's, same epoch,
        unexpired (a commit that needs exclusive ownership checks this and aborts if not)."""
        return conn.execute(
            f"SELECT 1 FROM cluster_leases WHERE name = ? AND owner = ? AND epoch = ? AND expires_ms > {self._now}",
            (lease.name, lease.owner, lease.epoch)).fetchone() is not None

    def holders(self, prefix: str = "") -> dict[str, tuple[str, int]]:
        """Unexpired leases (name -> (owner, epoch)) whose name starts with ``prefix``."""
        rows = self.conn.execute(
            f"SELECT name, owner, epoch FROM cluster_leases WHERE expires_ms > {self._now}"
            " AND substr(name, 1, ?) = ?", (len(prefix), prefix)).fetchall()
        return {r[0]: (r[1], int(r[2])) for r in rows}


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    host: str
    listen: str
    roles: tuple[str, ...]
    started_ms: int
    seen_ms: int


class Membership:
    """This node's heartbeat row, and the nodes whose heartbeat is recent."""

    def __init__(self, conn: Any, node_id: str, listen: str, roles: Sequence[str], ttl_s: float) -> None:
        self.conn = conn
        self.node_id = node_id
        self.listen = listen
        self.roles = tuple(roles)
        self.ttl_ms = int(ttl_s * 1000)
        self._now = db_now_sql(conn)
        db.migrate(conn, "cluster", MIGRATIONS)

    def beat(self) -> None:
        now = self._now
        # not serialised with the other writers (row locks suffice): a heartbeat waiting for
        # another writer's long transaction would make this node look gone to the others
        with db.write_transaction(self.conn, serialised=False) as c:
            c.execute(f"INSERT INTO cluster_nodes (node_id, host, listen, roles, started_ms, seen_ms)"
                      f" VALUES (?, ?, ?, ?, {now}, {now})"
                      f" ON CONFLICT (node_id) DO UPDATE SET seen_ms = excluded.seen_ms",
                      (self.node_id, socket.gethostname(), self.listen, ",".join(self.roles)))
            # members silent for ten lease times are gone for good: their rows go
            c.execute(f"DELETE FROM cluster_nodes WHERE seen_ms < {now} - ?", (10 * self.ttl_ms,))

    def leave(self) -> None:
        with db.write_transaction(self.conn) as c:
            c.execute("DELETE FROM cluster_nodes WHERE node_id = ?", (self.node_id,))

    def live(self, role: str | None = None) -> list[Member]:
        """Nodes heard within the lease time (with ``role``, if given), oldest first."""
        rows = self.conn.execute(
            f"SELECT node_id, host, listen, roles, started_ms, seen_ms FROM cluster_nodes"
            f" WHERE seen_ms > {self._now} - ? ORDER BY started_ms, node_id", (self.ttl_ms,)).fetchall()
        members = [Member(r[0], r[1], r[2], tuple(r[3].split(",")), int(r[4]), int(r[5])) for r in rows]
        return [m for m in members if role is None or role in m.roles or "all" in m.roles]


def fair_share(total: int, members: int) -> int:
    """How many of ``total`` partitions one of ``members`` nodes should hold (rounded up, so that
    every partition has room)."""
    return -(-total // max(members, 1))


class LeaseLost(RuntimeError):
    """This node no longer holds the lease its work needs (a commit is refused)."""

    unavailable = True  # not the data's fault: what was being committed is left for the next holder


class Duty:
    """Work that runs on one node at a time: ``start(lease)`` when this node takes the lease
    ``name``, ``stop()`` when it loses it (expired before a renewal got through, or taken).

    :meth:`tick` is called often (a tenth of the lease time): it renews, takes, or gives up.
    :meth:`fence` is for the work's commits: inside their transaction, it raises LeaseLost if
    the lease is no longer this node's (a stalled node whose lease moved on writes nothing).
    """

    def __init__(self, leases: Leases, name: str, start: Callable[[Lease], None], stop: Callable[[], None]) -> None:
        self.leases = leases
        self.name = name
        self._start = start
        self._stop = stop
        self.lease: Lease | None = None
        self.running = False  # its work started and not stopped

    def tick(self) -> None:
        if self.lease is not None and self.leases.monotonic() >= self.lease.valid_until:
            self._lose("its lease ran out before a renewal got through")
        held = self.lease
        try:
            got = self.leases.renew(held) if held is not None else self.leases.acquire(self.name)
        except db.DBError as e:
            log.warning("%s: cannot reach the state DB to take or renew the lease: %s", self.name, e)
            return
        if got is None:
            if held is not None:
                self._lose("the lease ran out or another node took it")
            return
        if held is not None:
            self.lease = got
            return
        log.info("%s: this node took the lease (epoch %d): starting", self.name, got.epoch)
        self.lease = got
        try:
            self._start(got)
            self.running = True
        except Exception:
            log.exception("%s: could not start; giving the lease up", self.name)
            self.lease = None
            self._release(got)

    def fence(self, conn: Any) -> None:
        lease = self.lease
        if lease is None or not self.leases.holds(conn, lease):
            raise LeaseLost(f"{self.name}: this node no longer holds the lease")

    def close(self, why: str = "this node is stopping") -> None:
        """Stop the work and give the lease up (the next node starts at once)."""
        lease = self.lease
        if lease is not None:
            self._lose(why)
            self._release(lease)

    def _lose(self, why: str) -> None:
        log.warning("%s: stopping: %s", self.name, why)
        self.lease = None
        self.running = False
        try:
            self._stop()
        except Exception:
            log.exception("%s: stopping failed", self.name)

    def _release(self, lease: Lease) -> None:
        try:
            self.leases.release(lease)
        except db.DBError as e:
            log.warning("%s: could not release the lease (it expires by itself): %s", self.name, e)
