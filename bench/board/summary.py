"""How long the board's server-side reads take over a city-sized registry.

Registers ``--devices`` devices (the sample Wuhan fleet's kinds and districts, ``devices.fleet``),
marks most of them seen at spread ages, then times, over ``--repeat`` runs (median):
the tiles (``GET /api/v1/summary``: the presence pass over the registry, then a summary between
passes), the first page of the device list, and one page of a district as the district view reads it.

    python bench/board/summary.py --devices 500000

Prints one line per figure; docs/BOARD.md quotes them with the date and commit.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from dashboards.board.tiles import Tiles
from devices.db import connect
from devices.fleet import sample_fleet
from devices.registry import Registry


def timed(fn, repeat: int) -> tuple[float, object]:
    runs, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    city = sample_fleet(1.0, seed=1)  # every kind at the city's figures, then a sample of them
    fleet = random.Random(0).sample(city, min(args.devices, len(city)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        reg = Registry(connect(path))
        t0 = time.perf_counter()
        reg.upsert(fleet)
        now = int(time.time() * 1000)
        rng = random.Random(1)
        reg.mark_seen({d.device_id: now - rng.randrange(0, 4 * 86_400_000) for d in fleet if rng.random() < 0.9})
        print(f"registered {len(fleet):,} devices in {time.perf_counter() - t0:.1f} s")
        reg.conn.execute("CREATE TABLE IF NOT EXISTS alerts (kind TEXT, severity TEXT, state TEXT,"
                         " district TEXT)")  # the alert state's table, empty here
        conn = connect(path, readonly=True)
        tiles = Tiles(conn, now_ms=lambda: now)
        s, out = timed(lambda: tiles.summary(fresh=True), args.repeat)
        busiest = max(out["districts"], key=out["districts"].get)
        print(f"the presence pass (first GET /api/v1/summary, then every 30 s in the background): "
              f"{s * 1000:.0f} ms median of {args.repeat}")
        s, _ = timed(lambda: tiles.summary(), args.repeat)
        print(f"GET /api/v1/summary between passes: {s * 1000:.2f} ms")
        s, _ = timed(lambda: tiles.summary(frozenset({busiest})), args.repeat)
        print(f"... for a token of one district ({busiest}, {out['districts'][busiest]:,} devices): {s * 1000:.2f} ms")
        ro = Registry(conn)
        s, _ = timed(lambda: ro.list(limit=100), args.repeat)
        print(f"first page of GET /api/v1/devices (100 devices): {s * 1000:.2f} ms")
        s, _ = timed(lambda: ro.list(district=busiest, limit=5000, after=None), args.repeat)
        print(f"one district-view page (5000 devices of {busiest}): {s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
