"""The API exactly as ``citywatch serve`` builds it (``Node.api_app``), over a real state DB and
DuckDB store under a test directory, with data of every kind the endpoints read; and a real
uvicorn server for it on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.model import Device
from ingest.model import Reading, Readings, Rejection

TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ("viewer", "operator", "admin")}
NOW = 1_764_428_045_000  # 2025-11-29T14:54:05Z, 22:54:05 in Wuhan
DEVICE = "noise-jianghan-0001"


def auth(role: str) -> dict[str, str]:
    """The ``Authorization`` header of the configured token of ``role``."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def nested(depth: int) -> str:
    """A JSON object nested ``depth`` levels deep, as an older version could have stored it."""
    return '{"a":' * depth + "1" + "}" * depth


def make_node(root: Path, *, tokens: bool = True, **api) -> Node:
    root.mkdir(parents=True, exist_ok=True)
    s = load_settings(env={}, store={"url": f"duckdb:///{root}/readings.duckdb"},
                      state={"url": f"sqlite:///{root}/state.db"},
                      api={"tokens": [{"token": t, "role": r, "name": f"{r}-user"} for r, t in TOKENS.items()]
                           if tokens else [], **api},
                      ingest={"spool_dir": str(root / "spool")})
    node = Node(s, clock=lambda: NOW)
    node.open()
    _seed(node)
    return node


@contextmanager
def seeded_node(root: Path, **kwargs) -> Iterator[Node]:
    """:func:`make_node`, its store closed after (the ``node`` fixtures' body)."""
    node = make_node(root, **kwargs)
    try:
        yield node
    finally:
        node.store.close()


def _seed(node: Node) -> None:
    node.registry.upsert([Device(DEVICE, "noise", "江汉区", 30.6, 114.27, "site-1"),
                          Device("bridge-wuchang-0001", "bridge", "武昌区")])
    node.store.write(Readings.from_rows([Reading(DEVICE, "noise", "laeq_db", NOW - i * 60_000, 50.0 + i)
                                         for i in range(30)]))
    rows = [(DEVICE, NOW - 1000, "tamper", "noise", nested(300)),
            (DEVICE, NOW - 2000, "tamper", "noise", nested(5000)),
            (DEVICE, NOW - 3000, "reboot", "noise", json.dumps({"reason": "watchdog"}))]
    with node.events._conn:
        node.events._conn.executemany("INSERT INTO events VALUES (?,?,?,?,?)", rows)
    node.quarantine.add([Rejection(f"city/noise/{DEVICE}/telemetry", b"{bad", NOW - i, "json: malformed",
                                   DEVICE, "noise") for i in range(3)])


class Served:
    """``app`` under a real uvicorn on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
