"""Alert transitions also land in the store (alerts/history_store.py), off the alert path."""

from __future__ import annotations

import json
import threading
import time

import httpx

from alerts.history_store import AlertHistoryWriter, encode_point
from devices.model import Device
from tests.dashboards.harness import InfluxIngest

NOW = 1_795_000_000_000  # 2026-11-18


DB = "alerthistory"  # its own database: other tests count the session influxd's default one


def influx_rows(influxd, q: str) -> list[dict]:
    r = httpx.get(f"{influxd.http}/query", params={"db": DB, "q": q, "epoch": "ms"})
    r.raise_for_status()
    out = []
    for s in r.json()["results"][0].get("series", []):
        for v in s["values"]:
            out.append({**s.get("tags", {}), **dict(zip(s["columns"], v, strict=True))})
    return out


def test_fired_acknowledged_resolved_are_points_of_the_alerts_measurement(influxd, tmp_path):
    dev = Device("br-wim-h1", "bridge", district="江岸区", asset_id="BR-H1", attrs={"rated_load_t": 49})
    tilt = Device("br-tilt-h1", "bridge", district="江岸区", asset_id="BR-H1")
    ing = InfluxIngest(tmp_path, f"influxdb://127.0.0.1:{influxd.port}/{DB}", [dev, tilt])
    topic = "city/bridge/{}/telemetry"
    ing.pipeline.submit(topic.format(dev.device_id),
                        json.dumps({"ts": NOW, "metrics": {"gross_t": 62.0, "axles": 6, "speed_kmh": 40}}).encode(),
                        received_ms=NOW)
    for i, t in enumerate((0.06, 0.12, 0.01)):  # warning, escalated to major, resolved
        ing.pipeline.submit(topic.format(tilt.device_id),
                            json.dumps({"ts": NOW + 1000 * (i + 1), "metrics": {"tilt_deg": t}}).encode(),
                            received_ms=NOW + 1000 * (i + 1))
        ing.pipeline.flush()
    opened = [a for a in ing.alerts.list_alerts(limit=10)[0] if a.rule == "bridge.overload"]
    assert len(opened) == 1
    ing.alerts.ack(opened[0].id, "duty officer", NOW + 60_000)
    assert ing.history.pending() > 0
    assert ing.history.flush() > 0

    rows = influx_rows(influxd, 'SELECT * FROM "alerts" GROUP BY *')
    overload = sorted((r for r in rows if r["rule"] == "bridge.overload"), key=lambda r: r["time"])
    assert [r["state"] for r in overload] == ["firing", "acknowledged"]
    assert overload[0]["time"] == NOW and overload[1]["time"] == NOW + 60_000
    assert overload[0]["severity"] == "critical" and overload[0]["district"] == "江岸区"
    assert overload[0]["device_id"] == dev.device_id and overload[0]["kind"] == "bridge"
    assert overload[0]["value"] == 62.0 and overload[0]["alert_id"] == opened[0].id
    assert overload[0]["url"].endswith(f"/alerts/{opened[0].id}")
    tilt_rows = sorted((r["time"], r["state"], r["severity"], r["open"]) for r in rows if r["rule"] == "bridge.tilt")
    assert ("escalated", "major", 1.0) in [t[1:] for t in tilt_rows]
    assert ("escalated", "warning", 0.0) in [t[1:] for t in tilt_rows]  # the old severity series closed
    assert tilt_rows[-1][1:] == ("resolved", "major", 0.0)
    # open alerts, as the overview board counts them: last("open") per series
    open_now = influx_rows(influxd, 'SELECT sum("o") FROM (SELECT last("open") AS "o" FROM "alerts" '
                                    'GROUP BY "rule", "device_id", "severity")')
    assert open_now[0]["sum"] == 1.0  # the acknowledged overload
    assert ing.store.count() == 6  # the readings only (gross_t, axles, speed_kmh, three tilts): not the alerts
    ing.close()


def test_listener_never_touches_the_store_and_keeps_points_while_it_is_down(state_url):
    from alerts.store import AlertState

    calls: list[list[str]] = []
    down = threading.Event()
    down.set()

    def write_lines(lines):
        if down.is_set():
            raise ConnectionError("store down")
        calls.append(lines)

    w = AlertHistoryWriter(write_lines, max_buffer=3)
    conn = AlertState(state_url).db.conn  # the alert store's history table, on each state-DB engine
    from alerts.notice import AlertNotice

    for i in range(5):
        conn.execute("INSERT INTO alert_history (alert_id, ts_ms, change, severity) VALUES (?,?,?,?)",
                     (f"a-{i}", NOW + i, "firing", "info"))
        w.listener(conn, AlertNotice("firing", {"id": f"a-{i}", "rule": "toilet.consumables", "severity": "info"},
                                     {"id": "t-1", "kind": "toilet", "district": "江汉区"}))
    assert not calls and w.pending() == 3 and w.dropped == 2
    try:
        w.flush()
    except ConnectionError:
        pass
    assert w.pending() == 3  # kept for the next attempt
    down.clear()
    assert w.flush() == 3 and w.pending() == 0
    assert [line.rsplit(" ", 1)[1] for line in calls[0]] == [str(NOW + i) for i in (2, 3, 4)]


def test_line_protocol_escapes_tags_and_strings():
    line = encode_point(5, {"rule": "r", "severity": "info", "kind": "noise", "district": "a b,c=d", "device_id": ""},
                        {"state": "firing", "summary": 'say "hi"\nthere', "value": 1, "threshold": None})
    assert line == r'alerts,rule=r,severity=info,kind=noise,district=a\ b\,c\=d state="firing",' \
                   r'summary="say \"hi\" there",value=1.0 5'


def test_a_node_writes_its_alert_changes_to_the_store(influxd, mosquitto, tmp_path):
    """citywatch.runner wires the writer: a node on InfluxDB puts a fired alert into ``alerts``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from citywatch.runner import Node
    from citywatch.settings import load_settings
    from devices.registry import Registry
    from devices.sqlite import connect
    from tests.support.mosquitto import free_port
    from tests.support.wait import wait_for

    db = "nodehistory"
    Registry(connect(tmp_path / "state.db")).upsert([Device("lighting-h-01", "lighting", "江汉区")])
    s = load_settings(env={}, mqtt={"url": mosquitto.url, "client_id": "history-node"},
                      store={"url": f"influxdb://127.0.0.1:{influxd.port}/{db}"},
                      state={"url": f"sqlite:///{tmp_path}/state.db"}, api={"listen": f"127.0.0.1:{free_port()}"},
                      ingest={"spool_dir": str(tmp_path / "spool")})
    node = Node(s)
    node.start()
    try:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="history-pub")
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        now = int(time.time() * 1000)
        pub.publish("city/lighting/lighting-h-01/telemetry", json.dumps({"ts": now, "metrics": {"leakage_ma": 45.0}}),
                    qos=1).wait_for_publish(10)
        pub.loop_stop()

        def rows():
            r = httpx.get(f"{influxd.http}/query", params={"db": db, "q": 'SELECT * FROM "alerts" GROUP BY *',
                                                           "epoch": "ms"})
            series = r.json()["results"][0].get("series", [])
            return [{**x.get("tags", {}), **dict(zip(x["columns"], v, strict=True))}
                    for x in series for v in x["values"]]

        assert wait_for(lambda: any(r.get("rule") == "lighting.leakage" for r in rows()), 15), rows()
        got = next(r for r in rows() if r["rule"] == "lighting.leakage")
        assert got["state"] == "firing" and got["time"] == now and got["severity"] == "critical"
        assert got["district"] == "江汉区" and got["value"] == 45.0
    finally:
        node.stop()
