"""Retained messages through a real Mosquitto into the pipeline: the copies the broker re-sends
on every (re)subscription are state, not news. A retained status is not a second status event,
retained junk is not quarantined a second time, retained readings are not stored twice."""

from __future__ import annotations

import json
import time
import uuid

import paho.mqtt.publish as paho_publish
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.mqtt import ConsumerOptions, MqttConsumer
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.duckdb import DuckDBStore
from ingest.wire import WireConsumer
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def retained(metrics: IngestMetrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("citywatch_ingest_retained_total", {"outcome": outcome}) or 0.0


@pytest.mark.parametrize("kind", ["wire", "paho"])
def test_retained_copies_are_state_not_news(tmp_path, kind):
    broker = Mosquitto(tmp_path / "mq").start()
    state = tmp_path / "state.db"
    Registry(connect(state)).upsert([Device(f"n-{i}", "noise", "江汉区", asset_id=f"site-{i}") for i in range(4)])
    store = DuckDBStore(tmp_path / "store.duckdb")
    metrics = IngestMetrics()
    p = Pipeline(store=store, registry=Registry(connect(state)), quarantine=Quarantine(connect(state)),
                 events=EventLog(connect(state)), metrics=metrics)
    opts = ConsumerOptions(client_id=f"ret-{uuid.uuid4().hex[:8]}", topics=["city/#"], protocol=5)

    def consumer():
        c = (WireConsumer(broker.url, p.submit, opts, on_batch=p.submit_many) if kind == "wire"
             else MqttConsumer(broker.url, p.submit, opts))
        c.start(5)
        assert c.subscribed.wait(5)
        return c

    def counts():
        p.flush()
        q = Quarantine(connect(state)).recent(limit=100)
        ev = EventLog(connect(state)).for_device("n-1", 0, 2**62)
        rows = store._con.execute("SELECT count(*) FROM samples").fetchone()[0]
        return len(q), len(ev), rows

    now = int(time.time() * 1000)
    c = consumer()
    try:
        paho_publish.multiple([
            {"topic": "city/noise/n-1/status", "payload": b"online", "qos": 1, "retain": True},
            {"topic": "city/noise/n-2/telemetry", "payload": b"{not json", "qos": 1, "retain": True},
            {"topic": "city/noise/n-3/telemetry", "qos": 1, "retain": True,
             "payload": json.dumps({"ts": now, "metrics": {"laeq_db": 61.5}}).encode()},
        ], hostname="127.0.0.1", port=broker.port, protocol=MQTTProtocolVersion.MQTTv311)
        # delivered live (retain flag 0 to a subscriber that exists): news, recorded once
        assert wait_for(lambda: counts() == (1, 1, 1), 10)
        assert sum(retained(metrics, o) for o in ("status", "event", "readings", "rejected")) == 0
    finally:
        c.stop()
    c = consumer()  # resubscribes: the broker re-sends the three retained messages, flagged
    try:
        assert wait_for(lambda: retained(metrics, "status") == 1 and retained(metrics, "rejected") == 1
                        and retained(metrics, "readings") == 1, 10)
        assert counts() == (1, 1, 1)  # no second event, no second quarantine entry, no second row
    finally:
        c.stop()
        p.stop()
        store.close()
        broker.stop()


def test_submit_many_takes_the_retained_flag_and_acknowledges_retained_messages(tmp_path):
    state = tmp_path / "s.db"
    Registry(connect(state)).upsert([Device("n-1", "noise", "江汉区", asset_id="site-1")])
    metrics = IngestMetrics()
    p = Pipeline(store=None, registry=Registry(connect(state)), quarantine=Quarantine(connect(state)),
                 events=EventLog(connect(state)), metrics=metrics)
    acks: list[int] = []
    p.submit_many([("city/noise/n-1/status", b"offline", lambda: acks.append(0), True),
                   ("city/noise/n-1/status", b"junk", lambda: acks.append(1), True),
                   ("city/noise/n-1/status", b"online", lambda: acks.append(2))])
    p.submit("city/noise/n-1/status", b"offline", lambda: acks.append(3), retained=True)
    p.flush()
    assert acks == [0, 1, 2, 3]
    assert [e["type"] for e in EventLog(connect(state)).for_device("n-1", 0, 2**62)] == ["online"]
    assert Quarantine(connect(state)).recent(limit=10) == []
    assert retained(metrics, "status") == 3
