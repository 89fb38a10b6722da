"""The device registry: devices and rollout targets in the state database (SQLite or PostgreSQL).

Guarantees:

- Every write method runs in one transaction: it is applied whole or not at all. When the
  connection is already inside a transaction (a caller composing several writes), the method
  uses a savepoint inside it instead, so it commits or rolls back with the caller's work.
- Imported fields and derived fields are kept apart: :meth:`Registry.upsert` never touches
  ``commissioned_at``/``last_seen``, and :meth:`Registry.mark_seen` touches nothing else.
- :meth:`Registry.version` changes whenever :meth:`Registry.upsert` changes the devices table
  (it is a counter in the database, so other processes see it too). It does *not* change on
  :meth:`Registry.mark_seen`: what it guards (:meth:`Registry.snapshot`,
  :meth:`Registry.attrs_snapshot`) does not depend on traffic.

One :class:`Registry` may be shared between threads: writes are serialised by a lock. Reads on
a shared connection see that connection's uncommitted writes, so components that run
concurrently (ingest, rule engine, API) should each open their own, as SQLite's WAL mode lets
readers run beside the one writer.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from devices import db
from devices.catalogue import CATALOGUE, KINDS
from devices.db import DBError, connect, execute_values, tuple_cursor, write_transaction
from devices.errors import DeviceExists, InvalidDevice, RegistryError
from devices.model import DEVICE_ID_RE, STATUSES, Device, RolloutTarget

__all__ = ["Registry", "online", "device_problems", "rollout_problems", "attrs_json"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id        TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    district         TEXT NOT NULL,
    lat              REAL,
    lon              REAL,
    asset_id         TEXT NOT NULL DEFAULT '',
    asset_name       TEXT NOT NULL DEFAULT '',
    responsible_unit TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL DEFAULT 'installed',
    installed_at     TEXT,
    attrs            TEXT NOT NULL DEFAULT '{}',
    commissioned_at  INTEGER,
    last_seen        INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_kind ON devices (kind, device_id);
CREATE INDEX IF NOT EXISTS devices_district ON devices (district, device_id);
CREATE INDEX IF NOT EXISTS devices_commissioned ON devices (kind, district, commissioned_at);
CREATE TABLE IF NOT EXISTS rollout_targets (
    programme TEXT NOT NULL,
    kind      TEXT NOT NULL,
    district  TEXT NOT NULL,
    target    INTEGER NOT NULL,
    start     TEXT NOT NULL,
    deadline  TEXT NOT NULL,
    PRIMARY KEY (programme, kind, district)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registry_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO registry_meta (key, value) VALUES ('version', 0);
"""

# devices/db.py migrate: step 1 creates what is missing (also in files of releases before migrations)
_MIGRATIONS = [_SCHEMA]

_SCHEMA_OBJECTS = frozenset(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))

_COLUMNS = (
    "device_id", "kind", "district", "lat", "lon", "asset_id", "asset_name",
    "responsible_unit", "status", "installed_at", "attrs", "commissioned_at", "last_seen",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM devices"

_UPSERT = """
INSERT INTO devices (device_id, kind, district, lat, lon, asset_id, asset_name,
                     responsible_unit, status, installed_at, attrs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_id) DO UPDATE SET
    kind = excluded.kind, district = excluded.district, lat = excluded.lat,
    lon = excluded.lon, asset_id = excluded.asset_id, asset_name = excluded.asset_name,
    responsible_unit = excluded.responsible_unit, status = excluded.status,
    installed_at = excluded.installed_at, attrs = excluded.attrs
"""

# ?1 = event time (ms), ?2 = device_id. Two statements, each skipping the rows it would not
# change: last_seen moves forward on most batches, commissioned_at is set once (the second
# statement then finds nothing to do, so its index is rarely touched).
# (ts, device_id) rows, one statement per chunk (devices.db.execute_values)
_MARK_LAST_SEEN = """
UPDATE devices SET last_seen = v.column1 FROM (VALUES {values}) AS v
 WHERE devices.device_id = v.column2 AND (devices.last_seen IS NULL OR devices.last_seen < v.column1)
"""
_MARK_COMMISSIONED = """
UPDATE devices SET commissioned_at = v.column1 FROM (VALUES {values}) AS v
 WHERE devices.device_id = v.column2
   AND (devices.commissioned_at IS NULL OR devices.commissioned_at > v.column1)
"""

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(", ", ": "))


def attrs_json(attrs: Mapping[str, Any]) -> str:
    """The canonical JSON text of ``attrs``: sorted keys, UTF-8 text kept (no ``\\u`` escapes).

    Raises TypeError/ValueError when ``attrs`` holds something JSON cannot represent."""
    if not attrs:
        return "{}"
    return _ENCODER.encode(attrs if type(attrs) is dict else dict(attrs))


def _date_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        return f"expected a date like 2026-03-02, got {value!r}"
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"no such date {value!r}"
    return None


def device_problems(d: Device, *, encode_attrs: bool = True) -> list[tuple[str, str]]:
    """Every ``(field, message)`` wrong with ``d``; empty when it may be stored.

    ``encode_attrs=False`` skips proving that ``attrs`` encodes as JSON (for attrs that were
    just decoded from JSON, with NaN and Infinity refused)."""
    return _validate(d, encode_attrs)[0]


def _validate(d: Device, encode_attrs: bool = True) -> tuple[list[tuple[str, str]], str]:
    """``(problems, canonical attrs JSON)``: the JSON is produced once, by the check itself."""
    p: list[tuple[str, str]] = []
    text = "{}"
    if not isinstance(d.device_id, str) or not DEVICE_ID_RE.match(d.device_id):
        p.append(("device_id", f"bad device id {d.device_id!r}: 1-64 characters of A-Z a-z 0-9 _ . -, "
                               "starting with a letter or digit"))
    if not isinstance(d.kind, str) or d.kind not in CATALOGUE:
        p.append(("kind", f"unknown kind {d.kind!r} (known: {', '.join(KINDS)})"))
    if not isinstance(d.district, str) or not d.district.strip():
        p.append(("district", "district is required"))
    for name, bound in (("lat", 90.0), ("lon", 180.0)):
        v = getattr(d, name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            p.append((name, f"expected a number, got {v!r}"))
        elif not -bound <= v <= bound:
            p.append((name, f"{v!r} is outside -{bound:g}..{bound:g}"))
    if (d.lat is None) != (d.lon is None):
        p.append(("lon" if d.lon is None else "lat", "lat and lon must be given together"))
    for name in ("asset_id", "asset_name", "responsible_unit"):
        if not isinstance(getattr(d, name), str):
            p.append((name, f"expected text, got {getattr(d, name)!r}"))
    if d.status not in STATUSES:
        p.append(("status", f"unknown status {d.status!r} (known: {', '.join(STATUSES)})"))
    if d.installed_at is not None and (msg := _date_problem(d.installed_at)):
        p.append(("installed_at", msg))
    if type(d.attrs) is not dict and not isinstance(d.attrs, Mapping):
        p.append(("attrs", f"expected a JSON object, got {type(d.attrs).__name__}"))
    elif encode_attrs:
        try:
            text = attrs_json(d.attrs)
        except (TypeError, ValueError) as e:
            p.append(("attrs", f"not representable as JSON: {e}"))
    return p, text


def rollout_problems(t: RolloutTarget) -> list[tuple[str, str]]:
    """Every ``(field, message)`` wrong with rollout target ``t``; empty when it may be stored."""
    p: list[tuple[str, str]] = []
    if not isinstance(t.programme, str) or not t.programme.strip():
        p.append(("programme", "programme is required"))
    if not isinstance(t.kind, str) or t.kind not in CATALOGUE:
        p.append(("kind", f"unknown kind {t.kind!r} (known: {', '.join(KINDS)})"))
    if not isinstance(t.district, str) or not t.district.strip():
        p.append(("district", "district is required"))
    if isinstance(t.target, bool) or not isinstance(t.target, int) or t.target < 0:
        p.append(("target", f"expected a whole number >= 0, got {t.target!r}"))
    for name in ("start", "deadline"):
        if msg := _date_problem(getattr(t, name)):
            p.append((name, msg))
    if not p and t.deadline < t.start:
        p.append(("deadline", f"deadline {t.deadline} is before start {t.start}"))
    return p


# the fields a PATCH may change: the imported ones but the id (derived ones never)
EDITABLE = ("kind", "district", "lat", "lon", "asset_id", "asset_name", "responsible_unit", "status",
            "installed_at", "attrs")


def offline_after_s(kind: str, attrs: Mapping[str, Any] | None = None) -> float:
    """How long a device may stay silent and still count as online: its ``attrs.offline_after_s``
    when that is a positive number (a bridge gauge reporting every 10 minutes sets 1800), else
    its kind's (``CATALOGUE[kind].offline_after_s``). The same limit as the offline rules'
    (``absent: {attr: offline_after_s, ...}``), so a device shown offline has an offline alert."""
    v = (attrs or {}).get("offline_after_s")
    if isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < float("inf"):
        return float(v)
    return CATALOGUE[kind].offline_after_s


def online(device: Device, now_ms: int) -> bool:
    """Whether ``device`` is online at ``now_ms``: its newest reading is no older than
    :func:`offline_after_s` of it. Never seen: offline."""
    if device.last_seen is None:
        return False
    return now_ms - device.last_seen <= offline_after_s(device.kind, device.attrs) * 1000.0


def _row_device(r: tuple) -> Device:
    return Device(
        device_id=r[0], kind=r[1], district=r[2], lat=r[3], lon=r[4], asset_id=r[5],
        asset_name=r[6], responsible_unit=r[7], status=r[8], installed_at=r[9],
        attrs=json.loads(r[10]), commissioned_at=r[11], last_seen=r[12],
    )


def _filters(kind: str | None, district: str | Sequence[str] | None,
             status: str | None) -> tuple[list[str], list]:
    """SQL conditions; a ``district`` list matches any of them (an empty one, nothing)."""
    where: list[str] = []
    args: list = []
    for col, val in (("kind", kind), ("district", district), ("status", status)):
        if isinstance(val, list | tuple):
            where.append(f"{col} IN ({', '.join('?' * len(val))})" if val else "1 = 0")
            args.extend(val)
        elif val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    return where, args


class Registry:
    """Devices and rollout targets, stored in the state database.

    Construct over an open connection (from :func:`devices.db.connect`) or with
    :meth:`open`. The tables are created if missing (migration ``registry``, devices/db.py).
    """

    online = staticmethod(online)

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lock = threading.RLock()
        # kind -> (version, attrs map) and (version, snapshot): handed out until the version moves
        self._attrs_cache: dict[str, tuple[int, dict[str, dict]]] = {}
        self._positions_cache: dict[str, tuple[int, dict]] = {}  # kind -> (version, positions)
        self._snapshot_cache: tuple[int, dict[str, tuple[str, str, str]]] | None = None
        try:
            with self._lock:
                db.migrate(conn, "registry", _MIGRATIONS)
        except db.SchemaTooNew as e:
            raise RegistryError(str(e)) from None
        except DBError as e:
            if not self._has_schema():  # else a read-only connection to a file of a release before migrations
                raise RegistryError(f"cannot create the registry tables: {e}") from None

    def _has_schema(self) -> bool:
        """Whether every table and index of the schema exists."""
        try:
            names = db.tables(self.conn) | db.indexes(self.conn)
            return _SCHEMA_OBJECTS <= names and self.conn.execute(
                "SELECT 1 FROM registry_meta WHERE key = 'version'").fetchone() is not None
        except DBError:
            return False

    @classmethod
    def open(cls, path: str | Path) -> Registry:
        """Open (creating if needed) the state database at ``path`` (or ``":memory:"``)."""
        try:
            conn = connect(path)
        except DBError as e:
            raise RegistryError(f"cannot open state database {str(path)!r}: {e}") from None
        try:
            return cls(conn)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def _raw(self) -> Any:
        """A cursor returning plain tuples (much faster than sqlite3.Row for bulk reads)."""
        return tuple_cursor(self.conn)

    # --- transactions -----------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction, or a savepoint when the caller already holds one. Database errors
        (a locked or full database, a read-only connection) become :class:`RegistryError`."""
        with self._lock:
            conn = self.conn
            nested = conn.in_transaction
            try:
                if not nested:
                    with write_transaction(conn):
                        yield conn
                    return
                conn.execute("SAVEPOINT registry")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK TO registry")
                    conn.execute("RELEASE registry")
                    raise
                conn.execute("RELEASE registry")
            except DBError as e:
                raise RegistryError(f"state database: {e}") from e

    # --- devices ----------------------------------------------------------------------------

    def upsert(self, devices: Iterable[Device]) -> int:
        """Insert or update ``devices`` by ``device_id`` in one transaction; returns how many
        were written. ``commissioned_at``/``last_seen`` of the values are ignored and the stored
        ones kept. Raises :class:`InvalidDevice` (nothing written) naming the first bad device."""
        rows = []
        for d in devices:
            problems, text = _validate(d)
            if problems:
                raise InvalidDevice(str(d.device_id), problems)
            rows.append((
                d.device_id, d.kind, d.district,
                None if d.lat is None else float(d.lat), None if d.lon is None else float(d.lon),
                d.asset_id, d.asset_name, d.responsible_unit, d.status, d.installed_at, text,
            ))
        if not rows:
            return 0
        with self._tx() as conn:
            conn.executemany(_UPSERT, rows)
            conn.execute("UPDATE registry_meta SET value = value + 1 WHERE key = 'version'")
        return len(rows)

    def create(self, d: Device) -> Device:
        """Register a new device, validated as an import is; :class:`InvalidDevice` naming every
        bad field, :class:`DeviceExists` if its id is taken (nothing written either way)."""
        problems = device_problems(d)
        if problems:
            raise InvalidDevice(str(d.device_id), problems)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (d.device_id,)).fetchone():
                raise DeviceExists(d.device_id)
            self.upsert([d])
            return self.get(d.device_id)

    def update(self, device_id: str, changes: Mapping[str, Any]) -> Device:
        """Change some imported fields of a registered device (:data:`EDITABLE`: not its id, nor
        the derived ``last_seen``/``commissioned_at``); ``attrs`` is replaced whole. KeyError if
        there is no such device, :class:`InvalidDevice` naming every bad field."""
        fixed = sorted(set(changes) - set(EDITABLE))
        if fixed:
            raise InvalidDevice(device_id, [(f, "cannot be changed (editable: " + ", ".join(EDITABLE) + ")")
                                            for f in fixed])
        with self._tx():
            d = self.get(device_id)
            if d is None:
                raise KeyError(device_id)
            changed = replace(d, **changes)
            problems = device_problems(changed)
            if problems:
                raise InvalidDevice(device_id, problems)
            self.upsert([changed])
            return self.get(device_id)

    def retire(self, device_id: str) -> Device:
        """Retire a device (registry.md: the end of its lifecycle): kept with its history, no
        longer accepted by ingest (the decoder's lookup drops it), nor alerted on as absent.
        KeyError if there is none."""
        return self.update(device_id, {"status": "retired"})

    def get(self, device_id: str) -> Device | None:
        """The device called ``device_id``, or None."""
        r = self.conn.execute(f"{_SELECT} WHERE device_id = ?", (device_id,)).fetchone()
        return None if r is None else _row_device(r)

    def device_info(self, device_id: str) -> dict | None:
        """What an alert says of its device (webhooks.md ``device``), or None if unknown."""
        d = self.get(device_id)
        if d is None:
            return None
        return {"id": d.device_id, "kind": d.kind, "district": d.district, "asset_id": d.asset_id,
                "lat": d.lat, "lon": d.lon, "responsible_unit": d.responsible_unit}

    def list(self, kind: str | None = None, district: str | Sequence[str] | None = None,
             status: str | None = None, limit: int = 100, after: str | None = None) -> list[Device]:
        """One page of devices ordered by ``device_id``; ``after`` is the last ``device_id`` of
        the previous page (keyset pagination: pages stay consistent while devices are added).
        ``district`` may be a list: devices of any of those districts."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
        where, args = _filters(kind, district, status)
        if after is not None:
            where.append("device_id > ?")
            args.append(after)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._raw().execute(f"{sql} ORDER BY device_id LIMIT ?", (*args, limit))
        return [_row_device(r) for r in rows]

    def iter_devices(self, kind: str | None = None, district: str | None = None,
                     status: str | None = None, page: int = 5000) -> Iterator[Device]:
        """Every matching device in ``device_id`` order, read page by page."""
        after = None
        while True:
            batch = self.list(kind, district, status, limit=page, after=after)
            yield from batch
            if len(batch) < page:
                return
            after = batch[-1].device_id

    def iter_rows(self, page: int = 5000) -> Iterator[tuple]:
        """Every device as a tuple of its imported fields in devices.csv column order, with
        ``attrs`` as its canonical JSON text, ordered by ``device_id`` (for fast export)."""
        cols = ", ".join(_COLUMNS[:11])
        after = ""
        while True:
            rows = self._raw().execute(
                f"SELECT {cols} FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?", (after, page)
            ).fetchall()
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1][0]

    def count(self, kind: str | None = None, district: str | Sequence[str] | None = None,
              status: str | None = None) -> int:
        """How many devices match."""
        where, args = _filters(kind, district, status)
        sql = "SELECT count(*) FROM devices" + (" WHERE " + " AND ".join(where) if where else "")
        return self.conn.execute(sql, args).fetchone()[0]

    def districts(self) -> list[str]:
        """The districts devices are registered in, sorted."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT district FROM devices ORDER BY district")]

    def snapshot(self) -> dict[str, tuple[str, str, str]]:
        """``device_id -> (kind, district, asset_id)`` of every device not retired (one query).

        The same dict object is returned until :meth:`version` changes (a new one after):
        treat it as read-only. To know when to reload, read :meth:`version` *before* it."""
        with self._lock:  # see version()
            v = self.version()
            cached = self._snapshot_cache
            if cached is not None and cached[0] == v:
                return cached[1]
            rows = self._raw().execute(
                "SELECT device_id, kind, district, asset_id FROM devices WHERE status != 'retired'"
            )
            snap = {r[0]: (r[1], r[2], r[3]) for r in rows}
            self._snapshot_cache = (v, snap)
            return snap

    def version(self) -> int:
        """A counter that changes whenever the devices table is changed by an upsert.

        Under the registry's lock, like its transactions: a node's pipeline shares one Registry
        between the decoder's lookup (this and :meth:`snapshot`, on the MQTT thread) and
        :meth:`mark_seen` (the write stage); one connection used by two threads at once failed
        a ``BEGIN IMMEDIATE`` with "no more rows available" (tests/faults test_e, 1 run in 5)."""
        with self._lock:
            return self.conn.execute("SELECT value FROM registry_meta WHERE key = 'version'").fetchone()[0]

    def mark_seen(self, seen: Mapping[str, int]) -> None:
        """Record traffic: ``seen`` maps device_id -> newest event time (ms) of a batch.

        Sets ``last_seen = max(old, new)`` and ``commissioned_at = min(old, new)`` (the first
        valid reading commissions a device; an older batch arriving late moves it earlier).
        Unknown ids are ignored. One transaction; rows that would not change are not written."""
        if not seen:
            return
        # in key order: consecutive updates then touch the same B-tree pages
        args = sorted(((int(ts), device_id) for device_id, ts in seen.items()), key=lambda a: a[1])
        with self._tx() as conn:
            execute_values(conn, _MARK_LAST_SEEN, args)
            execute_values(conn, _MARK_COMMISSIONED, args)

    def last_seen_map(self) -> dict[str, int]:
        """``device_id -> last_seen`` (ms) of every commissioned device not retired (absence rules)."""
        return dict(self._raw().execute(
            "SELECT device_id, last_seen FROM devices WHERE last_seen IS NOT NULL AND status != 'retired'"))

    def attrs(self, device_id: str) -> dict:
        """The per-device parameters of ``device_id``; ``{}`` when it has none or is unknown
        (rules then use their defaults)."""
        r = self.conn.execute("SELECT attrs FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return {} if r is None else json.loads(r[0])

    def attrs_snapshot(self, kind: str) -> dict[str, dict]:
        """``device_id -> attrs`` of every device of ``kind`` not retired (one query).

        The same dict object is returned until :meth:`version` changes (a new one after), so a
        caller can cache what it derives from it by identity. Devices with identical attrs
        share one dict: treat the map and its values as read-only."""
        v = self.version()
        cached = self._attrs_cache.get(kind)
        if cached is not None and cached[0] == v:
            return cached[1]
        parsed: dict[str, dict] = {}
        out: dict[str, dict] = {}
        for device_id, text in self._raw().execute(
            "SELECT device_id, attrs FROM devices WHERE kind = ? AND status != 'retired'", (kind,)
        ):
            a = parsed.get(text)
            if a is None:
                a = parsed[text] = json.loads(text)
            out[device_id] = a
        self._attrs_cache[kind] = (v, out)
        return out

    def positions(self, kind: str) -> dict[str, tuple[float | None, float | None, str]]:
        """``device_id -> (lat, lon, district)`` of every device of ``kind`` not retired (one
        query; the same dict until :meth:`version` changes). Read-only for the caller."""
        v = self.version()
        cached = self._positions_cache.get(kind)
        if cached is not None and cached[0] == v:
            return cached[1]
        out = {r[0]: (r[1], r[2], r[3]) for r in self._raw().execute(
            "SELECT device_id, lat, lon, district FROM devices WHERE kind = ? AND status != 'retired'", (kind,))}
        self._positions_cache[kind] = (v, out)
        return out

    # --- rollout ----------------------------------------------------------------------------

    def upsert_rollout(self, targets: Iterable[RolloutTarget]) -> int:
        """Insert or update rollout targets by ``(programme, kind, district)`` in one
        transaction; returns how many were written. Raises :class:`InvalidDevice` (nothing
        written) naming the first bad target."""
        rows = []
        for t in targets:
            if problems := rollout_problems(t):
                raise InvalidDevice(f"{t.programme}/{t.kind}/{t.district}", problems)
            rows.append((t.programme, t.kind, t.district, t.target, t.start, t.deadline))
        if not rows:
            return 0
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO rollout_targets (programme, kind, district, target, start, deadline) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (programme, kind, district) DO UPDATE SET "
                "target = excluded.target, start = excluded.start, deadline = excluded.deadline",
                rows,
            )
        return len(rows)

    def rollout_targets(self, programme: str | None = None) -> list[RolloutTarget]:
        """Rollout targets ordered by programme, kind, district (of one programme if given)."""
        sql = "SELECT programme, kind, district, target, start, deadline FROM rollout_targets"
        args: tuple = ()
        if programme is not None:
            sql += " WHERE programme = ?"
            args = (programme,)
        rows = self.conn.execute(sql + " ORDER BY programme, kind, district", args).fetchall()
        return [RolloutTarget(*r) for r in rows]
