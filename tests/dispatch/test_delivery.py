"""End to end over real HTTP on 127.0.0.1: contract, retries, isolation, escalation, routes.

No test sleeps before checking that something did not happen: :func:`scanned_and_stopped` proves
the dispatcher has looked at the outbox after the point (the gate hold a wake-up takes is let go
by the scan that answers it) and answered every attempt it started (``stop`` drains them).
Each runs on both state-DB engines (the outbox's: SQLite, PostgreSQL).
"""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from alerts.dispatch import DispatchConfig, Dispatcher, DispatchError, DispatchMetrics
from devices.db import DBError
from ingest.priority import Gate

from .conftest import example_receiver, make_notice, wait_for


@pytest.fixture
def outbox_db(state_url):
    """The harness's outbox on each state-DB engine."""
    return state_url


def recv(name, r, **kw):
    return {"name": name, "url": r.url, "secret": f"secret-{name}", **kw}


def scanned_and_stopped(h, gate: Gate) -> None:
    """Wake the dispatcher, wait for the scan that answers the wake-up (it reads the clock and the
    outbox after this call), then stop it: every attempt it started has been answered (or cut
    off). What the receivers have not got by then was not sent. ``h.dispatcher.start()`` resumes."""
    h.dispatcher.wake()
    assert wait_for(lambda: not gate.held, 5)
    h.dispatcher.stop(timeout=10)


def test_body_and_headers_match_the_contract_and_verify(harness, receivers):
    r = receivers()
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}])
    h.dispatcher.start()
    h.notify(make_notice())
    (hit,) = wait_for(r.received)
    (row,) = wait_for(lambda: h.rows(state="delivered"))
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.delivery_id == row["delivery_id"] == hit.json["delivery_id"]
    assert hit.body == row["body"]
    ts = int(hit.headers["X-Citywatch-Timestamp"])
    assert abs(ts - time.time()) < 5
    assert example_receiver.verify("secret-jh", hit.headers, hit.body, time.time())
    assert not example_receiver.verify("other-secret", hit.headers, hit.body, time.time())
    assert not example_receiver.verify("secret-jh", hit.headers, hit.body + b" ", time.time())
    assert not example_receiver.verify("secret-jh", hit.headers, hit.body, time.time() + 301)
    body = hit.json
    assert body["status"] == "firing" and body["version"] == 1
    assert body["alert"]["url"] == "http://citywatch.example/alerts/a-7f3c2e"
    assert body["device"]["responsible_unit"] == "江汉区城管执法局"
    wait_for(lambda: h.metric("citywatch_dispatch_delivered_total", "jh") == 1)


# the kinds of outage are the receiver's: PostgreSQL takes one (each engine is a fixture parameter)
@pytest.mark.parametrize(("state_url", "outage"), [("sqlite", "http500"), ("sqlite", "timeout"), ("sqlite", "refused"),
                                                   ("postgresql", "timeout")], indirect=["state_url"])
def test_receiver_gets_the_notice_once_it_recovers_same_delivery_id(harness, receivers, outage):
    r = receivers()
    h = harness([recv("jh", r, timeout="0.2s")], [{"match": {}, "receivers": ["jh"]}])
    if outage == "http500":
        r.behaviour.status = 500
    elif outage == "timeout":
        r.behaviour.delay_s = 0.5
    else:
        r.down()
    h.dispatcher.start()
    h.notify(make_notice())
    wait_for(lambda: (h.rows()[0]["attempts"] >= 3))  # failed several times, still pending
    (row,) = h.rows()
    assert row["state"] == "pending" and row["last_error"]
    if outage == "refused":
        r.up()
    r.behaviour.status, r.behaviour.delay_s = 204, 0.0
    wait_for(lambda: h.rows(state="delivered"), timeout=5)
    wait_for(lambda: h.metric("citywatch_dispatch_retried_total", "jh") >= 2)
    h.dispatcher.stop(timeout=10)  # attempts still in flight (a timed-out one) answered: all are in
    ids = set(r.ids())
    assert ids == {row["delivery_id"]}
    ok = [hit for hit in r.received() if hit.delivery_id == row["delivery_id"]][-1]
    assert example_receiver.verify("secret-jh", ok.headers, ok.body, time.time())


def test_every_attempt_is_signed_afresh(harness, receivers, clock):
    r = receivers()
    r.behaviour.status = 503
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}])
    h.dispatcher.start()
    h.notify(make_notice())
    wait_for(lambda: len(r.received()) >= 1)
    clock.advance(3600)  # an hour later: the first signature would now be stale
    r.behaviour.status = 204
    wait_for(lambda: h.rows(state="delivered"))
    last = r.received()[-1]
    assert example_receiver.verify("secret-jh", last.headers, last.body, clock())
    first = r.received()[0]
    assert first.headers["X-Citywatch-Signature"] != last.headers["X-Citywatch-Signature"]


@pytest.mark.parametrize(("state_url", "status"), [*[("sqlite", s) for s in (400, 401, 404, 408, 410, 429)],
                                                   ("postgresql", 404)], indirect=["state_url"])
def test_any_4xx_is_retried_and_shown_failing_meanwhile(harness, receivers, status):
    """webhooks.md: any non-2xx is retried for the whole horizon (a receiver's 404 during a
    deployment must not lose an alarm); until then the delivery is pending and ``failing``."""
    r = receivers()
    r.behaviour.status = status
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}])
    h.dispatcher.start()
    h.notify(make_notice())
    wait_for(lambda: len(r.received()) >= 3)
    (item,) = h.outbox.page()["items"]
    assert item["status"] == "pending" and item["failing"] is True
    assert item["last_error"].startswith(f"HTTP {status}")
    r.behaviour.status = 200
    wait_for(lambda: h.rows(state="delivered"))
    (item,) = h.outbox.page()["items"]
    assert item["status"] == "delivered" and item["failing"] is False


def test_gives_up_after_the_retry_horizon_and_keeps_the_row(harness, receivers, clock):
    r = receivers()
    r.behaviour.status = 502
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}], retry_horizon_s=86400)
    h.dispatcher.start()
    h.notify(make_notice())
    wait_for(lambda: len(r.received()) >= 2)
    assert h.rows()[0]["state"] == "pending"
    clock.advance(86400)  # a day of failures
    (row,) = wait_for(lambda: h.rows(state="failed"))
    assert "gave up after" in row["last_error"] and row["last_error"].startswith("HTTP 502")
    wait_for(lambda: h.metric("citywatch_dispatch_failed_total", "jh") == 1)


def test_dead_receiver_does_not_delay_a_healthy_one(harness, receivers):
    dead, healthy = receivers(), receivers()
    dead.behaviour.hold = threading.Event()  # every request to it hangs until the end of the test
    h = harness([recv("dead", dead, timeout="20s", max_concurrency=2), recv("ok", healthy)],
                [{"match": {}, "receivers": ["dead", "ok"]}])
    h.dispatcher.start()
    try:
        for i in range(20):
            h.notify(make_notice(alert_id=f"a-{i}"))
        wait_for(lambda: len(healthy.received()) == 20, timeout=10)
        wait_for(lambda: len(dead.received()) == 2)  # its lane is stuck, bounded by max_concurrency
        # all 20 reached the healthy one while every attempt to the dead one was still hanging
        assert [r["attempts"] for r in h.rows(receiver="dead")] == [0] * 20
        assert len(dead.received()) == 2  # both slots still taken: nothing more can have gone to it
    finally:
        dead.behaviour.hold.set()


def test_notices_of_one_alert_arrive_in_order_after_an_outage(harness, receivers):
    r = receivers()
    r.behaviour.status = 500
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}])
    h.dispatcher.start()
    h.notify(make_notice("firing"))
    wait_for(lambda: len(r.received()) >= 1)
    h.notify(make_notice("acknowledged", acknowledged_by="王工"))
    h.notify(make_notice("resolved"))
    # two more attempts: the second was claimed after the commit above, by a scan that saw all three
    n = len(r.received())
    wait_for(lambda: len(r.received()) >= n + 2)
    h.dispatcher.stop(timeout=10)
    assert {hit.json["status"] for hit in r.received()} == {"firing"}  # held behind the firing
    r.behaviour.status = 200
    h.dispatcher.start()
    wait_for(lambda: len(h.rows(state="delivered")) == 3)
    statuses = []
    for hit in r.received():
        if hit.json["status"] not in statuses:
            statuses.append(hit.json["status"])
    assert statuses == ["firing", "acknowledged", "resolved"]


ESCALATING = [{"match": {"severity": ["major", "critical"]}, "receivers": ["jh"],
               "escalate_to": ["duty"], "escalate_after": "10m"},
              {"match": {}, "receivers": ["jh"]}]


def test_escalation_after_escalate_after(harness, receivers, clock):
    jh, duty = receivers(), receivers()
    gate = Gate()
    h = harness([recv("jh", jh), recv("duty", duty)], ESCALATING, gate=gate)
    h.dispatcher.start()
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(clock()))
    h.notify(make_notice(severity="critical", started_at=started))
    wait_for(lambda: len(jh.received()) == 1)
    clock.advance(9 * 60)
    scanned_and_stopped(h, gate)
    assert duty.received() == []  # 9 minutes: not yet
    h.dispatcher.start()
    clock.advance(61)
    h.dispatcher.wake()
    (hit,) = wait_for(duty.received)
    assert hit.json["status"] == "escalated" and hit.json["alert"]["severity"] == "critical"
    assert example_receiver.verify("secret-duty", hit.headers, hit.body, clock())
    wait_for(lambda: [r["state"] for r in h.rows(receiver="duty")] == ["delivered"])
    h.notify(make_notice("resolved", severity="critical", started_at=started))
    wait_for(lambda: len(duty.received()) == 2)  # the duty office hears the alert has cleared
    assert [hit.json["status"] for hit in duty.received()] == ["escalated", "resolved"]
    wait_for(lambda: [hit.json["status"] for hit in jh.received()] == ["firing", "resolved"])


def test_no_escalation_when_acknowledged_in_time(harness, receivers, clock):
    jh, duty = receivers(), receivers()
    gate = Gate()
    h = harness([recv("jh", jh), recv("duty", duty)], ESCALATING, gate=gate)
    h.dispatcher.start()
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(clock()))
    h.notify(make_notice(severity="major", started_at=started))
    clock.advance(5 * 60)
    h.notify(make_notice("acknowledged", severity="major", acknowledged_by="王工"))
    clock.advance(60 * 60)
    wait_for(lambda: len(jh.received()) == 2)
    scanned_and_stopped(h, gate)  # a scan an hour past the escalation time
    assert duty.received() == []
    assert [r["state"] for r in h.rows(receiver="duty")] == ["cancelled"]
    assert [hit.json["status"] for hit in jh.received()] == ["firing", "acknowledged"]


def test_routes_pick_the_right_receivers(harness, receivers):
    jh, wc, gas, rest = receivers(), receivers(), receivers(), receivers()
    h = harness(
        [recv("jh", jh), recv("wc", wc), recv("gas", gas), recv("rest", rest)],
        [{"match": {"district": "江汉区", "severity": "critical"}, "receivers": ["jh"]},
         {"match": {"district": "武昌区"}, "receivers": ["wc"]},
         {"match": {"kind": "gas_meter"}, "receivers": ["gas", "jh"]},
         {"match": {}, "receivers": ["rest"]}])
    h.dispatcher.start()
    h.notify(make_notice(alert_id="a-jh-crit", severity="critical"),
             make_notice(alert_id="a-jh-warn", severity="warning"),
             make_notice(alert_id="a-wc", district="武昌区", severity="critical"),
             make_notice(alert_id="a-gas", kind="gas_meter", district="洪山区"),
             make_notice(alert_id="a-silenced", severity="critical", silenced=True))
    wait_for(lambda: len(h.rows(state="delivered")) == 5)
    h.dispatcher.stop(timeout=10)
    assert len(h.rows()) == 5  # the silenced notice has no delivery; the rows were written by notify

    def got(r):
        return sorted(hit.json["alert"]["id"] for hit in r.received())

    assert got(jh) == ["a-gas", "a-jh-crit"]
    assert got(wc) == ["a-wc"]
    assert got(gas) == ["a-gas"]
    assert got(rest) == ["a-jh-warn"]


def test_latency_from_commit_to_receiver(harness, receivers):
    r = receivers()
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}], poll_interval_s=5.0)
    h.dispatcher.start()
    lat = []
    for i in range(50):
        t0 = time.monotonic()
        h.notify(make_notice(alert_id=f"a-{i}"))
        wait_for(lambda n=i + 1: len(r.received()) == n, interval=0.0005)
        lat.append(r.received()[-1].at - t0)
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[-1]
    print(f"commit -> receiver latency p50 {p50 * 1000:.1f} ms, max {p99 * 1000:.1f} ms")
    assert p50 < 0.05  # wake(), not the 5 s poll



def test_a_failing_receiver_is_probed_not_hammered(harness, receivers):
    r = receivers()
    r.behaviour.status = 503
    h = harness([recv("jh", r, max_concurrency=1)], [{"match": {}, "receivers": ["jh"]}],
                backoff_base_s=0.1, backoff_cap_s=0.2)
    h.dispatcher.start()
    h.notify(*(make_notice(alert_id=f"a-{i}") for i in range(50)))
    time.sleep(1.0)
    # per-delivery backoff alone would mean ~500 requests a second (50 deliveries, ~0.1 s each);
    # the lane's pause bounds it to a claim of at most 4 per pause
    assert len(r.received()) < 200
    r.behaviour.status = 204
    wait_for(lambda: len(h.rows(state="delivered")) == 50, timeout=10)


def test_start_fails_loudly_when_the_state_db_cannot_be_opened(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    d = Dispatcher(tmp_path / "file" / "state.db", DispatchConfig.from_raw([], []),
                   metrics=DispatchMetrics(CollectorRegistry()))
    with pytest.raises(DispatchError, match="failed to start"):
        d.start()


def test_old_delivered_rows_are_pruned_failed_ones_kept(harness, receivers, clock):
    ok, bad = receivers(), receivers()
    bad.behaviour.status = 410
    h = harness([recv("ok", ok), recv("bad", bad)], [{"match": {}, "receivers": ["ok", "bad"]}],
                retention_s=7 * 86400, retry_horizon_s=0)
    h.dispatcher.start()
    h.notify(make_notice())
    wait_for(lambda: len(h.rows(state="delivered")) == 1 and len(h.rows(state="failed")) == 1)
    h.dispatcher.stop()
    clock.advance(8 * 86400)
    h.dispatcher.start()  # prunes on its first pass, then hourly
    wait_for(lambda: h.rows(state="delivered") == [])
    assert [r["receiver"] for r in h.rows()] == ["bad"]


def test_a_wake_holds_the_priority_gate_until_the_attempt_is_answered(harness, receivers):
    from alerts.dispatch.dispatcher import HOLD_MAX_S
    from ingest.priority import Gate

    gate = Gate()
    r = receivers()
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}], gate=gate)
    h.dispatcher.start()
    r.behaviour.delay_s = 0.3  # longer than HOLD_MAX_S
    h.notify(make_notice(alert_id="a-1"))
    assert gate.held  # from the wake-up on: the node's bulk threads step aside
    wait_for(r.received)
    assert wait_for(lambda: not gate.held, HOLD_MAX_S + 1)  # let go after HOLD_MAX_S ...
    assert not h.rows(state="delivered")  # ... although the receiver has not answered yet
    wait_for(lambda: h.rows(state="delivered"))
    r.behaviour.delay_s = 0.0
    h.notify(make_notice(alert_id="a-2"))
    wait_for(lambda: len(h.rows(state="delivered")) == 2)
    assert wait_for(lambda: not gate.held, 2)  # answered: let go
    h.dispatcher.wake()  # nothing to send: the scan lets go at once
    assert wait_for(lambda: not gate.held, 2)
    h.dispatcher.stop(timeout=10)
    assert not gate.held


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_the_dispatcher_carries_on_after_the_server_ended_its_sessions(harness, receivers, state_url):
    """PostgreSQL only (a restart, a failover): its reads and writes go on in new sessions."""
    from tests.alerts.test_statedb import _end_other_sessions

    r = receivers()
    h = harness([recv("jh", r)], [{"match": {}, "receivers": ["jh"]}])
    h.dispatcher.start()
    h.notify(make_notice(alert_id="a-1"))
    wait_for(lambda: len(h.rows(state="delivered")) == 1)
    assert _end_other_sessions(state_url) >= 3  # the dispatcher's two and the harness's
    with pytest.raises(DBError):  # the lifecycle's side meets its lost session once (and retries)
        h.conn.execute("SELECT 1")
    h.notify(make_notice(alert_id="a-2"))
    wait_for(lambda: len(h.rows(state="delivered")) == 2, timeout=10)
    assert [hit.json["alert"]["id"] for hit in r.received()] == ["a-1", "a-2"]
