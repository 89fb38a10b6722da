"""CPU cost of the waveform features (ingest/features.py) on the ingest path, in one process.

    python bench/ingest/features_cost.py [--windows 20000] [--repeats 7]

The real pipeline (decoder, batch build, rule engine with the built-in pack, DuckDB store) takes
the same 100 Hz windows of 100 samples (50 bridge accelerometers) with ``[ingest]
waveform_features`` on and off, alternately; the process CPU time of each run is printed, and the
medians. CPU time, not wall time, so that other load on the machine matters less than it does to
``bench/ingest/run.py`` (which measures the whole node against Mosquitto).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alerts.engine import RuleEngine  # noqa: E402
from alerts.rules import RulePack  # noqa: E402
from alerts.store import AlertState  # noqa: E402
from devices.db import connect  # noqa: E402
from devices.model import Device  # noqa: E402
from devices.registry import Registry  # noqa: E402
from ingest import features  # noqa: E402
from ingest.events import EventLog  # noqa: E402
from ingest.pipeline import Pipeline  # noqa: E402
from ingest.quarantine import Quarantine  # noqa: E402
from ingest.stores.base import open_store  # noqa: E402


def run(enabled: bool, windows: int = 20_000, devs: int = 50) -> tuple[float, float, int]:
    features.ENABLED = enabled
    root = Path(tempfile.mkdtemp())
    st = root / "s.db"
    reg = Registry(connect(st))
    reg.upsert([Device(f"bridge-{i:03d}", "bridge", "江汉区", asset_id="a") for i in range(devs)])
    alerts = AlertState(connect(st), tz="Asia/Shanghai")
    eng = RuleEngine(RulePack.load(), alerts, attrs=Registry(connect(st)).attrs_snapshot, tz="Asia/Shanghai")
    store = open_store(f"duckdb:///{root}/r.duckdb")
    p = Pipeline(store=store, registry=reg, quarantine=Quarantine(connect(st)), events=EventLog(connect(st)),
                 rules=eng, max_batch_readings=500_000, max_batch_messages=20_000)
    rng = np.random.default_rng(7)
    t0 = int(time.time() * 1000) - 20 * 86_400_000
    msgs = []
    for i in range(windows):
        d = i % devs
        body = {"ts": t0 + (i // devs) * 1000, "interval_ms": 10,
                "series": {"accel_ms2": np.round(rng.normal(0, 0.02, 100), 4).tolist()}}
        msgs.append((f"city/bridge/bridge-{d:03d}/telemetry", json.dumps(body, separators=(",", ":")).encode()))
    c0, w0 = time.process_time(), time.perf_counter()
    for k in range(0, windows, 5000):
        for t, pl in msgs[k:k + 5000]:
            p.submit(t, pl, received_ms=t0 + 10**9)
        p.flush()
    c1, w1 = time.process_time(), time.perf_counter()
    n = store.count()
    store.close()
    return c1 - c0, w1 - w0, n

def build_cost(windows: int, repeats: int = 9) -> tuple[float, float]:
    """Least time (µs per window) to build a batch of ``windows`` accel windows into readings, with
    and without the derived readings (computed and appended as the write stage does)."""
    from ingest.model import Readings, ReadingsBuilder

    rng = np.random.default_rng(1)
    vals = [rng.normal(0, 0.02, 100) for _ in range(windows)]

    def builder() -> ReadingsBuilder:
        b = ReadingsBuilder()
        for i, v in enumerate(vals):
            b.add_window(f"bridge-{i % 50:03d}", "bridge", "accel_ms2", 1000 * (i // 50), 10.0, v, "江汉区", "a")
        return b

    best = {True: float("inf"), False: float("inf")}
    for _ in range(repeats):
        for en in (True, False):
            b = builder()
            t = time.perf_counter()
            if en:
                wins = features.waveform_windows(b)
                Readings.concat([b.build(), features.window_readings(wins)])
            else:
                b.build()
            best[en] = min(best[en], (time.perf_counter() - t) / windows * 1e6)
    return best[True], best[False]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    on, off = build_cost(args.windows)
    print(f"batch build: {on:.2f} µs per window with the features, {off:.2f} without (+{on - off:.2f}; least of 9)")
    res: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for en in (True, False):
            c, w, n = run(en, args.windows)
            res[en].append(c)
            print(f"features={'on' if en else 'off'}: CPU {c:.2f} s, wall {w:.2f} s, {n:,} readings stored", flush=True)
    for en in (True, False):
        runs = sorted(res[en])
        print(f"features {'on' if en else 'off'}: least CPU {runs[0]:.2f} s ({1e6 * runs[0] / args.windows:.1f} µs per "
              f"window), median {runs[len(runs) // 2]:.2f} s; runs {[round(x, 2) for x in res[en]]}")


if __name__ == "__main__":
    main()
