"""Opening the alert store and the engine's checkpoints on either state-DB engine: one URL, one
database, one transaction for both; versioned schemas; a bad URL or a newer database refused."""

from __future__ import annotations

import pytest

from alerts.checkpoints import Checkpoints
from alerts.engine import RuleEngine
from alerts.statedb import StateDB
from alerts.store import AlertState
from devices import db

from .helpers import PACK, H, M, at, batch, series


def test_one_url_opens_the_alert_store_and_the_engine_keeps_its_checkpoints_beside_it(state_url):
    alerts = AlertState(state_url)
    engine = RuleEngine(PACK, alerts)
    assert engine.checkpoints.db is alerts.db  # the same connection: one commit for both
    t0 = at("2026-11-29 12:00:00")
    engine.process(batch(series("lighting-0001", "lighting", "leakage_ma", t0, M, [45])))
    engine.process(batch(series("noise-0001", "noise", "laeq_db", at("2026-11-29 23:00:00"), M, [60])))
    # another node (or a restart) opening the same URL sees what was committed
    again = AlertState(state_url)
    assert [(a.rule, a.state) for a in again.list_alerts("firing", 10)[0]] == [("lighting.leakage", "firing")]
    assert [(a.rule, a.state) for a in again.list_alerts("pending", 10)[0]] == [("noise.night_laeq", "pending")]
    streams = {(r.rule, r.device_id): r.state for r in Checkpoints(state_url).load_streams()}
    assert streams[("lighting.leakage", "lighting-0001")] == "firing"
    assert streams[("noise.night_laeq", "noise-0001")] == "pending"
    conn = again.db.conn
    assert [db.schema_version(conn, c) for c in ("alerts", "rule_checkpoints")] == [1, 1]
    assert {"alerts", "alert_history", "pending_alerts", "rule_streams", "rule_acc"} <= db.tables(conn)


def test_a_statedb_opens_from_a_url_a_target_or_a_connection(state_url):
    target = db.parse_url(state_url)
    for how in (state_url, target, db.connect(target)):
        store = AlertState(how)
        assert isinstance(store.db, StateDB) and store.count_alerts() == 0
    shared = StateDB.open(state_url)
    assert AlertState(shared).db is shared and Checkpoints(shared).db is shared


def test_a_bad_url_is_named():
    with pytest.raises(ValueError, match="mysql://x/y"):
        AlertState("mysql://x/y")


def test_a_database_newer_than_this_release_is_refused(state_url):
    store = AlertState(state_url)
    with db.write_transaction(store.db.conn) as c:
        c.execute("UPDATE schema_versions SET version = 2 WHERE component = 'alerts'")
    with pytest.raises(db.SchemaTooNew, match="alerts tables are at version 2"):
        AlertState(state_url)


def _end_other_sessions(url: str) -> int:
    """What a PostgreSQL restart does to every session of the database but this one's."""
    conn = db.connect(db.parse_url(url))
    try:
        return conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_the_engine_carries_on_in_a_new_session_after_the_server_ended_its_own(state_url):
    alerts = AlertState(state_url)
    engine = RuleEngine(PACK, alerts)
    t0 = at("2026-11-29 12:00:00")
    engine.process(batch(series("lighting-0001", "lighting", "leakage_ma", t0, M, [45])))
    assert _end_other_sessions(state_url) >= 1
    second = batch(series("lighting-0002", "lighting", "leakage_ma", t0, M, [45]))
    try:
        engine.process(second)
    except db.DBError:  # the call that met the lost session failed (and was not acknowledged)
        engine.process(second)  # delivered again: a new session
    assert sorted(a.device_id for a in alerts.list_alerts("firing", 10)[0]) == ["lighting-0001", "lighting-0002"]


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_two_nodes_acknowledging_the_same_alerts_at_once_acknowledge_each_once(state_url):
    """Two nodes' API threads on one PostgreSQL database (an application name apart: no lock of
    this process shared, only the database's writer lock): each alert is acknowledged once, by
    whichever node came first, with one history row and one notice."""
    import threading

    alerts = AlertState(state_url)
    engine = RuleEngine(PACK, alerts)
    t0 = at("2026-11-29 12:00:00")
    engine.process(batch([r for i in range(20) for r in series(f"toilet-{i:04d}", "toilet", "consumables_pct",
                                                               t0 + i * 1000, M, [10])]))
    ids = [a.id for a in alerts.list_alerts("firing", 100)[0]]
    assert len(ids) == 20
    notices: list = []
    nodes = [AlertState(f"{state_url}&application_name=node-{n}", listeners=[lambda c, n: notices.append(n)])
             for n in (1, 2)]
    start = threading.Barrier(2)

    def operator(node: AlertState, who: str) -> None:
        start.wait()
        for aid in ids:
            node.ack(aid, who, t0 + H)

    threads = [threading.Thread(target=operator, args=(node, f"officer-{i}")) for i, node in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(n.alert["id"] for n in notices if n.status == "acknowledged") == sorted(ids)
    for aid in ids:
        a = alerts.get(aid)
        assert a.state == "acknowledged" and [h.change for h in a.history].count("acknowledged") == 1
