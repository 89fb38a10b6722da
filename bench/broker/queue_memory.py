"""Broker memory per queued QoS 1 message for an offline persistent session (Mosquitto).

    python bench/broker/queue_memory.py [--messages 60000]

What deploy/mosquitto.conf's unlimited queue costs: a persistent session is registered and goes
away, N single-reading messages (~100 bytes) are published at QoS 1 and queued for it; the
broker's RSS is compared before and after, and the queue is then drained to check it held
every message.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.mosquitto import Mosquitto  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=60_000)
    n = ap.parse_args().messages
    work = Path(tempfile.mkdtemp(prefix="citywatch-queue-"))
    broker = Mosquitto(work, persistence=False).start()
    try:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="slow", clean_session=False)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        c.subscribe("city/#", 1)
        time.sleep(0.5)
        c.disconnect()
        c.loop_stop()
        rss0 = psutil.Process(broker.proc.pid).memory_info().rss
        f = work / "messages.txt"
        now = int(time.time() * 1000)
        f.write_text("".join(json.dumps({"ts": now + i, "seq": i, "metrics": {
            "laeq_db": 63.2, "lmax_db": 71.8, "pm10_ugm3": 88}}) + "\n" for i in range(n)))
        size = f.stat().st_size / n
        subprocess.run(f"mosquitto_pub -p {broker.port} -q 1 -t city/noise/noise-jianghan-0042/telemetry -l < {f}",
                       shell=True, check=True)
        time.sleep(3)
        rss1 = psutil.Process(broker.proc.pid).memory_info().rss
        r = subprocess.run(["mosquitto_sub", "-p", str(broker.port), "-c", "-i", "slow", "-q", "1", "-t", "city/#",
                            "-C", str(n), "-W", "60"], capture_output=True)
        got = r.stdout.count(b"\n")
        print(f"`python bench/broker/queue_memory.py --messages {n}`: payload {size:.0f} B, {n:,} queued, "
              f"{got:,} drained; broker RSS +{(rss1 - rss0) / 1e6:.0f} MB = {(rss1 - rss0) / n:.0f} B per message")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
