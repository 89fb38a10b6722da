"""Why the state DB's hot writes use ``devices.sqlite.execute_values`` and not ``executemany``.

``executemany`` steps its statement once per row and gives the GIL up around each step; taking
it back waits up to the switch interval (5 ms) while another thread runs Python. This times one
transaction of ``--rows`` upserts (the shape of the rule engine's stream rows), alone and beside
a thread that only runs Python, by ``executemany``, by one ``json_each`` statement and by
``execute_values`` (multi-row VALUES).

    python bench/state_db/executemany_gil.py [--rows 256] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from devices.sqlite import connect, execute_values, write_transaction

UPSERT = ("INSERT INTO s (rule, dev, data) VALUES {values}"
          " ON CONFLICT (rule, dev) DO UPDATE SET data = excluded.data")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conn = connect(Path(tmp) / "s.db")
        conn.execute("CREATE TABLE s (rule TEXT, dev TEXT, data TEXT, PRIMARY KEY (rule, dev))")
        rows = [(f"r{i % 5}", f"dev{i:05d}", '{"acc":[1,2.5,3,4]}') for i in range(args.rows)]

        def by_executemany() -> None:
            conn.executemany(UPSERT.replace("{values}", "(?,?,?)"), rows)

        def by_json_each() -> None:
            conn.execute("INSERT INTO s (rule, dev, data) SELECT value->>0, value->>1, value->>2"
                         " FROM json_each(?) WHERE true ON CONFLICT (rule, dev) DO UPDATE SET data = excluded.data",
                         (json.dumps(rows),))

        def by_values() -> None:
            execute_values(conn, UPSERT, rows)

        ways = {"executemany": by_executemany, "json_each": by_json_each, "execute_values": by_values}

        def timed(fn) -> str:
            ms = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                with write_transaction(conn):
                    fn()
                ms.append((time.perf_counter() - t) * 1000)
            p50, p99 = np.percentile(ms, [50, 99])
            return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"

        print(f"one transaction of {args.rows} upserts, {args.repeat} times")
        for name, fn in ways.items():
            print(f"  alone                {name:15s} {timed(fn)}")
        stop = threading.Event()

        def spin() -> None:
            x = 0
            while not stop.is_set():
                x += 1

        th = threading.Thread(target=spin, daemon=True)
        th.start()
        try:
            for name, fn in ways.items():
                print(f"  beside a busy thread {name:15s} {timed(fn)}")
        finally:
            stop.set()
            th.join()


if __name__ == "__main__":
    main()
