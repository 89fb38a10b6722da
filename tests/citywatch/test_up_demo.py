"""``citywatch up``'s demo as a real subprocess: it shows the backfill's progress, prints what to
try, and with the fault schedule running an alert fires and its webhook, signed by dispatch,
arrives verified at the built-in receiver (GET /api/v1/demo/webhooks), all within a bounded time."""

from __future__ import annotations

import os
import re
import subprocess
import time

import httpx
import pytest

from tests.citywatch.test_up_smoke import citywatch_cmd
from tests.support.mosquitto import free_port
from tests.support.process import interrupt

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _admin_token(out: str) -> dict[str, str]:
    """The admin token ``up`` prints, where it prints one (a closed API); else none (open)."""
    m = re.search(r"admin token[^\n]*?\b([A-Za-z0-9_\-]{20,})", out)
    return {"Authorization": f"Bearer {m.group(1)}"} if m else {}


def test_up_fires_an_alert_and_a_verified_webhook_arrives(tmp_path):
    port = free_port()
    env = dict(os.environ, CITYWATCH_UP_BROKER_PORT="0", CITYWATCH_API_LISTEN=f"127.0.0.1:{port}",
               CITYWATCH_UP_BACKFILL_S="120", CITYWATCH_UP_SCENARIO_EVERY="10s")
    env.pop("CITYWATCH_CONFIG", None)
    log = tmp_path / "up.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(citywatch_cmd() + ["up"], cwd=tmp_path, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    verified: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while "try:" not in log.read_text() and time.monotonic() < deadline:  # backfill, then live
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        out = log.read_text()
        assert re.search(r"backfilled [\d,]+ messages \([\d,]+ readings, [\d,]+ stored so far\)", out), out
        assert out.index("backfilled") < out.index("citywatch is up") < out.index("try:")
        assert f"{base}/api/v1/demo/webhooks" in out
        headers = _admin_token(out)
        live = time.monotonic()
        deadline = live + 150  # first faults 10 s and 20 s after going live: strain fires in ~10 s
        with httpx.Client(base_url=base, timeout=5, headers=headers) as http:
            while not verified and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                items = http.get("/api/v1/demo/webhooks").json()["items"]
                verified = [i for i in items if i["verified"] and i["status"] == "firing"]
                time.sleep(1)
            assert verified, log.read_text()[-3000:]
            waited = time.monotonic() - live
            first = verified[-1]
            alert = http.get("/api/v1/alerts", params={"limit": 1000}).json()["items"]
            assert first["alert"]["id"] in {a["id"] for a in alert}
            delivered = http.get("/api/v1/deliveries", params={"status": "delivered"}).json()["items"]
            assert first["delivery_id"] in {d["delivery_id"] for d in delivered}
            assert not [i for i in http.get("/api/v1/demo/webhooks").json()["items"] if not i["verified"]]
    finally:
        interrupt(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
    print(f"first verified webhook {waited:.0f} s after going live: {first['alert']['rule']}")
