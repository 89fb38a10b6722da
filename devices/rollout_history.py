"""Daily snapshots of the rollout report (docs/ROLLOUT.md "History").

Once per local day the node computes the report and keeps it:

- always in the state DB, table ``rollout_snapshots`` (one row per local day: the whole document,
  zlib-compressed JSON, 14 kB for 13 districts with a year of weekly history), so that
  ``citywatch report rollout --as-of DATE`` reports any past day with every figure as it was,
  whatever the store;
- when the store takes line protocol (InfluxDB), also as the measurement ``rollout``: tags
  ``programme``, ``district`` (``_all`` for the programme's totals), integer fields ``target,
  planned, installed, commissioned, reporting``, float fields ``pace_per_week,
  commissioned_share``, one point per district per day at the local midnight that starts it
  (for charts over months and the Grafana rollout board).

:class:`SnapshotWriter` does it: ``tick(now_ms)`` at start and then periodically; it writes the
snapshot of the current local day when the state DB has none yet (a restart the same day adds
nothing), and retries the InfluxDB points on later ticks while the store refuses them.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from devices import db
from devices.db import write_transaction
from devices.registry import Registry
from devices.rollout import LatestValues, RolloutOptions, RolloutReport, local_date, midnight_ms

__all__ = ["MEASUREMENT", "SnapshotWriter", "encode_points", "read_snapshot", "snapshot_days", "store_snapshot"]

log = logging.getLogger("citywatch.rollout")

MEASUREMENT = "rollout"
ALL = "_all"
_INT_FIELDS = ("target", "planned", "installed", "commissioned", "reporting")
_FLOAT_FIELDS = ("pace_per_week", "commissioned_share")
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})

_SCHEMA = """CREATE TABLE IF NOT EXISTS rollout_snapshots (
    day          TEXT PRIMARY KEY,  -- the local date the report describes (its as_of)
    generated_at TEXT NOT NULL,
    document     BLOB NOT NULL      -- zlib-compressed JSON of the report document
) WITHOUT ROWID"""


def _ensure(conn: Any) -> None:
    db.migrate(conn, "rollout_history", [_SCHEMA])


def store_snapshot(conn: Any, doc: dict) -> bool:
    """Keep ``doc`` as the snapshot of its ``as_of`` day unless that day has one; True if written."""
    _ensure(conn)
    blob = zlib.compress(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(), 6)
    with write_transaction(conn):
        cur = conn.execute("INSERT OR IGNORE INTO rollout_snapshots (day, generated_at, document) VALUES (?, ?, ?)",
                           (doc["as_of"], doc["generated_at"], blob))
    return cur.rowcount == 1


def snapshot_days(conn: Any) -> list[str]:
    """The local dates that have a snapshot, oldest first."""
    if "rollout_snapshots" not in db.tables(conn):
        return []
    return [r[0] for r in conn.execute("SELECT day FROM rollout_snapshots ORDER BY day")]


def read_snapshot(conn: Any, day: str, programme: str | None = None) -> dict:
    """The report as of local date ``day`` (``YYYY-MM-DD``) from its snapshot, ``source``
    ``snapshot``; ValueError for a malformed date, LookupError naming the date (and the nearest
    snapshots) when there is none, or naming the programme when the snapshot lacks it."""
    try:
        day = date.fromisoformat(day).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"expected a date YYYY-MM-DD, got {day!r}") from None
    row = None
    if snapshot_days(conn):
        row = conn.execute("SELECT document FROM rollout_snapshots WHERE day = ?", (day,)).fetchone()
    if row is None:
        days = snapshot_days(conn)
        hint = f" (snapshots from {days[0]} to {days[-1]}, {len(days)} days)" if days else " (no snapshots yet)"
        raise LookupError(f"no rollout snapshot of {day}{hint}")
    doc = json.loads(zlib.decompress(row[0]))
    doc["source"] = "snapshot"
    if programme is not None:
        doc["programmes"] = [p for p in doc["programmes"] if p["programme"] == programme]
        if not doc["programmes"]:
            raise LookupError(f"the rollout snapshot of {day} has no programme {programme!r}")
    return doc


def _tag(value: str) -> str:
    return value.rstrip("\\").translate(_KEY_ESC)


def encode_points(doc: dict, tz: str) -> list[str]:
    """The ``rollout`` measurement's points of ``doc`` (line protocol, ms precision)."""
    ts = midnight_ms(doc["as_of"], ZoneInfo(tz))
    lines = []
    for p in doc["programmes"]:
        for district, figs in [(ALL, p["totals"])] + [(d["district"], d) for d in p["districts"]]:
            fields = [f"{k}={int(figs[k])}i" for k in _INT_FIELDS] + [f"{k}={float(figs[k])!r}" for k in _FLOAT_FIELDS]
            lines.append(f"{MEASUREMENT},district={_tag(district)},programme={_tag(p['programme'])} "
                         f"{','.join(fields)} {ts}")
    return lines


class SnapshotWriter:
    """Writes the day's snapshot on the first :meth:`tick` of each local day.

    ``registry`` is this writer's own (a connection of its thread); ``latest`` the store's
    ``latest_values``; ``write_lines`` the store's line-protocol writer (InfluxDB) or None.
    """

    def __init__(self, registry: Registry, *, options: RolloutOptions, latest: LatestValues | None = None,
                 write_lines: Callable[[list[str]], None] | None = None) -> None:
        self.registry = registry
        self.options = options
        self.latest = latest
        self.write_lines = write_lines
        self._day: str | None = None  # the day whose state DB snapshot exists
        self._points_day: str | None = None  # the day whose points InfluxDB took

    def tick(self, now_ms: int) -> str | None:
        """Write what today's snapshot still lacks; returns the day when the state DB row was written now."""
        day = local_date(now_ms, ZoneInfo(self.options.tz)).isoformat()
        written = None
        conn = self.registry.conn
        if self._day != day:
            if not self.registry.rollout_targets():
                return None  # no programme: nothing to keep (checked again on the next tick)
            if day not in snapshot_days(conn):
                doc = RolloutReport(self.registry, now_ms, options=self.options, latest=self.latest).to_dict()
                if store_snapshot(conn, doc):
                    written = day
                    log.info("rollout snapshot of %s kept (%d programmes)", day, len(doc["programmes"]))
            self._day = day
        if self.write_lines is not None and self._points_day != day:
            try:
                self.write_lines(encode_points(read_snapshot(conn, day), self.options.tz))
                self._points_day = day
            except Exception as e:  # the store down or refusing: the next tick retries
                log.warning("rollout snapshot of %s not written to the store yet: %s", day, e)
        return written
