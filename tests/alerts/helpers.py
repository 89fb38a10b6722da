"""Test harness: a real SQLite state DB, the built-in pack, readings built as Readings batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from alerts.engine import RuleEngine
from alerts.rules import RulePack
from alerts.state import Alert, AlertState
from devices.sqlite import connect
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
    """An engine on a state DB (a file when ``path`` is given, so it can be reopened)."""

    def __init__(self, path: Path | str = ":memory:", *, attrs: Mapping[str, Mapping[str, Any]] | None = None,
                 pack: RulePack | None = None, listeners=(), deferred: bool = False) -> None:
        self.path = path
        self.deferred = deferred
        self.attrs_by_device = dict(attrs or {})
        self.pack = pack or PACK
        self.notices: list = []
        self.conn = connect(path)
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
