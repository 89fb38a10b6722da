"""docs/img/board.png: the board's open alerts after four fault scenarios, one acknowledged.

Starts a real node as the browser tests do (tests/board/support.py: Mosquitto, the node, a
webhook receiver), publishes six minutes of the small fleet with the faults at full speed,
acknowledges one alert, and photographs an operator's board in headless Chromium.

    python bench/board/screenshot.py [--out docs/img/board.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from simulators.engine import Simulation
from simulators.publish import run as publish
from tests.board.support import CHROMIUM, TOKENS, start_board_node, wait_until

SCENARIOS = ["meter-tamper@2m", "cabinet-door-open@3m", "lamp-failures@3m", "gas-over-flow@1m"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/board.png"))
    args = ap.parse_args()
    board = start_board_node(Path(tempfile.mkdtemp()))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 640}, locale="zh-CN")
            page.goto(board.url + "/")
            page.fill("#token", TOKENS["operator"])
            page.click("#login button[type=submit]")
            page.wait_for_selector("#live.on")
            start = int(time.time() * 1000) - 6 * 60_000
            sim = Simulation(board.fleet, seed=3, start_ms=start, scenarios=SCENARIOS, gas_mode="hourly")
            publish(board.broker.url, sim, duration_ms=6 * 60_000, speed=None, client_id="board-screenshot")
            alerts = wait_until(lambda: board.node.api_alerts.open_alerts()[2:] and board.node.api_alerts.open_alerts(),
                                30, "three alerts")
            board.node.api_alerts.ack(alerts[0].id, "值班员 王工", int(time.time() * 1000), "已通知燃气集团抢修")
            page.wait_for_selector(f"tr[data-alert-id='{alerts[0].id}'][data-state='acknowledged']")
            page.screenshot(path=args.out)
            browser.close()
    finally:
        board.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
