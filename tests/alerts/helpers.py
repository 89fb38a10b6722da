"""Test harness: a real state DB (SQLite, or PostgreSQL by URL), the built-in pack, readings as Readings batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from alerts.engine import RuleEngine
from alerts.model import Alert
from alerts.rules import RulePack
from alerts.statedb import target_of
from alerts.store import AlertState
from devices.db import connect
from ingest.model import Event, Reading, Readings

SH = ZoneInfo("Asia/Shanghai")
S, M, H = 1000, 60_000, 3_600_000
PACK = RulePack.load()


def at(text: str) -> int:
    """``"2026-11-29 23:14:05"`` in Asia/Shanghai, as epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SH).timestamp() * 1000)


def series(device: str, kind: str, metric: str, start: int, step: int, values: Iterable[float],
           district: str = "江汉区") -> list[Reading]:
    return [Reading(device, kind, metric, start + i * step, float(v), district, "asset-1")
            for i, v in enumerate(values)]


def batch(rows: list[Reading]) -> Readings:
    return Readings.from_rows(sorted(rows, key=lambda r: r.ts))


class Harness:
    """An engine on a state DB (a file or a ``[state] url`` when ``path`` is given, so it can be
    reopened; the ``state_url`` fixture's: once on each engine)."""

    def __init__(self, path: Path | str = ":memory:", *, attrs: Mapping[str, Mapping[str, Any]] | None = None,
                 pack: RulePack | None = None, listeners=(), deferred: bool = False) -> None:
        self.path = path
        self.deferred = deferred
        self.attrs_by_device = dict(attrs or {})
        self.pack = pack or PACK
        self.notices: list = []
        self.conn = connect(target_of(path))
        self.state = AlertState(self.conn)
        self._attrs_obj = dict(self.attrs_by_device)
        self.engine = RuleEngine(
            self.pack, self.state, attrs=lambda kind: self._attrs_obj,
            device_info=self.device_info,
            listeners=[lambda conn, n: self.notices.append(n), *listeners], deferred=deferred,
        )

    def set_attrs(self, device: str, attrs: Mapping[str, Any]) -> None:
        self.attrs_by_device[device] = dict(attrs)
        self._attrs_obj = dict(self.attrs_by_device)  # a new object: the engine re-reads

    @staticmethod
    def device_info(device_id: str) -> dict:
        return {"id": device_id, "kind": device_id.split("-")[0],
                "district": "江汉区", "asset_id": "asset-1", "lat": 30.6, "lon": 114.27,
                "responsible_unit": "江汉区城管执法局"}

    def feed(self, rows: list[Reading], events: list[Event] = ()):
        return self.engine.process(batch(rows), list(events))

    def feed_each(self, rows: list[Reading], size: int = 1):
        rows = sorted(rows, key=lambda r: r.ts)
        out = []
        for i in range(0, len(rows), size):
            out += self.engine.process(batch(rows[i:i + size]), [])
        return out

    def alerts(self, rule: str | None = None, state: str | None = None) -> list[Alert]:
        items, _ = self.state.list_alerts(state, 1000)
        if state is None:  # the alerts that fired, then the pending ones
            items = self.state.list_alerts("pending", 1000)[0] + items
        return [self.state.get(a.id) for a in reversed(items) if rule is None or a.rule == rule]

    def reopen(self) -> Harness:
        """A new engine on the same DB file (a restart)."""
        self.conn.close()
        h = Harness(self.path, attrs=self.attrs_by_device, pack=self.pack, deferred=self.deferred)
        return h


def signature(alerts: list[Alert]) -> list[tuple]:
    """What must be identical between two runs (ids aside)."""
    return sorted((a.rule, a.device_id, a.state, a.severity, a.summary, a.value, a.threshold,
                   a.started_ms, a.fired_ms, a.ended_ms,
                   tuple((h.change, h.ts_ms, h.severity, h.value) for h in a.history)) for a in alerts)


def notice_keys(notices) -> list[tuple[str, str, str]]:
    """What must be identical between two runs' notices: (status, rule, device), sorted."""
    return sorted((n.status, n.alert["rule"], n.device["id"]) for n in notices)


def recorded_stream(seed: int = 7) -> tuple[list[Reading], list[Event]]:
    """A night of mixed traffic from six devices with alarms of several kinds in it."""
    rng = np.random.default_rng(seed)
    t0 = at("2026-11-29 22:40:00")
    rows: list[Reading] = []
    # noise station: quiet, loud 23:00-23:20 (night rule), 54 dB (hysteresis band), quiet again
    laeq = []
    for i in range(120):
        base = 50 if i < 20 else 62 if i < 40 else 54 if i < 50 else 48
        laeq.append(round(base + rng.normal(0, 0.8), 1))
    rows += series("noise-0001", "noise", "laeq_db", t0, M, laeq)
    rows += series("noise-0001", "noise", "lmax_db", t0, M, [x + 8 for x in laeq])
    # dust: hourly means 120, 175, 230, 90
    pm = [max(0.0, round(b + rng.normal(0, 15), 1)) for b in [120] * 20 + [175] * 60 + [230] * 60 + [90] * 60]
    rows += series("noise-0002", "noise", "pm10_ugm3", t0, M, pm)
    # bridge strain at 1 Hz for 10 minutes with a heavy-load episode (warning, then critical)
    strain = [round(80 + rng.normal(0, 10), 1) for _ in range(600)]
    strain[100:130] = [260.0] * 15 + [380.0] * 15
    strain[300:305] = [400.0] * 5  # too short to fire
    rows += series("bridge-0001", "bridge", "strain_ue", t0 + 30 * M, S, strain)
    rows += series("bridge-0001", "bridge", "gross_t", t0 + 30 * M, 20 * S, [30, 52, 40, 20, 61, 33])
    # gas meter: hourly volume with a step backwards, flow
    vol = [100 + 0.05 * i for i in range(8)]
    vol[5] = 99.0
    rows += series("gas_meter-0001", "gas_meter", "volume_m3", t0, H, vol)
    rows += series("gas_meter-0001", "gas_meter", "flow_m3h", t0, H, [0.3] * 6 + [0, 0])
    # fume monitor every 3 minutes: purifier off with the fan on for 12 minutes
    n = 40
    fan = [1] * n
    pur = [1] * 10 + [0] * 5 + [1] * 25
    rows += series("fume-0001", "fume", "fan_on", t0, 3 * M, fan)
    rows += series("fume-0001", "fume", "purifier_on", t0, 3 * M, pur)
    rows += series("fume-0001", "fume", "fume_mgm3", t0, 3 * M,
                   [round(1.0 + rng.normal(0, 0.1), 2) for _ in range(20)] + [2.8] * 4 + [1.0] * 16)
    # lighting cabinet: voltage sag 23:30-23:40
    volt = [220.0] * 50 + [190.0] * 10 + [221.0] * 60
    rows += series("lighting-0001", "lighting", "voltage_v", t0, M, volt)
    events = [Event("gas_meter-0001", "gas_meter", t0 + 90 * M, "magnet_tamper", district="江汉区")]
    rows.sort(key=lambda r: (r.ts, r.device_id, r.metric))
    return rows, events


def deliveries(rows: list[Reading], events: list[Event], size: int) -> list[tuple[list[Reading], list[Event]]]:
    """The stream as the broker hands it over: (readings, events) per batch of ``size`` rows,
    each batch with the events up to its last reading; events after the last, a batch alone."""
    out, evs = [], sorted(events, key=lambda e: e.ts)
    for i in range(0, len(rows), size):
        part = rows[i:i + size]
        now = [e for e in evs if e.ts <= part[-1].ts]
        evs = evs[len(now):]
        out.append((part, now))
    if evs:
        out.append(([], evs))
    return out
