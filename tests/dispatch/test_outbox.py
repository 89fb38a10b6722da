"""The outbox: rows written in the caller's transaction, body per webhooks.md, escalations; on both
state-DB engines (``state_url``: SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from alerts.dispatch import DispatchConfig, DispatchError, Outbox
from alerts.dispatch import outbox as ob
from alerts.dispatch.ulid import CROCKFORD, UlidGenerator, timestamp_ms
from alerts.statedb import target_of
from devices import db

from .conftest import make_notice

RECV = [{"name": n, "url": f"http://127.0.0.1:1/{n}", "secret": "s"} for n in ("a", "b", "duty")]
ROUTES = [
    {"match": {"severity": ["major", "critical"]}, "receivers": ["a", "b"], "escalate_to": ["duty"],
     "escalate_after": "10m"},
    {"match": {"kind": "bridge"}, "receivers": []},  # deliberately not sent
    {"match": {}, "receivers": ["b"]},
]
STARTED = "2026-11-29T23:14:05+08:00"
T0 = datetime.fromisoformat(STARTED).timestamp()


@pytest.fixture
def box(state_url):
    conn = db.connect(target_of(state_url))
    now = [T0 + 60]
    box = Outbox(conn, DispatchConfig.from_raw(RECV, ROUTES), clock=lambda: now[0],
                 public_url="http://citywatch.example/")
    yield conn, box, now
    conn.close()


def write(conn, box, *notices):
    with db.write_transaction(conn):
        for n in notices:
            box.listener(conn, n)


def rows(conn):
    return [dict(r) for r in conn.execute("SELECT * FROM dispatch_deliveries ORDER BY delivery_id")]


def test_one_pending_row_per_receiver_with_contract_body(box):
    conn, box, now = box
    write(conn, box, make_notice(severity="warning"))
    (row,) = rows(conn)
    assert (row["receiver"], row["notice"], row["state"]) == ("b", "firing", "pending")
    assert row["next_attempt_at"] == now[0]
    body = json.loads(row["body"])
    assert list(body) == ["version", "delivery_id", "status", "alert", "device"]
    assert body["version"] == 1 and body["status"] == "firing" and body["delivery_id"] == row["delivery_id"]
    assert list(body["alert"]) == ["id", "rule", "severity", "summary", "metric", "value", "threshold",
                                   "started_at", "ended_at", "acknowledged_by", "url"]
    assert body["alert"]["url"] == "http://citywatch.example/alerts/a-7f3c2e"
    assert body["alert"]["ended_at"] is None and body["alert"]["value"] == 61.3
    assert list(body["device"]) == ["id", "kind", "district", "asset_id", "lat", "lon", "responsible_unit"]
    assert body["device"]["district"] == "江汉区"
    assert "江汉区".encode() in row["body"]  # UTF-8, not \\u escapes


def test_rows_roll_back_with_the_alert_change(box):
    conn, box, _ = box
    with pytest.raises(RuntimeError), db.write_transaction(conn):
        box.listener(conn, make_notice())
        raise RuntimeError("the alert change failed")
    assert rows(conn) == []


def test_listener_refuses_to_run_outside_a_transaction(box):
    conn, box, _ = box
    with pytest.raises(DispatchError, match="inside the transaction"):
        box.listener(conn, make_notice())


def test_silenced_and_unrouted_notices_write_nothing(box):
    conn, box, _ = box
    write(conn, box, make_notice(silenced=True), make_notice(kind="bridge", alert_id="a-2"))
    assert rows(conn) == []


def test_escalation_scheduled_for_major_and_cancelled_by_ack(box):
    conn, box, _ = box
    write(conn, box, make_notice(severity="major", started_at=STARTED))
    by_receiver = {r["receiver"]: r for r in rows(conn)}
    assert set(by_receiver) == {"a", "b", "duty"}
    esc = by_receiver["duty"]
    assert (esc["state"], esc["notice"], esc["next_attempt_at"]) == ("scheduled", "escalated", T0 + 600)
    assert json.loads(esc["body"])["status"] == "escalated"
    write(conn, box, make_notice("acknowledged", severity="major", acknowledged_by="王工"))
    states = {(r["receiver"], r["notice"]): r["state"] for r in rows(conn)}
    assert states == {("a", "firing"): "pending", ("b", "firing"): "pending",
                      ("duty", "escalated"): "cancelled",
                      ("a", "acknowledged"): "pending", ("b", "acknowledged"): "pending"}


def test_silenced_resolve_still_cancels_escalation(box):
    conn, box, _ = box
    write(conn, box, make_notice(severity="critical"))
    write(conn, box, make_notice("resolved", severity="critical", silenced=True))
    assert [r["state"] for r in rows(conn) if r["receiver"] == "duty"] == ["cancelled"]


def test_warning_alerts_do_not_escalate(box):
    conn, _, _ = box
    box = Outbox(conn, DispatchConfig.from_raw(RECV, [dict(ROUTES[0], match={})]))
    write(conn, box, make_notice(severity="warning"))
    assert {r["receiver"] for r in rows(conn)} == {"a", "b"}


def test_page_lists_newest_first_with_cursor(box):
    conn, box, now = box
    for i in range(5):
        now[0] += 1
        write(conn, box, make_notice(alert_id=f"a-{i}"))
    first = box.page(limit=2)
    assert first["total"] == 5 and len(first["items"]) == 2
    assert [i["alert_id"] for i in first["items"]] == ["a-4", "a-3"]
    second = box.page(limit=2, cursor=first["next"])
    third = box.page(limit=2, cursor=second["next"])
    assert [i["alert_id"] for i in second["items"] + third["items"]] == ["a-2", "a-1", "a-0"]
    assert third["next"] is None
    item = first["items"][0]
    assert item["status"] == "pending" and item["notice"] == "firing" and item["attempts"] == 0
    assert item["created_at"].endswith("+08:00")  # the zone's offset, as every API time
    assert box.page(status="delivered") == {"items": [], "total": 0, "next": None}
    assert box.counts()["pending"] == 5
    with pytest.raises(ValueError, match="status: unknown"):
        box.page(status="lost")
    with pytest.raises(ValueError, match="cursor"):
        box.page(cursor="nope")


def test_page_narrowed_to_districts_reads_the_bodies(box):
    conn, box, _ = box
    for i, district in enumerate(["江汉区", "武昌区", "江汉区", "洪山区"]):
        write(conn, box, make_notice(alert_id=f"a-{i}", district=district))
    assert [i["alert_id"] for i in box.page(districts=["江汉区"])["items"]] == ["a-2", "a-0"]
    both = box.page(districts=["武昌区", "洪山区"], limit=1)
    assert both["total"] == 2 and [i["alert_id"] for i in both["items"]] == ["a-3"]
    assert box.page(districts=["青山区"])["total"] == 0 and box.page(districts=[])["total"] == 0


def test_ulids_are_crockford_sortable_and_monotonic():
    gen = UlidGenerator()
    ids = [gen.new(1764428045.123) for _ in range(1000)] + [gen.new(1764428045.124)]
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert timestamp_ms(ids[0]) == 1764428045123 and timestamp_ms(ids[-1]) == 1764428045124
    assert gen.new(1000.0) > ids[-1]  # the clock stepping back does not break the order


def test_schema_creation_keeps_a_callers_transaction(state_url):
    conn = db.connect(target_of(state_url))
    conn.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), db.write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        Outbox(conn, DispatchConfig.from_raw(RECV, ROUTES))
        assert conn.in_transaction
        raise RuntimeError("the caller rolls back")
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    Outbox(conn, DispatchConfig.from_raw(RECV, ROUTES))  # outside one: created and its version recorded
    assert db.schema_version(conn, "dispatch_outbox") == 2
    conn.close()


def test_severity_raised_to_major_schedules_one_escalation_from_now(box):
    conn, box, now = box
    write(conn, box, make_notice(severity="warning"))  # warnings do not escalate
    assert [r["receiver"] for r in rows(conn)] == ["b"]
    now[0] += 3600
    write(conn, box, make_notice("escalated", severity="major"))  # the lifecycle: severity rose
    write(conn, box, make_notice("escalated", severity="critical"))
    esc = [r for r in rows(conn) if r["escalation"]]
    assert [(r["receiver"], r["state"], r["next_attempt_at"]) for r in esc] == [
        ("duty", "scheduled", now[0] + 600)]
    # the lifecycle's own escalated notices go to the route's receivers at once
    assert [(r["receiver"], r["notice"]) for r in rows(conn) if not r["escalation"]] == [
        ("b", "firing"), ("a", "escalated"), ("b", "escalated"), ("a", "escalated"), ("b", "escalated")]


def test_escalated_bodies_name_their_cause(box):
    """webhooks.md: an ``escalated`` notice's top-level ``reason`` is ``severity_raised`` (with
    ``previous_severity``) or ``escalate_after`` (a route's escalation); other notices have none."""
    conn, box, now = box
    write(conn, box, make_notice(severity="warning"))
    write(conn, box, make_notice("escalated", severity="major", previous_severity="warning"))
    bodies = [(r["notice"], r["escalation"], json.loads(r["body"])) for r in rows(conn)]
    assert all("reason" not in b for n, _, b in bodies if n == "firing")
    raised = [b for n, esc, b in bodies if n == "escalated" and not esc]
    assert raised and all(b["reason"] == "severity_raised" and b["previous_severity"] == "warning"
                          and b["alert"]["severity"] == "major" for b in raised)
    scheduled = [b for n, esc, b in bodies if esc]
    assert scheduled and all(b["reason"] == "escalate_after" and "previous_severity" not in b for b in scheduled)


def test_outbox_of_an_earlier_version_gains_the_escalation_column(db_path):
    """SQLite only: outboxes that old are SQLite files."""
    conn = db.connect(db_path)
    conn.execute("CREATE TABLE dispatch_deliveries (delivery_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL,"
                 " receiver TEXT NOT NULL, notice TEXT NOT NULL, state TEXT NOT NULL, body BLOB NOT NULL,"
                 " created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,"
                 " attempts INTEGER NOT NULL DEFAULT 0, first_attempt_at REAL, last_attempt_at REAL,"
                 " last_error TEXT, done_at REAL)")
    box = Outbox(conn, DispatchConfig.from_raw(RECV, ROUTES))
    write(conn, box, make_notice(severity="critical"))
    assert sorted(r["escalation"] for r in rows(conn)) == [0, 0, 1]
    conn.close()


def test_a_claim_walks_the_alert_index(box):
    """Claiming checks each candidate for an older pending delivery of its alert in an index of
    (alert, receiver), also on a table PostgreSQL has no statistics of yet (no per-row scan of
    the receiver's pending deliveries: that made claims quadratic in a dead receiver's backlog)."""
    conn, box, now = box
    write(conn, box, *[make_notice(alert_id=f"a-{i % 150}") for i in range(300)])
    args = ("b", "pending", now[0], 16)
    if db.is_postgres(conn):
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + ob._CLAIM_POSTGRES, args))
        assert "SubPlan" in plan and "Index Only Scan using dispatch_deliveries_pending_alert" in plan, plan
    else:
        plan = "\n".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + ob._CLAIM_SQLITE, args))
        assert "INDEX dispatch_deliveries_alert" in plan and "INDEX dispatch_deliveries_due" in plan, plan
    claimed = ob.claim_due(conn, "b", now[0], 16, ())
    assert len(claimed) == 16 and len({json.loads(d.body)["alert"]["id"] for d in claimed}) == 16  # one per alert
