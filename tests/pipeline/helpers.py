"""Harnesses of the pipeline tests: the real ingest path (decoder -> DuckDB store -> rule engine
-> SQLite alert state) driven message by message, and citywatch nodes on the session Mosquitto.

:class:`Ingest` wires the same objects as ``citywatch.runner.Node`` minus the network: a
``Pipeline`` over a DuckDB store in a temp dir, the device registry (with per-device ``attrs``),
quarantine and event log on one SQLite state DB, and a ``RuleEngine`` with the built-in pack.
Messages go in through ``Pipeline.submit`` with ``received_ms`` set to their simulated time, so
simulated days are judged the way a replay of recorded traffic is (event time, the contract's
5 min / 30 days window around the receive time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from alerts.engine import RuleEngine
from alerts.model import Alert
from alerts.rules import RulePack
from alerts.store import AlertState
from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.events import EventLog
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.base import open_store
from simulators.engine import Simulation
from tests.support.mosquitto import free_port
from tests.support.wait import wait_for

TZ = "Asia/Shanghai"
S, M, H = 1000, 60_000, 3_600_000


class Ingest:
    """The ingest path and the rule engine on files under ``root`` (reopenable: same files)."""

    def __init__(self, root: Path, devices: Sequence[Device] = (), *, name: str = "node") -> None:
        root.mkdir(parents=True, exist_ok=True)
        state = root / f"{name}-state.db"
        self._conns = [connect(state) for _ in range(5)]  # one per user, as in a node
        self.store = open_store(f"duckdb:///{root}/{name}-readings.duckdb")
        self.registry = Registry(self._conns[0])
        if devices:
            self.registry.upsert(devices)
        self.alerts = AlertState(self._conns[1], tz=TZ)
        rules_registry = Registry(self._conns[2])
        self.engine = RuleEngine(RulePack.load(), self.alerts, attrs=rules_registry.attrs_snapshot, tz=TZ)
        self.quarantine = Quarantine(self._conns[3])
        self.pipeline = Pipeline(store=self.store, registry=self.registry, quarantine=self.quarantine,
                                 events=EventLog(self._conns[4]), rules=self.engine)

    def send(self, topic: str, payload: bytes, received_ms: int) -> None:
        self.pipeline.submit(topic, payload, received_ms=received_ms)

    def run(self, sim: Simulation, until_ms: int, *, flush_every_ms: int = M, tick: bool = False) -> int:
        """Feed ``sim``'s messages up to ``until_ms`` (received 5 ms after their simulated time),
        flushing a batch per ``flush_every_ms`` of simulated time, as a node's flusher would.
        With ``tick`` the absence rules are evaluated at every flush. Returns messages fed."""
        n, batch_end = 0, None
        for msg in sim.messages(until_ms):
            if batch_end is not None and msg.sim_ts >= batch_end:
                self._flush(batch_end, tick)
                batch_end = None
            if batch_end is None:
                batch_end = msg.sim_ts - msg.sim_ts % flush_every_ms + flush_every_ms
            self.send(msg.topic, msg.payload, msg.sim_ts + 5)
            n += 1
        self._flush(until_ms, tick)
        return n

    def _flush(self, now_ms: int, tick: bool) -> None:
        self.pipeline.flush()
        if tick:
            self.engine.tick(now_ms, self.registry.last_seen_map())

    def fired(self) -> list[Alert]:
        """Every alert that fired (firing, acknowledged or resolved), oldest first."""
        return all_alerts(self.alerts)

    def close(self) -> None:
        """Close the store and the state DB (a later Ingest on the same root is a restart)."""
        self.store.close()
        for conn in self._conns:
            conn.close()


def all_alerts(state: AlertState) -> list[Alert]:
    out, cursor = [], None
    while True:
        page, cursor = state.list_alerts(limit=1000, after_cursor=cursor)
        out += page
        if cursor is None:
            return out[::-1]


def signature(alerts: Iterable[Alert]) -> list[tuple]:
    """What must match between two runs of the same traffic (ids and wall-clock times aside)."""
    return sorted((a.rule, a.device_id, a.severity, a.state, a.started_ms, a.fired_ms, a.ended_ms, a.value,
                   a.threshold, a.summary) for a in alerts)


def settle(node: Node, readings: int, timeout_s: float = 60.0) -> None:
    """Wait until ``readings`` readings are in the node's store. Stop the node after this and
    before reading its alerts: ``Node.stop`` drains the pipeline, so the rule engine has then
    seen every batch (a batch is stored before its rules run)."""
    def stored() -> int:
        t = node.totals()
        return t["stored"] + t["duplicates"]
    assert wait_for(lambda: stored() >= readings, timeout_s), (node.totals(), readings)


def make_node(root: Path, broker_url: str, client_id: str, *, tick_s: float = 10.0,
              rule_files: Sequence[Path] = ()) -> Node:
    """A citywatch node on ``broker_url`` with its state DB, DuckDB store and spool under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    s = load_settings(env={}, timezone=TZ,
                      mqtt={"url": broker_url, "client_id": client_id},
                      store={"url": f"duckdb:///{root}/readings.duckdb"},
                      state={"url": f"sqlite:///{root}/state.db"},
                      api={"listen": f"127.0.0.1:{free_port()}"},
                      rules={"tick_s": tick_s, "files": [str(f) for f in rule_files]},
                      ingest={"spool_dir": str(root / "spool")})
    return Node(s)
