"""A device's live telemetry (``GET /api/v1/devices/{id}/live``) through a real Mosquitto: the
API's aiomqtt client relays that device's messages, no other's, and leaves when the page goes."""

from __future__ import annotations

import json

import httpx
import paho.mqtt.client as mqtt
import pytest

from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.model import Device
from tests.board.support import wait_until
from tests.board.test_board_api import EventReader
from tests.citywatch.api_support import TOKENS, Served
from tests.support.mosquitto import free_port

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKENS['viewer']}"}


def served_node(root, broker_url: str):
    s = load_settings(env={}, mqtt={"url": broker_url}, store={"url": f"duckdb:///{root}/r.duckdb"},
                      state={"url": f"sqlite:///{root}/state.db"}, ingest={"spool_dir": str(root / "spool")},
                      api={"tokens": [{"token": t, "role": r, "name": r} for r, t in TOKENS.items()]})
    node = Node(s)
    node.open()
    node.registry.upsert([Device(f"noise-jianghan-{n:04d}", "noise", "江汉区") for n in (42, 43)])
    app = node.api_app()
    app.state.board_heartbeat_s = 0.2
    return node, app, Served(app)


@pytest.fixture
def live(tmp_path, mosquitto):
    node, app, served = served_node(tmp_path, mosquitto.url)
    yield app, served
    served.close()
    node.store.close()


def publish(broker_url: str, messages: list[tuple[str, bytes]]) -> None:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(host, int(port))
    c.loop_start()
    for topic, payload in messages:
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_live_relays_the_devices_messages_only_and_unsubscribes_when_the_page_goes(live, mosquitto):
    app, served = live
    reader = EventReader(served.url + "/api/v1/devices/noise-jianghan-0042/live", AUTH)
    try:
        (ready,) = wait_until(lambda: reader.named("ready"), 10, "the subscription")
        assert ready["topic"] == "city/noise/noise-jianghan-0042/#"
        assert app.state.board_live_clients == 1
        reading = {"ts": 1764403200123, "seq": 1, "metrics": {"laeq_db": 63.2}}
        event = {"ts": 1764403200200, "type": "tamper", "detail": {"说明": "箱门打开"}}
        ours = "city/noise/noise-jianghan-0042"
        publish(mosquitto.url, [("city/noise/noise-jianghan-0043/telemetry", b'{"ts": 1, "metrics": {}}'),
                                (f"{ours}/telemetry", json.dumps(reading).encode()),
                                (f"{ours}/event", json.dumps(event, ensure_ascii=False).encode()),
                                (f"{ours}/telemetry", b"{not json"),
                                (f"{ours}/status", b'{"note": "\\ud800"}'),  # a lone surrogate: JSON, not UTF-8
                                (f"{ours}/status", b"online")])
        got = wait_until(lambda: reader.named("message") if len(reader.named("message")) >= 5 else None, 10,
                         "five messages")
        assert got == [{"channel": "telemetry", "payload": reading}, {"channel": "event", "payload": event},
                       {"channel": "telemetry", "payload": "{not json"},
                       {"channel": "status", "payload": {"note": "\ud800"}}, {"channel": "status", "payload": "online"}]
    finally:
        reader.close()
    wait_until(lambda: app.state.board_live_clients == 0, 10, "the subscription to end with the page")


def test_live_of_an_unknown_device_is_404_and_an_unreachable_broker_is_named(tmp_path):
    node, app, served = served_node(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    try:
        r = httpx.get(served.url + "/api/v1/devices/nobody/live", headers={**AUTH, "Accept": "text/event-stream"})
        assert r.status_code == 404
        reader = EventReader(served.url + "/api/v1/devices/noise-jianghan-0042/live", AUTH)
        (failed,) = wait_until(lambda: reader.named("failed"), 10, "the failure")
        assert "127.0.0.1" in failed["detail"]
        reader.close()
        wait_until(lambda: app.state.board_live_clients == 0, 10, "the stream to end")
    finally:
        served.close()
        node.store.close()
