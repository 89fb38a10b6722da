"""Ingest counters per kind: received, stored, duplicates, spooled, drained (issue 3)."""

from __future__ import annotations

import json

from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.spool import Spool
from ingest.stores.duckdb import DuckDBStore
from ingest.stores.influxdb import InfluxDBStore
from tests.support.process import free_port
from tests.support.wait import wait_for

NOW = 1_764_403_200_000


def by_kind(counter) -> dict[str, float]:
    return {s.labels["kind"]: s.value for f in counter.collect() for s in f.samples if s.name.endswith("_total")}


def pipeline(tmp_path, store, spool=None) -> Pipeline:
    state = tmp_path / "state.db"
    Registry(connect(state)).upsert([Device("n-1", "noise", "江汉区"), Device("b-1", "bridge", "江岸区")])
    return Pipeline(store=store, registry=Registry(connect(state)), quarantine=Quarantine(connect(state)),
                    events=EventLog(connect(state)), metrics=IngestMetrics(), spool=spool)


def send(p: Pipeline) -> None:
    noise = json.dumps({"ts": NOW, "metrics": {"laeq_db": 50.0, "lmax_db": 60.0}}).encode()
    wave = json.dumps({"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": [0.01] * 100}}).encode()
    for topic, payload in (("city/noise/n-1/telemetry", noise), ("city/bridge/b-1/telemetry", wave)):
        p.submit(topic, payload, received_ms=NOW)
    p.flush()


def test_stored_and_duplicates_per_kind(tmp_path):
    p = pipeline(tmp_path, DuckDBStore(tmp_path / "r.duckdb"))
    send(p)
    send(p)  # a redelivery of both messages
    m = p.metrics
    # a waveform window also yields 3 derived readings (RMS, peak, frequency: ingest/features.py)
    assert by_kind(m.received) == {"noise": 4, "bridge": 206}
    assert by_kind(m.stored) == {"noise": 2, "bridge": 103}
    assert by_kind(m.duplicates) == {"noise": 2, "bridge": 103}


def test_spooled_and_drained_per_kind(tmp_path):
    spool = Spool(tmp_path / "spool", 64 * 1024 * 1024)
    down = InfluxDBStore.from_url(f"influxdb://127.0.0.1:{free_port()}/citywatch?timeout=1")  # nobody listens
    p = pipeline(tmp_path, down, spool)
    send(p)
    assert by_kind(p.metrics.spooled) == {"noise": 2, "bridge": 103}  # 3 derived readings of the window
    p.store = DuckDBStore(tmp_path / "r.duckdb")  # a store that answers
    p.start()  # an idle flusher drains the spool
    try:
        assert wait_for(lambda: spool.depth()[0] == 0, 10)
    finally:
        p.stop()
    assert by_kind(p.metrics.drained) == {"noise": 2, "bridge": 103}
    assert p.store.count() == 105
