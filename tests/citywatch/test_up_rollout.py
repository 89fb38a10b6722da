"""``citywatch up`` loads a sample rollout programme: within a minute the report (API and CLI, beside
the running node) says which districts are ahead and which behind, and the day's snapshot exists."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import threading
import time

import httpx
import pytest

from tests.citywatch.test_up_smoke import _printed_token, _read_lines, citywatch_cmd
from tests.support.mosquitto import free_port
from tests.support.process import interrupt

pytestmark = pytest.mark.integration


def test_up_has_a_rollout_report_within_a_minute(tmp_path):
    port = free_port()
    env = dict(os.environ, CITYWATCH_UP_BROKER_PORT="0", CITYWATCH_API_LISTEN=f"127.0.0.1:{port}")
    env.pop("CITYWATCH_CONFIG", None)
    proc = subprocess.Popen(citywatch_cmd() + ["up"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
    reader.start()
    started = time.monotonic()
    doc = None
    try:
        token = _printed_token(proc, lines, started + 60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            while time.monotonic() < started + 60 and doc is None:
                assert proc.poll() is None
                try:
                    r = http.get("/api/v1/reports/rollout")
                except httpx.TransportError:
                    time.sleep(0.5)
                    continue
                doc = r.json() if r.status_code == 200 else None
            assert doc is not None, "no report within a minute"
            [p] = doc["programmes"]
            assert p["programme"] == "smart-gas-meters-2021" and len(p["districts"]) >= 10
            on_track = [d["on_track"] for d in p["districts"]]
            assert True in on_track and False in on_track  # some ahead, some behind
            assert p["totals"]["planned"] > 0 and 0 < p["totals"]["commissioned"] < p["totals"]["target"]
            assert len(p["totals"]["weekly"]) >= 16 and p["totals"]["pace_per_week"] > 0
            assert doc["exceptions"]["never_heard"]["count"] + doc["exceptions"]["silent"]["count"] > 0
            assert "weak_signal" in doc["exceptions"]  # the node's store answers
            snap = http.get("/api/v1/reports/rollout", params={"as_of": doc["as_of"]})
            assert snap.status_code == 200 and snap.json()["source"] == "snapshot"  # kept at start
            html = http.get("/api/v1/reports/rollout", params={"format": "csv"})
            assert html.status_code == 200
        # the CLI beside the running node: the state DB is shared, the DuckDB store is the node's
        r = subprocess.run(citywatch_cmd() + ["report", "rollout", "--format", "csv"], cwd=tmp_path, env=env,
                           capture_output=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(io.StringIO(r.stdout.decode("utf-8-sig"), newline="")))
        assert {row["district"] for row in rows} == {"_all"} | {d["district"] for d in p["districts"]}
        assert b"weak_signal and low_battery lists are left out" in r.stderr
        listed = subprocess.run(citywatch_cmd() + ["report", "rollout", "--list", "silent", "--format", "json"],
                                cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False)
        assert len(json.loads(listed.stdout)) == doc["exceptions"]["silent"]["count"]
    finally:
        interrupt(proc)
        reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "citywatch report rollout" in out and f"127.0.0.1:{port}/api/v1/reports/rollout?format=html" in out
