"""The city at full size: ``citywatch simulate --scale 1`` (every Wuhan figure of the catalogue)
for a simulated hour at ``--speed max``, through one node and through two, and the simulator alone.

Real processes on loopback: Mosquitto (unlimited queues, autosave 60 s as in
deploy/mosquitto.conf), influxd, PostgreSQL (the state DB both node runs share the shape of), the
nodes as ``citywatch serve`` subprocesses from one config with the production defaults, a webhook
receiver, and ``citywatch simulate`` as its own subprocess. One setting differs: absence rules are
checked once an hour (``[rules] tick_s``), because the replayed hour ends and on the wall clock
every device then falls silent at once (in a first run the tick raised 30,000 ``fume.offline``
alerts 15 minutes in). Each node run:

1. registers the simulated fleet in a fresh state schema (timed: the registry import at city size);
2. starts the nodes (``[node] partitions`` = the number of nodes) and waits for every lease;
3. runs the simulator over the hour that ended an hour ago (ingest takes readings up to 30 days
   late, not 5 minutes early), and polls each node's ``/metrics`` every ``--poll-s``;
4. is settled when the simulator has exited, the nodes hold nothing in flight, the store has at
   least the published readings (stored + duplicates; ingest adds derived readings: waveform
   features, sun elevation) and the rules have evaluated at least as many, unchanged at the next
   poll;
5. counts the store in one pass: all of it against the nodes' stored counters, and the readings
   devices sent (without those ingest derives) against the simulator's published readings.

The real-time factor is simulated seconds per wall second to the settled point. The simulator
alone: generation only (in this process) and publishing to the broker with nobody subscribed.
Each figure comes with the CPU seconds of every process, to say what bounds it.

    python bench/city/run.py                         # alone, 1 node, 2 nodes (about 1 h 30 min)
    python bench/city/run.py --runs 1 --duration 2m  # a smoke run

Prints one JSON line per run; docs/PERFORMANCE.md "The city at full size" has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devices import db  # noqa: E402
from devices.catalogue import DERIVED, KINDS  # noqa: E402
from devices.registry import Registry  # noqa: E402
from simulators.cli import build_fleet  # noqa: E402
from simulators.engine import Simulation  # noqa: E402
from simulators.timeutil import parse_duration_ms  # noqa: E402
from tests.cluster.harness import Cluster  # noqa: E402
from tests.dispatch.conftest import LoopbackReceiver  # noqa: E402
from tests.faults.harness import citywatch_cmd  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.postgres import Postgres, fresh_schema  # noqa: E402
from tests.support.process import cpu_seconds  # noqa: E402

SEED = 0
COUNTERS = {"stored": "citywatch_ingest_readings_stored_total",
            "duplicates": "citywatch_ingest_readings_duplicate_total",
            "quarantined": "citywatch_ingest_quarantined_total",
            "evaluated": "citywatch_rules_readings_evaluated_total",
            "inflight": "citywatch_ingest_inflight_messages",
            "spool_bytes": "citywatch_ingest_spool_bytes"}
PUBLISHED = re.compile(r"published ([\d,]+) messages \(([\d,]+) readings\)")


def scrape(base: str) -> dict[str, float]:
    """The node's counters from ``/metrics``, summed over labels."""
    out = dict.fromkeys(COUNTERS, 0.0)
    names = {v: k for k, v in COUNTERS.items()}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


def simulate_cmd(broker_port: int, start_ms: int, args) -> list[str]:
    return citywatch_cmd() + ["simulate", "--scale", str(args.scale), "--seed", str(SEED), "--start", str(start_ms),
                              "--duration", args.duration, "--speed", "max", "--processes", str(args.processes),
                              "--broker", f"mqtt://127.0.0.1:{broker_port}"]


def start_simulator(broker_port: int, duration_ms: int, args) -> tuple[subprocess.Popen, psutil.Process]:
    """``citywatch simulate`` over the hour that ended an hour ago, its output kept."""
    sim = subprocess.Popen(simulate_cmd(broker_port, hour_start(duration_ms), args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    return sim, psutil.Process(sim.pid)


def published(sim: subprocess.Popen) -> tuple[int, int]:
    """(messages, readings) the exited simulator says it published; RuntimeError if it failed."""
    out = sim.stdout.read()
    m = PUBLISHED.search(out) if sim.returncode == 0 else None
    if m is None:
        raise RuntimeError(f"simulate exited {sim.returncode} without its totals:\n{out[-3000:]}")
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def hour_start(duration_ms: int) -> int:
    """The simulated span ends an hour before now, on a whole minute."""
    return (int(time.time() * 1000) - duration_ms - 3_600_000) // 60_000 * 60_000


def generation(fleet: list, duration_ms: int) -> dict:
    start = hour_start(duration_ms)
    sim = Simulation(fleet, seed=SEED, start_ms=start)
    t0, c0 = time.monotonic(), time.process_time()
    for _ in sim.messages(start + duration_ms):
        pass
    wall = time.monotonic() - t0
    return {"run": "generation only", "messages": sim.messages_out, "readings": sim.readings_out,
            "wall_s": round(wall, 1), "cpu_s": round(time.process_time() - c0, 1),
            "realtime_factor": round(duration_ms / 1000 / wall, 2)}


def publish_alone(base: Path, args, duration_ms: int) -> dict:
    mq = Mosquitto(base / "mq-alone", autosave_interval_s=60).start()
    try:
        broker = psutil.Process(mq.proc.pid)
        b0 = cpu_seconds([broker])
        t0 = time.monotonic()
        sim, ps = start_simulator(mq.port, duration_ms, args)
        sim_cpu = 0.0
        while sim.poll() is None:
            sim_cpu = max(sim_cpu, cpu_seconds([ps]))
            time.sleep(1)
        wall = time.monotonic() - t0
        msgs, readings = published(sim)
        return {"run": "simulator alone, publishing (nobody subscribed)", "processes": args.processes,
                "messages": msgs, "readings": readings, "wall_s": round(wall, 1),
                "msg_per_s": round(msgs / wall), "realtime_factor": round(duration_ms / 1000 / wall, 2),
                "simulator_cpu_s": round(sim_cpu, 1), "mosquitto_cpu_s": round(cpu_seconds([broker]) - b0, 1)}
    finally:
        mq.stop()


def stored_readings(ix: Influxd) -> tuple[int, int]:
    """(all readings, readings devices sent) in the store, in one pass of ``count(*)`` per kind's
    measurement (the alert history is in a measurement of its own). Sent: every field but the
    ones ingest derives (waveform features, design values, sun elevation: devices.catalogue.DERIVED);
    equal to the published readings when nothing was lost or doubled (a reading stored twice is
    one point: the store's own count cannot show a double)."""
    derived = {m for metrics in DERIVED.values() for m in metrics}
    total = sent = 0
    for kind in KINDS:  # a count over ~90 M points takes minutes
        r = httpx.get(f"{ix.http}/query", params={"db": "city", "q": f'SELECT count(*) FROM "{kind}"'}, timeout=1800)
        r.raise_for_status()
        for series in r.json()["results"][0].get("series", []):
            for col, v in zip(series["columns"], series["values"][0], strict=True):
                if col.startswith("count_") and v:
                    total += int(v)
                    sent += int(v) if col.removeprefix("count_") not in derived else 0
    return total, sent


def through_nodes(base: Path, args, duration_ms: int, fleet: list, nodes: int, run: int) -> dict:
    mq = Mosquitto(base / f"mq{run}", autosave_interval_s=60).start()
    ix = Influxd(base / f"ix{run}").start()
    pg = Postgres(base / f"pg{run}").start()
    receiver = LoopbackReceiver()
    store_url = f"influxdb://127.0.0.1:{ix.port}/city"
    try:
        with fresh_schema(pg, "city") as url:
            t0 = time.monotonic()
            reg = Registry(db.connect(db.parse_url(url)))
            try:
                reg.upsert(fleet)
            finally:
                reg.close()
            register_s = time.monotonic() - t0
            cluster = Cluster(base / f"run{run}", broker_port=mq.port, store_url=store_url, state_url=url,
                              receiver_url=receiver.url, n=nodes, lease_s=10, partitions=nodes,
                              client_id=f"city{run}", tick_s=3600, linger_ms=None)
            try:
                cluster.start()
                cluster.wait_running({f"rules/p{i}" for i in range(nodes)}
                                     | {f"ingest/p{i}" for i in range(nodes)} | {"dispatch"}, timeout=300)
                return _stream(cluster, mq, ix, pg, args, duration_ms, nodes, register_s)
            finally:
                cluster.stop()
    finally:
        receiver.down()
        pg.remove()
        ix.stop()
        mq.stop()


def _stream(cluster: Cluster, mq, ix, pg, args, duration_ms: int, nodes: int, register_s: float) -> dict:
    procs = {"nodes": [psutil.Process(n.proc.pid) for n in cluster.nodes], "mosquitto": [psutil.Process(mq.proc.pid)],
             "influxd": [psutil.Process(ix.proc.pid)], "postgres": [psutil.Process(pg.proc.pid)]}
    before = {k: cpu_seconds(ps) for k, ps in procs.items()}
    t0 = time.monotonic()
    sim, sim_proc = start_simulator(mq.port, duration_ms, args)
    sim_cpu, published_at, counts, last, settled_at, series = 0.0, None, None, None, None, []
    rss_peak = dict.fromkeys(("nodes", "mosquitto", "influxd"), 0)  # PostgreSQL's shared buffers: in every backend
    deadline = t0 + args.timeout_s
    while time.monotonic() < deadline:
        time.sleep(args.poll_s)
        now = time.monotonic()
        if published_at is None:
            sim_cpu = max(sim_cpu, cpu_seconds([sim_proc]))
            if sim.poll() is not None:
                published_at = now
                counts = published(sim)
        for k in rss_peak:
            for p in procs[k]:
                try:
                    rss_peak[k] = max(rss_peak[k], p.memory_info().rss + sum(
                        c.memory_info().rss for c in p.children(recursive=True)))
                except psutil.Error:
                    pass
        scraped = [scrape(n.base) for n in cluster.nodes]
        m = {k: sum(s[k] for s in scraped) for k in COUNTERS}
        series.append({"t": round(now - t0, 1), **{k: int(v) for k, v in m.items()}})
        done = counts is not None and (m["inflight"] == 0 and m["stored"] + m["duplicates"] >= counts[1]
                                       and m["evaluated"] >= counts[1] - m["quarantined"])
        if done and m == last:
            break  # unchanged since the poll that first saw it done: settled then
        settled_at, last = (now, m) if done else (None, None)
        print(json.dumps(series[-1]), file=sys.stderr, flush=True)
    else:
        raise RuntimeError(f"not settled within {args.timeout_s} s: {series[-1] if series else None}\n"
                           + "\n".join(f"--- {n.name}\n{n.tail(1500)}" for n in cluster.nodes))
    after = {k: cpu_seconds(ps) for k, ps in procs.items()}
    wall = settled_at - t0
    t_count = time.monotonic()
    in_store, sent_in_store = stored_readings(ix)
    count_s = time.monotonic() - t_count
    msgs, readings = counts
    with cluster.conn() as c:
        alerts = c.execute("SELECT count(*) FROM alerts").fetchone()[0]
        firing = c.execute("SELECT count(*) FROM alerts WHERE ended_ms IS NULL AND fired_ms IS NOT NULL").fetchone()[0]
    return {"run": f"{nodes} node(s)", "nodes": nodes, "partitions": nodes, "processes": args.processes,
            "messages": msgs, "readings": readings, "register_s": round(register_s, 1),
            "published_s": round(published_at - t0, 1), "settled_s": round(wall, 1),
            "realtime_factor": round(duration_ms / 1000 / wall, 2), "msg_per_s": round(msgs / wall),
            "stored": last["stored"], "duplicates": last["duplicates"], "quarantined": last["quarantined"],
            "evaluated": last["evaluated"], "in_store": in_store, "store_count_s": round(count_s, 1),
            "sent_in_store": sent_in_store, "lost": readings - sent_in_store,
            "alerts": alerts, "firing": firing, "simulator_cpu_s": round(sim_cpu, 1),
            **{f"{k}_cpu_s": round(after[k] - before[k], 1) for k in procs},
            **{f"{k}_rss_peak_mb": round(v / 2**20) for k, v in rss_peak.items()},
            "series": series[:: max(1, len(series) // 60)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--duration", default="1h", help="simulated duration (default 1h)")
    ap.add_argument("--runs", default="alone,1,2", help="comma list: alone, or a number of nodes")
    ap.add_argument("--processes", type=int, default=2, help="simulate --processes")
    ap.add_argument("--poll-s", type=float, default=2.0)
    ap.add_argument("--timeout-s", type=float, default=7200.0)
    args = ap.parse_args()
    duration_ms = parse_duration_ms(args.duration)
    base = Path(tempfile.mkdtemp(prefix="citywatch-bench-city-"))
    t0 = time.monotonic()
    fleet = build_fleet(kinds=list(KINDS), devices=None, scale=args.scale, fleet_file=None, seed=SEED)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(json.dumps({"commit": commit.strip(), "fleet": len(fleet), "build_s": round(time.monotonic() - t0, 1),
                      "scale": args.scale, "duration": args.duration, "load_average": round(os.getloadavg()[0], 1),
                      "cores": os.cpu_count()}), flush=True)
    for i, run in enumerate(args.runs.split(",")):
        if run == "alone":
            print(json.dumps(generation(fleet, duration_ms)), flush=True)
            print(json.dumps(publish_alone(base, args, duration_ms)), flush=True)
        else:
            print(json.dumps(through_nodes(base, args, duration_ms, fleet, int(run), i)), flush=True)
    print(json.dumps({"load_average": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    main()
