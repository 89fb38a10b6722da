"""MQTT consumer transports side by side: the same QoS 1 backlog drained by each.

    python bench/mqtt_client/run.py [--messages 100000] [--rounds 3] [--cases all|name,name]

One fresh Mosquitto (unlimited queues, no persistence) on loopback. Every case has its own
persistent QoS 1 session (registered first), so one publication of N messages (~100 bytes,
``mosquitto_pub -l``, several in parallel) queues N messages for every case. Each round
publishes N, then each case drains its N in its own process (order rotated per round):

- ``mosquitto_sub``: ``mosquitto_sub -q 1 -c -C N`` to /dev/null (the broker-side limit, in C);
- ``paho-auto-v4``: paho-mqtt 2.x, automatic acknowledgement (PUBACK before the callback);
- ``paho-manual-v4`` / ``paho-manual-v5``: ``ingest.mqtt.MqttConsumer`` (paho, manual ack),
  ``ack()`` called in the callback;
- ``wire-cb-v4`` / ``wire-cb-v5``: ``ingest.wire.WireConsumer``, ``ack()`` in the callback;
- ``wire-batch-v4`` / ``wire-batch-v5``: ``WireConsumer``, acks called from another thread in
  batches of 1000, in receive order, as the pipeline's flusher does.

A Python case is timed from ``start()`` (TCP connect) until its N-th message was received and,
with acks, its last ack was called; ``mosquitto_sub`` from process start to exit. Throughput is
N / time; the ratio is to ``mosquitto_sub`` of the same round. CPU seconds (user+sys) of the
consumer process and the load average are printed with each run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TOPIC = "city/#"
PUBLISHERS = 10
CASES = ["mosquitto_sub", "paho-auto-v4", "paho-manual-v4", "paho-manual-v5", "paho-batch-v5",
         "wire-cb-v4", "wire-batch-v4", "wire-cb-v5", "wire-batch-v5"]


def client_id(case: str) -> str:
    return f"bench-{case}"


# -- worker: one case in its own process -----------------------------------------------------

def worker(case: str, port: int, n: int, register: bool, marker: str) -> dict:
    """Drain ``n`` messages (or just register the session) and return the timings; checks
    afterwards that ``n`` distinct messages of this round (``marker`` in each) arrived. Messages
    of an earlier round (redelivered: their PUBACK did not reach the broker before the previous
    DISCONNECT) are acknowledged, counted as ``stale`` and not towards ``n``."""
    from ingest.mqtt import ConsumerOptions, MqttConsumer
    from ingest.wire import WireConsumer

    url = f"mqtt://127.0.0.1:{port}"
    protocol = 5 if case.endswith("v5") else 4
    opts = ConsumerOptions(client_id=client_id(case), topics=[TOPIC], qos=1, protocol=protocol)
    done = threading.Event()
    mark = marker.encode()
    count = [0]  # messages of this round
    seen: list[tuple[str, bytes]] = []  # everything received, checked after the clock stops
    keep = seen.append

    if "batch" in case:  # acks from another thread, 1000 at a time, in receive order
        acks: queue.Queue[tuple[list, bool]] = queue.Queue()
        pending: list = []

        def acker() -> None:
            while True:
                batch, last = acks.get()
                for a in batch:
                    a()
                if last:
                    done.set()
                    return

        def on_message(topic: str, payload: bytes, ack) -> None:
            keep((topic, payload))
            pending.append(ack)
            if mark in payload:
                count[0] += 1
            if len(pending) >= 1000 or count[0] == n:
                acks.put((pending[:], count[0] == n))
                pending.clear()

        if not register:
            threading.Thread(target=acker, daemon=True).start()
    else:
        def on_message(topic: str, payload: bytes, ack) -> None:
            keep((topic, payload))
            if ack is not None:
                ack()
            if mark in payload:
                count[0] += 1
                if count[0] == n:
                    done.set()

    if case == "paho-auto-v4":
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=opts.client_id, clean_session=False)
        c.max_inflight_messages_set(100)  # as MqttConsumer
        connected = threading.Event()
        c.on_connect = lambda cl, *a: (cl.subscribe(TOPIC, 1), connected.set())
        c.on_message = lambda cl, u, m: on_message(m.topic, m.payload, None)
        cpu0, t0 = cpu(), time.perf_counter()
        c.connect("127.0.0.1", port)
        c.loop_start()
        connected.wait(10)
        subscribed = connected

        def stop() -> None:
            c.disconnect()
            c.loop_stop()
    else:
        cls = WireConsumer if case.startswith("wire") else MqttConsumer
        consumer = cls(url, on_message, opts)
        cpu0, t0 = cpu(), time.perf_counter()
        consumer.start(10)
        stop, subscribed = consumer.stop, consumer.subscribed
    if register:
        subscribed.wait(10)
        stop()
        return {"case": case, "registered": True}
    ok = done.wait(600)
    elapsed = time.perf_counter() - t0
    used = cpu() - cpu0
    stop()
    distinct = len({m for m in seen if mark in m[1]})
    return {"case": case, "ok": ok and distinct == n, "received": len(seen), "distinct": distinct,
            "stale": len(seen) - count[0], "s": elapsed, "cpu_s": used}


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# -- driver ------------------------------------------------------------------------------------

def run_case(case: str, port: int, n: int, marker: str = "", register: bool = False) -> dict:
    if case == "mosquitto_sub":
        cmd = ["mosquitto_sub", "-p", str(port), "-c", "-i", client_id(case), "-q", "1", "-t", TOPIC]
        cmd += ["-W", "1"] if register else ["-C", str(n), "-W", "600"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"case": case, "ok": register or r.returncode == 0, "received": n, "s": s, "cpu_s": cpu}
    cmd = [sys.executable, __file__, "--worker", case, "--port", str(port), "--messages", str(n),
           "--marker", marker]
    if register:
        cmd.append("--register")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def publish(port: int, n: int, work: Path, round_no: int) -> float:
    """Publish n QoS 1 messages of ~100 bytes (PUBLISHERS parallel mosquitto_pub -l), each
    marked with the round (``marker(round_no)``)."""
    per = n // PUBLISHERS
    procs = []
    t = time.perf_counter()
    for p in range(PUBLISHERS):
        f = work / f"pub-{p}.txt"
        ts0 = 1_780_000_000_000 + round_no * 10_000_000
        f.write_text("".join(
            f'{{"ts":{ts0 + i * 1000},"seq":{i},"metrics":{{"laeq_db":{45 + (i * 7 + p) % 230 / 10:.1f}}},'
            f'"pad":"{marker(round_no)}{"x" * 36}"}}\n' for i in range(per)))
        topic = f"city/noise/noise-bench-{p:03d}/telemetry"
        procs.append(subprocess.Popen(f"mosquitto_pub -p {port} -q 1 -t {topic} -l < {f}", shell=True))
    for pr in procs:
        if pr.wait(600) != 0:
            raise RuntimeError("mosquitto_pub failed")
    return time.perf_counter() - t


def marker(round_no: int) -> str:
    return f"r{round_no:03d}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="all")
    ap.add_argument("--worker")
    ap.add_argument("--port", type=int)
    ap.add_argument("--register", action="store_true")
    ap.add_argument("--marker", default="")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.port, a.messages, a.register, a.marker)))
        return

    from tests.support.mosquitto import Mosquitto

    cases = CASES if a.cases == "all" else a.cases.split(",")
    if "mosquitto_sub" not in cases:
        cases = ["mosquitto_sub"] + cases
    n = a.messages // PUBLISHERS * PUBLISHERS
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{n:,} QoS 1 messages of ~100 bytes per round, {a.rounds} rounds, cases: {', '.join(cases)}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="bench-mqtt-client-"))
    broker = Mosquitto(work / "mosquitto", persistence=False).start()
    results: dict[str, list[dict]] = {c: [] for c in cases}
    try:
        for c in cases:
            run_case(c, broker.port, n, register=True)
        for r in range(a.rounds):
            pub_s = publish(broker.port, n, work, r)
            print(f"\nround {r + 1}: published in {pub_s:.1f} s")
            order = cases[r % len(cases):] + cases[:r % len(cases)]
            for c in order:
                load = os.getloadavg()[0]
                res = run_case(c, broker.port, n, marker(r))
                res["load"] = load
                results[c].append(res)
                if not res["ok"]:
                    raise RuntimeError(f"{c}: received {res['received']} of {n}, "
                                       f"{res.get('distinct', '?')} distinct of this round")
                stale = f"  ({res['stale']} redelivered from the previous round)" if res.get("stale") else ""
                print(f"  {c:16s} {n / res['s']:>9,.0f} msg/s  {res['s']:6.2f} s  cpu {res['cpu_s']:5.2f} s  "
                      f"load {load:.2f}{stale}", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    base = [n / x["s"] for x in results["mosquitto_sub"]]
    print("\n| case | msg/s (median) | runs (msg/s) | ratio to mosquitto_sub (median, range) | CPU µs/msg |")
    print("|---|---|---|---|---|")
    for c in cases:
        rates = [n / x["s"] for x in results[c]]
        ratios = [rate / b for rate, b in zip(rates, base, strict=True)]
        cpu = statistics.median(x["cpu_s"] for x in results[c]) / n * 1e6
        print(f"| {c} | {statistics.median(rates):,.0f} | {', '.join(f'{x:,.0f}' for x in rates)} | "
              f"{statistics.median(ratios):.0%} ({min(ratios):.0%}-{max(ratios):.0%}) | {cpu:.1f} |")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
