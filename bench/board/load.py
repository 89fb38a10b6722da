"""The board at city scale: its first load, and an alert's publish-to-visible time, with
``--devices`` registered devices and ``--rate`` messages a second of background telemetry.

A real node (Mosquitto, the node with rules and the API, as tests/board/support.py starts it)
over a registry of a sample of the city-scale fleet; a publisher thread sends noise telemetry for
registered devices at ``--rate`` msg/s (QoS 1, bounded by ``--seconds``); headless Chromium logs
in as an operator. Then ``--alerts`` times: a gas meter publishes a ``magnet_tamper`` event (the
``gas.tamper`` rule fires on it) and the time until its row is in the open board's DOM is taken
in the page (a MutationObserver; same clock as the publisher).

    python bench/board/load.py --devices 500000 --rate 10000

Prints the figures; docs/BOARD.md quotes them with the date and commit.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from playwright.sync_api import sync_playwright

from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.db import connect
from devices.fleet import sample_fleet
from devices.registry import Registry
from tests.board.support import CHROMIUM, TOKENS
from tests.support.mosquitto import Mosquitto, free_port

# in the page: when a row naming `device` appears, its wall time (ms) goes to window.__seen[device]
WATCH = """(device) => {
  window.__seen = window.__seen || {};
  const seen = () => [...document.querySelectorAll("tr[data-alert-id]")].some((tr) => tr.textContent.includes(device));
  new MutationObserver((_, obs) => {
    if (seen()) { obs.disconnect(); window.__seen[device] = performance.timeOrigin + performance.now(); }
  }).observe(document.body, { childList: true, subtree: true });
}"""


def registry(path: Path, n: int) -> list:
    fleet = random.Random(0).sample(sample_fleet(1.0, seed=1), n)
    reg = Registry(connect(path))
    t = time.perf_counter()
    reg.upsert(fleet)
    print(f"registered {n:,} devices in {time.perf_counter() - t:.0f} s")
    reg.close()
    return fleet


def background(broker: Mosquitto, devices: list, rate: int, seconds: float, stop: threading.Event, sent: list) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="board-load-bg", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    t0 = time.monotonic()
    i = 0
    while not stop.is_set() and time.monotonic() - t0 < seconds:
        d = devices[i % len(devices)]
        c.publish(f"city/noise/{d.device_id}/telemetry",
                  json.dumps({"ts": int(time.time() * 1000), "metrics": {"laeq_db": 50.0 + i % 7}}), qos=1)
        i += 1
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    sent.append((i, time.monotonic() - t0))
    c.loop_stop()
    c.disconnect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=500_000)
    ap.add_argument("--rate", type=int, default=10_000, help="background messages a second")
    ap.add_argument("--seconds", type=float, default=120, help="longest the background runs")
    ap.add_argument("--alerts", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    fleet = registry(root / "state.db", args.devices)
    broker = Mosquitto(root / "mosquitto", autosave_interval_s=60).start()
    port = free_port()
    s = load_settings(env={}, mqtt={"url": broker.url, "client_id": "board-load"},
                      store={"url": f"duckdb:///{root}/readings.duckdb"}, state={"url": f"sqlite:///{root}/state.db"},
                      api={"listen": f"127.0.0.1:{port}",
                           "tokens": [{"token": TOKENS["operator"], "role": "operator"}]},
                      ingest={"spool_dir": str(root / "spool")})
    node = Node(s)
    node.start()
    stop, sent = threading.Event(), []
    noise = [d for d in fleet if d.kind == "noise"]
    meters = [d for d in fleet if d.kind == "gas_meter"]
    bg = threading.Thread(target=background, args=(broker, noise, args.rate, args.seconds, stop, sent), daemon=True)
    try:
        bg.start()
        time.sleep(5)  # the background running
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            t = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#token", TOKENS["operator"])
            page.click("#login button[type=submit]")
            page.wait_for_selector("#view h2:has-text('Firing (')", timeout=60_000)
            page.wait_for_selector("#live.on", timeout=60_000)
            ms = (time.perf_counter() - t) * 1000
            print(f"first load (page, login, open alerts listed, stream open): {ms:.0f} ms")
            lags = []
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="board-load-fault", protocol=mqtt.MQTTv5)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            for meter in random.Random(2).sample(meters, args.alerts):
                page.evaluate(WATCH, meter.device_id)
                t_pub = time.time() * 1000
                pub.publish(f"city/gas_meter/{meter.device_id}/event",
                            json.dumps({"ts": int(t_pub), "type": "magnet_tamper"}), qos=1)
                seen = page.wait_for_function("(d) => window.__seen && window.__seen[d]", arg=meter.device_id,
                                              timeout=60_000)
                lags.append(seen.json_value() - t_pub)
                time.sleep(1)
            pub.loop_stop()
            print(f"publish to visible, {len(lags)} alerts: median {statistics.median(lags):.0f} ms, "
                  f"max {max(lags):.0f} ms")
            browser.close()
    finally:
        stop.set()
        bg.join(10)
        if sent:
            n, secs = sent[0]
            print(f"background: {n:,} messages in {secs:.0f} s ({n / secs:,.0f} msg/s offered)")
        print("node totals:", node.totals())
        node.stop()
        broker.stop()


if __name__ == "__main__":
    main()
