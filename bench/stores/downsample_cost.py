"""What one run of each downsampling CQ costs InfluxDB (not a test; see docs/PERFORMANCE.md).

    python bench/stores/downsample_cost.py [SENSORS] [--late]    (default 100)
    python bench/stores/downsample_cost.py --meters [METERS]     (default 20000)

Starts its own influxd (tests/support/influxd.py), writes 2 min of 100 Hz acceleration and
20 Hz strain of SENSORS bridge sensor points through ``InfluxDBStore.write`` (with
``[store] downsample`` on), then times each CQ's ``SELECT ... INTO`` over one run's window as the
CQ runs it (ingest/stores/influx_retention.py: 2 min for the 1 s aggregates, 10 min for the
1 min ones, here holding the same 2 min of data), three times each, and prints the best and the
slowest, the raw points read per second, and that scaled linearly to a run at full scale
(Wuhan's: 221 bridges x 8 sensor points, devices/catalogue.py). With ``--late`` the store's
clock is an hour ahead, so that every write is too late for the CQs and the store aggregates it
itself as it writes (a spool replay, a backlog): compare the write times with and without.
With ``--meters``: 26 h of hourly readings of METERS gas meters, and what a 1 min CQ of the slow
kinds over a 26 h window (the first design, for a gas meter's daily packet) costs, scaled
linearly to 500,000 meters: the reason the slow kinds are copied instead of aggregated.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ingest.model import Readings, ReadingsBuilder  # noqa: E402
from ingest.stores.influx_retention import AGG_1M, DOWNSAMPLINGS, SLOW_KINDS, Downsampling, Retention  # noqa: E402
from ingest.stores.influxdb import InfluxDBStore  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402

SECONDS = 120
FULL_SCALE_SENSORS = 221 * 8
SLOW_CQ = Downsampling("1m_slow", SLOW_KINDS, "1m", AGG_1M, "1h", "26h")  # not made: too costly


def batches(sensors: int, t0: int) -> list[Readings]:
    """One batch per second of data: every sensor's 100 accel and 20 strain samples."""
    rng = np.random.default_rng(1)
    out = []
    for s in range(SECONDS):
        b = ReadingsBuilder()
        for d in range(sensors):
            b.add_window(f"b-{d}", "bridge", "accel_ms2", t0 + s * 1000, 10.0, rng.normal(0, 0.05, 100), "汉阳区", "br")
            b.add_window(f"b-{d}", "bridge", "strain_ue", t0 + s * 1000, 50.0, rng.normal(80, 20, 20), "汉阳区", "br")
        out.append(b.build())
    return out


def main(sensors: int, late: bool) -> None:
    t0 = (time.time_ns() // 1_000_000 // 60_000 - 4) * 60_000
    with tempfile.TemporaryDirectory() as tmp, Influxd(Path(tmp)) as server:
        clock = (lambda: t0 + 3_600_000) if late else (lambda: time.time_ns() // 1_000_000)
        store = InfluxDBStore(server.url + "?timeout=600", retention=Retention("30d", True), clock=clock)
        data = batches(sensors, t0)
        n = _write(store, data, f"{sensors} sensors ({SECONDS} s){' late' if late else ''}")
        for d in DOWNSAMPLINGS[:2]:  # the bridge ones
            _report(store, d, t0, t0 + SECONDS * 1000, n, FULL_SCALE_SENSORS / sensors * _seconds(d.window) / SECONDS)
        store.close()


def main_meters(meters: int) -> None:
    """26 h of hourly readings (6 metrics) of ``meters`` gas meters; the slow kinds' 1 min CQ
    over its 26 h window, scaled linearly to 500,000 meters."""
    hour = 3_600_000
    t0 = (time.time_ns() // 1_000_000 // hour - 26) * hour
    rng = np.random.default_rng(2)
    metrics = ("volume_m3", "flow_m3h", "valve_open", "battery_v", "rsrp_dbm", "temp_c")
    data = []
    for h in range(26):
        b = ReadingsBuilder()
        for m in range(meters):
            b.add_message(f"g-{m}", "gas_meter", t0 + h * hour + m % hour, metrics, rng.random(6).tolist(), "江汉区")
        data.append(b.build())
    with tempfile.TemporaryDirectory() as tmp, Influxd(Path(tmp)) as server:
        plain = InfluxDBStore(f"{server.url}-plain?timeout=600")  # no [store] downsample: no copy
        _write(plain, data, f"{meters} gas meters (26 h, hourly) without downsample")
        plain.close()
        store = InfluxDBStore(server.url + "?timeout=600", retention=Retention("30d", True))
        n = _write(store, data, f"{meters} gas meters (26 h, hourly) with downsample (copied)")
        _report(store, SLOW_CQ, t0, t0 + 26 * hour, n, 500_000 / meters, runs=1)
        store.close()


def _write(store: InfluxDBStore, data: list[Readings], what: str) -> int:
    n = sum(len(b) for b in data)
    t = time.perf_counter()
    for b in data:
        store.write(b)
    print(f"wrote {n:,} readings of {what} in {time.perf_counter() - t:.1f} s")
    return n


def _report(store: InfluxDBStore, d, start: int, end: int, n: int, scale: float, runs: int = 3) -> None:
    """Time ``d``'s query over [start, end) ``runs`` times; print it and a run at full scale."""
    where = f"WHERE time >= {start}ms AND time < {end}ms"
    times = [_timed(store, d.select(store.database, "autogen", where)) for _ in range(runs)]
    best = min(times)
    runs_per_hour = 3600 / _seconds(d.every)
    full = best * scale
    print(f"{d.name}: {best:.2f} s (slowest of {runs}: {max(times):.2f} s) for {n:,} readings "
          f"({n / best:,.0f}/s); a run at full scale ({d.window} window) ~{full:.0f} s, {runs_per_hour:.0f} runs/h: "
          f"influxd busy {full * runs_per_hour / 36:.0f}% of the time")


def _timed(store: InfluxDBStore, statement: str) -> float:
    t = time.perf_counter()
    for _ in store._select([statement], post=True):
        pass
    return time.perf_counter() - t


def _seconds(duration: str) -> float:
    from devices.durations import parse_duration_ms

    return parse_duration_ms(duration) / 1000


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--meters" in sys.argv[1:]:
        main_meters(int(args[0]) if args else 20_000)
    else:
        main(int(args[0]) if args else 100, "--late" in sys.argv[1:])
