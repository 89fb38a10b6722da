"""Leases and membership on the state database (citywatch/cluster.py), on both engines; and
(d) of issue 19: two nodes racing for one lease never both hold it."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time

import pytest

from citywatch.cluster import Leases, Membership, fair_share
from devices import db


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def leases(url: str, owner: str, ttl_s: float = 5.0, monotonic=time.monotonic) -> Leases:
    return Leases(db.connect(db.parse_url(url)), owner, ttl_s, monotonic=monotonic)


def test_one_owner_at_a_time_and_the_epoch_fences(state_url):
    a, b = leases(state_url, "a"), leases(state_url, "b")
    got = a.acquire("rules/p0")
    assert got is not None and got.epoch == 1
    assert b.acquire("rules/p0") is None  # held
    renewed = a.acquire("rules/p0")
    assert renewed.epoch == 1 and renewed.expires_ms >= got.expires_ms  # a renewal keeps the epoch
    with db.write_transaction(a.conn) as c:
        assert a.holds(c, renewed)
    a.release(renewed)
    taken = b.acquire("rules/p0")
    assert taken is not None and taken.epoch == 2  # a change of owner: the next epoch
    with db.write_transaction(a.conn) as c:
        assert not a.holds(c, renewed)  # a's commit would be refused now
    assert a.holders("rules/") == {"rules/p0": ("b", 2)}
    assert a.holders("dispatch") == {}


def test_an_expired_lease_is_taken_over(state_url):
    a, b = leases(state_url, "a", ttl_s=0.2), leases(state_url, "b", ttl_s=30)
    first = a.acquire("dispatch")
    assert b.acquire("dispatch") is None
    deadline = time.monotonic() + 5
    taken = None
    while taken is None and time.monotonic() < deadline:
        taken = b.acquire("dispatch")
    assert taken is not None and taken.epoch == first.epoch + 1
    assert time.monotonic() >= first.valid_until  # a counted it lost before b could take it
    assert a.acquire("dispatch") is None


def test_a_renewal_keeps_the_epoch_and_never_takes_the_lease_again(state_url):
    a, b = leases(state_url, "a", ttl_s=0.2), leases(state_url, "b", ttl_s=30)
    got = a.acquire("rules/p1")
    again = a.renew(got)
    assert again.epoch == got.epoch and again.expires_ms >= got.expires_ms
    time.sleep(0.3)
    assert a.renew(again) is None  # it ran out: renewing is not taking it again
    taken = b.acquire("rules/p1")
    assert taken is not None and taken.epoch == got.epoch + 1
    assert a.renew(again) is None and b.renew(taken) is not None


def test_a_long_write_holds_back_a_takeover_not_a_renewal_or_a_heartbeat(pg_state_url):
    """A writer's long transaction (a tick raising 30,000 absence alerts took seconds in the city
    benchmark) must not hold back the renewal of a lease its node holds, nor its heartbeat:
    renewals queued behind it ran past the lease time and the node dropped its own partitions.
    Taking a lease over still waits for it, so a fenced commit in flight is never overtaken."""
    writer = db.connect(db.parse_url(pg_state_url))
    a, b = leases(pg_state_url, "a", ttl_s=5), leases(pg_state_url, "b", ttl_s=5)
    member = Membership(db.connect(db.parse_url(pg_state_url)), "n1", "127.0.0.1:1", ["rules"], ttl_s=5)
    held = a.acquire("rules/p0")
    a.release(a.acquire("rules/p1"))
    started = threading.Event()

    def long_write() -> None:
        with db.write_transaction(writer):
            started.set()
            time.sleep(2.0)

    t = threading.Thread(target=long_write)
    t.start()
    try:
        assert started.wait(5)
        t0 = time.monotonic()
        assert a.renew(held) is not None
        member.beat()
        assert time.monotonic() - t0 < 1.0
        assert b.acquire("rules/p1") is not None
        assert time.monotonic() - t0 > 1.5  # the takeover waited for the writer's commit
    finally:
        t.join()


def test_the_holder_counts_its_lease_lost_before_it_expires(state_url):
    clock = Clock()
    a = leases(state_url, "a", ttl_s=10, monotonic=clock)
    got = a.acquire("x")
    assert got.valid_until == pytest.approx(1000 + 10 - 2)  # ttl minus a fifth, from the call's start


def test_membership(state_url):
    conn = db.connect(db.parse_url(state_url))
    one = Membership(conn, "n1", "127.0.0.1:1", ["ingest"], ttl_s=5)
    two = Membership(db.connect(db.parse_url(state_url)), "n2", "127.0.0.1:2", ["rules", "dispatch"], ttl_s=5)
    one.beat()
    two.beat()
    assert [m.node_id for m in one.live()] == ["n1", "n2"]
    assert [m.node_id for m in one.live("rules")] == ["n2"]
    two.leave()
    assert [m.node_id for m in one.live()] == ["n1"]
    assert fair_share(64, 3) == 22 and fair_share(8, 0) == 8


def _race(url: str, owner: str, seconds: float, seed: int, out) -> None:
    """One node: take, renew, pause past its lease, release, at random, for ``seconds``; report
    each time it believed it held the lease, on the machine's monotonic clock."""
    rng = random.Random(seed)
    mine = leases(url, owner, ttl_s=0.25)
    held = []
    end = time.monotonic() + seconds
    lease = None
    while time.monotonic() < end:
        got = mine.renew(lease) if lease is not None else mine.acquire("rules/p7")  # as Duty.tick does
        now = time.monotonic()
        if got is not None and now < got.valid_until:
            held.append((now, got.valid_until, got.epoch))
        lease = got
        roll = rng.random()
        if lease is not None and roll < 0.1:
            # the work stops first, then the lease goes: the holding (each renewal of it) ends
            # at the release call
            now = time.monotonic()
            held = [(s, min(e, now), ep) if ep == lease.epoch else (s, e, ep) for s, e, ep in held]
            mine.release(lease)
            lease = None
            time.sleep(0.1)  # a node that gave work back does not take it again at once
        elif lease is not None and roll < 0.2:
            time.sleep(0.3)  # the holder stalls longer than its lease (a GC pause, a swapped-out process)
        else:
            time.sleep(rng.uniform(0, 0.05))
    out.put((owner, held))


@pytest.mark.slow
def test_two_nodes_racing_for_one_lease_never_both_hold_it(state_url):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(state_url, f"node{i}", 3.0, i, out)) for i in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    intervals = sorted((start, end, epoch, owner) for owner, held in results.items() for start, end, epoch in held)
    assert all(results.values()), {o: len(h) for o, h in results.items()}  # both held it
    a, b = (sorted(held) for held in results.values())
    for s1, e1, ep1 in a:
        for s2, e2, ep2 in b:
            assert e1 <= s2 or e2 <= s1, f"both held it: {s1}-{e1} (epoch {ep1}), {s2}-{e2} ({ep2})"
            assert (ep1 < ep2) == (s1 < s2)  # the later owner has the larger epoch
    assert len({ep for _, _, ep, _ in intervals}) >= 3  # it changed hands
