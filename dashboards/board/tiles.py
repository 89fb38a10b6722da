"""The board's tiles: per kind, devices online and offline, readings per minute, and open alerts
by severity (``GET /api/v1/summary``; the live stream sends them again when they change).

Online follows the registry's rule (devices/registry.py ``online``): the newest reading no
older than the device's ``attrs.offline_after_s``, else its kind's ``offline_after_s``; never
seen is offline; retired devices are not counted. Counted in SQL, one grouped query over the
devices table (about 0.3 s for 500,000 devices, docs/BOARD.md), and cached for ``ttl_s``.
Readings per minute come from the ingest counters (``citywatch_ingest_readings_received``)
sampled at each computation: the increase over the last minute, city-wide (null until two
samples a second apart exist, and on a node that does not ingest).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from devices.catalogue import CATALOGUE, KINDS, SEVERITIES

_RECEIVED = "citywatch_ingest_readings_received_total"
RATE_WINDOW_S = 60.0


def _in(column: str, values: frozenset[str] | None) -> tuple[str, list[str]]:
    if values is None:
        return "", []
    return f" AND {column} IN ({', '.join('?' * len(values))})", sorted(values)


def presence(conn, now_ms: int, districts: frozenset[str] | None = None) -> dict[str, tuple[int, int]]:
    """``kind -> (online, offline)`` of the registered devices not retired."""
    limits = ", ".join("(?, ?)" for _ in KINDS)
    where, args = _in("d.district", districts)
    sql = (f"WITH k(kind, off_s) AS (VALUES {limits})"
           " SELECT d.kind, count(*), sum(d.last_seen IS NOT NULL AND ? - d.last_seen <= 1000.0 * coalesce("
           "   CASE WHEN d.attrs = '{}' THEN NULL ELSE json_extract(d.attrs, '$.offline_after_s') END, k.off_s))"
           " FROM devices d JOIN k ON k.kind = d.kind"
           f" WHERE d.status != 'retired'{where} GROUP BY d.kind")
    params = [v for kind in KINDS for v in (kind, CATALOGUE[kind].offline_after_s)]
    rows = conn.execute(sql, (*params, now_ms, *args)).fetchall()
    return {r[0]: (int(r[2] or 0), int(r[1]) - int(r[2] or 0)) for r in rows}


def districts(conn, scope: frozenset[str] | None = None) -> dict[str, int]:
    """``district -> devices`` (not retired), in name order."""
    where, args = _in("district", scope)
    sql = f"SELECT district, count(*) FROM devices WHERE status != 'retired'{where} GROUP BY district"
    return dict(conn.execute(sql, args).fetchall())


def open_alerts(conn, districts: frozenset[str] | None = None) -> dict[str, dict[str, int]]:
    """``kind -> severity -> count`` of the firing and acknowledged alerts."""
    where, args = _in("district", districts)
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
    """The tiles over one state-DB connection; thread-safe; cached ``ttl_s`` per district set."""

    def __init__(self, conn, now_ms: Callable[[], int], metrics_registry: Any | None = None,
                 ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.rate = ReadingRate(metrics_registry, clock) if metrics_registry is not None else None
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[frozenset[str] | None, tuple[float, dict]] = {}

    def summary(self, districts_: frozenset[str] | None = None, fresh: bool = False) -> dict[str, Any]:
        """``{"kinds": {kind: {online, offline, readings_per_min, open: {severity: n}}},
        "districts": {district: devices}}``, within ``districts_`` (None: all)."""
        with self._lock:
            hit = self._cache.get(districts_)
            if hit is not None and not fresh and self.clock() - hit[0] < self.ttl_s:
                return hit[1]
            seen = presence(self.conn, self.now_ms(), districts_)
            alerts = open_alerts(self.conn, districts_)
            rates = self.rate.per_minute() if self.rate is not None else {}
            kinds = {k: {"online": seen.get(k, (0, 0))[0], "offline": seen.get(k, (0, 0))[1],
                         "readings_per_min": rates.get(k),
                         "open": {s: alerts.get(k, {}).get(s, 0) for s in SEVERITIES}} for k in KINDS}
            out = {"kinds": kinds, "districts": districts(self.conn, districts_)}
            self._cache[districts_] = (self.clock(), out)
            return out
