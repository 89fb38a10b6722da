"""``citywatch serve`` with its state on PostgreSQL (``[state] url = postgresql://...``), end to end
through the real executables: devices imported from a CSV and an API token created by the command
line into the same database, then the node ingests from the session's Mosquitto into DuckDB,
quarantines a bad message, and serves all of it to the token's holder.

The same flow on SQLite is what most other tests of serve and up run; this one is the
PostgreSQL node (one serve start: a few seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import paho.mqtt.client as mqtt
import pytest

from devices import db
from tests.support.mosquitto import free_port, purge_sessions
from tests.support.process import interrupt

from .test_up_smoke import citywatch_cmd

pytestmark = pytest.mark.integration

CSV = ("device_id,kind,district,asset_name,attrs\n"
       "noise-pg-1,noise,江汉区,汉口江滩工地,\n"
       'noise-pg-2,noise,武昌区,中南路工地,"{""offline_after_s"": 600}"\n')


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}


def _cli(*args: str, config) -> subprocess.CompletedProcess:
    done = subprocess.run(citywatch_cmd() + [*args, "--config", str(config)], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pg-e2e-pub-{os.getpid()}")
    client.connect(host, int(port))
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _until(get, ok, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(0.1)


def test_serve_on_postgresql(tmp_path, mosquitto, pg_state_url):
    api = f"127.0.0.1:{free_port()}"
    config = tmp_path / "citywatch.toml"
    config.write_text("\n".join([
        "[mqtt]", f'url = "{mosquitto.url}"', 'client_id = "pg-e2e-serve"',
        "[store]", f'url = "duckdb:///{tmp_path}/readings.duckdb"',
        "[state]", f'url = "{pg_state_url}"',
        "[api]", f'listen = "{api}"',
        "[rules]", "tick_s = 3600",
        "[ingest]", f'spool_dir = "{tmp_path / "spool"}"', "linger_ms = 20",
    ]) + "\n", encoding="utf-8")
    (tmp_path / "devices.csv").write_text(CSV, encoding="utf-8")
    assert "imported 2 devices" in _cli("devices", "import", str(tmp_path / "devices.csv"), config=config).stdout
    token = _cli("tokens", "create", "--role", "operator", "--name", "值班", config=config).stdout.strip()

    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(citywatch_cmd() + ["serve", "--config", str(config)], cwd=tmp_path, env=_env(),
                            stdout=log, stderr=subprocess.STDOUT)
    base, auth = f"http://{api}", {"Authorization": f"Bearer {token}"}

    def get(path: str, **params):
        try:
            return httpx.get(base + path, params=params, headers=auth, timeout=5)
        except httpx.TransportError:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
            return None

    try:
        # a PostgreSQL state DB is a cluster of one: its ingest session subscribes once the node
        # has taken the lease ingest/p0 (the health's cluster.started)
        _until(lambda: get("/api/v1/health"), lambda r: r is not None and r.json().get("cluster", {}).get("started"),
               "the node started")
        now = int(time.time() * 1000)
        _publish(mosquitto.url, [
            ("city/noise/noise-pg-1/telemetry", json.dumps({"ts": now, "metrics": {"laeq_db": 61.5}}).encode()),
            ("city/noise/noise-pg-2/telemetry", b"{not json"),
        ])
        points = _until(lambda: get("/api/v1/devices/noise-pg-1/readings", metric="laeq_db").json()["points"],
                        lambda p: p, "the reading in DuckDB")
        assert points == [[now, 61.5]]
        bad = _until(lambda: get("/api/v1/quarantine", device_id="noise-pg-2").json(), lambda q: q["total"] >= 1,
                     "the bad message in the quarantine")
        assert bad["items"][0]["code"] == "bad_json" and bad["items"][0]["payload"] == "{not json"
        devices = get("/api/v1/devices").json()
        listed = {d["device_id"]: d for d in devices["items"]}
        assert set(listed) == {"noise-pg-1", "noise-pg-2"} and listed["noise-pg-2"]["asset_name"] == "中南路工地"
        assert (listed["noise-pg-1"]["online"], listed["noise-pg-2"]["online"]) == (True, False)
        assert get("/api/v1/whoami").json()["name"] == "值班"
        assert httpx.get(base + "/api/v1/devices", timeout=5).status_code == 401  # no token, no answer
    finally:
        interrupt(proc)
        log.close()
        purge_sessions(mosquitto.port, [f"pg-e2e-serve-{kind}-p0" for kind in ("ingest", "rules")])
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text(errors="replace")
    # it all lives in PostgreSQL: the registry (last seen), the quarantine, the token's use
    conn = db.connect(db.parse_url(pg_state_url))
    try:
        assert conn.execute("SELECT last_seen FROM devices WHERE device_id = 'noise-pg-1'").fetchone()[0] == now
        assert conn.execute("SELECT count(*) FROM quarantine WHERE device_id = 'noise-pg-2'").fetchone()[0] == 1
        assert conn.execute("SELECT last_used_ms FROM api_tokens WHERE name = '值班'").fetchone()[0] is not None
    finally:
        conn.close()
