"""Lifecycle guarantees: batch-size independence, idempotency, restart, one transaction; each on
both state-DB engines (the ``state_url`` fixture: SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest

from alerts.errors import AlertNotFound, AlertsError, InvalidSilence
from alerts.rules import RulePack
from devices import db

from .helpers import H, Harness, M, S, at, batch, deliveries, notice_keys, series, signature


def run_batches(h: Harness, rows, events, size: int) -> None:
    for part, evs in deliveries(rows, events, size):
        h.engine.process(batch(part), evs)


def test_reference_stream_raises_the_expected_alerts(reference):
    sig, _ = reference
    got = {(s[0], s[2], s[3]) for s in sig}
    assert got == {
        ("noise.night_laeq", "resolved", "major"), ("noise.night_lmax", "resolved", "warning"),
        ("dust.pm10", "firing", "major"), ("bridge.strain", "resolved", "critical"),
        ("bridge.overload", "resolved", "critical"), ("gas.volume_backwards", "resolved", "major"),
        ("gas.continuous_flow", "resolved", "major"), ("gas.tamper", "firing", "critical"),
        ("fume.purifier_off", "resolved", "major"), ("fume.concentration", "resolved", "warning"),
        ("lighting.voltage", "resolved", "warning"),
    }


# PostgreSQL: many small transactions and one large (the sizes between are the engine's concern)
@pytest.mark.parametrize(("state_url", "size"), [*[("sqlite", n) for n in (1, 7, 250, 5000)],
                                                 ("postgresql", 7), ("postgresql", 5000)], indirect=["state_url"])
def test_batch_size_does_not_change_the_alerts(state_url, stream, reference, size):
    rows, events = stream
    h = Harness(state_url)
    run_batches(h, rows, events, size)
    assert signature(h.alerts()) == reference[0]
    assert notice_keys(h.notices) == reference[1]


def test_processing_twice_is_idempotent(state_url, fresh_state, stream, reference):
    rows, events = stream
    h = Harness(state_url)
    for _ in range(2):
        h.engine.process(batch(rows), events)
    assert signature(h.alerts()) == reference[0]
    # and batch by batch, each one delivered twice (a crash before the MQTT ack)
    h2 = Harness(fresh_state())
    evs = list(events)
    for i in range(0, len(rows), 400):
        part = batch(rows[i:i + 400])
        now = [e for e in evs if e.ts <= rows[min(i + 399, len(rows) - 1)].ts]
        evs = [e for e in evs if e not in now]
        h2.engine.process(part, now)
        h2.engine.process(part, now)
    assert signature(h2.alerts()) == reference[0]
    assert notice_keys(h2.notices) == reference[1]


@pytest.mark.parametrize("split_at", ["2026-11-29 23:03:30", "2026-11-29 23:12:00", "2026-11-29 23:52:10"])
def test_restart_gives_the_same_alerts(state_url, stream, reference, split_at):
    rows, events = stream
    cut = at(split_at)
    first = [r for r in rows if r.ts <= cut]
    rest = [r for r in rows if r.ts > cut]
    h = Harness(state_url)
    h.engine.process(batch(first), [e for e in events if e.ts <= cut])
    states = {a.rule: a.state for a in h.alerts()}
    h = h.reopen()  # restart: a new engine on the same state DB
    h.engine.process(batch(rest), [e for e in events if e.ts > cut])
    assert signature(h.alerts()) == reference[0]
    if split_at == "2026-11-29 23:03:30":
        assert states["noise.night_laeq"] == "pending"  # restart inside its `for` window
    if split_at == "2026-11-29 23:12:00":
        assert states["noise.night_laeq"] == "firing"
        assert states["fume.purifier_off"] == "pending"


def test_restart_does_not_duplicate_or_lose_a_pending_duration(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 23:00:00")
    h.feed(series("noise-0001", "noise", "laeq_db", t0, M, [60] * 3))  # pending 2 min
    h = h.reopen()
    h.feed(series("noise-0001", "noise", "laeq_db", t0 + 3 * M, M, [60] * 3))  # 5 min reached
    [a] = h.alerts("noise.night_laeq")
    assert a.state == "firing" and a.started_ms == t0 and a.fired_ms == t0 + 5 * M
    h = h.reopen()
    h.feed(series("noise-0001", "noise", "laeq_db", t0 + 6 * M, M, [60] * 3))
    assert len(h.alerts("noise.night_laeq")) == 1 and h.notices == []


def test_listener_runs_inside_the_transaction_and_a_failure_commits_nothing(state_url, fresh_state):
    seen = []

    def outbox(conn, notice) -> None:
        seen.append(conn.in_transaction)
        conn.execute("CREATE TABLE IF NOT EXISTS test_outbox (alert TEXT, status TEXT)")
        conn.execute("INSERT INTO test_outbox VALUES (?, ?)", (notice.alert["id"], notice.status))

    h = Harness(state_url, listeners=[outbox])
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0, M, [45]))
    assert seen == [True]
    assert h.conn.execute("SELECT status FROM test_outbox").fetchall()[0][0] == "firing"

    failing = {"on": True}

    def broken(conn, notice):
        if failing["on"]:
            raise RuntimeError("outbox full")

    h2 = Harness(fresh_state(), listeners=[broken])
    rows = series("toilet-0001", "toilet", "consumables_pct", t0, M, [15])
    rows += series("noise-0001", "noise", "laeq_db", at("2026-11-29 23:00:00"), M, [60] * 3)
    with pytest.raises(RuntimeError):
        h2.feed(rows)
    assert h2.alerts() == [] and h2.conn.execute("SELECT count(*) FROM rule_streams").fetchone()[0] == 0
    failing["on"] = False  # the same batch again (it was not acknowledged): same result as first time
    h2.feed(rows)
    assert {(a.rule, a.state) for a in h2.alerts()} == {("toilet.consumables", "firing"),
                                                         ("noise.night_laeq", "pending")}


def test_one_open_alert_per_rule_and_device(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("lighting-0001", "lighting", "lamps_failed", t0, M, [1, 2, 3, 0, 4]))
    got = h.alerts("lighting.lamp_fault")
    assert [a.state for a in got] == ["resolved", "firing"]
    with pytest.raises(db.DBError):
        a = got[1]
        h.conn.execute("INSERT INTO alerts (id, rule, device_id, kind, state, severity, started_ms)"
                       " VALUES ('a-dup', ?, ?, 'lighting', 'firing', 'warning', 0)", (a.rule, a.device_id))


def test_acknowledge(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("lighting-0001", "lighting", "door_open", t0, M, [1, 1]))
    [a] = h.alerts("lighting.door_open")
    got = h.state.ack(a.id, "duty-officer-wang", t0 + 5 * M, note="on my way")
    assert (got.state, got.acked_by, got.acked_ms) == ("acknowledged", "duty-officer-wang", t0 + 5 * M)
    assert got.history[-1].change == "acknowledged" and got.history[-1].note == "on my way"
    assert h.notices[-1].status == "acknowledged"
    assert h.notices[-1].alert["acknowledged_by"] == "duty-officer-wang"
    assert h.state.ack(a.id, "someone-else", t0 + 6 * M).acked_by == "duty-officer-wang"
    h.feed(series("lighting-0001", "lighting", "door_open", t0 + 2 * M, M, [0]))
    assert h.state.get(a.id).state == "resolved" and h.notices[-1].status == "resolved"
    with pytest.raises(AlertsError):
        h.state.ack(a.id, "x", t0)
    with pytest.raises(AlertNotFound):
        h.state.ack("a-nope", "x", t0)


def test_silences(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    s = h.state.add_silence({"rule": "lighting.leakage", "district": "江汉区"}, t0, t0 + H,
                            "cabinet under repair", "ops-li")
    assert s.id.startswith("s-") and s.active(t0)
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0 + M, M, [45, 5]))
    h.feed(series("lighting-0002", "lighting", "lamps_failed", t0 + M, M, [1]))
    h.feed(series("lighting-0003", "lighting", "leakage_ma", t0 + 2 * H, M, [45]))  # after the silence
    by_dev = {a.device_id: a for a in h.alerts()}
    assert by_dev["lighting-0001"].silenced and not by_dev["lighting-0002"].silenced
    assert not by_dev["lighting-0003"].silenced
    assert [(n.status, n.silenced) for n in h.notices if n.device["id"] == "lighting-0001"] == [
        ("firing", True), ("resolved", True)]
    for bad in ({}, {"colour": "red"}, {"severity": "purple"}, {"kind": "tram"}):
        with pytest.raises(InvalidSilence):
            h.state.add_silence(bad, t0, t0 + H, "x", "y")
    with pytest.raises(InvalidSilence):
        h.state.add_silence({"rule": "x"}, t0, t0, "x", "y")


def test_list_alerts_pages_newest_first(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    for i in range(5):
        h.feed(series(f"toilet-000{i}", "toilet", "consumables_pct", t0 + i * M, M, [10]))
    items, nxt = h.state.list_alerts("firing", 2)
    assert [a.device_id for a in items] == ["toilet-0004", "toilet-0003"] and nxt
    items2, nxt2 = h.state.list_alerts("firing", 2, nxt)
    items3, nxt3 = h.state.list_alerts("firing", 2, nxt2)
    assert [a.device_id for a in items2 + items3] == ["toilet-0002", "toilet-0001", "toilet-0000"]
    assert nxt3 is None and h.state.count_alerts("firing") == 5 and h.state.count_alerts("resolved") == 0
    with pytest.raises(AlertsError):
        h.state.list_alerts("burning", 2)


def test_pending_alerts_are_listed_with_their_summary_and_future_id(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 23:14:05")
    h.feed(series("noise-0001", "noise", "laeq_db", t0, M, [61.3, 62.0]))
    [p] = h.state.list_alerts("pending", 10)[0]
    assert (p.rule, p.severity, p.started_ms, p.value) == ("noise.night_laeq", "major", t0, 61.3)
    assert p.summary == "Night construction noise 61.3 dB(A) over the 55 dB(A) limit (GB 12523-2011)"
    assert h.state.get(p.id).state == "pending" and h.state.count_alerts("pending") == 1
    with pytest.raises(AlertsError, match="pending"):
        h.state.ack(p.id, "officer", t0 + M)
    h.feed(series("noise-0001", "noise", "laeq_db", t0 + 2 * M, M, [60] * 4))
    a = h.state.get(p.id)  # the same id once it fires
    assert a.state == "firing" and [x.change for x in a.history] == ["pending", "firing"]
    assert h.state.count_alerts("pending") == 0


def test_restart_keeps_each_meters_previous_volume(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 00:00:00")
    h.feed(series("gas_meter-0001", "gas_meter", "volume_m3", t0, H, [100.0, 100.5]))
    h = h.reopen()
    h.feed(series("gas_meter-0001", "gas_meter", "volume_m3", t0 + 2 * H, H, [99.0]))
    [a] = h.alerts("gas.volume_backwards")
    assert a.state == "firing" and a.value == pytest.approx(-1.5)


def test_an_open_alert_without_engine_state_is_adopted_not_duplicated(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0, M, [45]))
    h.conn.execute("DELETE FROM rule_streams")  # e.g. lost or hand-edited
    h = h.reopen()
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0 + M, M, [50, 5]))
    [a] = h.alerts("lighting.leakage")
    assert a.state == "resolved" and a.ended_ms == t0 + 2 * M


def test_one_state_shared_by_the_engine_and_api_threads(state_url):
    import threading

    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    errors = []

    def operator():
        try:
            for _ in range(200):
                for a in h.state.list_alerts("firing", 50)[0]:
                    h.state.ack(a.id, "officer", t0 + H)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    th = threading.Thread(target=operator)
    th.start()
    for i in range(100):
        h.feed(series(f"toilet-{i:04d}", "toilet", "consumables_pct", t0 + i * S, S, [10, 50]))
    th.join()
    assert errors == []
    assert h.state.count_alerts("resolved") == 100


def test_alerts_of_rules_switched_off_are_resolved_at_start_and_their_state_deleted(state_url, tmp_path):
    h = Harness(state_url)
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0, M, [45]))
    h.feed(series("lighting-0002", "lighting", "door_open", t0, M, [1, 1]))
    h.feed(series("lighting-0003", "lighting", "lamps_failed", t0, M, [2]))
    h.feed(series("gas_meter-0001", "gas_meter", "volume_m3", t0, H, [100.0, 100.5]))
    [door] = h.alerts("lighting.door_open")
    h.state.ack(door.id, "duty-officer-wang", t0 + 5 * M)
    off = tmp_path / "off.yaml"
    off.write_text("version: 1\nrules:\n"
                   + "".join(f"  - id: {r}\n    enabled: false\n"
                             for r in ("lighting.leakage", "lighting.door_open", "gas.volume_backwards")),
                   encoding="utf-8")
    h.conn.close()
    h = Harness(state_url, pack=RulePack.load([off]))  # restart with the rules off

    def rows(table: str, rule: str) -> int:
        return h.conn.execute(f"SELECT count(*) FROM {table} WHERE rule = ?", (rule,)).fetchone()[0]

    assert rows("rule_streams", "lighting.leakage") == 1 and rows("rule_prev", "gas.volume_backwards") == 1
    got = h.engine.retire_removed_rules(t0 + 10 * M)
    assert sorted(t.rule for t in got) == ["lighting.door_open", "lighting.leakage"]
    for rule in ("lighting.leakage", "lighting.door_open"):
        [a] = h.alerts(rule)
        assert (a.state, a.ended_ms, a.history[-1].change) == ("resolved", t0 + 10 * M, "resolved")
    assert sorted((n.status, n.alert["rule"]) for n in h.notices) == [
        ("resolved", "lighting.door_open"), ("resolved", "lighting.leakage")]
    assert [a.state for a in h.alerts("lighting.lamp_fault")] == ["firing"]  # still loaded: untouched
    assert rows("rule_streams", "lighting.leakage") == 0 and rows("rule_streams", "lighting.door_open") == 0
    assert rows("rule_prev", "gas.volume_backwards") == 0 and rows("rule_streams", "lighting.lamp_fault") == 1
    assert h.engine.retire_removed_rules(t0 + 11 * M) == []  # once is enough
    h.feed(series("lighting-0001", "lighting", "leakage_ma", t0 + 12 * M, M, [50]))
    assert [a.state for a in h.alerts("lighting.leakage")] == ["resolved"]  # the rule is off
