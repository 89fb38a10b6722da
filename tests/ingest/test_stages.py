"""The pipeline's two stages (rules, then the write) and what rides on them.

- an alert's notice is committed while the store write of the batch before it is still in
  progress (rules do not wait for the store), and acknowledgements still wait for both, in
  the order received;
- batches the rules passed on while the store was busy are merged into one write;
- last-seen times are written at most every ``seen_interval_ms``, at flush and at stop;
- writers of one state DB in one process queue on its lock instead of failing busy;
- the rule engine's ``process`` and ``tick`` take turns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

from alerts.engine import RuleEngine
from alerts.rules import RulePack
from alerts.store import AlertState
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect, write_transaction
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.duckdb import DuckDBStore
from tests.support.wait import wait_for

NOW = 1_764_403_200_000


class GatedStore:
    """A real DuckDB store whose writes wait for ``gate`` (a slow store, observable)."""

    def __init__(self, inner: DuckDBStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.batches: list[int] = []

    def write(self, batch):
        self.writing.set()
        assert self.gate.wait(20), "test gate never opened"
        self.batches.append(len(batch))
        return self.inner.write(batch)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _node(tmp_path, store, **kw):
    state = tmp_path / "state.db"
    devices = [Device(f"l-{i}", "lighting", "江汉区") for i in range(20)]
    Registry(connect(state)).upsert(devices)
    alerts = AlertState(connect(state), tz="Asia/Shanghai")
    rules = kw.pop("rules", None) or RuleEngine(RulePack.load(), alerts, tz="Asia/Shanghai")
    woken = threading.Event()
    p = Pipeline(store=store, registry=Registry(connect(state)), quarantine=Quarantine(connect(state)),
                 events=EventLog(connect(state)), metrics=IngestMetrics(), rules=rules,
                 after_rules=woken.set, linger_ms=1, **kw)
    return p, alerts, woken, state


def _send(p: Pipeline, i: int, ma: float = 5.0, ts: int = NOW, acks: list[int] | None = None) -> None:
    """Cabinet l-{i} reports ``ma`` of leakage current at ``ts``; its ack appends ``i`` to ``acks``."""
    payload = json.dumps({"ts": ts, "metrics": {"leakage_ma": ma}}).encode()
    p.submit(f"city/lighting/l-{i}/telemetry", payload,
             ack=None if acks is None else (lambda: acks.append(i)), received_ms=NOW)


def test_rules_run_while_the_store_write_before_is_in_progress(tmp_path):
    store = GatedStore(DuckDBStore(tmp_path / "r.duckdb"))
    p, alerts, woken, _ = _node(tmp_path, store)
    acks: list[int] = []
    p.start()
    try:
        _send(p, 0, acks=acks)  # ordinary reading: its batch goes to the (blocked) store
        assert store.writing.wait(10)
        woken.clear()
        _send(p, 1, 45.0, acks=acks)  # an alarm (lighting.leakage > 30 mA, immediate)
        # the alarm's rules ran and committed while the first batch's write is still held
        assert woken.wait(10)
        assert [(a.rule, a.device_id) for a in alerts.open_alerts()] == [("lighting.leakage", "l-1")]
        assert acks == []  # nothing acknowledged before its readings are stored
        store.gate.set()
        assert wait_for(lambda: len(acks) == 2, 10)
        assert acks == [0, 1]  # in the order received
    finally:
        store.gate.set()
        p.stop()
    assert store.inner.count() == 2


def test_the_dispatcher_is_woken_only_by_a_batch_that_changed_an_alert(tmp_path):
    p, alerts, woken, _ = _node(tmp_path, DuckDBStore(tmp_path / "r.duckdb"))
    acks: list[int] = []
    p.start()
    try:
        _send(p, 0, acks=acks)  # ordinary reading: nothing to send
        assert wait_for(lambda: acks == [0], 10)
        assert not woken.is_set()
        _send(p, 1, 45.0, acks=acks)  # an alarm
        assert woken.wait(10)
        assert [a.device_id for a in alerts.open_alerts()] == ["l-1"]
    finally:
        p.stop()


def test_batches_that_waited_for_the_store_are_written_as_one(tmp_path):
    store = GatedStore(DuckDBStore(tmp_path / "r.duckdb"))
    p, _, _, _ = _node(tmp_path, store)
    acks: list[int] = []
    p.start()
    try:
        _send(p, 0, acks=acks)
        assert store.writing.wait(10)
        for k in range(1, 6):  # five more batches (linger 1 ms) while the first write is held
            _send(p, k, ts=NOW + k, acks=acks)
            time.sleep(0.02)
        assert wait_for(lambda: p.pending_messages() == 0, 5)  # all evaluated, waiting for the store
        store.gate.set()
        assert wait_for(lambda: len(acks) == 6, 10)
    finally:
        store.gate.set()
        p.stop()
    assert acks == list(range(6))
    assert store.batches == [1, 5]  # the five that waited went in one write
    assert store.inner.count() == 6


def test_merged_writes_are_bounded_by_batch_readings(tmp_path):
    store = GatedStore(DuckDBStore(tmp_path / "r.duckdb"))
    p, _, _, _ = _node(tmp_path, store, max_batch_readings=2)
    p.start()
    try:
        _send(p, 0)
        assert store.writing.wait(10)
        for k in range(1, 6):
            _send(p, k, ts=NOW + k)
            time.sleep(0.02)
        assert wait_for(lambda: p.pending_messages() == 0, 5)
        store.gate.set()
        assert wait_for(lambda: store.inner.count() == 6, 10)
    finally:
        store.gate.set()
        p.stop()
    # the first write held one; the five that waited went in writes of at most 2 readings, merged
    assert store.batches[0] == 1 and sum(store.batches) == 6
    assert max(store.batches) == 2 and len(store.batches) < 6


def test_last_seen_is_written_at_most_every_interval_and_at_flush(tmp_path):
    skipped = [0.0]  # the test moves the pipeline's monotonic clock forward
    p, _, _, state = _node(tmp_path, DuckDBStore(tmp_path / "r.duckdb"), seen_interval_ms=60_000,
                           monotonic=lambda: time.monotonic() + skipped[0])
    reader = Registry(connect(state))
    for k in range(3):
        _send(p, k, ts=NOW + k)
        p.flush()  # flush writes them (tests, shutdown)
        assert reader.last_seen_map()[f"l-{k}"] == NOW + k
    calls = []
    real = p.registry.mark_seen
    p.registry.mark_seen = lambda seen: (calls.append(dict(seen)), real(seen))
    p.start()
    acks: list[int] = []
    try:
        for k in range(3, 6):
            _send(p, k, ts=NOW + k, acks=acks)
        # a batch is acknowledged after its last-seen times were offered to the registry
        assert wait_for(lambda: len(acks) == 3, 10)
        assert calls == []  # within the interval: not yet
        assert "l-4" not in reader.last_seen_map()
        skipped[0] += 60.0  # a minute later, the idle write stage writes them
        assert wait_for(lambda: calls, 10)
    finally:
        p.stop()
    assert calls == [{"l-3": NOW + 3, "l-4": NOW + 4, "l-5": NOW + 5}]  # once: nothing left for the stop
    assert reader.last_seen_map()["l-5"] == NOW + 5


def test_last_seen_is_written_at_stop(tmp_path):
    p, _, _, state = _node(tmp_path, DuckDBStore(tmp_path / "r.duckdb"), seen_interval_ms=60_000)
    acks: list[int] = []
    p.start()
    try:
        _send(p, 1, ts=NOW + 1, acks=acks)
        assert wait_for(lambda: acks == [1], 10)
        assert "l-1" not in Registry(connect(state)).last_seen_map()  # within the interval
    finally:
        p.stop()
    assert Registry(connect(state)).last_seen_map()["l-1"] == NOW + 1


def test_writers_of_one_process_queue_instead_of_failing_busy(tmp_path):
    path = tmp_path / "s.db"
    a, b = connect(path), connect(path)
    a.execute("PRAGMA busy_timeout=0")  # without the lock, b's BEGIN IMMEDIATE would fail at once
    b.execute("PRAGMA busy_timeout=0")
    a.execute("CREATE TABLE t (x INTEGER)")
    order: list[str] = []
    inside = threading.Event()

    def hold():
        with write_transaction(a):
            a.execute("INSERT INTO t VALUES (1)")
            inside.set()
            time.sleep(0.3)
            order.append("a")

    th = threading.Thread(target=hold)
    th.start()
    assert inside.wait(5)
    with write_transaction(b):  # waits for a's commit on the lock: no "database is locked"
        b.execute("INSERT INTO t VALUES (2)")
        order.append("b")
    th.join()
    assert order == ["a", "b"]
    assert sorted(x for (x,) in a.execute("SELECT x FROM t")) == [1, 2]
    # a plain sqlite3 connection has no lock: SQLite's own locking applies
    plain = sqlite3.connect(path, isolation_level=None)
    with write_transaction(plain):
        plain.execute("INSERT INTO t VALUES (3)")
    assert a.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_a_failed_write_transaction_rolls_back_and_releases_the_lock(tmp_path):
    path = tmp_path / "s.db"
    a, b = connect(path), connect(path)
    a.execute("CREATE TABLE t (x INTEGER)")
    try:
        with write_transaction(a):
            a.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not a.in_transaction
    with write_transaction(b):
        b.execute("INSERT INTO t VALUES (2)")
    assert [x for (x,) in a.execute("SELECT x FROM t")] == [2]


def test_process_and_tick_take_turns(tmp_path):
    state = tmp_path / "state.db"
    alerts = AlertState(connect(state), tz="Asia/Shanghai")
    engine = RuleEngine(RulePack.load(), alerts, tz="Asia/Shanghai")
    inside = threading.Event()
    release = threading.Event()
    real = engine._process

    def slow_process(batch, events):
        inside.set()
        assert release.wait(10)
        return real(batch, events)

    engine._process = slow_process
    from ingest.model import Readings
    t1 = threading.Thread(target=engine.process, args=(Readings.empty(),))
    t1.start()
    assert inside.wait(5)
    done = threading.Event()
    t2 = threading.Thread(target=lambda: (engine.tick(NOW, {}), done.set()))
    t2.start()
    assert not done.wait(0.3)  # tick waits while process runs
    release.set()
    t1.join(5)
    assert done.wait(5)
    t2.join(5)


def test_last_seen_goes_in_chunks_so_the_write_lock_is_held_briefly(tmp_path, monkeypatch):
    import ingest.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "SEEN_CHUNK", 2)
    p, _, _, state = _node(tmp_path, DuckDBStore(tmp_path / "r.duckdb"))
    calls = []
    real = p.registry.mark_seen
    p.registry.mark_seen = lambda seen: (calls.append(sorted(seen)), real(seen))
    for k in range(5):
        _send(p, k, ts=NOW + k)
    p.flush()
    assert calls == [["l-0", "l-1"], ["l-2", "l-3"], ["l-4"]]
    assert Registry(connect(state)).last_seen_map() == {f"l-{k}": NOW + k for k in range(5)}


def test_a_message_is_acknowledged_after_the_rule_engines_checkpoint(tmp_path):
    """A node's engine saves window aggregates at checkpoints (alerts/engine.py, deferred mode):
    when a message is acknowledged, what it added to its station's hourly mean is durable, and
    a checkpoint the state DB refuses holds the acknowledgement back until it succeeds."""
    state = tmp_path / "state.db"
    Registry(connect(state)).upsert([Device("n-1", "noise", "江汉区")])
    engine = RuleEngine(RulePack.load(), AlertState(connect(state)), tz="Asia/Shanghai", deferred=True)
    retrying = threading.Event()

    def sleep(s: float) -> None:  # the pipeline's pause between two attempts of a write
        retrying.set()
        time.sleep(s)

    p, _, _, _ = _node(tmp_path, DuckDBStore(tmp_path / "r.duckdb"), rules=engine, sleep=sleep)
    acked: list[tuple[int, int]] = []  # (message, readings in the saved mean when it was acknowledged)

    def saved() -> int:
        with sqlite3.connect(state) as c:
            row = c.execute("SELECT n FROM rule_acc WHERE device_id = 'n-1'").fetchone()
        return row[0] if row else 0

    def send(i: int) -> None:
        payload = json.dumps({"ts": NOW + i * 1000, "metrics": {"pm10_ugm3": 100.0}}).encode()
        p.submit("city/noise/n-1/telemetry", payload, ack=lambda: acked.append((i, saved())), received_ms=NOW)

    p.start()
    try:
        for i in range(3):
            send(i)
            assert wait_for(lambda n=i + 1: len(acked) == n, 10)
        with sqlite3.connect(state) as c:
            c.execute("CREATE TRIGGER refuse BEFORE INSERT ON rule_acc"
                      " BEGIN SELECT RAISE(ABORT, 'full'); END")
        send(3)
        assert retrying.wait(10)  # stored, evaluated, the checkpoint refused: retried with backoff
        assert len(acked) == 3 and p.store.count() == 4  # not acknowledged
        with sqlite3.connect(state) as c:
            c.execute("DROP TRIGGER refuse")
        assert wait_for(lambda: len(acked) == 4, 10)
    finally:
        p.stop()
    assert acked == [(0, 1), (1, 2), (2, 3), (3, 4)]
