"""The ingest path of a node into a real InfluxDB, driven message by message at simulated time.

The same objects ``citywatch.runner.Node`` wires (Pipeline -> decoder -> InfluxDB store, rule
engine -> SQLite alert state with the outbox-free listener list plus the alert history writer),
minus the network: messages go in through ``Pipeline.submit`` with ``received_ms`` set to their
simulated time, so a simulated day is judged the way a replay of recorded traffic is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from alerts.engine import RuleEngine
from alerts.history_store import for_store
from alerts.rules import RulePack
from alerts.store import AlertState
from devices.fleet import sample_fleet
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.context import Context
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.base import open_store
from simulators.engine import Simulation
from tests.dashboards.rollout_sample import sample_document, snapshot_lines
from tests.pipeline.helpers import Ingest

TZ = "Asia/Shanghai"
M, H = 60_000, 3_600_000
SLOW_KINDS = ["gas_meter", "fume", "noise", "toilet", "lighting"]
SLOW_SCENARIOS = ["gas-over-flow@03:00", "meter-tamper@04:00", "purifier-off", "night-construction",
                  "dust-storm", "toilet-ventilation-failure", "cabinet-door-open", "lamp-failures"]
BRIDGE_SCENARIOS = ["overloaded-truck@08:05", "pier-tilt@08:05", "strain-overload@08:10"]
ROLLOUT_DAYS = 7  # daily snapshots of a sample rollout report, up to the simulated day


class InfluxIngest(Ingest):
    """The pipeline harness's :class:`Ingest` over an InfluxDB store, with the alert history
    writer as the alert state's listener and the registry's device information for notices."""

    def __init__(self, root: Path, store_url: str, devices: Sequence[Device] = (), *,
                 base_url: str = "http://127.0.0.1:8080") -> None:
        root.mkdir(parents=True, exist_ok=True)
        state = root / "state.db"
        self._conns = [connect(state) for _ in range(6)]
        self.store = open_store(store_url)
        self.registry = Registry(self._conns[0])
        if devices:
            self.registry.upsert(devices)
        self.history = for_store(self.store)
        assert self.history is not None
        self.alerts = AlertState(self._conns[1], tz=TZ, base_url=base_url, listeners=[self.history.listener])
        rules_registry = Registry(self._conns[2])
        self.engine = RuleEngine(RulePack.load(), self.alerts, attrs=rules_registry.attrs_snapshot,
                                 device_info=rules_registry.device_info, tz=TZ)
        self.quarantine = Quarantine(self._conns[3])
        self.metrics = IngestMetrics()
        self.pipeline = Pipeline(store=self.store, registry=self.registry, quarantine=self.quarantine,
                                 events=EventLog(self._conns[4]), rules=self.engine, metrics=self.metrics,
                                 max_batch_readings=200_000, max_batch_messages=50_000,
                                 context=Context(self.registry))

    def run(self, sim: Simulation, until_ms: int, *, flush_every_ms: int = 10 * M, tick: bool = True) -> int:
        """:meth:`Ingest.run` (absence rules evaluated at each flush by default), then the alert
        history written to the store."""
        n = super().run(sim, until_ms, flush_every_ms=flush_every_ms, tick=tick)
        self.history.flush()
        return n

    def close(self) -> None:
        self.history.flush()
        super().close()


def day_start(days_ago: int = 2) -> int:
    """00:00 local ``days_ago`` days ago (inside the boards' 30-day look-back of open alerts)."""
    today = datetime.now(ZoneInfo(TZ)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=days_ago)).timestamp() * 1000)


def silent_meter(ing: InfluxIngest, meter: Device, start: int) -> int:
    """``meter`` (registered) heard hourly for a day until two days before ``start``, then silent
    (the gas board's silent-meter table). Returns the messages fed."""
    first = start - 3 * 24 * H
    for k in range(25):
        ts = first + k * H
        payload = {"ts": ts, "metrics": {"volume_m3": 1200.0 + 0.05 * k, "battery_v": 3.55, "rsrp_dbm": -97.0}}
        ing.send(f"city/gas_meter/{meter.device_id}/telemetry", json.dumps(payload).encode(), ts + 5)
    ing.pipeline.flush()
    return 25


def simulated_day(store_url: str, root: Path, start: int | None = None) -> dict:
    """A simulated day of the five slow kinds (00:00-24:00 local, with their fault scenarios; and a
    gas meter silent since two days before: :func:`silent_meter`) and
    40 minutes (08:00-08:40) of one monitored bridge (8 sensors, one a 100 Hz accelerometer, with
    its scenarios) through the ingest path and rule engine into ``store_url``, and the daily
    ``rollout`` snapshots of a sample programme (13 districts) up to the day's start.
    Returns ``{"start", "end", "messages", "fired"}`` (fired: the rule ids that raised alerts)."""
    start = day_start() if start is None else start
    end = start + 24 * H
    slow = sample_fleet(0, seed=5, kinds=SLOW_KINDS, min_per_kind=4)
    bridge = sample_fleet(0, seed=5, kinds=["bridge"], min_per_kind=8)
    like = next(d for d in slow if d.kind == "gas_meter")
    silent = Device(f"{like.device_id}-silent", "gas_meter", district=like.district, asset_id=like.asset_id,
                    lat=like.lat, lon=like.lon)
    ing = InfluxIngest(root, store_url, [*slow, *bridge, silent])
    n = silent_meter(ing, silent, start)
    n += ing.run(Simulation(slow, seed=5, start_ms=start, scenarios=SLOW_SCENARIOS, gas_mode="hourly"), end)
    b0 = start + 8 * H
    n += ing.run(Simulation(bridge, seed=5, start_ms=b0, scenarios=BRIDGE_SCENARIOS), b0 + 40 * M,
                 flush_every_ms=M, tick=False)
    fired = {a.rule for a in ing.alerts.list_alerts(limit=1000)[0]}
    as_of = datetime.fromtimestamp(start / 1000, ZoneInfo(TZ)).date().isoformat()
    ing.store.write_lines(snapshot_lines(sample_document(as_of=as_of), ROLLOUT_DAYS))  # the rollout board's
    ing.close()
    return {"start": start, "end": end, "messages": n, "fired": fired}
