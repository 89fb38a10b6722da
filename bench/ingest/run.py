"""Ingest throughput against the broker limit, end to end (published -> durable in the store).

    python bench/ingest/run.py [--messages 100000] [--windows 20000] [--cases duckdb,influxdb,waveform]
    (``waveform-nofeatures``: the waveform case with ``[ingest] waveform_features = false``)

For each case, in one run on this machine:

1. a fresh Mosquitto (unlimited queues) and, for InfluxDB, a fresh influxd, on loopback;
2. two persistent QoS 1 sessions are registered: ``mosquitto_sub``'s and citywatch's;
3. the stream is published once (``mosquitto_pub -l``, QoS 1, several devices in parallel) and
   queued by the broker for both sessions;
4. the broker limit: ``mosquitto_sub -q 1`` drains its queue to /dev/null, timed;
5. citywatch: ``citywatch serve`` (a real subprocess, the full node: consumer, store, rule
   engine, dispatch, API) drains its queue, timed from its consumer's CONNACK (the wall-clock
   time of its "connected to" log line) to the moment its ``/metrics`` (polled every 10 ms)
   count every reading as durably stored; the count is then checked in the store.

Both read the same backlog from the same broker, so the ratio compares consumers, not
publishers. Peak RSS of the citywatch process is sampled throughout, and the CPU of citywatch
and of Mosquitto over the drain.

Where the time goes: ``--profile DIR`` runs the node under py-spy (every thread, idle included;
slower, not for figures); add ``--profile-gil`` to sample only the thread holding the GIL, i.e.
what the one interpreter spends its time on. ``python bench/profile_summary.py DIR/CASE-0.txt``
summarises a profile per thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devices.db import connect  # noqa: E402
from devices.model import Device  # noqa: E402
from devices.registry import Registry  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402
from tests.support.mosquitto import Mosquitto, free_port  # noqa: E402

DEVICES = 50


@dataclass
class Result:
    case: str
    messages: int
    readings: int
    sub_s: float
    cw_s: float
    rss_mb: float
    stored: int
    node_cpu: float  # CPU seconds of the citywatch process(es) per second of the drain
    broker_cpu: float  # the same for Mosquitto

    def row(self) -> str:
        sub_rate = self.messages / self.sub_s
        cw_rate = self.messages / self.cw_s
        return (f"| {self.case} | {self.messages:,} | {self.readings:,} | {sub_rate:,.0f} | {cw_rate:,.0f} | "
                f"{self.readings / self.cw_s:,.0f} | {cw_rate / sub_rate:.0%} | {self.rss_mb:,.0f} | "
                f"{self.node_cpu:.0%} | {self.broker_cpu:.0%} |")


def payloads(case: str, n: int, dev: int, t0: int, rng: np.random.Generator) -> tuple[list[str], int]:
    if case.startswith("waveform"):
        lines, per = [], 100
        for i in range(n):
            samples = np.round(rng.normal(0, 0.02, per), 4).tolist()
            lines.append(json.dumps({"ts": t0 + i * 1000, "seq": i, "interval_ms": 10,
                                     "series": {"accel_ms2": samples}}, separators=(",", ":")))
        return lines, per
    lines = [json.dumps({"ts": t0 + i * 1000, "seq": i, "metrics": {"laeq_db": round(float(v), 1)}},
                        separators=(",", ":"))
             for i, v in enumerate(rng.uniform(45, 68, n))]
    return lines, 1


def run_case(case: str, messages: int, work: Path, influx: Influxd | None, profile: Path | None = None,
             profile_gil: bool = False) -> Result:
    work.mkdir(parents=True)
    broker = Mosquitto(work / "mosquitto", persistence=False).start()
    try:
        kind = "bridge" if case.startswith("waveform") else "noise"
        # each window also yields RMS, peak and frequency readings (ingest/features.py)
        derived = 3 if case == "waveform" else 0
        devices = [Device(f"{kind}-bench-{i:03d}", kind, "江汉区", asset_id=f"asset-{i:03d}") for i in range(DEVICES)]
        state = work / "state.db"
        Registry(connect(state)).upsert(devices)
        store_url = (influx.url.replace("/citywatch", f"/bench_{case.replace('-', '_')}_{int(time.time())}")
                     if case.startswith("influxdb") else f"duckdb:///{work}/readings.duckdb")
        # "influxdb-shared2": two ingest-only processes sharing one MQTT 5 subscription
        procs = int(case.rsplit("shared", 1)[1]) if "-shared" in case else 1
        batch = 500_000 if case.startswith("waveform") else 100_000
        ports, serves = [], []
        for i in range(procs):
            ports.append(free_port())
            config = work / f"citywatch-{i}.toml"
            shared = 'role = "ingest"\n' if procs > 1 else ""
            group = 'shared_group = "citywatch"\n' if procs > 1 else ""
            config.write_text(
                f'{shared}[mqtt]\nurl = "{broker.url}"\nclient_id = "bench-citywatch-{i}"\n{group}'
                f'[store]\nurl = "{store_url}"\n[state]\nurl = "sqlite:///{state}"\n'
                f'[api]\nlisten = "127.0.0.1:{ports[i]}"\nopen = true\n'
                f'[ingest]\nspool_dir = "{work}/spool-{i}"\nbatch_readings = {batch}\n'
                f'max_pending_readings = {2 * batch}\n'
                f'waveform_features = {"false" if case == "waveform-nofeatures" else "true"}\n', encoding="utf-8")
            serves.append([shutil.which("citywatch") or "citywatch", "serve", "--config", str(config)])

        # register the persistent sessions (citywatch: start and stop each process once)
        for serve, port in zip(serves, ports, strict=True):
            proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_health(port, proc)
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        subprocess.run(["mosquitto_sub", "-p", str(broker.port), "-c", "-i", "bench-sub", "-q", "1",
                        "-t", "city/#", "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        rng = np.random.default_rng(7)
        t0 = int(time.time() * 1000) - 20 * 86_400_000
        per_dev = messages // DEVICES
        readings = 0
        files = []
        for i, d in enumerate(devices):
            lines, per = payloads(case, per_dev, i, t0, rng)
            f = work / f"pub-{i}.txt"
            f.write_text("\n".join(lines) + "\n")
            files.append((d, f))
            readings += per_dev * per
        total = per_dev * DEVICES
        pubs = [subprocess.Popen(f"mosquitto_pub -p {broker.port} -q 1 -t city/{kind}/{d.device_id}/telemetry "
                                 f"-l < {f}", shell=True) for d, f in files]
        for p in pubs:
            if p.wait(600) != 0:
                raise RuntimeError("mosquitto_pub failed")

        t = time.perf_counter()
        r = subprocess.run(["mosquitto_sub", "-p", str(broker.port), "-c", "-i", "bench-sub", "-q", "1",
                            "-t", "city/#", "-C", str(total), "-W", "300"], stdout=subprocess.DEVNULL)
        sub_s = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"mosquitto_sub got fewer than {total} messages")

        if profile is not None:  # sampled profile of every thread (slows the run: not for figures)
            profile.mkdir(parents=True, exist_ok=True)
            mode = "--gil" if profile_gil else "--idle"  # --gil: only the thread holding the GIL
            serves = [["py-spy", "record", "--threads", mode, "-r", "250", "--format", "raw", "-o",
                       str(profile / f"{case}-{i}.txt"), "--"] + serve for i, serve in enumerate(serves)]
        running = [subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for serve in serves]
        connected = [_ConnectTime(proc) for proc in running]
        peak = [0]
        cpu: list[tuple[float, float, float]] = []  # (wall clock, node CPU s, broker CPU s)
        stop = threading.Event()
        broker_ps = psutil.Process(broker.proc.pid)

        def sample() -> None:
            ps = [psutil.Process(proc.pid) for proc in running]
            if profile is not None:
                time.sleep(1)
                ps = [p.children()[0] for p in ps]
            while not stop.wait(0.05):
                try:
                    peak[0] = max(peak[0], *(p.memory_info().rss for p in ps))
                    node = sum(sum(p.cpu_times()[:2]) for p in ps)
                    cpu.append((time.time(), node, sum(broker_ps.cpu_times()[:2])))
                except psutil.Error:
                    return

        threading.Thread(target=sample, daemon=True).start()
        for proc, port in zip(running, ports, strict=True):
            _wait_health(port, proc)
        # steady state: from the first poll that sees readings stored to the last reading stored
        # (the consumers start before their APIs answer, so the start of the drain is not observable)
        done = _wait_stored(ports, readings + derived * total, running, timeout=900)
        # from the first consumer's CONNACK (its log line's wall-clock time) to the last reading durable
        t_connect = min(c.wait() for c in connected)
        cw_s = done - t_connect
        print(f"  {case}: connected at {t_connect:.3f}, all {readings:,} durable {cw_s:.2f} s later", flush=True)
        stop.set()
        window = [c for c in cpu if t_connect <= c[0] <= done] or cpu[-2:]
        span = max(window[-1][0] - window[0][0], 1e-9)
        node_cpu = (window[-1][1] - window[0][1]) / span
        broker_cpu = (window[-1][2] - window[0][2]) / span
        for proc in running:
            proc.send_signal(signal.SIGINT)
        for proc in running:
            proc.wait(120)
        stored = _count(store_url) - derived * total  # the devices' own readings
        return Result(case, total, readings, sub_s, cw_s, peak[0] / 1e6, stored, node_cpu, broker_cpu)
    finally:
        broker.stop()


def _wait_health(port: int, proc: subprocess.Popen, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"citywatch serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).json()["checks"]["broker"]:
                return time.perf_counter()
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.02)
    raise RuntimeError("citywatch serve did not become healthy")


def _stored(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.split("{", 1)[0].split(" ", 1)[0] in (
                         "citywatch_ingest_readings_stored_total", "citywatch_ingest_readings_duplicate_total",
                         "citywatch_ingest_readings_spooled_total"))
    return total


def _exited(procs: list[subprocess.Popen]) -> None:
    if any(p.poll() is not None for p in procs):
        raise RuntimeError("citywatch serve exited")


class _ConnectTime:
    """Wall-clock time of the node's "connected to" log line (INFO, ``asctime`` with ms)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._at: float | None = None
        self._seen = threading.Event()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:  # keeps the pipe drained until the process ends
            if self._at is None and "connected to" in line:
                stamp = line[:23]  # 2026-11-29 20:36:22,123
                self._at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                self._seen.set()

    def wait(self, timeout: float = 30) -> float:
        if not self._seen.wait(timeout):
            raise RuntimeError("no 'connected to' line from citywatch serve")
        return self._at


def _wait_stored(ports: list[int], readings: int, procs: list[subprocess.Popen], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _exited(procs)
        if _stored(ports) >= readings:
            return time.time()
        time.sleep(0.01)
    raise RuntimeError(f"not all {readings} readings stored within {timeout} s (got {_stored(ports)})")


def _count(store_url: str) -> int:
    from ingest.stores.base import open_store

    store = open_store(store_url)
    try:
        return store.count()
    finally:
        store.close()


def summary(results: list[Result]) -> None:
    """For a case run more than once: median and spread of its readings/s, wall-clock and per
    CPU-second of the node (the latter less sensitive to other processes on the machine)."""
    cases = [c for c in dict.fromkeys(r.case for r in results) if sum(r.case == c for r in results) > 1]
    if not cases:
        return
    print("\n| case | runs | readings/s median | min-max | readings per node CPU-second median | min-max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in cases:
        wall = np.array([r.readings / r.cw_s for r in results if r.case == c])
        cpu = np.array([r.readings / r.cw_s / r.node_cpu for r in results if r.case == c and r.node_cpu > 0])
        print(f"| {c} | {len(wall)} | {np.median(wall):,.0f} | {wall.min():,.0f}-{wall.max():,.0f} | "
              f"{np.median(cpu):,.0f} | {cpu.min():,.0f}-{cpu.max():,.0f} |")
    if len(cases) == 2:
        blocks(results, *cases)


def blocks(results: list[Result], a: str, b: str) -> None:
    """Two cases interleaved (A B B A ... or A B ...): per block of consecutive runs holding both
    equally, the change of ``a`` against ``b`` (mean over the block), wall-clock and per node
    CPU-second; neighbours share the machine's conditions more than the whole run does."""
    runs = [r for r in results if r.case in (a, b)]
    size = 4 if len(runs) % 4 == 0 and [r.case for r in runs[:4]] == [a, b, b, a] else 2
    def mean(block: list[Result], case: str, per_cpu: bool) -> float:
        return float(np.mean([r.readings / r.cw_s / (r.node_cpu if per_cpu else 1.0)
                              for r in block if r.case == case]))

    rows = []
    for k in range(0, len(runs) - size + 1, size):
        block = runs[k:k + size]
        rows.append(tuple(mean(block, a, c) / mean(block, b, c) - 1 for c in (False, True)))
    wall, cpu = np.array(rows).T
    print(f"\n{a} against {b}, per block of {size} runs: wall-clock "
          f"{', '.join(f'{x:+.1%}' for x in wall)} (median {np.median(wall):+.1%}); per node CPU-second "
          f"{', '.join(f'{x:+.1%}' for x in cpu)} (median {np.median(cpu):+.1%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=100_000, help="single-reading messages per case")
    ap.add_argument("--windows", type=int, default=20_000, help="waveform windows of 100 samples")
    ap.add_argument("--cases", default="duckdb,influxdb,waveform",
                    help="duckdb, influxdb, waveform, influxdb-sharedN (N ingest processes, one shared subscription)")
    ap.add_argument("--profile", type=Path, help="write py-spy profiles (raw collapsed stacks) here")
    ap.add_argument("--profile-gil", action="store_true",
                    help="with --profile: sample only the thread holding the GIL (what the interpreter spends)")
    args = ap.parse_args()
    cases = args.cases.split(",")
    work = Path(tempfile.mkdtemp(prefix="citywatch-bench-"))
    influx = Influxd(work / "influxd").start() if any(c.startswith("influxdb") for c in cases) else None
    results = []
    try:
        for i, case in enumerate(cases):  # a case may be listed more than once (interleaved repeats)
            n = args.windows if case.startswith("waveform") else args.messages
            res = run_case(case, n, work / f"{i}-{case}", influx, args.profile, args.profile_gil)
            results.append(res)
            if res.stored != res.readings:
                print(f"!! {case}: store holds {res.stored} readings, expected {res.readings}")
    finally:
        if influx is not None:
            influx.stop()
    load = os.getloadavg()
    print(f"\n`python bench/ingest/run.py --messages {args.messages} --windows {args.windows} --cases {args.cases}`"
          f" on {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| case | messages | readings | mosquitto_sub msg/s | citywatch msg/s | citywatch readings/s "
          "| ratio | peak RSS MB | citywatch CPU | Mosquitto CPU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(r.row())
    print("\nCPU columns: CPU seconds per second of the drain, per process (200% is both cores).")
    summary(results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
