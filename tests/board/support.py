"""A real node for the board's tests: Mosquitto on a free port, the node (store, state DB, rules,
dispatch, the API under uvicorn) with one token per role, a webhook receiver, and a small fleet
with Chinese district names; and headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from alerts.dispatch.receiver import WebhookLog
from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.fleet import sample_fleet
from devices.model import Device
from tests.dispatch.conftest import LoopbackReceiver
from tests.support.mosquitto import Mosquitto, free_port

TOKENS = {role: f"board-{role}-token-0123456789" for role in ("viewer", "operator", "admin")}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "board"


def fleet() -> list[Device]:
    return sample_fleet(0, seed=31, kinds=["gas_meter", "lighting"], min_per_kind=3)


@dataclass
class BoardNode:
    broker: Mosquitto
    node: Node
    receiver: LoopbackReceiver
    fleet: list[Device]

    @property
    def url(self) -> str:
        return f"http://{self.node.settings.api.listen}"

    @property
    def app(self):
        return self.node.server.config.app

    def stop(self) -> None:
        self.node.stop()
        self.receiver.down()
        self.broker.stop()


def start_board_node(root: Path, *, heartbeat_s: float = 1.0, demo_secret: str | None = None) -> BoardNode:
    """A node serving the board; with ``demo_secret``, also citywatch up's webhook receiver."""
    broker = Mosquitto(root / "mosquitto").start()
    receiver = LoopbackReceiver()
    port = free_port()
    s = load_settings(
        env={}, timezone="Asia/Shanghai",
        mqtt={"url": broker.url, "client_id": f"board-{port}"},
        store={"url": f"duckdb:///{root}/readings.duckdb"}, state={"url": f"sqlite:///{root}/state.db"},
        api={"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}",
             "tokens": [{"token": t, "role": r, "name": f"{r}-officer"} for r, t in TOKENS.items()]},
        receivers=[{"name": "centre", "url": receiver.url, "secret": "board-test-secret"}],
        routes=[{"match": {}, "receivers": ["centre"]}],
        ingest={"spool_dir": str(root / "spool")})
    node = Node(s)
    if demo_secret is not None:
        node.demo_webhooks = WebhookLog(demo_secret, tz=s.timezone)
    node.open()
    devices = fleet()
    node.registry.upsert(devices)
    node.start()
    node.server.config.app.state.board_heartbeat_s = heartbeat_s
    return BoardNode(broker, node, receiver, devices)


def wait_until(check, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
