"""The defects issue 17's review found, each through the app ``citywatch serve`` builds (over a real
state DB and DuckDB store): each test failed before its fix."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from devices.model import Device
from ingest.decode import Decoder
from ingest.model import Reading, Readings, ReadingsBuilder

from .api_support import DEVICE, NOW, auth, make_node

OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?\+08:00$")  # Asia/Shanghai, the default zone


def test_pending_alerts_have_their_summary(node, client):
    """The API's AlertState had no summary function: ``state=pending`` summaries were empty."""
    # 22:53 local: night; noise.night_laeq is pending for 5 minutes over 55 dB(A)
    loud = Reading(DEVICE, "noise", "laeq_db", NOW - 60_000, 61.3, "江汉区", "site-1")
    node.engine.process(Readings.from_rows([loud]))
    (item,) = client.get("/api/v1/alerts", params={"state": "pending"}, headers=auth("viewer")).json()["items"]
    assert item["rule"] == "noise.night_laeq" and item["state"] == "pending"
    assert item["summary"] == "Night construction noise 61.3 dB(A) over the 55 dB(A) limit (GB 12523-2011)"
    one = client.get(f"/api/v1/alerts/{item['id']}", headers=auth("viewer")).json()
    assert one["summary"] == item["summary"] and one["history"] == [] and one["comments"] == []


@pytest.mark.parametrize("attrs, silent_s, online", [
    ({"offline_after_s": 1800}, 20 * 60, True),  # a crack gauge reporting every 10 min
    ({"offline_after_s": 1800}, 31 * 60, False),
    ({}, 20 * 60, False),  # the kind's 5 min
    ({"offline_after_s": "soon"}, 20 * 60, False),  # not a number: the kind's
])
def test_online_honours_attrs_offline_after_s(node, client, attrs, silent_s, online):
    node.registry.upsert([Device("bridge-wuchang-0002", "bridge", "武昌区", attrs=attrs)])
    node.registry.mark_seen({"bridge-wuchang-0002": NOW - silent_s * 1000})
    d = client.get("/api/v1/devices/bridge-wuchang-0002", headers=auth("viewer")).json()
    assert d["online"] is online
    listed = client.get("/api/v1/devices", params={"kind": "bridge"}, headers=auth("viewer")).json()["items"]
    assert {x["device_id"]: x["online"] for x in listed}["bridge-wuchang-0002"] is online


def test_readings_limit_gives_the_latest_by_default(client):
    """``limit=N`` gave the oldest N; a duty officer wants the latest. Seeded: laeq 50 + i at NOW - i min."""
    url = f"/api/v1/devices/{DEVICE}/readings"
    pts = client.get(url, params={"metric": "laeq_db", "limit": 3}, headers=auth("viewer")).json()["points"]
    # end defaults to now, exclusive: the reading at NOW is not in the window
    assert pts == [[NOW - 60_000, 51.0], [NOW - 120_000, 52.0], [NOW - 180_000, 53.0]]
    pts = client.get(url, params={"metric": "laeq_db", "limit": 2, "order": "asc"}, headers=auth("viewer")).json()
    assert pts["points"] == [[NOW - 29 * 60_000, 79.0], [NOW - 28 * 60_000, 78.0]]
    r = client.get(url, params={"metric": "laeq_db", "order": "sideways"}, headers=auth("viewer"))
    assert r.status_code == 422 and "order" in r.text


def test_quarantine_names_the_device_of_whole_message_rejections_and_filters(node, client):
    decoder = Decoder(node.registry.snapshot().get)
    out = ReadingsBuilder()
    rejected = [decoder.decode(topic, payload, NOW, out).rejections[0] for topic, payload in (
        ("city/noise/noise-hongshan-0404/telemetry", b'{"ts": 1, "laeq_db": 50}'),  # unregistered
        (f"city/noise/{DEVICE}/telemetry", b"{not json"),
        ("city/lamp/lamp-1/telemetry", b"{}"),  # no such kind: the id is still named
    )]
    assert [(r.device_id, r.kind) for r in rejected] == [
        ("noise-hongshan-0404", "noise"), (DEVICE, "noise"), ("lamp-1", "")]
    node.quarantine.add(rejected)
    q = "/api/v1/quarantine"
    body = client.get(q, params={"device_id": "noise-hongshan-0404"}, headers=auth("viewer")).json()
    assert body["total"] == 1 and body["items"][0]["code"] == "unregistered"
    assert OFFSET.match(body["items"][0]["received_at"])
    body = client.get(q, params={"reason": "unregistered"}, headers=auth("viewer")).json()
    assert [i["device_id"] for i in body["items"]] == ["noise-hongshan-0404"]
    body = client.get(q, params={"kind": "noise", "device_id": DEVICE, "limit": 2}, headers=auth("viewer")).json()
    assert body["total"] == 4 and len(body["items"]) == 2 and body["next"]  # 3 seeded + the bad JSON
    rest = client.get(q, params={"kind": "noise", "device_id": DEVICE, "cursor": body["next"]},
                      headers=auth("viewer")).json()
    assert len(rest["items"]) == 2 and rest["next"] is None


def test_one_time_convention_in_api_output(node, client):
    """Every time the API shows is RFC 3339 with the configured zone's offset (devices.times.rfc3339)."""
    node.registry.mark_seen({DEVICE: NOW})
    d = client.get(f"/api/v1/devices/{DEVICE}", headers=auth("viewer")).json()
    assert d["last_seen"] == "2025-11-29T22:54:05+08:00"
    assert all(OFFSET.match(e["ts"]) for e in d["events"])
    r = client.post("/api/v1/silences", headers=auth("operator"),
                    json={"matchers": {"kind": "noise"}, "end": NOW + 3_600_000, "reason": "works"})
    assert OFFSET.match(r.json()["start"]) and OFFSET.match(r.json()["created_at"])
    assert client.get("/api/v1/deliveries", headers=auth("viewer")).status_code == 200


@pytest.mark.parametrize("path, params, name", [
    (f"/api/v1/devices/{DEVICE}/readings", {"metric": "laeq_db", "start": "2025-11-29T12:00:00"}, "start"),
    (f"/api/v1/devices/{DEVICE}/readings", {"metric": "laeq_db", "end": "yesterday"}, "end"),
])
def test_offset_less_and_bad_query_times_are_400_naming_the_parameter(client, path, params, name):
    r = client.get(path, params=params, headers=auth("viewer"))
    assert r.status_code == 400 and r.json()["detail"].startswith(f"{name}: "), r.text


def test_open_api_records_the_by_given(tmp_path):
    node = make_node(tmp_path / "open", tokens=False, open=True)
    try:
        client = TestClient(node.api_app())
        r = client.post("/api/v1/silences", json={"matchers": {"kind": "noise"}, "end": NOW + 60_000,
                                                  "reason": "x", "by": "ops-chen"})
        assert r.status_code == 201 and r.json()["created_by"] == "ops-chen"
    finally:
        node.store.close()
