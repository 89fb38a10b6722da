"""What an operator does to alerts through the REST API (the alerts router over a real engine and
state DB): list filters, order and paging, CSV export, one alert's history, un-acknowledge,
resolve by hand (and what the engine does next), assign, comment; silences listed and ended
early; maintenance windows."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api import router
from alerts.store import AlertFilter
from devices.catalogue import SEVERITIES

from .helpers import Harness, M, S, at, series

T0 = at("2026-11-29 12:00:00")


@pytest.fixture
def env(state_url):
    h = Harness(state_url)  # on each state-DB engine
    app = FastAPI()
    app.include_router(router)
    clock = {"now": at("2026-11-29 12:30:00")}
    app.state.alerts = h.state
    app.state.now = lambda: clock["now"]
    return h, TestClient(app), clock


def _fleet(h: Harness) -> None:
    """Alerts of three severities in two districts, some resolved."""
    districts = {}
    h.engine.device_info = lambda d: {**Harness.device_info(d), "district": districts[d]}
    for i in range(5):
        districts.update({f"lighting-{i:04d}": "江汉区" if i % 2 else "武昌区", f"toilet-{i:04d}": "江汉区",
                          f"lighting-{i + 10:04d}": "武昌区"})
        h.feed(series(f"lighting-{i:04d}", "lighting", "leakage_ma", T0 + i * S, M, [45],
                      district="江汉区" if i % 2 else "武昌区"))  # critical, firing
        h.feed(series(f"toilet-{i:04d}", "toilet", "consumables_pct", T0 + i * S, M, [15] + [50] * (i % 2),
                      district="江汉区"))  # info; odd ones resolved
        h.feed(series(f"lighting-{i + 10:04d}", "lighting", "door_open", T0 + i * S, 30 * S, [1] * 3,
                      district="武昌区"))  # major after 1 min


def _all(client, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        page = client.get("/api/v1/alerts", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next"]
        if cursor is None:
            return items


def test_list_order_filters_and_paging(env):
    h, client, _ = env
    _fleet(h)
    fired = h.state.list_alerts(None, 1000)[0]
    # independent order: severity rank (catalogue order), then the insertion order, newest first
    expected = sorted(fired, key=lambda a: (SEVERITIES.index(a.severity), a.seq), reverse=True)
    assert [a["id"] for a in _all(client)] == [a.id for a in expected]
    assert len(expected) == 15
    for params, pred in [
        ({"district": "江汉区"}, lambda a: a.district == "江汉区"),
        ({"kind": "toilet", "state": "resolved"}, lambda a: a.kind == "toilet" and a.state == "resolved"),
        ({"severity": "major"}, lambda a: a.severity == "major"),
        ({"device_id": "lighting-0003"}, lambda a: a.device_id == "lighting-0003"),
    ]:
        got = _all(client, **params)
        assert [a["id"] for a in got] == [a.id for a in expected if pred(a)], params
        total = client.get("/api/v1/alerts", params={**params, "limit": 1}).json()["total"]
        assert total == len(got), params
    for params, name in [({"severity": "urgent"}, "severity"), ({"kind": "lamp"}, "kind"),
                         ({"cursor": "c9"}, "cursor"), ({"format": "xml"}, "format")]:
        r = client.get("/api/v1/alerts", params=params)
        assert r.status_code == 422 and name in r.text, (params, r.text)


def test_pending_list_filters(env):
    h, client, _ = env
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0, M, [0.05], district="江汉区"))
    h.feed(series("toilet-0002", "toilet", "h2s_mgm3", T0, M, [0.05], district="武昌区"))
    got = client.get("/api/v1/alerts", params={"state": "pending", "district": "武昌区"}).json()
    assert [a["device_id"] for a in got["items"]] == ["toilet-0002"] and got["total"] == 1
    [pending] = got["items"]  # its summary, written by the engine with the pending row
    assert pending["summary"] == "Toilet H2S 0.050 mg/m³ over the 0.01 mg/m³ limit for 10m (GB/T 17217-1998)"
    assert client.get("/api/v1/alerts", params={"state": "pending", "kind": "bridge"}).json()["total"] == 0


def test_csv_export_is_rfc4180_with_a_bom(env):
    h, client, _ = env
    _fleet(h)
    h.state.comment(h.state.list_alerts("firing", 1)[0][0].id, 'crew says: "cabinet wet",\nsent', "ops", T0)
    r = client.get("/api/v1/alerts", params={"format": "csv", "district": "江汉区"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    raw = r.content
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    listed = _all(client, district="江汉区")
    assert [row["id"] for row in rows] == [a["id"] for a in listed]
    assert all(row["district"] == "江汉区" for row in rows)
    first = listed[0]
    assert rows[0]["summary"] == first["summary"] and rows[0]["started_at"] == first["started_at"]


def test_one_alert_with_history_assign_comment_unack(env):
    h, client, clock = env
    h.feed(series("lighting-0001", "lighting", "leakage_ma", T0, M, [45]))
    aid = h.state.list_alerts("firing", 1)[0][0].id
    assert client.post(f"/api/v1/alerts/{aid}/ack", json={"by": "zhang", "note": "crew sent"}).status_code == 200
    a = client.post(f"/api/v1/alerts/{aid}/unack", json={"by": "zhang", "note": "wrong cabinet"}).json()
    assert a["state"] == "firing" and a["acknowledged_by"] is None
    assert len(h.notices) == 2  # firing, acknowledged: an un-acknowledgement sends nothing
    a = client.post(f"/api/v1/alerts/{aid}/assign", json={"unit": "江汉区路灯管理所", "by": "li"}).json()
    assert a["assignee"] == "江汉区路灯管理所"
    r = client.post(f"/api/v1/alerts/{aid}/comments", json={"text": "柜门已锁", "by": "wang"})
    assert r.status_code == 201
    a = client.get(f"/api/v1/alerts/{aid}").json()
    assert [(x["change"], x["by"], x["note"]) for x in a["history"]] == [
        ("firing", None, None), ("acknowledged", "zhang", "crew sent"), ("unacknowledged", "zhang", "wrong cabinet"),
        ("assigned", "li", "江汉区路灯管理所"), ("commented", "wang", "柜门已锁")]
    assert a["comments"] == [{"at": "2026-11-29T12:30:00+08:00", "by": "wang", "text": "柜门已锁"}]
    assert client.post(f"/api/v1/alerts/{aid}/comments", json={"text": "  "}).status_code == 422
    assert client.post(f"/api/v1/alerts/{aid}/assign", json={}).status_code == 422
    assert client.post("/api/v1/alerts/a-000000/assign", json={"unit": "x"}).status_code == 404


def test_manual_resolve_notifies_and_the_engine_starts_over(env):
    """Resolved by hand while the condition still holds: the rule starts over, and a new alert
    fires after its ``for`` (toilet.h2s: 10 min); the old one stays resolved and is not resolved
    a second time."""
    h, client, clock = env
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0, M, [0.05] * 11))  # fires at T0 + 10 min
    (old,) = h.state.list_alerts("firing", 10)[0]
    clock["now"] = T0 + 12 * M
    r = client.post(f"/api/v1/alerts/{old.id}/resolve", json={"by": "chen", "note": "fan repaired"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert r.json()["ended_at"] == "2026-11-29T12:12:00+08:00"
    assert r.json()["history"][-1] == {"at": "2026-11-29T12:12:00+08:00", "change": "resolved", "severity": "warning",
                                       "value": 0.05, "threshold": 0.01, "by": "chen", "note": "fan repaired"}
    assert [n.status for n in h.notices] == ["firing", "resolved"]
    assert h.notices[-1].alert["id"] == old.id
    assert client.post(f"/api/v1/alerts/{old.id}/resolve").status_code == 409
    # the condition still holds: pending from the next reading, firing 10 min later
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0 + 13 * M, M, [0.05] * 10))
    assert [a.state for a in h.state.list_alerts("pending", 10)[0]] == ["pending"]
    assert h.state.list_alerts("firing", 10)[0] == []
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0 + 23 * M, M, [0.05]))
    (new,) = h.state.list_alerts("firing", 10)[0]
    assert new.id != old.id and new.started_ms == T0 + 13 * M and new.fired_ms == T0 + 23 * M
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0 + 24 * M, M, [0.0]))  # clears
    assert [(n.status, n.alert["id"]) for n in h.notices[2:]] == [("firing", new.id), ("resolved", new.id)]
    assert h.state.get(old.id).ended_ms == T0 + 12 * M


def test_manual_resolve_wins_over_an_engine_transition_of_the_same_alert(env):
    """The engine's stream still says firing when a batch it evaluates escalates or resolves an
    alert resolved by hand a moment before (one write transaction after the other): nothing is
    recorded or sent twice."""
    h, client, _ = env
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0, M, [0.05] * 11))
    (old,) = h.state.list_alerts("firing", 10)[0]
    h.state.resolve(old.id, "chen", T0 + 12 * M)
    h.state.conn.execute("DELETE FROM alert_resets")  # as if the engine had not looked yet
    h.feed(series("toilet-0001", "toilet", "h2s_mgm3", T0 + 13 * M, M, [0.0]))  # the engine resolves it
    assert [n.status for n in h.notices] == ["firing", "resolved"]
    assert [x.change for x in h.state.get(old.id).history].count("resolved") == 1


def test_silences_listed_and_ended_early(env):
    h, client, clock = env
    body = {"matchers": {"kind": "lighting"}, "end": "2026-11-29T14:30:00+08:00", "reason": "cabinet works",
            "by": "ops"}
    sid = client.post("/api/v1/silences", json=body).json()["id"]
    later = client.post("/api/v1/silences", json={**body, "start": "2026-11-30T08:00:00+08:00",
                                                   "end": "2026-11-30T09:00:00+08:00"}).json()["id"]
    assert [s["id"] for s in client.get("/api/v1/silences").json()["items"]] == [later, sid]
    assert [s["id"] for s in client.get("/api/v1/silences", params={"active": "true"}).json()["items"]] == [sid]
    assert [s["id"] for s in client.get("/api/v1/silences", params={"active": "false"}).json()["items"]] == [later]
    h.feed(series("lighting-0001", "lighting", "leakage_ma", at("2026-11-29 12:40:00"), M, [45]))
    assert h.notices[-1].silenced
    clock["now"] = at("2026-11-29 13:00:00")
    r = client.request("DELETE", f"/api/v1/silences/{sid}", json={"by": "ops-wang"})
    assert r.status_code == 200 and r.json()["end"] == "2026-11-29T13:00:00+08:00"
    assert r.json()["ended_by"] == "ops-wang"
    assert client.get("/api/v1/silences", params={"active": "true"}).json()["total"] == 0
    h.feed(series("lighting-0002", "lighting", "leakage_ma", at("2026-11-29 13:00:00"), M, [45]))
    assert not h.notices[-1].silenced  # the silence covers [start, end): not 13:00 any more
    ended_later = client.delete(f"/api/v1/silences/{later}").json()  # not started: never starts
    assert ended_later["end"] == ended_later["start"]
    assert client.delete("/api/v1/silences/s-nope").status_code == 404
    page = client.get("/api/v1/silences", params={"limit": 1}).json()
    assert page["next"] == "1" and page["total"] == 2


def test_district_scope_hook(env):
    """A token limited to districts (authentication sets ``request.state.districts``) lists and
    acts on only those districts' alerts; others are 404, as if they did not exist."""
    h, _, clock = env
    app = FastAPI()
    app.include_router(router)
    app.state.alerts, app.state.now = h.state, lambda: clock["now"]

    @app.middleware("http")
    async def limited(request, call_next):
        request.state.districts = ["武昌区"]
        return await call_next(request)

    client = TestClient(app)
    _fleet(h)
    listed = _all(client)
    assert listed and {a["district"] for a in listed} == {"武昌区"}
    assert client.get("/api/v1/alerts", params={"limit": 1}).json()["total"] == len(listed)
    other = h.state.list_alerts("firing", 1, where=AlertFilter(district="江汉区"))[0][0]
    assert client.get(f"/api/v1/alerts/{other.id}").status_code == 404
    assert client.post(f"/api/v1/alerts/{other.id}/resolve").status_code == 404
    assert h.state.get(other.id).state == "firing"
    csv_rows = client.get("/api/v1/alerts", params={"format": "csv"}).content.decode("utf-8-sig").splitlines()
    assert len(csv_rows) == 1 + len(listed)
