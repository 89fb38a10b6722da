"""The rule engine's deferred mode: window aggregates and previous values saved by checkpoints.

A node's engine does not save them in every call's transaction (under ordinary traffic every
batch changes every dust station's hourly mean and no alert) but at a checkpoint, which the
ingest pipeline takes before it acknowledges the readings. These tests hold it to what that
must keep: a crash anywhere between checkpoints, with the unacknowledged batches delivered
again, gives exactly the alerts and notices of a run without a crash; a failed checkpoint or
a rolled-back call loses nothing; state DBs written before ``rule_acc`` existed still load.
Each runs on both state-DB engines (``state_url``) but what is SQLite's alone (its files of
older releases, its WAL and fsyncs).
"""

from __future__ import annotations

from contextlib import closing

import pytest

from alerts.statedb import target_of
from devices import db

from .helpers import Harness, M, at, batch, deliveries, notice_keys, series, signature

PM10 = ("noise-0002", "noise", "pm10_ugm3")


def _acc_rows(url) -> list[tuple]:
    """The rows of ``rule_acc`` as another connection sees them (what is committed)."""
    with closing(db.connect(target_of(url))) as c:
        return [tuple(r) for r in c.execute("SELECT rule, device_id, bucket, sum, n, last_ts FROM rule_acc")]


def test_a_crash_anywhere_between_checkpoints_gives_the_same_alerts(state_url, fresh_state, stream, reference):
    rows, events = stream
    batches = deliveries(rows, events, 25)
    every = 4  # the pipeline's acknowledgement follows a checkpoint, here after every 4th batch
    differed = 0
    # a crash after every third batch (every sixth on PostgreSQL: each restart there costs a new
    # schema and the replay's round trips, and every position relative to a checkpoint still occurs)
    crashes = range(1, len(batches), 6 if state_url.startswith("postgresql") else 3)
    for crash_after in crashes:
        path = fresh_state()
        h = Harness(path, deferred=True)
        acked = 0
        for i, (part, evs) in enumerate(batches[:crash_after]):
            h.engine.process(batch(part), evs)
            if (i + 1) % every == 0:
                h.engine.checkpoint()
                acked = i + 1
        notices = list(h.notices)
        in_memory = sorted((rt.rule.id, st.device_id, *st.acc) for rt in h.engine._rts
                           for st in rt.streams.values() if st.acc is not None)
        differed += in_memory != sorted(_acc_rows(path))
        h = h.reopen()  # killed: the broker delivers again what was not acknowledged
        for i, (part, evs) in enumerate(batches[acked:], acked):
            h.engine.process(batch(part), evs)
            if (i + 1) % every == 0:
                h.engine.checkpoint()
        assert signature(h.alerts()) == reference[0], f"crash after batch {crash_after}"
        assert notice_keys(notices + h.notices) == reference[1], f"crash after batch {crash_after}"
    assert differed > len(crashes) // 4  # the crashes did lose aggregates that only the redelivery restored


def test_a_batch_that_changes_no_alert_writes_nothing_until_the_checkpoint(state_url):
    h = Harness(state_url, deferred=True)
    t0 = at("2026-11-30 10:00:00")
    h.feed(series(*PM10, t0, M, [100.0] * 10))
    changes = _writes(h.conn)
    h.feed(series(*PM10, t0 + 10 * M, M, [120.0] * 10))
    assert _writes(h.conn) == changes and _acc_rows(h.path) == []
    assert h.engine.checkpoint() == 1
    [(rule, device, _, total, n, last_ts)] = _acc_rows(h.path)
    assert (rule, device, total, n, last_ts) == ("dust.pm10", "noise-0002", 2200.0, 20, t0 + 19 * M)
    assert h.engine.checkpoint() == 0  # nothing changed since


def _writes(conn) -> tuple:
    """What the engine has written: every row of its tables and the alert store's, and on SQLite
    the count of rows the connection changed (total_changes, which PostgreSQL lacks)."""
    tables = ("rule_streams", "rule_acc", "rule_prev", "alerts", "pending_alerts", "alert_history")
    rows = tuple(sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {t}")) for t in tables)
    return rows, (None if db.is_postgres(conn) else conn.total_changes)


def test_without_deferral_each_call_saves_its_aggregates(state_url):
    h = Harness(state_url)
    t0 = at("2026-11-30 10:00:00")
    h.feed(series(*PM10, t0, M, [100.0] * 10))
    assert [r[4] for r in _acc_rows(h.path)] == [10]
    assert h.engine.checkpoint() == 0


def _refuse_inserts(conn, table: str, refuse: bool = True) -> None:
    """A trigger that makes every insert into ``table`` fail with 'disk full' (or drops it)."""
    if not refuse:
        conn.execute(f"DROP TRIGGER refuse ON {table}" if db.is_postgres(conn) else "DROP TRIGGER refuse")
    elif db.is_postgres(conn):
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
                     " AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$")
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END")


def test_a_failed_checkpoint_keeps_its_changes_for_the_next(state_url):
    h = Harness(state_url, deferred=True)
    t0 = at("2026-11-30 10:00:00")
    h.feed(series(*PM10, t0, M, [100.0] * 10))
    _refuse_inserts(h.conn, "rule_acc")
    with pytest.raises(db.DBError, match="disk full"):
        h.engine.checkpoint()
    h.feed(series(*PM10, t0 + 10 * M, M, [100.0] * 5))  # a change made after the failed one
    _refuse_inserts(h.conn, "rule_acc", refuse=False)
    assert h.engine.checkpoint() == 1
    assert [r[3:5] for r in _acc_rows(h.path)] == [(1500.0, 15)]


def _mean_alert_of_an_hour(h: Harness, t0: int) -> float:
    """Feeds the rest of the hour (200) and the next hour's first reading; the mean that fired."""
    h.feed(series(*PM10, t0 + 20 * M, M, [200.0] * 40))
    h.feed(series(*PM10, t0 + 60 * M, M, [50.0]))
    [a] = h.alerts("dust.pm10")
    return a.value


def test_a_rolled_back_call_keeps_the_aggregates_not_saved_yet(state_url):
    refuse = []

    def outbox(conn, notice):
        if refuse:
            raise RuntimeError("the outbox refused the notice")

    h = Harness(state_url, deferred=True, listeners=[outbox])
    t0 = at("2026-11-30 10:00:00")
    h.feed(series(*PM10, t0, M, [100.0] * 20))  # in memory only
    refuse.append(True)
    with pytest.raises(RuntimeError):
        h.feed(series("lighting-0001", "lighting", "leakage_ma", t0 + 20 * M, M, [45.0]))
    refuse.clear()
    assert h.alerts("lighting.leakage") == []  # rolled back, and the engine reloaded its state
    assert _mean_alert_of_an_hour(h, t0) == pytest.approx((20 * 100 + 40 * 200) / 60)


def test_a_state_db_from_before_rule_acc_keeps_its_aggregates(tmp_path):
    """SQLite only: state DBs that old are SQLite files."""
    h = Harness(tmp_path / "s.db")
    t0 = at("2026-11-30 10:00:00")
    h.feed(series(*PM10, t0, M, [100.0] * 20))
    # as the engine saved it before: the aggregate inside the stream's row, no rule_acc row
    h.conn.executescript("""
        INSERT INTO rule_streams (rule, device_id, state, last_ts, data)
        SELECT rule, device_id, 'inactive', -4611686018427387904,
               json_object('since', json_array(NULL, NULL), 'count', json_array(0, 0), 'sev', -1,
                           'alert', NULL, 'started', NULL, 'acc', json_array(bucket, sum, n, last_ts))
        FROM rule_acc;
        DELETE FROM rule_acc;
    """)
    h = h.reopen()
    assert _mean_alert_of_an_hour(h, t0) == pytest.approx((20 * 100 + 40 * 200) / 60)


def test_deferred_commits_do_not_wait_for_the_disk_until_the_checkpoint(tmp_path, fsynced):
    """SQLite only: its WAL's fsync (PostgreSQL's commits are durable when they return)."""
    synced = fsynced
    assert Harness(tmp_path / "full.db").conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    h = Harness(tmp_path / "s.db", deferred=True)
    assert h.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync per commit
    assert synced == []
    h.feed(series("lighting-0001", "lighting", "leakage_ma", at("2026-11-30 10:00:00"), M, [45.0]))
    assert [a.state for a in h.alerts("lighting.leakage")] == ["firing"] and synced == []
    assert h.engine.checkpoint() == 0  # no aggregate to save, but a commit to make durable
    assert synced == [f"{tmp_path / 's.db'}-wal"]
    assert h.engine.checkpoint() == 0 and len(synced) == 1  # nothing committed since
