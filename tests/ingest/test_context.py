"""Derived context readings (ingest/context.py) through the real pipeline (DuckDB store): the
sun's elevation beside each lighting report, the design value beside each strain and
deflection reading, counted as received and stored once; devices cannot send them. The
InfluxDB side and the boards' queries over them: tests/dashboards/test_context_panels.py."""

from __future__ import annotations

import json

import pytest

from devices.catalogue import CATALOGUE, DERIVED
from devices.fleet import DISTRICT_INFO
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.context import Context
from ingest.events import EventLog
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.base import Query, open_store
from ingest.sun import elevation_deg

NOW = 1_790_000_000_000
DEVICES = [
    Device("br-s450", "bridge", district="江岸区", asset_id="BR-1",
           attrs={"design_strain_ue": 450, "sensor": "strain"}),
    Device("br-sdef", "bridge", district="江岸区", asset_id="BR-1", attrs={"sensor": "strain"}),
    Device("lt-1", "lighting", district="武昌区", asset_id="LC-1", lat=30.55, lon=114.31),
    Device("lt-2", "lighting", district="武昌区", asset_id="LC-2"),
    Device("lt-3", "lighting", district="开发区（未列入）", asset_id="LC-3"),  # a district not in the fleet's list
    Device("nz-1", "noise", district="武昌区", asset_id="NZ-1"),
]


@pytest.fixture
def node(tmp_path):
    reg = Registry(connect(tmp_path / "state.db"))
    reg.upsert(DEVICES)
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb")
    q = Quarantine(connect(tmp_path / "state.db"))
    p = Pipeline(store=store, registry=reg, quarantine=q, events=EventLog(connect(tmp_path / "state.db")),
                 context=Context(reg))
    yield p, store, q, reg
    store.close()


def send(p: Pipeline, kind: str, dev: str, ts: int, metrics: dict) -> None:
    p.submit(f"city/{kind}/{dev}/telemetry", json.dumps({"ts": ts, "metrics": metrics}).encode(), received_ms=ts)


def one(store, dev: str, metric: str, ts: int) -> float:
    got = store.query(Query(dev, metric, ts - 1, ts + 1))
    assert len(got) == 1, (dev, metric, got)
    return got[0][1]


def test_context_readings_beside_their_messages(node):
    p, store, q, _ = node
    send(p, "bridge", "br-s450", NOW, {"strain_ue": 300.0, "deflection_mm": 10.0})
    send(p, "bridge", "br-sdef", NOW, {"strain_ue": 300.0})
    send(p, "lighting", "lt-1", NOW, {"lamp_on": 1})
    send(p, "lighting", "lt-2", NOW + 60_000, {"lamp_on": 0, "voltage_v": 221.0})
    send(p, "lighting", "lt-3", NOW, {"lamp_on": 1})
    send(p, "noise", "nz-1", NOW, {"laeq_db": 55.0})
    p.flush()
    assert q.count() == 0
    assert one(store, "br-s450", "design_strain_ue", NOW) == 450.0
    assert one(store, "br-sdef", "design_strain_ue", NOW) == 300.0  # the pack's default
    assert one(store, "br-s450", "design_deflection_mm", NOW) == 50.0  # no attr: the default
    assert one(store, "lt-1", "sun_elevation_deg", NOW) == pytest.approx(elevation_deg(NOW, 30.55, 114.31), abs=1e-3)
    wuchang = DISTRICT_INFO["武昌区"]  # no position: the district's centre
    assert one(store, "lt-2", "sun_elevation_deg", NOW + 60_000) == pytest.approx(
        elevation_deg(NOW + 60_000, wuchang.lat, wuchang.lon), abs=1e-3)
    # nor a known district: Wuhan's centre
    assert one(store, "lt-3", "sun_elevation_deg", NOW) == pytest.approx(elevation_deg(NOW, 30.59, 114.30), abs=1e-3)
    # sent 9 readings, 6 derived: all counted as received, each stored once
    received = sum(s.value for m in p.metrics.received.collect() for s in m.samples if s.name.endswith("_total"))
    assert received == 14 == store.count()


def test_design_value_follows_the_registry(node):
    p, store, _, reg = node
    send(p, "bridge", "br-s450", NOW, {"strain_ue": 300.0})
    p.flush()
    reg.upsert([Device("br-s450", "bridge", district="江岸区", asset_id="BR-1", attrs={"design_strain_ue": 500})])
    send(p, "bridge", "br-s450", NOW + 1000, {"strain_ue": 300.0})
    p.flush()
    assert one(store, "br-s450", "design_strain_ue", NOW) == 450.0  # what the first reading was judged against
    assert one(store, "br-s450", "design_strain_ue", NOW + 1000) == 500.0


def test_devices_cannot_send_context_metrics(node):
    for kind, names in DERIVED.items():
        assert not set(names) & set(CATALOGUE[kind].metrics)
    p, _, q, _ = node
    send(p, "lighting", "lt-1", NOW, {"sun_elevation_deg": 10.0})
    send(p, "bridge", "br-s450", NOW, {"design_strain_ue": 10.0})
    p.flush()
    assert q.count("unknown_metric") == 2
