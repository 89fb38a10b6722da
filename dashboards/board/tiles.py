"""The board's tiles: per kind, devices online and offline, readings per minute, and open alerts
by severity (``GET /api/v1/summary``; the live stream sends them again when they change).

Online follows the registry's rule (devices/registry.py ``online``): the newest reading no
older than the device's ``attrs.offline_after_s``, else its kind's ``offline_after_s``; never
seen is offline; retired devices are not counted. That needs one pass over the devices table
(no index holds ``last_seen``, and adding one would slow ingest's ``mark_seen``): about a second
for 500,000 devices (docs/BOARD.md). So the pass counts per (kind, district) at once, every
district scope is summed from it, and it is redone at most every ``presence_ttl_s`` (30 s: the
shortest offline absence is 5 minutes) in a background thread, the previous counts served
meanwhile; only the first summary waits for it. Open alerts are counted at each summary
(an indexed read of the open alerts). Readings per minute come from the ingest counters
(``citywatch_ingest_readings_received``) sampled at each summary: the increase over the last
minute, city-wide (null until two samples a second apart exist, and on a node that does not ingest).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from devices import db
from devices.catalogue import CATALOGUE, KINDS, SEVERITIES

_RECEIVED = "citywatch_ingest_readings_received_total"
RATE_WINDOW_S = 60.0

# kind's absence in ms; a device's own attrs.offline_after_s (only looked up where the text has it)
_KIND_LIMIT_MS = ("CASE kind " + " ".join(f"WHEN '{k}' THEN {CATALOGUE[k].offline_after_s * 1000:.0f}" for k in KINDS)
                  + " END")
_ONLINE = "last_seen IS NOT NULL AND ? - last_seen <= coalesce(CASE WHEN {has} THEN 1000.0 * {own} END, {kind})"
_PRESENCE = ("SELECT kind, district, count(*), sum({online}) FROM devices WHERE status != 'retired'"
             " GROUP BY kind, district")
# the device's own limit counts when it is a positive number (as in devices/registry.py offline_after_s)
_PRESENCE_SQLITE = _PRESENCE.format(online=_ONLINE.format(
    has="instr(attrs, 'offline_after_s') AND json_type(attrs, '$.offline_after_s') IN ('integer', 'real')"
        " AND json_extract(attrs, '$.offline_after_s') > 0",
    own="json_extract(attrs, '$.offline_after_s')", kind=_KIND_LIMIT_MS))
# PostgreSQL: a boolean is summed as 0/1, and attrs is parsed only where it has the key
_PRESENCE_PG = _PRESENCE.format(online="CASE WHEN " + _ONLINE.format(
    has="strpos(attrs, 'offline_after_s') > 0 AND jsonb_typeof(attrs::jsonb -> 'offline_after_s') = 'number'"
        " AND (attrs::jsonb ->> 'offline_after_s')::float8 > 0",
    own="(attrs::jsonb ->> 'offline_after_s')::float8", kind=_KIND_LIMIT_MS) + " THEN 1 ELSE 0 END")


def presence(conn, now_ms: int) -> dict[tuple[str, str], tuple[int, int]]:
    """``(kind, district) -> (online, offline)`` of the registered devices not retired."""
    sql = _PRESENCE_PG if db.is_postgres(conn) else _PRESENCE_SQLITE
    rows = conn.execute(sql, (now_ms,)).fetchall()
    return {(r[0], r[1]): (int(r[3] or 0), int(r[2]) - int(r[3] or 0)) for r in rows}


def open_alerts(conn, districts: frozenset[str] | None = None) -> dict[str, dict[str, int]]:
    """``kind -> severity -> count`` of the firing and acknowledged alerts."""
    where, args = "", []
    if districts is not None:
        where, args = f" AND district IN ({', '.join('?' * len(districts))})", sorted(districts)
    sql = ("SELECT kind, severity, count(*) FROM alerts WHERE state IN ('firing', 'acknowledged')"
           f"{where} GROUP BY kind, severity")
    out: dict[str, dict[str, int]] = {}
    for kind, sev, n in conn.execute(sql, args):
        out.setdefault(kind, {})[sev] = n
    return out


class ReadingRate:
    """Readings per minute per kind from a prometheus counter labelled by ``kind``."""

    def __init__(self, registry: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def _counts(self) -> dict[str, float]:
        return {s.labels.get("kind", ""): s.value for f in self.registry.collect()
                for s in f.samples if s.name == _RECEIVED}

    def per_minute(self) -> dict[str, float | None]:
        now, counts = self.clock(), self._counts()
        self._samples.append((now, counts))
        # keep the newest sample at least a window old, and those after it
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        then, before = self._samples[0]
        if now - then < 1.0:
            return {k: None for k in KINDS}
        return {k: round((counts.get(k, 0.0) - before.get(k, 0.0)) * 60.0 / (now - then), 1) for k in KINDS}


class Tiles:
    """The tiles over one state-DB connection; thread-safe."""

    def __init__(self, conn, now_ms: Callable[[], int], metrics_registry: Any | None = None,
                 presence_ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.rate = ReadingRate(metrics_registry, clock) if metrics_registry is not None else None
        self.presence_ttl_s = presence_ttl_s
        self.clock = clock
        self._lock = threading.Lock()  # the connection, one query at a time
        self._presence: tuple[float, dict[tuple[str, str], tuple[int, int]]] | None = None
        self._refreshing = threading.Lock()

    def _count_presence(self) -> None:
        try:
            with self._lock:
                counts = presence(self.conn, self.now_ms())
            self._presence = (self.clock(), counts)
        finally:
            self._refreshing.release()

    def presence(self, fresh: bool = False) -> dict[tuple[str, str], tuple[int, int]]:
        """The counts of the last pass; a new pass in the background once they are
        ``presence_ttl_s`` old; waited for when there are none yet (or ``fresh``)."""
        known = self._presence
        stale = known is None or fresh or self.clock() - known[0] >= self.presence_ttl_s
        if stale and self._refreshing.acquire(blocking=False):
            if known is None or fresh:
                self._count_presence()
            else:
                threading.Thread(target=self._count_presence, name="board-presence", daemon=True).start()
        elif known is None or fresh:
            with self._refreshing:  # another caller's pass: wait for it
                pass
        return self._presence[1] if self._presence is not None else {}

    def summary(self, districts: frozenset[str] | None = None, fresh: bool = False) -> dict[str, Any]:
        """``{"kinds": {kind: {online, offline, readings_per_min, open: {severity: n}}},
        "districts": {district: devices}}``, within ``districts`` (None: all)."""
        seen = self.presence(fresh)
        with self._lock:
            alerts = open_alerts(self.conn, districts)
        rates = self.rate.per_minute() if self.rate is not None else {}
        up, down, by_district = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0), {}
        for (kind, district), (on, off) in seen.items():
            if districts is not None and district not in districts:
                continue
            up[kind] = up.get(kind, 0) + on
            down[kind] = down.get(kind, 0) + off
            by_district[district] = by_district.get(district, 0) + on + off
        kinds = {k: {"online": up[k], "offline": down[k], "readings_per_min": rates.get(k),
                     "open": {s: alerts.get(k, {}).get(s, 0) for s in SEVERITIES}} for k in KINDS}
        return {"kinds": kinds, "districts": dict(sorted(by_district.items()))}
