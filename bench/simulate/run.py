"""Simulator benchmark: generation rate, publishing rate against the broker's own limit, and
one simulated day of the city's 500,000 gas meters.

    python bench/simulate/run.py                 # everything (about 2 minutes on 2 cores)
    python bench/simulate/run.py --quick         # smaller runs, no 500k-meter day

Measures, in one run on this machine:
1. generation only (``Simulation.messages``, no I/O): messages and readings per second, per kind
   and for a mixed sample Wuhan fleet;
2. publishing to a Mosquitto started here (free loopback port, no persistence, unlimited
   queues), QoS as the simulators send (1; waveforms 0), with nobody subscribed:
   a. ``simulators.publish.run`` end to end (generation + publishing, one process),
   b. the same pre-generated payloads through ``simulators.mqtt.Publisher`` (publishing only),
   c. ``mosquitto_pub -l -q 1 -M <in-flight>`` reading the same payloads from stdin (the broker
      limit for one C client), and ``run_parallel`` with 2 processes;
3. one simulated day of 500,000 gas meters (daily packets of 24 hourly readings), generation
   only, with the peak memory of this process.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from devices.catalogue import KINDS  # noqa: E402
from devices.fleet import sample_fleet  # noqa: E402
from simulators.engine import Simulation  # noqa: E402
from simulators.mqtt import Publisher  # noqa: E402
from simulators.publish import run, run_parallel  # noqa: E402
from simulators.timeutil import parse_time_ms  # noqa: E402

START = parse_time_ms("2026-11-29T07:00:00+08:00")
HOUR = 3_600_000
INFLIGHT = 1000


def gen(fleet, ms: int, **kw) -> tuple[int, int, float]:
    sim = Simulation(fleet, seed=1, start_ms=START, **kw)
    t0 = time.perf_counter()
    for _ in sim.messages(START + ms):
        pass
    return sim.messages_out, sim.readings_out, time.perf_counter() - t0


class Broker:
    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n")
        self.proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)])
        self.url = f"mqtt://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str]] = []

    def row(what, n_msgs, n_read, secs, note=""):
        rows.append((what, f"{n_msgs / secs:,.0f}", f"{n_read / secs:,.0f}" if n_read else "-", note))
        print(f"  {what}: {n_msgs:,} msgs, {n_read:,} readings in {secs:.2f} s", flush=True)

    print("1. generation only")
    per_kind = {"bridge": (16, HOUR // 6), "gas_meter": (20_000, 24 * HOUR), "fume": (3000, 6 * HOUR),
                "noise": (940, 6 * HOUR), "toilet": (1000, 6 * HOUR), "lighting": (2375, 6 * HOUR)}
    for kind in KINDS:
        n, ms = per_kind[kind]
        if args.quick:
            ms //= 4
        fleet = sample_fleet(0, seed=1, kinds=[kind], min_per_kind=n)
        m, r, s = gen(fleet, ms, birth=False)
        row(f"generate {kind} ({len(fleet):,} devices, {ms / HOUR:g} h simulated)", m, r, s)
    mixed = sample_fleet(0.01, seed=1)
    m, r, s = gen(mixed, HOUR // (4 if args.quick else 1))
    row(f"generate mixed sample fleet at scale 0.01 ({len(mixed):,} devices)", m, r, s)

    print("2. publishing to Mosquitto")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp))
        try:
            fleet = [d for d in sample_fleet(0.02, seed=2) if d.kind != "bridge"] + \
                sample_fleet(0, seed=2, kinds=["bridge"], min_per_kind=16)
            span = HOUR // (8 if args.quick else 2)
            sim = Simulation(fleet, seed=3, start_ms=START)
            msgs = list(sim.messages(START + span))
            n, nread = len(msgs), sim.readings_out
            sim = Simulation(fleet, seed=3, start_ms=START)
            st = run(broker.url, sim, duration_ms=span, speed=None, max_inflight=INFLIGHT)
            row(f"publish.run, generate + publish ({len(fleet):,} devices)", st.messages, st.readings, st.elapsed_s)
            pub = Publisher(broker.url, max_inflight=INFLIGHT)
            t0 = time.perf_counter()
            for msg in msgs:
                pub.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            pub.close()
            row("Publisher, pre-generated payloads", n, nread, time.perf_counter() - t0)
            lines = Path(tmp) / "payloads.txt"
            lines.write_bytes(b"\n".join(m.payload for m in msgs) + b"\n")
            cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-M", str(INFLIGHT),
                   "-t", "bench/payloads", "-l"]
            t0 = time.perf_counter()
            with open(lines, "rb") as f:
                subprocess.run(cmd, stdin=f, check=True)
            mp_s = time.perf_counter() - t0
            row("mosquitto_pub -l -q 1 (broker limit, one C client)", n, nread, mp_s, "same payloads")
            st = run_parallel(broker.url, fleet, processes=2, seed=3, start_ms=START, duration_ms=span, speed=None)
            row("run_parallel, 2 processes, generate + publish", st.messages, st.readings, st.elapsed_s,
                "incl. process start")
        finally:
            broker.stop()

    if not args.quick:
        print("3. one simulated day of 500,000 gas meters (generation only)")
        t0 = time.perf_counter()
        meters = sample_fleet(1.0, seed=0, kinds=["gas_meter"])
        fleet_s = time.perf_counter() - t0
        m, r, s = gen(meters, 24 * HOUR)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row(f"500,000 gas meters, one simulated day: {s:.1f} s (fleet built in {fleet_s:.1f} s)", m, r, s,
            f"peak RSS {rss:,.0f} MB")

    base = float(rows[[i for i, r in enumerate(rows) if r[0].startswith("mosquitto_pub")][0]][1].replace(",", "")) \
        if any(r[0].startswith("mosquitto_pub") for r in rows) else None
    print("\n| measurement | messages/s | readings/s | vs mosquitto_pub | note |")
    print("| --- | ---: | ---: | ---: | --- |")
    for what, mps, rps, note in rows:
        publishes = "publish" in what.lower() or "Publisher" in what
        ratio = f"{float(mps.replace(',', '')) / base:.2f}x" if base and publishes else ""
        print(f"| {what} | {mps} | {rps} | {ratio} | {note} |")
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    print(f"\ncommand: python bench/simulate/run.py{' --quick' if args.quick else ''}; "
          f"{cores} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
