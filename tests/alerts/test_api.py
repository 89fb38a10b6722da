"""The alerts router on a FastAPI app built here, against a real state DB."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api import router

from .helpers import Harness, M, at, series


@pytest.fixture
def env(state_url):
    h = Harness(state_url)  # on each state-DB engine
    app = FastAPI()
    app.include_router(router)
    clock = {"now": at("2026-11-29 12:30:00")}
    app.state.alerts = h.state
    app.state.now = lambda: clock["now"]
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0, M, [45]))
    h.feed(series("toilet-0001", "toilet", "consumables_pct", t0, M, [15, 50]))
    return h, TestClient(app), clock


def test_list_and_filter(env):
    h, client, _ = env
    r = client.get("/api/v1/alerts")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and body["next"] is None
    # most severe first (lighting.leakage is critical, toilet.consumables info), then newest
    assert [(a["rule"], a["severity"]) for a in body["items"]] == [("lighting.leakage", "critical"),
                                                                    ("toilet.consumables", "info")]
    first = body["items"][0]
    assert first["started_at"] == "2026-11-29T12:00:00+08:00" and first["state"] == "firing"
    r = client.get("/api/v1/alerts", params={"state": "resolved"})
    assert [a["rule"] for a in r.json()["items"]] == ["toilet.consumables"] and r.json()["total"] == 1
    page = client.get("/api/v1/alerts", params={"limit": 1}).json()
    assert page["next"] and len(page["items"]) == 1
    rest = client.get("/api/v1/alerts", params={"limit": 1, "cursor": page["next"]}).json()
    assert rest["items"][0]["rule"] == "toilet.consumables" and rest["next"] is None
    assert client.get("/api/v1/alerts", params={"state": "on-fire"}).status_code == 422


def test_ack(env):
    h, client, _ = env
    aid = client.get("/api/v1/alerts", params={"state": "firing"}).json()["items"][0]["id"]
    r = client.post(f"/api/v1/alerts/{aid}/ack", json={"by": "officer-zhang", "note": "sent a crew"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["state"] == "acknowledged" and a["acknowledged_by"] == "officer-zhang"
    assert a["acknowledged_at"] == "2026-11-29T12:30:00+08:00"
    assert a["history"][-1]["change"] == "acknowledged"
    assert h.notices[-1].status == "acknowledged"
    assert client.post(f"/api/v1/alerts/{aid}/ack").status_code == 200  # no body: fine, no change
    assert client.post("/api/v1/alerts/a-000000/ack").status_code == 404
    resolved = client.get("/api/v1/alerts", params={"state": "resolved"}).json()["items"][0]["id"]
    assert client.post(f"/api/v1/alerts/{resolved}/ack", json={"by": "x"}).status_code == 409


def test_silence(env):
    h, client, clock = env
    r = client.post("/api/v1/silences", json={
        "matchers": {"kind": "noise", "district": "江汉区"}, "end": "2026-11-29T14:30:00+08:00",
        "reason": "permitted night works", "by": "ops-chen"})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["start"] == "2026-11-29T12:30:00+08:00" and s["end"] == "2026-11-29T14:30:00+08:00"
    h.feed(series("noise-0001", "noise", "lmax_db", at("2026-11-29 13:00:00"), M, [20]))
    assert len(h.state.silences(active_at=clock["now"])) == 1
    bad = client.post("/api/v1/silences", json={"matchers": {"colour": "red"}, "end": clock["now"] + M,
                                                 "reason": "x"})
    assert bad.status_code == 422 and "unknown matcher" in bad.text
    bad = client.post("/api/v1/silences", json={"matchers": {"kind": "noise"}, "end": "tomorrow",
                                                 "reason": "x"})
    assert bad.status_code == 422
