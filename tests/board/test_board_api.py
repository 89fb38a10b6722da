"""The board's routes over a real state DB and store under uvicorn (tests/citywatch/api_support.py):
the public page and assets, the tiles against an independent count, and the alert stream."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from alerts.model import Transition
from dashboards.board.api import STATIC
from devices.catalogue import CATALOGUE, SEVERITIES
from devices.model import Device
from tests.board.support import TOKENS as TOKENS_BOARD
from tests.board.support import start_board_node, wait_until
from tests.citywatch.api_support import NOW, Served, auth, seeded_node


@pytest.fixture
def node(tmp_path):
    with seeded_node(tmp_path / "node") as n:
        yield n


@pytest.fixture
def served(node):
    app = node.api_app()
    app.state.board_heartbeat_s = 0.2
    s = Served(app)
    yield s
    s.close()


def test_the_page_and_its_assets_are_public_and_the_data_is_not(served):
    with httpx.Client(base_url=served.url) as c:
        for path in ("/", "/alerts/a-7f3c2e"):  # / and where a webhook's alert.url lands
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
            assert '<script type="module" src="/board/js/main.js">' in r.text
        r = c.get("/board/vendor/uplot/uPlot.esm.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert r.content == (STATIC / "vendor/uplot/uPlot.esm.js").read_bytes()
        for bad in ("/board/%2e%2e/api.py", "/board/%2e%2e/%2e%2e/board/api.py", "/board/nothing.js", "/board/js"):
            assert c.get(bad).status_code == 404, bad
        assert c.get("/board/../api.py").status_code == 401  # the client made it /api.py: not public
        for path in ("/api/v1/summary", "/api/v1/stream", "/api/v1/alerts"):
            assert c.get(path).status_code == 401, path


def test_every_module_the_page_imports_is_served(served):
    """The module graph from index.html, followed through static and dynamic imports."""
    seen, todo = set(), ["/board/js/main.js"]
    with httpx.Client(base_url=served.url) as c:
        assert "/board/board.css" in c.get("/").text
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            r = c.get(path)
            assert r.status_code == 200, path
            base = path.rsplit("/", 1)[0]
            for rel in re.findall(r"""(?:from\s+|import\()\s*"(\.\.?/[^"]+)\"""", r.text):
                parts = (base + "/" + rel).split("/")
                out: list[str] = []
                for p in parts:
                    if p == "..":
                        out.pop()
                    elif p != ".":
                        out.append(p)
                todo.append("/".join(out))
    assert "/board/vendor/uplot/uPlot.esm.js" in seen and len(seen) >= 10


def test_catalogue_names_kinds_and_metrics_in_utf8(served):
    r = httpx.get(served.url + "/board/catalogue.json")
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["severities"] == list(SEVERITIES)
    assert body["kinds"]["noise"]["title_zh"] == CATALOGUE["noise"].title_zh
    assert set(body["kinds"]["noise"]["metrics"]) == set(CATALOGUE["noise"].metrics)


def _fire(node, n: int, severity: str, device: str, kind: str, district: str, state: str = "firing") -> None:
    st = node.api_alerts
    for i in range(n):
        t = Transition(f"{kind}.test_{severity}_{i}", device, kind, f"a-{device[-4:]}{severity}{i}", "pending",
                       "firing", NOW - 1000, severity, "test", district=district)
        with st.transaction():
            st.apply([t], lambda t: {"id": t.device_id, "kind": t.kind, "district": t.district})
        if state == "acknowledged":
            st.ack(t.alert_id, "tester", NOW)


def test_summary_counts_match_an_independent_count(node, served):
    # devices last seen at various ages, one with its own offline_after_s, one retired, one never seen
    ages = {"noise": [0, 599_000, 601_000, None], "bridge": [0, 299_000, 301_000, 2_000_000]}
    devices, seen = [], {}
    for kind, kind_ages in ages.items():
        for i, age in enumerate(kind_ages):
            attrs = {"offline_after_s": 3600} if (kind, i) == ("bridge", 3) else {}
            d = Device(f"{kind}-test-{i:04d}", kind, "武昌区", 30.5, 114.3, attrs=attrs)
            devices.append(d)
            if age is not None:
                seen[d.device_id] = NOW - age
    devices.append(Device("noise-test-retired", "noise", "武昌区", status="retired"))
    seen["noise-test-retired"] = NOW
    node.registry.upsert(devices)
    node.registry.mark_seen(seen)
    _fire(node, 2, "critical", "noise-test-0000", "noise", "武昌区")
    _fire(node, 1, "warning", "bridge-test-0000", "bridge", "武昌区", state="acknowledged")

    # the independent count: every device of the registry, the rule written out by hand
    expected_online, expected_offline = Counter(), Counter()
    for d in node.registry.iter_devices():
        if d.status == "retired":
            continue
        limit_ms = 1000 * d.attrs.get("offline_after_s", CATALOGUE[d.kind].offline_after_s)
        up = d.last_seen is not None and NOW - d.last_seen <= limit_ms
        (expected_online if up else expected_offline)[d.kind] += 1
    body = httpx.get(served.url + "/api/v1/summary", headers=auth("viewer")).json()
    assert body["at"] == datetime.fromtimestamp(NOW / 1000, ZoneInfo("Asia/Shanghai")).isoformat()
    for kind, t in body["kinds"].items():
        assert (t["online"], t["offline"]) == (expected_online[kind], expected_offline[kind]), kind
    assert body["kinds"]["bridge"]["online"] == 3  # 0 s, 299 s, and 2000 s under its own hour
    assert body["kinds"]["noise"]["open"] == {"info": 0, "warning": 0, "major": 0, "critical": 2}
    assert body["kinds"]["bridge"]["open"]["warning"] == 1
    by_district = Counter(d.district for d in node.registry.iter_devices() if d.status != "retired")
    assert body["districts"] == dict(by_district) and body["districts"]["武昌区"] == 9


class EventReader:
    """Reads a server-sent event stream in a thread; ``events`` as (name, data)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: list[tuple[str, dict]] = []
        self.status = 0
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self.thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with self._client.stream("GET", url, headers={**headers, "Accept": "text/event-stream"}) as r:
            self.status = r.status_code
            name = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((name, json.loads(line[6:])))

    def named(self, name: str) -> list[dict]:
        return [d for n, d in list(self.events) if n == name]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self._client.close()


def test_the_stream_carries_transitions_and_tile_changes(node, served):
    reader = EventReader(served.url + "/api/v1/stream", auth("viewer"))
    try:
        wait_until(lambda: reader.named("tiles"), 10, "the first tiles")
        assert reader.named("hello") and reader.named("tiles")[0]["kinds"]["noise"]["open"]["critical"] == 0
        _fire(node, 1, "critical", "noise-jianghan-0001", "noise", "江汉区")
        (ev,) = wait_until(lambda: reader.named("alert"), 10, "the firing event")
        assert (ev["status"], ev["state"], ev["device"]["district"]) == ("firing", "firing", "江汉区")
        aid = ev["alert"]["id"]
        assert ev["alert"]["url"] is None or ev["alert"]["url"].endswith(f"/alerts/{aid}")
        wait_until(lambda: reader.named("tiles")[-1]["kinds"]["noise"]["open"]["critical"] == 1, 10,
                   "tiles with the new alert")
        r = httpx.post(f"{served.url}/api/v1/alerts/{aid}/ack", json={"note": "到场"}, headers=auth("operator"))
        assert r.status_code == 200
        ack = wait_until(lambda: [e for e in reader.named("alert") if e["status"] == "acknowledged"], 10, "the ack")
        assert ack[0]["alert"]["acknowledged_by"] == "operator-user" and ack[0]["state"] == "acknowledged"
    finally:
        reader.close()


def test_streams_answer_406_to_a_client_that_does_not_ask_for_events(served):
    for path in ("/api/v1/stream", "/api/v1/devices/noise-jianghan-0001/live"):
        r = httpx.get(served.url + path, headers={**auth("viewer"), "Accept": "application/json"})
        assert r.status_code == 406 and "text/event-stream" in r.json()["detail"], path


def test_stopping_the_node_ends_open_streams_at_once(tmp_path):
    """The API server waits for open responses when it stops: the board's streams end first
    (Ctrl-C on ``citywatch up`` with a board open must not hang)."""
    board = start_board_node(tmp_path / "node", heartbeat_s=60.0)
    headers = {"Authorization": f"Bearer {TOKENS_BOARD['viewer']}"}
    streams = [EventReader(board.url + "/api/v1/stream", headers),
               EventReader(board.url + f"/api/v1/devices/{board.fleet[0].device_id}/live", headers)]
    wait_until(lambda: streams[0].named("tiles") and streams[1].named("ready"), 10, "both streams open")
    t0 = time.monotonic()
    board.stop()
    assert time.monotonic() - t0 < 5.0
    for s in streams:
        s.thread.join(5)
        assert not s.thread.is_alive()
