"""``citywatch serve`` (a subprocess) whose broker comes back refusing its subscription: /health
reports the consumer's problem and degraded, /metrics counts it; allowed again, it recovers.
A broker restart without persistence: /health shows when the session was lost."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.faults.harness import Serve
from tests.ingest.test_wire_guarantees import DYNSEC, dynsec_broker, write_dynsec
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not os.path.exists(DYNSEC), reason="needs dynsec")]


def health(serve: Serve) -> dict:
    return httpx.get(f"{serve.base}/api/v1/health", timeout=5).json()


def metric(serve: Serve, name: str) -> float:
    for line in httpx.get(f"{serve.base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_health_shows_a_refused_subscription_and_a_lost_session(tmp_path):
    d = tmp_path / "mq"
    broker = dynsec_broker(d, "city/#").start()
    serve = Serve(tmp_path / "node", broker.port, f"duckdb:///{tmp_path / 'r.duckdb'}").start()
    try:
        assert wait_for(lambda: health(serve)["checks"]["broker"], 20)
        h = health(serve)
        assert h["broker"] == {"problem": "", "session_lost_at": None}
        broker.stop()
        write_dynsec(d, "other/#")
        broker.start()
        assert wait_for(lambda: "refused" in health(serve)["broker"]["problem"], 20)
        h = health(serve)
        assert h["status"] == "degraded" and h["checks"]["broker"] is False
        assert "'city/#'" in h["broker"]["problem"]
        assert metric(serve, "citywatch_mqtt_subscription_refused_total") >= 1
        broker.stop()
        write_dynsec(d, "city/#")
        (d / "mosquitto.db").unlink(missing_ok=True)  # and the session is gone
        broker.start()
        assert wait_for(lambda: health(serve)["broker"]["problem"] == "" and health(serve)["checks"]["broker"], 20)
        h = health(serve)
        assert h["broker"]["session_lost_at"] is not None
        assert metric(serve, "citywatch_mqtt_session_lost_total") == 1
    finally:
        serve.stop()
        broker.stop()
