"""Latency from commit to receiver under a steady stream of notices, beside a dead receiver."""

from __future__ import annotations

import time

import numpy as np
import pytest

from .conftest import make_notice, wait_for


@pytest.mark.slow
def test_latency_under_load_with_a_dead_receiver(harness, receivers):
    a, b, dead = receivers(), receivers(), receivers()
    dead.down()
    h = harness([{"name": "a", "url": a.url, "secret": "k"}, {"name": "b", "url": b.url, "secret": "k"},
                 {"name": "dead", "url": dead.url, "secret": "k", "timeout": "1s"}],
                [{"match": {"severity": "critical"}, "receivers": ["a", "dead"]},
                 {"match": {}, "receivers": ["b", "dead"]}],
                backoff_base_s=1.0, backoff_cap_s=300.0, poll_interval_s=0.25)
    h.dispatcher.start()
    n, rate = 1000, 100.0
    committed: dict[str, float] = {}
    t_start = time.monotonic()
    for i in range(n):
        due = t_start + i / rate
        while time.monotonic() < due:
            time.sleep(0.0005)
        h.notify(make_notice(alert_id=f"a-{i}", severity="critical" if i % 2 else "warning"))
        committed[f"a-{i}"] = time.monotonic()
    wait_for(lambda: len(a.received()) + len(b.received()) == n, timeout=30)
    lat = np.array([hit.at - committed[hit.json["alert"]["id"]] for hit in a.received() + b.received()])
    p50, p99, worst = np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3, lat.max() * 1e3
    print(f"\n{n} notices at {rate:.0f}/s, 2 healthy + 1 dead receiver: commit -> receiver "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
    # the target is p99 < 50 ms (measured ~27 ms on an idle 2-core box); the bounds here are
    # generous because the test's own receivers share the process and the machine with others
    assert p50 < 50 and p99 < 1000
