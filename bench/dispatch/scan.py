"""The dispatcher's outbox reads and a notice's outbox write, on each state-DB engine.

One scan is what the dispatcher does on every wake-up (alerts/dispatch/dispatcher.py ``_scan``):
a claim per receiver with room (pending, then scheduled deliveries; each checked for an older
pending delivery of its alert) and the next due time of every receiver. The outbox holds
``--open`` deliveries pending to a dead receiver (its backlog) and as many delivered to two
healthy ones; the write is one notice's rows in their own transaction (what the rule engine adds
to its commit). PostgreSQL: a throw-away cluster (tests/support/postgres.py: Debian's
PostgreSQL, fsync off, so its commits are not comparable with SQLite's synchronous=FULL ones).

    PYTHONPATH=$PWD python bench/dispatch/scan.py [--open 2000] [--repeat 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alerts.dispatch import DispatchConfig, Dispatcher, DispatchMetrics, Outbox  # noqa: E402
from alerts.statedb import target_of  # noqa: E402
from devices.db import connect, write_transaction  # noqa: E402
from tests.dispatch.conftest import make_notice  # noqa: E402
from tests.support.postgres import Postgres, fresh_schema  # noqa: E402

RECEIVERS = [{"name": n, "url": f"http://127.0.0.1:1/{n}", "secret": "s"} for n in ("a", "b", "dead")]
ROUTES = [{"match": {"severity": "critical"}, "receivers": ["a", "dead"]}, {"match": {}, "receivers": ["b", "dead"]}]


def timed(fn, repeat: int) -> tuple[float, float]:
    """p50 and p99 of ``fn()`` in ms."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    p50, p99 = np.percentile(times, [50, 99])
    return p50, p99


def run(url: str, label: str, n_open: int, repeat: int) -> None:
    config = DispatchConfig.from_raw(RECEIVERS, ROUTES)
    conn = connect(target_of(url))
    box = Outbox(conn, config)
    with write_transaction(conn):
        for i in range(n_open):
            box.listener(conn, make_notice(alert_id=f"a-{i}", severity="critical" if i % 2 else "warning"))
        conn.execute("UPDATE dispatch_deliveries SET state = 'delivered' WHERE receiver != 'dead'")
    dispatcher = Dispatcher(url, config, metrics=DispatchMetrics(CollectorRegistry()))
    wants = {n: (16, frozenset()) for n in ("a", "b", "dead")}
    now = time.time()
    scan = timed(lambda: dispatcher._scan(conn, wants, now, False), repeat)
    ids = iter(range(repeat))

    def write() -> None:
        with write_transaction(conn):
            box.listener(conn, make_notice(alert_id=f"b-{next(ids)}"))

    notice = timed(write, repeat)
    print(f"{label}: a scan of 3 receivers ({n_open:,} pending to a dead one): p50 {scan[0]:.2f} ms, "
          f"p99 {scan[1]:.2f} ms; a notice's outbox transaction: p50 {notice[0]:.2f} ms, p99 {notice[1]:.2f} ms")
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--open", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/state.db", "SQLite", args.open, args.repeat)
        with Postgres(Path(tmp) / "pg") as pg, fresh_schema(pg, "bench") as url:
            run(url, "PostgreSQL", args.open, args.repeat)


if __name__ == "__main__":
    main()
