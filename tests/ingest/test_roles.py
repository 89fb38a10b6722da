"""Several processes: two ingest nodes share one MQTT 5 subscription, one rules node sees every
reading; readings are stored once, each alert is raised once, by the one evaluator."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citywatch.runner import Node
from citywatch.settings import ConfigError, load_settings
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.stores.influxdb import InfluxDBStore
from tests.support.influxd import Influxd
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto").start()
    influx = Influxd(tmp_path / "influxd").start()
    yield broker, influx
    influx.stop()
    broker.stop()


def node(tmp_path, name: str, broker: Mosquitto, influx: Influxd, role: str, group: str = "") -> Node:
    s = load_settings(env={}, role=role,
                      mqtt={"url": broker.url, "client_id": f"cw-{name}", "shared_group": group},
                      store={"url": influx.url}, state={"url": f"sqlite:///{tmp_path}/state.db"},
                      api={"listen": f"127.0.0.1:{free_port()}"},
                      ingest={"spool_dir": str(tmp_path / name / "spool"), "linger_ms": 5})
    return Node(s)


def test_shared_subscription_ingest_nodes_and_one_rules_node(tmp_path, services):
    broker, influx = services
    devices = [Device(f"noise-r-{i:02d}", "noise", "江汉区") for i in range(20)]
    devices.append(Device("lighting-r-01", "lighting", "江汉区", responsible_unit="江汉区城管执法局"))
    Registry(connect(tmp_path / "state.db")).upsert(devices)
    nodes = [node(tmp_path, "a", broker, influx, "ingest", "citywatch"),
             node(tmp_path, "b", broker, influx, "ingest", "citywatch"),
             node(tmp_path, "rules", broker, influx, "rules")]
    for n in nodes:
        n.start()
    try:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="roles-pub", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        now = int(time.time() * 1000)
        n_readings = 2000
        infos = [pub.publish(f"city/noise/noise-r-{i % 20:02d}/telemetry",
                             json.dumps({"ts": now - 600_000 + i * 100, "metrics": {"laeq_db": 50.0}}), qos=1)
                 for i in range(n_readings)]
        infos.append(pub.publish("city/lighting/lighting-r-01/telemetry",
                                 json.dumps({"ts": now, "metrics": {"leakage_ma": 45.0}}), qos=1))
        for info in infos:
            info.wait_for_publish(30)
        pub.loop_stop()
        store = InfluxDBStore.from_url(influx.url)
        stored = n_readings + 2  # and the lighting report's sun elevation (ingest/context.py)
        assert wait_for(lambda: store.count() >= stored, 60), store.count()
        rules = nodes[2]
        assert wait_for(lambda: rules.totals()["received"] >= n_readings + 1, 30)
        time.sleep(0.5)
        assert store.count() == stored
        a, b, r = (n.totals() for n in nodes)
        assert a["stored"] > 0 and b["stored"] > 0  # the group shares the stream...
        assert a["stored"] + b["stored"] == stored  # ...each reading stored by one of them
        assert r["received"] == n_readings + 1 and r["stored"] == 0  # the rules node sees all, stores none
        assert r["evaluated"] == n_readings + 1 and a["evaluated"] == b["evaluated"] == 0
        fired = [x for x in rules.alerts.list_alerts(None, 100)[0] if x.rule == "lighting.leakage"]
        assert [(x.device_id, x.severity) for x in fired] == [("lighting-r-01", "critical")]
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.parametrize("role,protocol", [("all", 5), ("rules", 5), ("ingest", 4)])
def test_a_shared_subscription_is_refused_where_rule_state_would_be_split(role, protocol):
    with pytest.raises(ConfigError, match="mqtt.shared_group"):
        load_settings(env={}, role=role, mqtt={"shared_group": "citywatch", "protocol": protocol})
