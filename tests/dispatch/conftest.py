"""Real HTTP receivers on 127.0.0.1, a controllable clock and helpers to drive notices."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerts.dispatch import DispatchConfig, Dispatcher, DispatchMetrics, Outbox
from alerts.notice import AlertNotice
from alerts.statedb import target_of
from devices.db import connect, write_transaction

ROOT = Path(__file__).resolve().parents[2]


def _load_example_receiver():
    spec = importlib.util.spec_from_file_location("example_receiver", ROOT / "examples" / "receiver.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["example_receiver"] = module
    spec.loader.exec_module(module)
    return module


example_receiver = _load_example_receiver()


class ManualClock:
    """Real time plus an offset the test moves forward (for escalation timers)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["X-Citywatch-Delivery"]


@dataclass
class Behaviour:
    status: int = 204
    delay_s: float = 0.0
    hold: threading.Event | None = None  # set: each request hangs until it is set (at most 30 s)


class LoopbackReceiver:
    """A real HTTP server whose answers the test sets (status, delay) and which can go down
    (its port then refuses connections) and come back up on the same port."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.hits.append(Hit(self.path, dict(self.headers.items()), body,
                                             time.monotonic()))
                b = receiver.behaviour
                if b.delay_s:
                    time.sleep(b.delay_s)
                if b.hold is not None:
                    b.hold.wait(30)
                text = b"" if b.status == 204 else b"ok"  # a 204 has no body
                try:
                    self.send_response(b.status)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Close the listening socket: connections to the port are refused until :meth:`up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def ids(self) -> list[str]:
        return [h.delivery_id for h in self.received()]


@pytest.fixture
def receivers():
    made: list[LoopbackReceiver] = []

    def make() -> LoopbackReceiver:
        r = LoopbackReceiver()
        made.append(r)
        return r

    yield make
    for r in made:
        r.down()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def outbox_db(db_path) -> Path | str:
    """The state DB of the ``harness`` (a SQLite file; a module about the state DB's behaviour
    overrides it with ``state_url``: its tests then run on both engines)."""
    return db_path


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def make_notice(status: str = "firing", *, alert_id: str = "a-7f3c2e", severity: str = "warning",
                rule: str = "noise.night_laeq", kind: str = "noise", district: str = "江汉区",
                responsible_unit: str = "江汉区城管执法局", started_at: str = "2026-11-29T23:14:05+08:00",
                silenced: bool = False, acknowledged_by: str | None = None,
                previous_severity: str | None = None) -> AlertNotice:
    alert = {
        "id": alert_id, "rule": rule, "severity": severity,
        "summary": "Night construction noise 61.3 dB(A) over the 55 dB(A) limit (GB 12523-2011)",
        "metric": "laeq_db", "value": 61.3, "threshold": 55.0, "started_at": started_at,
        "ended_at": "2026-11-29T23:44:05+08:00" if status == "resolved" else None,
        "acknowledged_by": acknowledged_by,
    }
    device = {"id": f"{kind}-jianghan-0042", "kind": kind, "district": district,
              "asset_id": "site-2026-118", "lat": 30.601, "lon": 114.271,
              "responsible_unit": responsible_unit}
    return AlertNotice(status=status, alert=alert, device=device, silenced=silenced,
                       previous_severity=previous_severity)


@dataclass
class Harness:
    """A state DB, an outbox and a dispatcher (not started) wired the way the lead wires them."""

    db_path: Path | str  # a SQLite file or a [state] url
    config: DispatchConfig
    clock: ManualClock
    registry: CollectorRegistry
    conn: Any = None
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None
    dispatcher_kw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(self.db_path, self.config, clock=self.clock,
                                     public_url="http://citywatch.example",
                                     metrics=DispatchMetrics(self.registry), **self.dispatcher_kw)
        self.conn = connect(target_of(self.db_path))
        self.outbox = self.dispatcher.make_outbox(self.conn)

    def notify(self, *notices: AlertNotice, wake: bool = True) -> None:
        """The lifecycle's side: notices written inside one transaction, then wake()."""
        with write_transaction(self.conn):
            for n in notices:
                self.outbox.listener(self.conn, n)
        if wake:
            self.dispatcher.wake()

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        cond = " AND ".join(f"{k} = ?" for k in where) or "1 = 1"
        cur = self.conn.execute(f"SELECT * FROM dispatch_deliveries WHERE {cond} ORDER BY delivery_id",
                                tuple(where.values()))
        return [dict(r) for r in cur.fetchall()]

    def metric(self, name: str, receiver: str) -> float:
        return self.registry.get_sample_value(name, {"receiver": receiver}) or 0.0


@pytest.fixture
def harness(outbox_db, clock):
    made: list[Harness] = []

    def make(receivers: list[dict], routes: list[dict], **dispatcher_kw: Any) -> Harness:
        kw = {"backoff_base_s": 0.02, "backoff_cap_s": 0.1, "poll_interval_s": 0.05, **dispatcher_kw}
        h = Harness(outbox_db, DispatchConfig.from_raw(receivers, routes), clock, CollectorRegistry(),
                    dispatcher_kw=kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.dispatcher.stop(timeout=10)
        h.conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
