"""Store and spool throughput, store side only (not a test; the end-to-end benchmark is bench/).

    python bench/stores/run.py [duckdb] [influxdb] [spool]

Writes synthetic batches shaped like the consumer's: 100 Hz bridge waveform windows of 100
samples (200 devices), and single-reading noise messages of 4 metrics (5,000 devices); then
the first half of them again (a redelivery: 0 new). Prints readings/s per batch size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ingest.model import Readings, ReadingsBuilder  # noqa: E402
from ingest.spool import Spool  # noqa: E402
from ingest.stores.base import open_store  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402

T0 = 1_779_999_960_000
NOISE = ("laeq_db", "lmax_db", "pm10_ugm3", "pm25_ugm3")


def waveforms(batches: int, per_batch: int, devices: int = 200) -> list[Readings]:
    out, j = [], 0
    for _ in range(batches):
        b = ReadingsBuilder()
        for _ in range(per_batch // 100):
            b.add_series(f"br-{j % devices}", "bridge", "accel_ms2", T0 + (j // devices) * 1000 + np.arange(100) * 10,
                         np.random.rand(100), "汉阳区", "长江大桥")
            j += 1
        out.append(b.build())
    return out


def messages(batches: int, per_batch: int, devices: int = 5000) -> list[Readings]:
    out, j = [], 0
    for _ in range(batches):
        b = ReadingsBuilder()
        for i in range(per_batch):
            d = j % devices
            ts = T0 + (j // devices) * 60_000 + d
            for m in NOISE:
                b.add(f"n-{d}", "noise", m, ts, 50.0 + i % 7, "江汉区", "")
            j += 1
        out.append(b.build())
    return out


def run(url: str, batches: list[Readings], label: str) -> None:
    store = open_store(url)
    n = sum(len(b) for b in batches)
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    dt = time.perf_counter() - t
    again = batches[: max(1, len(batches) // 2)]
    t = time.perf_counter()
    assert sum(store.write(b) for b in again) == 0
    dt2 = time.perf_counter() - t
    print(f"{label:<44} batch {len(batches[0]):>7,}: {n / dt:>11,.0f} readings/s new, "
          f"{sum(len(b) for b in again) / dt2:>11,.0f} redelivered", flush=True)
    store.close()


def main(which: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if "duckdb" in which:
            for k, per in enumerate((20_000, 100_000, 500_000)):
                run(f"duckdb:///{tmp_path}/w{k}.duckdb", waveforms(4_000_000 // per, per), "duckdb: waveform windows")
            for k, per in enumerate((5_000, 25_000)):
                run(f"duckdb:///{tmp_path}/s{k}.duckdb", messages(400_000 // per, per),
                    "duckdb: single-reading messages (4 metrics)")
        if "influxdb" in which:
            with Influxd(tmp_path / "influxd") as server:
                run(f"influxdb://127.0.0.1:{server.port}/w", waveforms(10, 20_000), "influxdb: waveform windows")
                run(f"influxdb://127.0.0.1:{server.port}/s", messages(20, 5_000),
                    "influxdb: single-reading messages (4 metrics)")
        if "spool" in which:
            spool = Spool(tmp_path / "spool", 10**10)
            for label, batches in (("waveform", waveforms(20, 100_000)), ("messages", messages(20, 5_000))):
                n = sum(len(b) for b in batches)
                t = time.perf_counter()
                for b in batches:
                    spool.append(b)
                dt = time.perf_counter() - t
                size = spool.depth()[1]
                store = open_store(f"duckdb:///{tmp_path}/drain-{label}.duckdb")
                t = time.perf_counter()
                spool.drain(store)
                dt2 = time.perf_counter() - t
                store.close()
                print(f"spool {label:<9}: append {n / dt:>11,.0f} readings/s ({len(batches) / dt:.0f} fsync'd "
                      f"batches/s, {size / n:.1f} bytes/reading); drain into duckdb {n / dt2:>11,.0f} readings/s")


if __name__ == "__main__":
    main(sys.argv[1:] or ["duckdb", "influxdb", "spool"])
