"""Several citywatch nodes on one PostgreSQL state DB: throughput with 1, 2 and 3 nodes, the
failover time, and the broker's cost of the partition sessions.

Real processes on loopback, as tests/cluster/test_failover.py runs them (Mosquitto, influxd,
PostgreSQL, ``citywatch serve`` nodes from one config, the noise stream with its alarm
episodes). Each figure:

- **throughput**: the stream (``--messages``, QoS 1, published as fast as the broker takes them)
  until every reading is stored in InfluxDB and the state DB holds every alert a single engine
  makes of the stream; messages per wall second, with the CPU seconds of the nodes, Mosquitto,
  influxd and PostgreSQL over the run;
- **failover**: three nodes; the node holding the partition of one station is SIGKILLed, then
  the station sends a loud episode (its first reading at once): the time from the kill to the
  alert's row in the state DB, i.e. lease expiry + takeover + restore + evaluation;
- **broker load**: Mosquitto's CPU seconds for the stream with ``partitions`` 1 and 4 (each
  partition session receives every reading).

    python bench/cluster/run.py [--messages 100000] [--lease-s 2] [--only throughput,failover,broker]

Prints one line per measurement; docs/PERFORMANCE.md "Several nodes" has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from alerts.partitions import partition_of  # noqa: E402
from tests.cluster.harness import (  # noqa: E402
    MINUTE,
    T0,
    Cluster,
    device_ids,
    reference_alerts,
    register,
    stream,
)
from tests.dispatch.conftest import LoopbackReceiver  # noqa: E402
from tests.faults.harness import Publisher  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.postgres import Postgres, fresh_schema  # noqa: E402
from tests.support.process import cpu_seconds  # noqa: E402

N_DEVICES = 100


class Services:
    def __init__(self, base: Path) -> None:
        self.mq = Mosquitto(base / "mq").start()
        self.ix = Influxd(base / "ix").start()
        self.pg = Postgres(base / "pg").start()
        self.n = 0

    def procs(self) -> dict[str, psutil.Process]:
        return {"mosquitto": psutil.Process(self.mq.proc.pid), "influxd": psutil.Process(self.ix.proc.pid),
                "postgres": psutil.Process(self.pg.proc.pid)}

    def close(self) -> None:
        self.pg.remove()
        self.ix.stop()
        self.mq.stop()


def run_stream(svc: Services, base: Path, nodes: int, partitions: int, messages: int, lease_s: float) -> dict:
    svc.n += 1
    ids = device_ids(N_DEVICES)
    per_device = messages // N_DEVICES
    msgs = stream(ids, per_device)
    expected = reference_alerts(ids, msgs, base)
    receiver = LoopbackReceiver()
    store_url = f"influxdb://127.0.0.1:{svc.ix.port}/bench{svc.n}"
    with fresh_schema(svc.pg, f"bench{svc.n}") as url:
        register(url, ids)
        cluster = Cluster(base / f"run{svc.n}", broker_port=svc.mq.port, store_url=store_url, state_url=url,
                          receiver_url=receiver.url, n=nodes, lease_s=lease_s, partitions=partitions,
                          client_id=f"bench{svc.n}")
        try:
            cluster.start()
            cluster.wait_running({f"rules/p{i}" for i in range(partitions)} | {"dispatch"}, timeout=60)
            node_procs = [psutil.Process(n.proc.pid) for n in cluster.nodes]
            before = {name: cpu_seconds([p]) for name, p in svc.procs().items()}
            nodes_before = cpu_seconds(node_procs)
            pub = Publisher(port=svc.mq.port, client_id=f"bench-pub-{svc.n}")
            t0 = time.monotonic()
            pub.publish(msgs, deadline_s=600)
            published = time.monotonic() - t0
            pub.close()
            done = cluster.settled(store_url, len(msgs), expected, timeout=600, outbox_empty=False, poll_s=0.1) - t0
            after = {name: cpu_seconds([p]) for name, p in svc.procs().items()}
            result = {"nodes": nodes, "partitions": partitions, "messages": len(msgs), "published_s": published,
                      "settled_s": done, "msg_per_s": len(msgs) / done,
                      "nodes_cpu_s": cpu_seconds(node_procs) - nodes_before,
                      **{f"{k}_cpu_s": after[k] - before[k] for k in after}}
        finally:
            cluster.kill_all()
            cluster.purge()
            receiver.down()
    return result


def failover(svc: Services, base: Path, lease_s: float, partitions: int = 4) -> dict:
    svc.n += 1
    ids = device_ids(N_DEVICES)
    receiver = LoopbackReceiver()
    store_url = f"influxdb://127.0.0.1:{svc.ix.port}/bench{svc.n}"
    with fresh_schema(svc.pg, f"bench{svc.n}") as url:
        register(url, ids)
        cluster = Cluster(base / f"run{svc.n}", broker_port=svc.mq.port, store_url=store_url, state_url=url,
                          receiver_url=receiver.url, n=3, lease_s=lease_s, partitions=partitions,
                          client_id=f"bench{svc.n}")
        try:
            cluster.start()
            held = cluster.wait_running({f"rules/p{i}" for i in range(partitions)} | {"dispatch"}, timeout=60)
            victim_name = next(n for n in held.values() if n != held["dispatch"])
            victim = next(n for n in cluster.nodes if n.name == victim_name)
            station = next(d for d in ids if held[f"rules/p{partition_of(d, partitions)}"] == victim_name)
            pub = Publisher(port=svc.mq.port, client_id=f"bench-pub-{svc.n}")
            victim.kill()
            killed = time.monotonic()
            # six loud minutes (noise.day_laeq: over 70 dB(A) for 5 minutes), sent at once
            loud = [(f"city/noise/{station}/telemetry",
                     json.dumps({"ts": T0 + m * MINUTE, "metrics": {"laeq_db": 75.0}}).encode()) for m in range(7)]
            pub.publish(loud, deadline_s=60)
            with cluster.conn() as c:
                while time.monotonic() - killed < 120:
                    if c.execute("SELECT 1 FROM alerts WHERE device_id = ?", (station,)).fetchone():
                        break
                    time.sleep(0.02)
                else:
                    raise RuntimeError("no alert within 120 s")
            pub.close()
            return {"lease_s": lease_s, "failover_s": time.monotonic() - killed}
        finally:
            cluster.kill_all()
            cluster.purge()
            receiver.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--lease-s", type=float, default=2.0)
    ap.add_argument("--only", default="throughput,failover,broker")
    args = ap.parse_args()
    only = set(args.only.split(","))
    base = Path(tempfile.mkdtemp(prefix="citywatch-bench-cluster-"))
    svc = Services(base)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    try:
        if "throughput" in only:
            for nodes in (1, 2, 3):
                print(json.dumps(run_stream(svc, base, nodes, 4, args.messages, args.lease_s)), flush=True)
        if "broker" in only:
            for partitions in (1, 4):
                print(json.dumps(run_stream(svc, base, 1, partitions, args.messages, args.lease_s)), flush=True)
        if "failover" in only:
            for lease in (args.lease_s, 10.0):
                print(json.dumps(failover(svc, base, lease)), flush=True)
    finally:
        svc.close()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
