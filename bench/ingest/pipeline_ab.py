"""Two decoders through the real ingest path, in one process, alternating: decode -> rules -> DuckDB.

    PYTHONPATH=<tree> python bench/ingest/pipeline_ab.py OTHER/decode.py [--case single|waveform]
        [--messages N] [--rounds R]

A ``Pipeline`` as a node wires it (DuckDB store, the built-in rule pack, registry, quarantine and
event log on one SQLite state DB; no broker): each round feeds N messages (run.py's payloads, new
times each round so none is a duplicate) through ``submit_many`` in reads of 200 messages and
``flush`` every 5,000, once with this tree's decoder and once with ``OTHER/decode.py``'s (loaded
beside it), the order alternating by round. Reported: wall and CPU seconds per round (median,
min, each round's CPU) and this/against of the medians of the per-round ratios and of the
fastest rounds (the least disturbed by other load: on a shared VM a round's CPU time varies 2x).
Closer to the node than ``bench/ingest/decode.py`` (it includes what the rules and the store
cost), and without the broker and the second process whose scheduling makes
``bench/ingest/run.py``'s rates vary 2x on a shared VM.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from decode import load  # bench/ingest/decode.py, beside this script: the other decoder, from a file

import ingest.decode
from alerts.engine import RuleEngine
from alerts.rules import RulePack
from alerts.store import AlertState
from devices.db import connect
from devices.model import Device
from devices.registry import Registry
from ingest.events import EventLog
from ingest.pipeline import DeviceLookup, Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.duckdb import DuckDBStore

TZ = "Asia/Shanghai"


def messages(case: str, devices: list[Device], n: int, t0: int, rng: np.random.Generator) -> list[tuple]:
    out = []
    for i in range(n):
        d = devices[i % len(devices)]
        if case == "waveform":
            body = {"ts": t0 + i * 20, "seq": i, "interval_ms": 10,
                    "series": {"accel_ms2": np.round(rng.normal(0, 0.02, 100), 4).tolist()}}
        else:
            body = {"ts": t0 + i, "seq": i, "metrics": {"laeq_db": round(float(rng.uniform(45, 68)), 1)}}
        out.append((f"city/{d.kind}/{d.device_id}/telemetry", json.dumps(body, separators=(",", ":")).encode(), None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("against", help="another decode.py")
    ap.add_argument("--case", choices=("single", "waveform"), default="single")
    ap.add_argument("--messages", type=int, help="per round (default: 100,000 single, 10,000 waveform)")
    ap.add_argument("--rounds", type=int, default=14)
    args = ap.parse_args()
    n = args.messages or (10_000 if args.case == "waveform" else 100_000)
    root = Path(tempfile.mkdtemp(prefix="citywatch-pipeline-ab-"))
    state = root / "state.db"
    kind = "bridge" if args.case == "waveform" else "noise"
    devices = [Device(f"{kind}-bench-{i:03d}", kind, "江汉区", asset_id=f"asset-{i:03d}") for i in range(50)]
    Registry(connect(state)).upsert(devices)
    store = DuckDBStore(root / "readings.duckdb")
    registry = Registry(connect(state))
    engine = RuleEngine(RulePack.load(), AlertState(connect(state), tz=TZ), tz=TZ)
    p = Pipeline(store=store, registry=registry, quarantine=Quarantine(connect(state)),
                 events=EventLog(connect(state)), rules=engine,
                 max_batch_readings=500_000 if args.case == "waveform" else 100_000)
    decoders = {"this": ingest.decode.Decoder(DeviceLookup(registry)),
                "against": load(args.against).Decoder(DeviceLookup(registry))}
    print(f"this: {ingest.decode.__file__}; against: {args.against}; {args.case}, {n:,} messages x {args.rounds} "
          "rounds each", flush=True)
    rng = np.random.default_rng(7)
    now = int(time.time() * 1000)
    wall: dict[str, list[float]] = {"this": [], "against": []}
    cpu: dict[str, list[float]] = {"this": [], "against": []}
    for r in range(args.rounds):
        for k in (("against", "this") if r % 2 == 0 else ("this", "against")):
            t0 = now - 20 * 86_400_000 + (2 * r + (k == "this")) * 3_600_000  # new times: no duplicates
            msgs = messages(args.case, devices, n, t0, rng)
            p.decoder = decoders[k]
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            for s in range(0, n, 200):
                p.submit_many(msgs[s:s + 200], received_ms=now)
                if p.pending_messages() >= 5000:
                    p.flush()
            p.flush()
            wall[k].append(time.perf_counter() - w)
            cpu[k].append(time.process_time() - c)
    expected = n * args.rounds * 2 * (100 if args.case == "waveform" else 1)
    if store.count() != expected:
        raise SystemExit(f"store holds {store.count()} readings, expected {expected}")
    for k in ("this", "against"):
        print(f"{k}: wall s median {statistics.median(wall[k]):.3f} min {min(wall[k]):.3f}; "
              f"CPU s median {statistics.median(cpu[k]):.3f} min {min(cpu[k]):.3f}; "
              f"CPU s per round {' '.join(f'{x:.2f}' for x in cpu[k])}")
    ratio_w = statistics.median(a / b for a, b in zip(wall["this"], wall["against"], strict=True))
    ratio_c = statistics.median(a / b for a, b in zip(cpu["this"], cpu["against"], strict=True))
    print(f"time this/against, median of rounds: wall {ratio_w:.3f}, CPU {ratio_c:.3f}; "
          f"of the fastest rounds: wall {min(wall['this']) / min(wall['against']):.3f}, "
          f"CPU {min(cpu['this']) / min(cpu['against']):.3f}")
    store.close()


if __name__ == "__main__":
    main()
