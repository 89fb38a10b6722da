"""The alert transition function (alerts/lifecycle.py) on its own: every (state, event) pair,
written out by hand, and what each change records (history rows, notice, silenced flag)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerts.lifecycle import EVENTS, AlertEvent, InvalidTransition, Notice, transition
from alerts.model import Alert, Silence

T0 = 1_764_000_000_000
ERR = "error"
SAME = "unchanged"

# (state before, event) -> (state after, notice status) | ERR | SAME; None: no alert
TABLE = {
    (None, "pend"): ("pending", None),
    (None, "drop"): SAME,
    (None, "fire"): ("firing", "firing"),
    (None, "escalate"): ERR,
    (None, "resolve"): ERR,
    (None, "resolve_by_hand"): ERR,
    (None, "ack"): ERR,
    (None, "unack"): ERR,
    (None, "retire"): ERR,
    ("pending", "pend"): ERR,
    ("pending", "drop"): (None, None),
    ("pending", "fire"): ("firing", "firing"),
    ("pending", "escalate"): ERR,
    ("pending", "resolve"): ERR,
    ("pending", "resolve_by_hand"): ERR,
    ("pending", "ack"): ERR,
    ("pending", "unack"): ERR,
    ("pending", "retire"): (None, None),
    ("firing", "pend"): ERR,
    ("firing", "drop"): ERR,
    ("firing", "fire"): ERR,
    ("firing", "escalate"): ("firing", "escalated"),
    ("firing", "resolve"): ("resolved", "resolved"),
    ("firing", "resolve_by_hand"): ("resolved", "resolved"),
    ("firing", "ack"): ("acknowledged", "acknowledged"),
    ("firing", "unack"): SAME,
    ("firing", "retire"): ("resolved", "resolved"),
    ("acknowledged", "pend"): ERR,
    ("acknowledged", "drop"): ERR,
    ("acknowledged", "fire"): ERR,
    ("acknowledged", "escalate"): ("acknowledged", "escalated"),
    ("acknowledged", "resolve"): ("resolved", "resolved"),
    ("acknowledged", "resolve_by_hand"): ("resolved", "resolved"),
    ("acknowledged", "ack"): SAME,
    ("acknowledged", "unack"): ("firing", None),
    ("acknowledged", "retire"): ("resolved", "resolved"),
    ("resolved", "pend"): ERR,
    ("resolved", "drop"): ERR,
    ("resolved", "fire"): ERR,
    ("resolved", "escalate"): SAME,  # the engine's, after an operator resolved it by hand
    ("resolved", "resolve"): SAME,
    ("resolved", "resolve_by_hand"): ERR,
    ("resolved", "ack"): ERR,
    ("resolved", "unack"): ERR,
    ("resolved", "retire"): SAME,
}


def _alert(state: str, severity: str = "major") -> Alert:
    return Alert("a-1", "noise.night_laeq", "noise-0001", "noise", "江汉区", state, severity, False,
                 "too loud", "laeq", 61.0, 55.0, T0, None if state == "pending" else T0 + 60_000,
                 T0 + 120_000 if state == "resolved" else None,
                 "ops" if state == "acknowledged" else None, T0 + 90_000 if state == "acknowledged" else None,
                 None, {"id": "noise-0001"})


def _event(kind: str) -> AlertEvent:
    described = _alert("pending", "warning")
    return AlertEvent(kind, alert=described if kind in ("pend", "fire") else None, severity="critical",
                      summary="much too loud", value=70.0, threshold=65.0, by="ops", note="n")


def test_the_table_names_every_pair():
    states = (None, "pending", "firing", "acknowledged", "resolved")
    assert set(TABLE) == {(s, e) for s in states for e in EVENTS}


@pytest.mark.parametrize(("state", "event"), sorted(TABLE, key=str))
def test_each_state_and_event(state, event):
    before = None if state is None else _alert(state)
    expected = TABLE[(state, event)]
    if expected == ERR:
        with pytest.raises(InvalidTransition):
            transition(before, _event(event), T0 + 180_000)
        return
    out = transition(before, _event(event), T0 + 180_000)
    if expected == SAME:
        assert not out.changed and out.alert is before and out.history == () and out.notices == ()
        return
    to_state, status = expected
    assert out.changed
    assert (out.alert.state if out.alert else None) == to_state
    assert [n.status for n in out.notices] == ([status] if status else [])
    assert out.history or to_state in ("pending", None)  # every change of a fired alert is in its history


def test_firing_from_pending_records_when_the_condition_started():
    pending = replace(_alert("pending", "warning"), value=57.0)
    out = transition(pending, _event("fire"), T0 + 300_000)
    assert [(h.change, h.ts_ms, h.severity, h.value) for h in out.history] == [
        ("pending", T0, "warning", 57.0), ("firing", T0 + 300_000, "warning", 61.0)]
    assert out.alert.fired_ms == T0 + 300_000 and out.alert.started_ms == T0
    direct = transition(None, _event("fire"), T0 + 300_000)  # no pending phase (for: 0)
    assert [h.change for h in direct.history] == ["firing"]


def test_an_escalation_says_the_severity_before():
    out = transition(_alert("acknowledged", "major"), _event("escalate"), T0 + 200_000)
    assert out.notices == (Notice("escalated", "major"),)
    a = out.alert
    assert (a.state, a.severity, a.summary, a.value, a.threshold, a.acked_by) == (
        "acknowledged", "critical", "much too loud", 70.0, 65.0, "ops")


def test_resolving_without_a_reading_never_ends_before_the_alert_fired():
    fired = _alert("firing")
    by_hand = transition(fired, AlertEvent("resolve_by_hand", by="ops", note="fixed"), T0)
    assert by_hand.alert.ended_ms == fired.fired_ms
    h = by_hand.history[0]
    assert (h.change, h.ts_ms, h.value, h.by, h.note) == ("resolved", fired.fired_ms, 61.0, "ops", "fixed")
    retired = transition(fired, AlertEvent("retire"), T0 + 999_000)
    assert retired.alert.ended_ms == T0 + 999_000 and retired.history[0].value is None


def test_acknowledging_records_who_and_taking_it_back_clears_it():
    acked = transition(_alert("firing"), AlertEvent("ack", by="ops", note="on it"), T0 + 70_000).alert
    assert (acked.acked_by, acked.acked_ms, acked.ack_note) == ("ops", T0 + 70_000, "on it")
    back = transition(acked, AlertEvent("unack", by="ops"), T0 + 80_000)
    assert (back.alert.state, back.alert.acked_by, back.alert.acked_ms, back.notices) == ("firing", None, None, ())
    assert back.history[0].change == "unacknowledged"


def test_invalid_operator_events_say_why():
    with pytest.raises(InvalidTransition, match="a-1 is resolved; only a firing or acknowledged alert can be "
                                                "acknowledged"):
        transition(_alert("resolved"), AlertEvent("ack", by="ops"), T0)
    with pytest.raises(InvalidTransition, match="pending .it has not fired.; it cannot be resolved"):
        transition(_alert("pending"), AlertEvent("resolve_by_hand", by="ops"), T0)


def test_a_notifying_change_is_silenced_by_a_silence_active_at_its_time():
    s = Silence("s-1", {"severity": "critical"}, T0 + 100_000, T0 + 200_000, "works", "ops", T0)
    inside = transition(_alert("firing"), _event("escalate"), T0 + 150_000, [s])
    after = transition(_alert("firing"), _event("escalate"), T0 + 250_000, [s])
    assert inside.alert.silenced and not after.alert.silenced
    # matched on the alert after the change: a major alert is not silenced by it
    assert not transition(_alert("firing"), AlertEvent("retire"), T0 + 150_000, [s]).alert.silenced
