"""The lifecycle feeding the real dispatch outbox (alerts.dispatch) inside its transaction, on each
state-DB engine."""

from __future__ import annotations

import json

from alerts.dispatch.config import DispatchConfig
from alerts.dispatch.outbox import Outbox

from .helpers import Harness, M, S, at, series


def make(state_url):
    h = Harness(state_url)
    config = DispatchConfig.from_raw(
        [{"name": "jianghan", "url": "http://127.0.0.1:9/hook", "secret": "s3cret"}],
        [{"match": {"district": "江汉区"}, "receivers": ["jianghan"]}])
    outbox = Outbox(h.conn, config, clock=lambda: at("2026-11-29 12:00:00") / 1000)
    h.state.listeners.append(outbox.listener)
    return h


def deliveries(h):
    """(notice, body) of each delivery, in the order written (delivery ids are ULIDs)."""
    return [(r[0], json.loads(r[1])) for r in h.conn.execute(
        "SELECT notice, body FROM dispatch_deliveries ORDER BY delivery_id")]


def test_firing_escalated_resolved_reach_the_outbox(state_url):
    h = make(state_url)
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("bridge-0001", "bridge", "strain_ue", t0, S, [250] * 11 + [370] * 11 + [50]))
    got = deliveries(h)
    assert [n for n, _ in got] == ["firing", "escalated", "resolved"]
    body = got[0][1]
    assert body["alert"]["rule"] == "bridge.strain" and body["alert"]["severity"] == "warning"
    assert body["alert"]["started_at"] == "2026-11-29T12:00:00+08:00"
    assert body["device"]["district"] == "江汉区" and body["device"]["responsible_unit"]
    assert got[1][1]["alert"]["severity"] == "critical"
    # the engine's escalation names its cause (webhooks.md): the severity rose, from warning
    assert (got[1][1]["reason"], got[1][1]["previous_severity"]) == ("severity_raised", "warning")


def test_silenced_alerts_are_recorded_but_not_delivered(state_url):
    h = make(state_url)
    t0 = at("2026-11-29 12:00:00")
    h.state.add_silence({"device": "lighting-0001"}, t0, t0 + 3600_000, "repair crew on site", "ops")
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0 + M, M, [45]))
    [a] = h.alerts("lighting.leakage")
    assert a.silenced and deliveries(h) == []
