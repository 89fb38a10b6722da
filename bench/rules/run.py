"""Rule-engine throughput: readings/s through the full default pack on one core.

Traffic: the Wuhan fleet of catalogue.md (221 bridges x 8 sensor points, 500,000 gas meters,
30,000 fume monitors, 940 noise stations, 1,000 toilets, 2,375 lighting cabinets), each kind
at its catalogue reporting interval (bridge sensors 1 Hz, gas meters one daily packet of 24
hourly readings, fume every 3 min, the rest every minute); weigh-in-motion one vehicle per
5 s per bridge. Waveforms (accelerometer series) are left out: the engine skips metrics no
rule reads, so they would only flatter the figure. About 1 % of devices are in alarm (values
over one of their rules' thresholds), so streams go pending, fire and stay firing across batches.
The city produces about 4,100 readings/s; a 50,000-reading batch is ~12 s of it.

    python bench/rules/run.py [--batches 40] [--batch-size 50000] [--profile] [--postgres]

Measures only ``RuleEngine.process`` (state DB on disk, synchronous=FULL, one commit per
batch; ``--postgres``: in a throw-away PostgreSQL cluster of tests/support/postgres.py, fsync
off); prints readings/s, alert counts and, with --profile or below the 1,000,000/s target,
a cProfile top.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alerts.engine import RuleEngine  # noqa: E402
from alerts.rules import RulePack  # noqa: E402
from alerts.store import AlertState  # noqa: E402
from devices.catalogue import DISTRICTS, WUHAN  # noqa: E402
from devices.db import connect  # noqa: E402
from ingest.model import Readings  # noqa: E402

TARGET = 1_000_000
KIND_KEY = {"bridge": 1, "gas_meter": 2, "fume": 3, "noise": 4, "toilet": 5, "lighting": 6}
T0 = 1_795_000_000_000  # 2026-11-19, event time of the first batch

# kind -> (devices, message interval s, metrics: name -> (typical lo, hi, alarm value))
FLEET = {
    "gas_meter": (WUHAN.devices["gas_meter"], 86_400.0, {
        "volume_m3": None, "flow_m3h": (0.2, 1.2, 8.0), "valve_open": (1, 1, 1),
        "battery_v": (3.5, 3.7, 3.1), "rsrp_dbm": (-110, -80, -100), "temp_c": (5, 25, 10)}),
    "fume": (WUHAN.devices["fume"], 180.0, {
        "fume_mgm3": (0.2, 1.8, 3.5), "particulate_mgm3": (0.5, 3, 4), "nmhc_mgm3": (1, 8, 9),
        "fan_on": (1, 1, 1), "purifier_on": (1, 1, 0), "purifier_current_a": (0.4, 0.8, 0.1)}),
    "noise": (WUHAN.devices["noise"], 60.0, {
        "laeq_db": (50, 68, 78), "lmax_db": (60, 69, 85), "pm10_ugm3": (40, 140, 260),
        "pm25_ugm3": (20, 80, 150)}),
    "toilet": (WUHAN.devices["toilet"], 60.0, {
        "nh3_mgm3": (0.1, 0.9, 2.5), "h2s_mgm3": (0.001, 0.009, 0.03), "people_count": (0, 20, 5),
        "water_m3": None, "energy_kwh": None, "temp_c": (10, 25, 20), "humidity_pct": (40, 80, 60),
        "consumables_pct": (30, 100, 10)}),
    "lighting": (WUHAN.devices["lighting"], 60.0, {
        "voltage_v": (210, 230, 190), "current_a": (5, 40, 20), "power_w": (1000, 9000, 5000),
        "power_factor": (0.88, 0.98, 0.7), "energy_kwh": None, "lamp_on": (0, 1, 1),
        "lamps_failed": (0, 0, 3), "door_open": (0, 0, 1), "leakage_ma": (0, 10, 50)}),
}
BRIDGE_SENSORS = WUHAN.devices["bridge"] * WUHAN.bridge_sensors
# a bridge sensor point measures one quantity: (metric, share of sensors, typical lo, hi, alarm)
BRIDGE_POINTS = [("strain_ue", 0.4, 20, 150, 400), ("deflection_mm", 0.2, 2, 20, 70),
                 ("tilt_deg", 0.2, -0.02, 0.02, 0.3), ("bearing_kn", 0.1, 500, 3000, 3000),
                 ("temp_c", 0.1, 5, 25, 20)]


class Fleet:
    """Builds batches of the city's traffic, in event-time order, deterministic per seed."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.t = T0
        self.cursor = {k: 0 for k in FLEET}
        self.ids = {k: np.array([f"{k}-{i:06d}" for i in range(n)], dtype=object)
                    for k, (n, _, _) in FLEET.items()}
        self.ids["bridge"] = np.array([f"bridge-{i:05d}" for i in range(BRIDGE_SENSORS)], dtype=object)
        self.districts = {k: np.array([DISTRICTS[i % len(DISTRICTS)] for i in range(len(v))], dtype=object)
                          for k, v in self.ids.items()}
        shares = np.cumsum([p[1] for p in BRIDGE_POINTS])
        self.bridge_point = np.searchsorted(shares, (np.arange(BRIDGE_SENSORS) % 100) / 100, side="right")
        self.rate = sum(n / iv * (24 * len(m) if k == "gas_meter" else len(m))
                        for k, (n, iv, m) in FLEET.items()) + BRIDGE_SENSORS + WUHAN.devices["bridge"] / 5 * 3

    def _cols(self, kind, dev_idx, metric, ts, value, key):
        n = len(dev_idx)
        met = np.empty(n, dtype=object)
        met[:] = metric
        kd = np.empty(n, dtype=object)
        kd[:] = kind
        # key orders rows like messages: all metrics of one device at one ts together
        return (self.ids[kind][dev_idx], kd, met, ts, value, self.districts[kind][dev_idx],
                KIND_KEY[kind] * 10_000_000 + np.asarray(key, np.int64))

    def batch(self, size: int) -> Readings:
        span_ms = int(size / self.rate * 1000)
        t, rng, parts = self.t, self.rng, []
        for kind, (n, interval, metrics) in FLEET.items():
            msgs = n * span_ms / (interval * 1000)
            k = int(msgs) + (1 if rng.random() < msgs - int(msgs) else 0)
            dev = (self.cursor[kind] + np.arange(k)) % n
            self.cursor[kind] += k
            ts = t + (np.arange(k) * span_ms // max(k, 1)).astype(np.int64)
            alarm = dev % 100 == 0
            if kind == "gas_meter":  # a daily packet: 24 hourly readings per metric
                dev = np.repeat(dev, 24)
                alarm = np.repeat(alarm, 24)
                ts = np.repeat(ts, 24) - np.tile(np.arange(23, -1, -1) * 3_600_000, k)
            # an alarmed device has one metric in alarm, chosen by its index
            alarming = [m for m, spec in metrics.items() if spec is not None]
            which = (dev // 100) % len(alarming)
            for metric, spec in metrics.items():
                if spec is None:  # cumulative counters grow with time
                    v = dev * 0.001 + (ts - T0) / 3.6e6 * 0.05 + 100
                else:
                    lo, hi, bad = spec
                    v = rng.uniform(lo, hi, len(dev)) if hi > lo else np.full(len(dev), float(lo))
                    if metric == "flow_m3h":  # households cook a few hours a day
                        v[rng.random(len(dev)) < 0.8] = 0.0
                    v[alarm & (which == alarming.index(metric))] = bad
                parts.append(self._cols(kind, dev, metric, ts, v, dev))
        # bridge sensor points at 1 Hz and weigh-in-motion
        secs = np.arange(0, span_ms, 1000)
        dev = np.tile(np.arange(BRIDGE_SENSORS), len(secs))
        ts = t + np.repeat(secs, BRIDGE_SENSORS).astype(np.int64)
        point = self.bridge_point[dev]
        for p, (metric, _, lo, hi, bad) in enumerate(BRIDGE_POINTS):
            sel = point == p
            d = dev[sel]
            v = rng.uniform(lo, hi, len(d))
            v[d % 100 == 0] = bad
            parts.append(self._cols("bridge", d, metric, ts[sel], v, d))
        nv = int(WUHAN.devices["bridge"] * span_ms / 5000)
        d = rng.integers(0, WUHAN.devices["bridge"], nv) * WUHAN.bridge_sensors
        tv = t + rng.integers(0, span_ms, nv).astype(np.int64)
        gross = rng.uniform(5, 45, nv)
        gross[rng.random(nv) < 0.01] = 55
        for metric, v in (("gross_t", gross), ("axles", rng.integers(2, 7, nv).astype(float)),
                          ("speed_kmh", rng.uniform(20, 80, nv))):
            parts.append(self._cols("bridge", d, metric, tv, v, d + 1_000_000))
        self.t += span_ms
        cols = [np.concatenate([p[i] for p in parts]) for i in range(7)]
        order = np.lexsort((cols[6], cols[3]))  # by ts, then message
        empty = np.empty(len(order), dtype=object)
        empty[:] = ""
        return Readings(cols[0][order], cols[1][order], cols[2][order], cols[3][order],
                        cols[4][order].astype(np.float64), cols[5][order], empty)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=50_000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--state-dir", default=None,
                    help="where the state DB goes (default: a temporary directory; /dev/shm "
                         "takes fsync latency out of the figure)")
    ap.add_argument("--postgres", action="store_true",
                    help="the state DB in a throw-away PostgreSQL cluster (Debian's postgresql)")
    args = ap.parse_args()

    fleet = Fleet()
    print(f"fleet traffic {fleet.rate:,.0f} readings/s; building {args.batches} batches of ~{args.batch_size:,}")
    batches = [fleet.batch(args.batch_size) for _ in range(args.batches)]
    total = sum(len(b) for b in batches)
    with tempfile.TemporaryDirectory(dir=args.state_dir) as tmp, ExitStack() as stack:
        if args.postgres:
            from tests.support.postgres import Postgres, fresh_schema

            server = stack.enter_context(Postgres(Path(tmp) / "pg"))
            state = AlertState(stack.enter_context(fresh_schema(server, "bench")))
        else:
            state = AlertState(connect(Path(tmp) / "state.db"))
        engine = RuleEngine(RulePack.load(), state)
        engine.process(batches[0])  # warm-up (first-seen devices get their slots)
        prof = cProfile.Profile() if args.profile else None
        per_batch = []
        cpu = time.process_time()
        start = time.perf_counter()
        for b in batches[1:]:
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            engine.process(b)
            if prof:
                prof.disable()
            per_batch.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        n = total - len(batches[0])
        rate = n / elapsed
        firing = state.count_alerts("firing")
        pending = state.count_alerts("pending")
        print(f"{n:,} readings in {elapsed:.2f} s on one core: {rate:,.0f} readings/s "
              f"({'meets' if rate >= TARGET else 'BELOW'} the {TARGET:,}/s target); "
              f"CPU time {cpu:.2f} s: {n / cpu:,.0f} readings per CPU-second; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        p50, p99 = np.percentile(per_batch, [50, 99]) * 1000
        size = "on PostgreSQL" if args.postgres else f"{os.path.getsize(Path(tmp) / 'state.db') / 1e6:.1f} MB"
        print(f"per batch: median {p50:.1f} ms, p99 {p99:.1f} ms; alerts firing {firing:,}, pending {pending:,}, "
              f"state DB {size}")
        # absence rules: one tick over the whole fleet's last-seen map (the registry's view)
        now = fleet.t
        rng = np.random.default_rng(2)
        last_seen = {}
        for kind, ids in fleet.ids.items():
            interval = 1.0 if kind == "bridge" else FLEET[kind][1]
            ago = rng.uniform(0, interval * 1000, len(ids)).astype(np.int64)
            ago[::200] += 10 * 86_400_000  # 0.5 % silent for 10 days
            last_seen.update(zip(ids.tolist(), (now - ago).tolist(), strict=False))
        engine.device_info = lambda d: {"kind": d.rsplit("-", 1)[0]}
        ticks = []
        for i in range(3):
            t0 = time.perf_counter()
            tr = engine.tick(now + i * 10_000, last_seen)
            ticks.append((time.perf_counter() - t0, len(tr)))
        print(f"tick over {len(last_seen):,} devices: first {ticks[0][0] * 1000:.0f} ms "
              f"({ticks[0][1]:,} offline alerts), then {ticks[1][0] * 1000:.0f} ms, {ticks[2][0] * 1000:.0f} ms")
        if prof or rate < TARGET:
            if not prof:
                prof = cProfile.Profile()
                prof.enable()
                for b in batches[1:6]:
                    engine.process(b)
                prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
