"""GET /api/v1/deliveries over a real outbox."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.dispatch.api import router

from .conftest import make_notice, wait_for


def test_deliveries_endpoint_lists_pages_and_filters(harness, receivers):
    ok, bad = receivers(), receivers()
    bad.behaviour.status = 404
    h = harness([{"name": "ok", "url": ok.url, "secret": "k"},
                 {"name": "bad", "url": bad.url, "secret": "k"}],
                [{"match": {}, "receivers": ["ok", "bad"]}], retry_horizon_s=0)
    h.dispatcher.start()
    h.notify(*(make_notice(alert_id=f"a-{i}") for i in range(3)))
    wait_for(lambda: len(h.rows(state="delivered")) == 3 and len(h.rows(state="failed")) == 3)
    app = FastAPI()
    app.include_router(router)
    app.state.outbox = h.outbox
    client = TestClient(app)

    page = client.get("/api/v1/deliveries", params={"limit": 4}).json()
    assert page["total"] == 6 and len(page["items"]) == 4 and page["next"]
    rest = client.get("/api/v1/deliveries", params={"limit": 4, "cursor": page["next"]}).json()
    assert len(rest["items"]) == 2 and rest["next"] is None
    ids = [i["delivery_id"] for i in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6

    failed = client.get("/api/v1/deliveries", params={"status": "failed"}).json()
    assert failed["total"] == 3
    assert {(i["receiver"], i["status"], i["failing"]) for i in failed["items"]} == {("bad", "failed", False)}
    assert failed["items"][0]["last_error"].startswith("HTTP 404")
    assert "gave up after" in failed["items"][0]["last_error"]
    # one time convention: RFC 3339 with the configured zone's offset (Asia/Shanghai by default)
    assert all(i["created_at"].endswith("+08:00") and i["done_at"].endswith("+08:00") for i in failed["items"])
    assert client.get("/api/v1/deliveries", params={"status": "pending"}).json()["total"] == 0

    assert client.get("/api/v1/deliveries", params={"status": "lost"}).status_code == 422
    r = client.get("/api/v1/deliveries", params={"cursor": "x"})
    assert r.status_code == 400 and "cursor" in r.json()["detail"]


def test_pending_gauge_counts_open_deliveries(harness, receivers):
    down = receivers()
    down.down()
    h = harness([{"name": "down", "url": down.url, "secret": "k"}], [{"match": {}, "receivers": ["down"]}])
    h.dispatcher.start()
    h.notify(*(make_notice(alert_id=f"a-{i}") for i in range(5)))
    wait_for(lambda: h.metric("citywatch_dispatch_pending", "down") == 5, timeout=5)
