"""Maintenance windows: occurrences on the zone's wall clock (daily, weekly, monthly on the same day
or the month's last day, once), silencing at their edges on event time, a replay silenced the
same, and the REST endpoints."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api import router
from alerts.maintenance import MaintenanceWindow

from .helpers import SH, H, Harness, M, at, batch, series


def window(first: str, hours: float, every: str | None, ended: str | None = None, tz: str = "Asia/Shanghai"):
    return MaintenanceWindow("m-1", {"kind": "bridge"}, at(first), int(hours * H), every, "inspection", "ops",
                             at(first), tz, at(ended) if ended else None)


def local(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, SH).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize("every, k, expected", [
    (None, 0, "2026-01-31 01:00"),
    ("daily", 1, "2026-02-01 01:00"),
    ("daily", 365, "2027-01-31 01:00"),
    ("weekly", 1, "2026-02-07 01:00"),
    ("weekly", 52, "2027-01-30 01:00"),
    ("monthly", 1, "2026-02-28 01:00"),  # February lacks the 31st: its last day
    ("monthly", 2, "2026-03-31 01:00"),  # and March has it again
    ("monthly", 3, "2026-04-30 01:00"),
    ("monthly", 11, "2026-12-31 01:00"),
    ("monthly", 13, "2027-02-28 01:00"),
    ("monthly", 25, "2028-02-29 01:00"),  # a leap year
])
def test_occurrences_on_the_wall_clock(every, k, expected):
    assert local(window("2026-01-31 01:00:00", 4, every).occurrence(k)) == expected


@pytest.mark.parametrize("every, at_text, active", [
    ("monthly", "2026-01-31 00:59:59.999", False),
    ("monthly", "2026-01-31 01:00:00", True),  # [start, start + duration)
    ("monthly", "2026-01-31 04:59:59.999", True),
    ("monthly", "2026-01-31 05:00:00", False),
    ("monthly", "2026-02-28 01:00:00", True),
    ("monthly", "2026-03-28 01:00:00", False),  # March's is on the 31st
    ("monthly", "2026-03-31 03:00:00", True),
    ("daily", "2026-06-15 00:30:00", False),
    ("daily", "2026-06-15 02:00:00", True),
    ("weekly", "2026-02-07 02:00:00", True),  # a Saturday, as 2026-01-31
    ("weekly", "2026-02-08 02:00:00", False),
    (None, "2026-01-31 02:00:00", True),
    (None, "2026-02-01 02:00:00", False),
])
def test_active_at_the_edges(every, at_text, active):
    w = window("2026-01-31 01:00:00", 4, every)
    ms = int(datetime.fromisoformat(at_text).replace(tzinfo=SH).timestamp() * 1000)
    assert w.active(ms) is active


def test_an_ended_window_keeps_its_past_and_has_no_future():
    w = window("2026-01-31 01:00:00", 4, "daily", ended="2026-02-02 02:00:00")
    assert w.active(at("2026-02-01 02:00:00")) and w.active(at("2026-02-02 01:59:00"))
    assert not w.active(at("2026-02-02 02:00:00")) and not w.active(at("2026-02-03 02:00:00"))
    assert w.next_start(at("2026-02-01 06:00:00")) == at("2026-02-02 01:00:00")
    assert w.next_start(at("2026-02-02 06:00:00")) is None


@pytest.fixture
def env(state_url):
    h = Harness(state_url)  # on each state-DB engine
    app = FastAPI()
    app.include_router(router)
    clock = {"now": at("2026-11-01 12:00:00")}
    app.state.alerts = h.state
    app.state.now = lambda: clock["now"]
    return h, TestClient(app), clock


NIGHT = {"matchers": {"kind": "toilet", "district": "江汉区"}, "start": "2026-11-01T22:00:00+08:00",
         "duration": "2h", "every": "daily", "reason": "nightly cleaning", "by": "ops-chen"}


def test_endpoints(env):
    h, client, clock = env
    r = client.post("/api/v1/maintenance", json=NIGHT)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["every"] == "daily" and w["duration_s"] == 7200 and w["zone"] == "Asia/Shanghai"
    assert w["active"] is False and w["next_start"] == "2026-11-01T22:00:00+08:00" and w["created_by"] == "ops-chen"
    clock["now"] = at("2026-11-03 23:00:00")
    listed = client.get("/api/v1/maintenance", params={"active": "true"}).json()
    assert [x["id"] for x in listed["items"]] == [w["id"]] and listed["items"][0]["next_start"] == (
        "2026-11-04T22:00:00+08:00")
    r = client.request("DELETE", f"/api/v1/maintenance/{w['id']}", json={"by": "ops-wang"})
    assert r.status_code == 200 and r.json()["ended_by"] == "ops-wang" and r.json()["active"] is False
    assert client.get("/api/v1/maintenance").json()["total"] == 0
    assert client.get("/api/v1/maintenance", params={"ended": "true"}).json()["total"] == 1
    assert client.delete("/api/v1/maintenance/m-nope").status_code == 404
    for bad, name in [({"every": "hourly"}, "every"), ({"duration": "25h"}, "duration"),
                      ({"duration": "soon"}, "duration"), ({"start": "2026-11-01T22:00:00"}, "start"),
                      ({"matchers": {"colour": "red"}}, "matcher"), ({"matchers": {}}, "matcher"),
                      ({"reason": ""}, "reason")]:
        r = client.post("/api/v1/maintenance", json={**NIGHT, **bad})
        assert r.status_code == 422 and name in r.text, (bad, r.text)


def _night_stream() -> list:
    """toilet.consumables (fires at once) at the edges of 22:00-24:00 windows; a lighting alert in one."""
    rows = []
    for i, when in enumerate(["2026-11-02 21:59:59", "2026-11-02 22:00:00", "2026-11-02 23:59:59",
                              "2026-11-03 00:00:00", "2026-11-05 22:30:00"]):
        rows += series(f"toilet-{i:04d}", "toilet", "consumables_pct", at(when), M, [10], district="江汉区")
    rows += series("lighting-0009", "lighting", "leakage_ma", at("2026-11-02 22:30:00"), M, [45], district="江汉区")
    return rows


def test_an_alert_in_a_window_is_silenced_on_event_time_and_a_replay_agrees(env, fresh_state):
    h, client, clock = env
    client.post("/api/v1/maintenance", json=NIGHT)
    h.feed(_night_stream())
    silenced = {n.device["id"]: n.silenced for n in h.notices}
    assert silenced == {"toilet-0000": False, "toilet-0001": True, "toilet-0002": True, "toilet-0003": False,
                        "toilet-0004": True, "lighting-0009": False}  # another kind: not matched
    assert {a.device_id: a.silenced for a in h.state.list_alerts("firing", 100)[0]} == silenced
    # a replay (another node, later, fed one reading at a time) silences exactly the same
    replay = Harness(fresh_state())
    w = h.state.maintenance_windows()[0]
    replay.state.add_maintenance(w.matchers, w.first_start_ms, w.duration_ms, w.every, w.reason, w.created_by,
                                 now_ms=at("2026-12-01 00:00:00"))
    for row in sorted(_night_stream(), key=lambda r: r.ts):
        replay.engine.process(batch([row]))
    assert {n.device["id"]: n.silenced for n in replay.notices} == silenced


def test_a_state_db_of_an_older_version_is_migrated(tmp_path):
    """The columns added for issue 17 (an alert's assignee, who ended a silence) are added to a
    state DB made before them, its alerts kept (SQLite only: state DBs that old are SQLite files)."""
    h = Harness(tmp_path / "old.db")
    h.feed(series("lighting-0001", "lighting", "leakage_ma", at("2026-11-02 12:00:00"), M, [45]))
    for table, column in (("alerts", "assignee"), ("silences", "ended_by")):
        h.conn.execute("DROP INDEX IF EXISTS alerts_by_rank")
        h.conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    h.conn.execute("DROP TABLE schema_versions")  # as a release before versioned schemas left it
    again = h.reopen()
    (a,) = again.state.list_alerts("firing", 10)[0]
    assert again.state.assign(a.id, "江汉区路灯管理所", "ops", at("2026-11-02 12:05:00")).assignee == "江汉区路灯管理所"
