"""``citywatch up`` as a real subprocess: it prints an admin token that works (and the API refuses
a request without it); readings of all six kinds visible through the API within seconds; SIGINT
exits 0 and nothing buffered is lost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import duckdb
import httpx
import pytest

from devices.catalogue import KINDS
from tests.support.mosquitto import free_port
from tests.support.process import interrupt

pytestmark = pytest.mark.integration


def citywatch_cmd() -> list[str]:
    exe = shutil.which("citywatch")
    return [exe] if exe else [sys.executable, "-m", "citywatch.cli"]


def test_up_shows_all_kinds_and_stops_cleanly(tmp_path):
    port = free_port()
    env = dict(os.environ, CITYWATCH_UP_BROKER_PORT="0", CITYWATCH_API_LISTEN=f"127.0.0.1:{port}")
    env.pop("CITYWATCH_CONFIG", None)
    proc = subprocess.Popen(citywatch_cmd() + ["up"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    seen: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 90
        token = _printed_token(proc, lines, deadline)
        assert f"http://127.0.0.1:{port}/" in "".join(lines)  # the board's address
        assert httpx.get(base + "/api/v1/devices", timeout=5).status_code == 401
        with httpx.Client(base_url=base, timeout=5, headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.get("/api/v1/whoami").json() == {"name": "admin", "role": "admin", "districts": None}
            while time.monotonic() < deadline and set(seen) != set(KINDS):
                assert proc.poll() is None, "".join(lines)
                try:
                    devices = http.get("/api/v1/devices", params={"limit": 10_000}).json()["items"]
                except httpx.TransportError:
                    time.sleep(0.5)
                    continue
                for kind in set(KINDS) - set(seen):
                    for d in (d for d in devices if d["kind"] == kind and d["last_seen"]):
                        metric = _metric_for(d)
                        pts = http.get(f"/api/v1/devices/{d['device_id']}/readings",
                                       params={"metric": metric, "start": 0}).json()["points"]
                        if pts:
                            seen[kind] = len(pts)
                            break
                time.sleep(0.5)
            assert set(seen) == set(KINDS), f"kinds with readings: {sorted(seen)}"
            assert http.get("/api/v1/health").json()["status"] == "ok"
            metrics = http.get("/metrics").text
            received = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                           if line.startswith("citywatch_ingest_readings_received_total"))
            assert received > 0
    finally:
        interrupt(proc)
        reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0, out
    m = re.search(r"stopped\. readings received (\d+), stored (\d+), duplicates (\d+), spooled (\d+)", out)
    assert m, out
    got, stored, dups, spooled = map(int, m.groups())
    # Nothing buffered was lost: every reading received up to SIGINT is in the store.
    assert got >= received > 0 and got == stored + dups + spooled
    con = duckdb.connect(str(tmp_path / "citywatch-data" / "readings.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM readings").fetchone()[0] == stored + spooled


def _read_lines(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line)


def _printed_token(proc: subprocess.Popen, lines: list[str], deadline: float) -> str:
    """The admin token ``up`` prints at its first start."""
    while time.monotonic() < deadline:
        m = re.search(r"admin token \(shown once[^:]*: (cw_\S+)", "".join(lines))
        if m:
            return m.group(1)
        assert proc.poll() is None, "".join(lines)
        time.sleep(0.2)
    raise AssertionError("up printed no admin token:\n" + "".join(lines))


def _metric_for(device: dict) -> str:
    return {
        "bridge": {"strain": "strain_ue", "deflection": "deflection_mm", "tilt": "tilt_deg", "accel": "accel_ms2",
                   "crack": "crack_mm", "bearing": "bearing_kn", "temp": "temp_c", "wim": "gross_t"}
        .get(device["attrs"].get("sensor"), "strain_ue"),
        "gas_meter": "volume_m3", "fume": "fume_mgm3", "noise": "laeq_db", "toilet": "nh3_mgm3",
        "lighting": "voltage_v",
    }[device["kind"]]
