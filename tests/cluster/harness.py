"""Several real ``citywatch serve`` nodes on one PostgreSQL state DB (issue 19's fault tests).

Everything is real and on loopback: the session's Mosquitto, influxd and PostgreSQL (a schema of
its own per test), the nodes as subprocesses started from one config file and differing only in
``CITYWATCH_API_LISTEN`` (and their working directory), a webhook receiver. The stream is noise
stations' one-minute LAeq with loud episodes (``noise.day_laeq``/``noise.night_laeq``: ``for``
5 minutes, so alerts depend on state carried across batches, restarts and takeovers) and the
reference is the same readings through one in-process rule engine on SQLite.
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from devices import db
from devices.catalogue import DISTRICTS
from devices.model import Device
from devices.registry import Registry
from ingest.stores.influxdb import InfluxDBStore
from tests.faults.harness import await_api, launch_serve, sigkill, terminate
from tests.support.mosquitto import free_port, purge_sessions

KIND, METRIC = "noise", "laeq_db"
# 00:00 UTC (08:00 in Wuhan) two days ago: inside the 30 days a reading may be late, and the
# 1,000 minutes of the stream (08:00 to 00:40) cross the day and night limits' boundary at 22:00
T0 = (int(time.time()) // 86400 - 2) * 86_400_000
MINUTE = 60_000


def device_ids(n: int) -> list[str]:
    return [f"cl-nz-{i:04d}" for i in range(n)]


def levels(n_devices: int, per_device: int, seed: int = 7) -> np.ndarray:
    """LAeq per (device, minute): 50 dB(A) with loud episodes (75 dB) of 2 to 9 minutes, so
    that some pass the rules' 5 minutes (an alert) and some do not (pending, then dropped)."""
    rng = np.random.default_rng(seed)
    out = np.full((n_devices, per_device), 50.0)
    for d in range(n_devices):
        t = int(rng.integers(5, 60))
        while t < per_device:
            length = int(rng.integers(2, 10))
            out[d, t:t + length] = 75.0
            t += length + int(rng.integers(20, 120))
    return out


def stream(ids: list[str], per_device: int) -> list[tuple[str, bytes]]:
    """Minute by minute, every device's reading: a device's messages are in event-time order."""
    lv = levels(len(ids), per_device)
    return [(f"city/{KIND}/{dev}/telemetry",
             json.dumps({"ts": T0 + m * MINUTE, "metrics": {METRIC: float(lv[d, m])}}).encode())
            for m in range(per_device) for d, dev in enumerate(ids)]


def register(state_url: str, ids: list[str]) -> None:
    reg = Registry(db.connect(db.parse_url(state_url)))
    try:
        reg.upsert(Device(d, KIND, DISTRICTS[i % len(DISTRICTS)], asset_id=f"site-{i % 17}") for i, d in enumerate(ids))
    finally:
        reg.close()


def reference_alerts(ids: list[str], messages: list[tuple[str, bytes]], tmp: Path) -> set[tuple]:
    """The alerts one rule engine makes of the stream (SQLite, in process): (rule, device,
    started, fired, ended)."""
    from alerts.engine import RuleEngine
    from alerts.rules import RulePack
    from alerts.store import AlertState
    from ingest.model import Readings

    state = AlertState(db.connect(tmp / "reference.db"))
    engine = RuleEngine(RulePack.load(), state)
    by_device = {d: DISTRICTS[i % len(DISTRICTS)] for i, d in enumerate(ids)}
    rows = []
    for topic, payload in messages:
        dev = topic.split("/")[2]
        doc = json.loads(payload)
        rows.append((dev, KIND, METRIC, doc["ts"], doc["metrics"][METRIC], by_device[dev], ""))
    for lo in range(0, len(rows), 5000):
        engine.process(Readings.from_rows(rows[lo:lo + 5000]))
    return alert_rows(state.conn)


def alert_rows(conn) -> set[tuple]:
    return {tuple(r) for r in conn.execute(
        "SELECT rule, device_id, started_ms, fired_ms, ended_ms FROM alerts")}


@dataclass
class Node:
    name: str
    dir: Path
    api_port: int
    config: Path
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 60.0) -> Node:
        self.proc = launch_serve(self.config, self.dir, self.dir / "serve.log",
                                 env={"CITYWATCH_API_LISTEN": f"127.0.0.1:{self.api_port}"})
        await_api(self.proc, self.base, timeout, self.name, self.tail)
        return self

    def kill(self) -> None:
        sigkill(self.proc)
        self.proc = None

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            terminate(proc, timeout, self.name, self.tail)

    def tail(self, n: int = 4000) -> str:
        path = self.dir / "serve.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


class Cluster:
    """``n`` nodes from one config file."""

    def __init__(self, workdir: Path, *, broker_port: int, store_url: str, state_url: str, receiver_url: str,
                 n: int = 3, lease_s: float = 2.0, partitions: int = 4, client_id: str = "cw-cluster",
                 tick_s: float | None = 3600, linger_ms: float | None = 20) -> None:
        """``tick_s``: absence rules once an hour (the stream is days old: on the wall clock every
        device is silent once it ends); ``linger_ms``: 20 ms; None keeps a production default."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_url = state_url
        self.broker_port = broker_port
        # the nodes' persistent sessions: left on the broker, each would queue every later
        # test's messages (purge() removes them)
        self.client_ids = [f"{client_id}-{kind}-p{i}" for kind in ("ingest", "rules") for i in range(partitions)]
        self.config = self.dir / "citywatch.toml"
        self.config.write_text("\n".join([
            "[mqtt]", f'url = "mqtt://127.0.0.1:{broker_port}"', f'client_id = "{client_id}"',
            f'shared_group = "{client_id}"',
            "[store]", f'url = "{store_url}"',
            "[state]", f'url = "{state_url}"',
            "[node]", f"lease_s = {lease_s}", f"partitions = {partitions}",
            "[api]", "open = true",
            *(["[rules]", f"tick_s = {tick_s}"] if tick_s is not None else []),
            *(["[ingest]", f"linger_ms = {linger_ms}"] if linger_ms is not None else []),
            "[[receivers]]", 'name = "centre"', f'url = "{receiver_url}"', 'secret = "s3cret"',
            "[[routes]]", "match = {}", 'receivers = ["centre"]',
        ]) + "\n")
        self.nodes = []
        for i in range(n):
            d = self.dir / f"node{i}"
            d.mkdir(exist_ok=True)
            self.nodes.append(Node(f"node{i}", d, free_port(), self.config))

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.stop()

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def purge(self) -> None:
        """Remove the nodes' sessions from the broker (after the nodes are gone)."""
        purge_sessions(self.broker_port, self.client_ids)

    def settled(self, store_url: str, readings: int, expected: set[tuple], timeout: float, *,
                outbox_empty: bool = True, poll_s: float = 0.5) -> float:
        """Wait until the store holds ``readings`` readings and the state DB the ``expected``
        alerts (and, with ``outbox_empty``, the outbox has nothing left to send); returns the
        monotonic time it saw that, or AssertionError with what it saw and the nodes' logs."""
        store = InfluxDBStore(store_url)
        deadline = time.monotonic() + timeout
        seen: tuple = (0, set(), -1)
        try:
            while time.monotonic() < deadline:
                with self.conn() as c:
                    alerts = alert_rows(c)
                    pending = c.execute("SELECT count(*) FROM dispatch_deliveries WHERE state = 'pending'"
                                        ).fetchone()[0] if outbox_empty else 0
                seen = (store.count(), alerts, pending)
                if seen[0] >= readings and alerts >= expected and pending == 0:
                    return time.monotonic()
                time.sleep(poll_s)
        finally:
            store.close()
        raise AssertionError(f"not settled in {timeout} s: stored {seen[0]} of {readings}, alerts missing "
                             f"{len(expected - seen[1])}, extra {len(seen[1] - expected)}, outbox pending {seen[2]}\n"
                             + "\n".join(f"--- {n.name}\n{n.tail(1500)}" for n in self.nodes))

    @contextmanager
    def conn(self):
        """A connection to the cluster's state DB, closed after."""
        c = db.connect(db.parse_url(self.state_url))
        try:
            yield c
        finally:
            c.close()

    def running(self) -> dict[str, str]:
        """Duty name -> the node running its work now, from each live node's /health; nothing
        while a live node's start is not complete."""
        out: dict[str, str] = {}
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                cluster = httpx.get(f"{node.base}/api/v1/health", timeout=2).json().get("cluster") or {}
            except (httpx.TransportError, ValueError):
                cluster = {}
            if not cluster.get("started"):
                return {}  # a live node still starting (its ingest session may not be subscribed yet)
            out.update({d: node.name for d in cluster.get("duties", [])})
        return out

    def wait_running(self, names: set[str], timeout: float, alive: set[str] | None = None) -> dict[str, str]:
        """Wait until every duty in ``names`` runs (on a node in ``alive``, if given) and every
        live node's start is complete; returns who runs what."""
        deadline = time.monotonic() + timeout
        held: dict[str, str] = {}
        while time.monotonic() < deadline:
            held = self.running()
            if names <= set(held) and (alive is None or all(held[n] in alive for n in names)):
                return held
            time.sleep(0.1)
        raise AssertionError(f"leases {sorted(names)} not all held within {timeout} s: {held}\n"
                             + "\n".join(f"--- {n.name}\n{n.tail(1500)}" for n in self.nodes))
