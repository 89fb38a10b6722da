"""A node as ``citywatch serve`` builds it, closed, with tokens in its state DB (one per role,
two limited to a district, one revoked), devices, alerts, quarantine entries and deliveries in
two districts (江汉区, 武昌区) and one unregistered device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alerts.model import Transition
from citywatch.api.tokens import TokenStore
from citywatch.runner import Node
from citywatch.settings import load_settings
from ingest.model import Rejection

from .api_support import DEVICE, NOW, _seed

JIANGHAN, WUCHANG = "江汉区", "武昌区"
WUCHANG_DEVICE = "bridge-wuchang-0001"
# (name, role, districts)
TOKEN_SPECS = [
    ("viewer", "viewer", None), ("operator", "operator", None), ("admin", "admin", None),
    ("jh-operator", "operator", [JIANGHAN]), ("wc-viewer", "viewer", [WUCHANG]),
]


@dataclass
class Access:
    node: Node
    tokens: dict[str, str]  # name -> token text
    revoked: str
    alerts: dict[str, str] = field(default_factory=dict)  # district -> a firing alert's id

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def make_access_node(root: Path, **api) -> Access:
    root.mkdir(parents=True, exist_ok=True)
    s = load_settings(env={}, store={"url": f"duckdb:///{root}/readings.duckdb"},
                      state={"url": f"sqlite:///{root}/state.db"}, api=api,
                      ingest={"spool_dir": str(root / "spool")},
                      receivers=[{"name": "duty", "url": "http://127.0.0.1:9/hook", "secret": "k" * 16}],
                      routes=[{"match": {}, "receivers": ["duty"]}])
    node = Node(s, clock=lambda: NOW)
    node.open()
    _seed(node)
    store = TokenStore(node.state_path)
    tokens = {name: store.create(name, role, districts)[1] for name, role, districts in TOKEN_SPECS}
    revoked = store.create("gone", "admin")[1]
    store.revoke("gone")
    access = Access(node, tokens, revoked)
    _seed_scoped(access)
    return access


def _seed_scoped(access: Access) -> None:
    """A firing alert (with a delivery) and a pending one per district; quarantine entries of
    the 武昌区 device and of an unregistered one."""
    node = access.node
    info = node.registry.device_info
    for i, (district, device, kind) in enumerate([(JIANGHAN, DEVICE, "noise"), (WUCHANG, WUCHANG_DEVICE, "bridge")]):
        aid = f"a-{district_code(district)}"
        t = Transition("r.test", device, kind, aid, "inactive", "firing", NOW - 60_000 * (i + 1), "major",
                       f"test alert in {district}", district=district)
        with node.api_alerts.transaction():
            node.api_alerts.apply([t], lambda t: info(t.device_id))
        access.alerts[district] = aid
        node.api_alerts.conn.execute(
            "INSERT INTO pending_alerts (id, rule, device_id, kind, district, severity, started_ms)"
            " VALUES (?,?,?,?,?,?,?)",
            (f"p-{district_code(district)}", "r.pending", device, kind, district, "warning", NOW - 1000))
    node.quarantine.add([Rejection(f"city/bridge/{WUCHANG_DEVICE}/telemetry", b"{bad", NOW - 10, "json: malformed",
                                   WUCHANG_DEVICE, "bridge"),
                         Rejection("city/noise/unknown-0001/telemetry", b"{}", NOW - 20, "unregistered",
                                   "unknown-0001", "noise")])


def district_code(district: str) -> str:
    return {JIANGHAN: "jh", WUCHANG: "wc"}[district]
