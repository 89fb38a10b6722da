"""Alert actions through the app ``citywatch serve`` builds: the API's AlertState (its own state-DB
connection) and the node's rule engine (another) agree on a manual resolve; roles; CSV export
through the authentication middleware."""

from __future__ import annotations

import csv
import io

import pytest

from ingest.model import Reading, Readings

from .api_support import DEVICE, NOW, auth

MIN = 60_000


def loud(node, start: int, minutes: int, value: float = 70.0) -> None:
    """noise.night_laeq: over 55 dB(A) for 5 minutes at night (NOW is 22:54 in Wuhan)."""
    node.engine.process(Readings.from_rows([Reading(DEVICE, "noise", "laeq_db", start + i * MIN, value, "江汉区",
                                                    "site-1") for i in range(minutes)]))


def test_resolve_by_hand_and_the_node_engine_starts_over(node, client):
    loud(node, NOW - 40 * MIN, 6)  # fires at NOW - 35 min
    (a,) = client.get("/api/v1/alerts", params={"state": "firing"}, headers=auth("viewer")).json()["items"]
    r = client.post(f"/api/v1/alerts/{a['id']}/resolve", json={"note": "site closed"}, headers=auth("operator"))
    assert r.status_code == 200, r.text
    assert r.json()["history"][-1]["by"] == "operator-user" and r.json()["history"][-1]["note"] == "site closed"
    loud(node, NOW - 34 * MIN, 7)  # still loud: pending again, a new alert 5 min later
    firing = client.get("/api/v1/alerts", params={"state": "firing"}, headers=auth("viewer")).json()["items"]
    assert len(firing) == 1 and firing[0]["id"] != a["id"]
    assert firing[0]["started_at"] == "2025-11-29T22:20:05+08:00"  # NOW - 34 min, in Wuhan
    assert client.get(f"/api/v1/alerts/{a['id']}", headers=auth("viewer")).json()["state"] == "resolved"


@pytest.mark.parametrize("action, body", [("ack", {}), ("unack", {}), ("resolve", {}), ("assign", {"unit": "x"}),
                                          ("comments", {"text": "x"})])
def test_a_viewer_may_not_act_on_an_alert(node, client, action, body):
    loud(node, NOW - 40 * MIN, 6)
    (a,) = client.get("/api/v1/alerts", params={"state": "firing"}, headers=auth("viewer")).json()["items"]
    assert client.post(f"/api/v1/alerts/{a['id']}/{action}", json=body, headers=auth("viewer")).status_code == 403
    assert client.post(f"/api/v1/alerts/{a['id']}/{action}", json=body).status_code == 401
    assert client.post(f"/api/v1/alerts/{a['id']}/{action}", json=body, headers=auth("operator")).status_code in (
        200, 201, 409)  # unack of a firing alert: 200, no change


def test_csv_export_through_the_app(node, client):
    loud(node, NOW - 40 * MIN, 6)
    r = client.get("/api/v1/alerts", params={"format": "csv"}, headers=auth("viewer"))
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    (row,) = csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline=""))
    assert row["rule"] == "noise.night_laeq" and row["district"] == "江汉区" and row["state"] == "firing"
    assert client.get("/api/v1/alerts", params={"format": "csv"}).status_code == 401
