"""The alert path goes first: the priority gate (ingest/priority.py), the pipeline's intake and
write stage stepping aside while the rules stage works, and the write stage's linger."""

from __future__ import annotations

import threading
import time

import pytest

from ingest.priority import Gate
from ingest.stores.duckdb import DuckDBStore
from tests.support.wait import wait_for

from .test_stages import NOW, GatedStore, _node, _send

# -- the gate ------------------------------------------------------------------------------------

def test_pause_returns_at_once_when_nothing_holds_the_gate():
    gate = Gate(max_wait_s=5)
    start = time.monotonic()
    for _ in range(10_000):
        gate.pause()
    assert time.monotonic() - start < 1
    assert gate.paused_s == 0 and not gate.held


def test_pause_waits_for_the_holder_and_resumes_when_it_leaves():
    gate = Gate(max_wait_s=5)
    gate.enter()
    done = threading.Event()
    th = threading.Thread(target=lambda: (gate.pause(), done.set()))
    th.start()
    assert not done.wait(0.3)  # held: the bulk thread waits
    gate.leave()
    assert done.wait(2)  # released: it goes on at once, long before max_wait_s
    th.join()
    assert 0.25 < gate.paused_s < 3


def test_a_stuck_holder_slows_the_bulk_thread_but_never_stops_it():
    gate = Gate(max_wait_s=0.05, min_run_s=0.2)
    gate.enter()  # never left
    start = time.monotonic()
    gate.pause()  # waits max_wait_s
    waited = time.monotonic() - start
    assert 0.04 < waited < 1
    start = time.monotonic()
    for _ in range(1000):
        gate.pause()  # within min_run_s: no waiting
    assert time.monotonic() - start < 0.15
    time.sleep(0.25)
    start = time.monotonic()
    gate.pause()  # min_run_s over: waits again, bounded
    assert 0.04 < time.monotonic() - start < 1
    gate.leave()


def test_holds_nest_and_zero_wait_turns_the_gate_off():
    gate = Gate()
    with gate.hold():
        with gate.hold():
            assert gate.held
        assert gate.held
    assert not gate.held
    with pytest.raises(RuntimeError):
        gate.leave()
    off = Gate(max_wait_s=0)
    off.enter()
    start = time.monotonic()
    off.pause()
    assert time.monotonic() - start < 0.01 and off.paused_s == 0
    with pytest.raises(ValueError):
        Gate(max_wait_s=-1)


# -- the pipeline --------------------------------------------------------------------------------

class BlockingRules:
    """A rule sink whose evaluation waits for ``release`` (an evaluation in progress, observable)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.evaluating = threading.Event()

    def process(self, batch, events):
        self.evaluating.set()
        assert self.release.wait(20), "test never released the rules"
        return []

    def checkpoint(self):
        pass


def test_the_intake_steps_aside_while_the_rules_stage_evaluates(tmp_path):
    rules = BlockingRules()
    p, _, _, _ = _node(tmp_path, DuckDBStore(tmp_path / "r.duckdb"), rules=rules, gate=Gate(max_wait_s=10))
    p.start()
    try:
        _send(p, 0)
        assert rules.evaluating.wait(10)
        submitted = threading.Event()
        th = threading.Thread(target=lambda: (_send(p, 1, ts=NOW + 1), submitted.set()))
        th.start()
        assert not submitted.wait(0.3)  # the rules stage holds the gate: the intake waits
        rules.release.set()
        assert submitted.wait(5)
        th.join()
        assert wait_for(lambda: p.store.count() == 2, 10)
    finally:
        rules.release.set()
        p.stop()
    assert p.gate.paused_s >= 0.25


def test_the_write_stage_gathers_batches_for_write_linger(tmp_path):
    store = GatedStore(DuckDBStore(tmp_path / "r.duckdb"))
    store.gate.set()  # never held: it only records the writes
    p, _, _, _ = _node(tmp_path, store, write_linger_ms=1500)
    acks: list[int] = []
    p.start()
    try:
        for i in range(4):  # four batches (linger 1 ms), evaluated one by one
            _send(p, i, ts=NOW + i, acks=acks)
            time.sleep(0.05)
        assert wait_for(lambda: p.pending_messages() == 0, 5)
        time.sleep(0.2)
        assert store.batches == [] and acks == []  # still gathering: nothing written or acknowledged
        assert wait_for(lambda: len(acks) == 4, 10)
    finally:
        p.stop()
    assert store.batches == [4] and acks == [0, 1, 2, 3]


def test_flush_and_stop_do_not_wait_for_the_write_linger(tmp_path):
    store = GatedStore(DuckDBStore(tmp_path / "r.duckdb"))
    store.gate.set()  # never held: it only records the writes
    p, _, _, _ = _node(tmp_path, store, write_linger_ms=10_000)
    acks: list[int] = []
    p.start()
    try:
        _send(p, 0, acks=acks)
        assert wait_for(lambda: p.pending_messages() == 0, 5)
        start = time.monotonic()
        p.flush()
        assert time.monotonic() - start < 3 and acks == [0]
        _send(p, 1, ts=NOW + 1, acks=acks)
    finally:
        start = time.monotonic()
        p.stop()
    assert time.monotonic() - start < 3
    assert acks == [0, 1] and store.inner.count() == 2
