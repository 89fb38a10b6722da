"""The duty board in real headless Chromium (Debian's, driven by Playwright) against a real node:
Mosquitto, the node with rules, dispatch to a webhook receiver, and the API under uvicorn.

The main story: an operator's board is open; the simulator runs a fault scenario (a magnet on a
gas meter); the alert appears on the board without a reload; the webhook the receiver got links
to the alert (``alert.url``), which opens on a second board after logging in; acknowledged there
with a note, its new state shows on the first board. Screenshots go to tests/artifacts/board/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from alerts.dispatch.webhook import sign
from simulators.engine import Simulation
from simulators.publish import run as publish
from tests.board.conftest import DEMO_SECRET
from tests.board.support import TOKENS, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METRIC = "voltage_v"  # the first metric of a lighting cabinet: the one the live chart shows


def run_fault(board, scenario: str = "meter-tamper@2m") -> list[str]:
    """Four minutes of the fleet that end now, the fault two minutes in, published at full speed;
    the ids of the alerts it fired (waited for)."""
    before = {a.id for a in board.node.api_alerts.open_alerts()}
    start = int(time.time() * 1000) - 4 * 60_000
    sim = Simulation(board.fleet, seed=3, start_ms=start, scenarios=[scenario], gas_mode="hourly")
    publish(board.broker.url, sim, duration_ms=4 * 60_000, speed=None, client_id=f"board-fault-{start}")
    fired = wait_until(lambda: [a.id for a in board.node.api_alerts.open_alerts() if a.id not in before],
                       30, f"an alert of {scenario}")
    return fired


def publish_one(board, topic: str, payload: str) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", board.broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def an_open_alert(board) -> str:
    open_ = board.node.api_alerts.open_alerts()
    return open_[0].id if open_ else run_fault(board)[0]


_contexts: list = []


@pytest.fixture(autouse=True)
def _close_pages():
    """Every page a test opened is closed after it, passed or not (an open stream would keep the
    node's API from stopping until it ends)."""
    yield
    while _contexts:
        _contexts.pop().close()


def login(browser, board, role: str, path: str = "/"):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    _contexts.append(context)
    page = context.new_page()
    page.goto(board.url + path)
    page.fill("#token", TOKENS[role])
    page.click("#login button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])", timeout=10_000)
    return page


def test_a_wrong_token_is_refused_and_nothing_is_shown(browser, board, shots):
    context = browser.new_context()
    _contexts.append(context)
    page = context.new_page()
    page.goto(board.url + "/")
    page.fill("#token", "not-a-token")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:has-text('not accepted')", timeout=10_000)
    assert page.is_hidden("#nav")
    assert page.evaluate("sessionStorage.getItem('citywatch.token')") is None
    page.screenshot(path=shots / "refused.png")


def test_fault_alert_appears_live_opens_from_the_webhook_and_its_ack_shows_on_a_second_board(browser, board, shots):
    first = login(browser, board, "operator")
    first.wait_for_selector("h1:has-text('Open alerts')")
    first.wait_for_selector("#live.on", timeout=10_000)  # the stream is open before the fault
    first.evaluate("window.__notReloaded = true")

    (alert_id,) = run_fault(board)
    row = f"tr[data-alert-id='{alert_id}']"
    first.wait_for_selector(f"{row}[data-state='firing']", timeout=15_000)
    assert first.evaluate("window.__notReloaded") is True  # it came over the stream, no reload
    assert "武昌区" in first.inner_text(row)  # the device's district, in Chinese
    first.screenshot(path=shots / "1-alert-appeared.png", full_page=True)

    hook = wait_until(lambda: [h for h in board.receiver.received() if h.json["alert"]["id"] == alert_id],
                      15, "the firing webhook")[0].json
    assert hook["status"] == "firing"
    url = hook["alert"]["url"]
    assert url == f"{board.url}/alerts/{alert_id}"

    second = login(browser, board, "operator", path=url.removeprefix(board.url))
    second.wait_for_selector("dd[data-field='state']:has-text('firing')", timeout=10_000)
    assert second.url == url  # logging in kept the page the link opened
    second.click(".act-ack")
    second.fill("dialog input[name=note]", "已派人到现场 crew on the way")
    second.click("dialog button.ok")
    second.wait_for_selector("dd[data-field='state']:has-text('acknowledged')", timeout=10_000)
    assert "已派人到现场" in second.inner_text("dd[data-field='acknowledged']")
    second.screenshot(path=shots / "2-acknowledged.png", full_page=True)

    first.wait_for_selector(f"{row}[data-state='acknowledged']", timeout=10_000)
    assert "operator-officer" in first.inner_text(row) and "已派人到现场" in first.inner_text(row)
    assert first.evaluate("window.__notReloaded") is True
    first.screenshot(path=shots / "3-first-board-updated.png", full_page=True)
    assert board.node.api_alerts.get(alert_id).acked_by == "operator-officer"


def test_the_api_refuses_a_viewers_acknowledgement(browser, board):
    alert_id = an_open_alert(board)
    page = login(browser, board, "viewer", path=f"/alerts/{alert_id}")
    page.wait_for_selector("dd[data-field='state']")
    status = page.evaluate("""async (id) => (await fetch(`/api/v1/alerts/${id}/ack`, {method: "POST",
        headers: {Authorization: `Bearer ${sessionStorage.getItem('citywatch.token')}`,
                  "Content-Type": "application/json"}, body: JSON.stringify({note: "not mine"})})).status""",
                           alert_id)
    assert status == 403
    assert board.node.api_alerts.get(alert_id).ack_note != "not mine"


def test_a_viewers_board_has_no_action_buttons(browser, board, shots):
    alert_id = an_open_alert(board)
    page = login(browser, board, "viewer", path=f"/alerts/{alert_id}")
    page.wait_for_selector("dd[data-field='state']")
    page.screenshot(path=shots / "viewer-alert.png", full_page=True)
    assert page.locator(".actions button").count() == 0
    page.goto(board.url + "/#/alerts")
    page.wait_for_selector(f"tr[data-alert-id='{alert_id}']")
    assert page.locator(".act-ack").count() == 0


def test_resolve_assign_and_comment_from_the_alert_page(browser, board):
    alert_id = an_open_alert(board)
    page = login(browser, board, "operator", path=f"/alerts/{alert_id}")
    page.wait_for_selector("dd[data-field='state']")
    for action, field, text in (("assign", "unit", "武昌区燃气抢修队"), ("comment", "text", "阀门已关闭")):
        page.click(f".act-{action}")
        page.fill(f"dialog input[name={field}]", text)
        page.click("dialog button.ok")
        page.wait_for_selector(f"text={text}", timeout=10_000)
    page.click(".act-resolve")
    page.fill("dialog input[name=note]", "meter replaced")
    page.click("dialog button.ok")
    page.wait_for_selector("dd[data-field='state']:has-text('resolved')", timeout=10_000)


def test_silence_from_the_board_is_listed_and_ended_early(browser, board):
    alert_id = an_open_alert(board)
    page = login(browser, board, "operator", path=f"/alerts/{alert_id}")
    page.click(".act-silence")
    page.fill("dialog input[name=reason]", "检修 inspection")
    page.click("dialog button.ok")
    page.goto(board.url + "/#/silences")
    page.wait_for_selector("td:has-text('检修 inspection')", timeout=10_000)
    page.click(".act-end")
    page.wait_for_selector("td:has-text('检修 inspection')", state="detached", timeout=10_000)


def test_a_devices_page_charts_its_readings_and_shows_its_telemetry_live(browser, board, shots):
    an_open_alert(board)  # the fleet has reported: readings in the store
    device = "light-wuchang-0001"
    page = login(browser, board, "viewer", path=f"/#/device/{device}")
    page.wait_for_selector(".live-card :text('subscribed to city/lighting/light-wuchang-0001/#')", timeout=10_000)
    page.wait_for_selector(".range-card .uplot", timeout=10_000)  # the last 24 h of readings, charted
    payload = json.dumps({"ts": int(time.time() * 1000), "metrics": {METRIC: 221.5}})
    publish_one(board, f"city/lighting/{device}/telemetry", payload)
    page.wait_for_selector(f"pre.live-log:has-text('{METRIC}')", timeout=10_000)
    assert "221.5" in page.inner_text("pre.live-log")
    assert "武昌区" in page.inner_text("#view h1")
    page.screenshot(path=shots / "device.png", full_page=True)
    page.context.close()  # the page goes: its subscription ends
    wait_until(lambda: board.app.state.board_live_clients == 0, 10, "the live subscription to end with the page")


def test_tiles_and_the_district_view_show_the_open_alerts(browser, board, shots):
    alert_id = an_open_alert(board)
    alert = board.node.api_alerts.get(alert_id)
    page = login(browser, board, "viewer", path="/#/tiles")
    tile = f".tile[data-kind='{alert.kind}']"
    page.wait_for_selector(f"{tile} .sev.{alert.severity}", timeout=10_000)
    page.screenshot(path=shots / "tiles.png", full_page=True)
    page.goto(f"{board.url}/#/district/{alert.district}")
    page.wait_for_selector(f"#view h1:has-text('{alert.district}')")
    note = page.wait_for_selector("p.muted:has-text('with open alerts')", timeout=10_000).inner_text()
    in_district = sum(1 for d in board.fleet if d.district == alert.district and d.lat is not None)
    assert note.startswith(f"{in_district} devices with a position")
    assert " 0 with open alerts" not in note
    page.screenshot(path=shots / "district.png", full_page=True)


def test_the_alerts_export_as_csv(browser, board):
    alert_id = an_open_alert(board)
    page = login(browser, board, "operator", path="/#/alerts")
    page.wait_for_selector(f"tr[data-alert-id='{alert_id}']")
    with page.expect_download(timeout=10_000) as d:
        page.click("button.export")
    text = Path(d.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith(("id,", "\ufeffid,")) and alert_id in text


def test_the_district_filter_narrows_the_open_alerts(browser, board):
    alert_id = an_open_alert(board)
    district = board.node.api_alerts.get(alert_id).district
    other = next(d.district for d in board.fleet if d.district != district)
    page = login(browser, board, "viewer", path="/#/alerts")
    page.wait_for_selector(f"tr[data-alert-id='{alert_id}']")
    page.wait_for_selector(f"select[name=district] option[value='{other}']", state="attached")
    page.select_option("select[name=district]", other)
    page.wait_for_selector(f"tr[data-alert-id='{alert_id}']", state="detached", timeout=10_000)
    page.select_option("select[name=district]", district)
    page.wait_for_selector(f"tr[data-alert-id='{alert_id}']", timeout=10_000)


def test_the_quarantine_and_a_failing_delivery_are_shown(browser, board, shots):
    publish_one(board, "city/lighting/light-wuchang-0001/telemetry", "{not json")
    wait_until(lambda: board.node.quarantine.count() > 0, 10, "the rejection")
    board.receiver.behaviour.status = 500  # the dispatch centre answers 500: retried, and shown failing
    try:
        run_fault(board, "cabinet-door-open@2m")
        wait_until(lambda: board.receiver.received() and
                   any(h.json["alert"]["rule"] == "lighting.door_open" for h in board.receiver.received()),
                   15, "a refused delivery attempt")
        page = login(browser, board, "viewer", path="/#/quarantine")
        page.wait_for_selector("td:has-text('bad_json')", timeout=10_000)
        assert "light-wuchang-0001" in page.inner_text("#view table")
        page.screenshot(path=shots / "quarantine.png", full_page=True)
        page.goto(board.url + "/#/deliveries")
        page.wait_for_selector("td .error:has-text('500')", timeout=10_000)
        page.screenshot(path=shots / "deliveries.png", full_page=True)
    finally:
        board.receiver.behaviour.status = 204


def test_times_typed_on_the_board_are_the_citys(browser, board):
    page = login(browser, board, "viewer", path="/#/tiles")
    page.wait_for_selector(".tile")
    got = page.evaluate("""async () => { const ui = await import("/board/js/ui.js");
        return [ui.cityTime("2026-12-07T01:00"), ui.when(Date.UTC(2026, 11, 6, 17, 0, 0))]; }""")
    assert got == ["2026-12-07T01:00:00+08:00", "2026-12-07 01:00:00"]  # Asia/Shanghai, the node's zone


def test_a_monthly_maintenance_window_is_added_listed_and_deleted(browser, board):
    page = login(browser, board, "operator", path="/#/maintenance")
    page.click(".act-add")
    page.fill("dialog input[name=district]", "武昌区")
    page.fill("dialog input[name=start]", "2026-12-15T01:00")
    page.select_option("dialog select[name=every]", "monthly")
    page.fill("dialog input[name=reason]", "长江大桥月度检修 monthly inspection")
    page.click("dialog button.ok")
    page.wait_for_selector("td:has-text('长江大桥月度检修')", timeout=10_000)
    assert "monthly" in page.inner_text("#view table")
    page.click("#view table button:has-text('Delete')")
    page.wait_for_selector("td:has-text('长江大桥月度检修')", state="detached", timeout=10_000)


def test_up_s_webhook_receiver_log_shows_verified_and_refused_deliveries(browser, board, shots):
    """The "Received" view (citywatch up's receiver): a signed delivery shows verified, one with
    a tampered body shows why it was refused."""
    body = json.dumps({"status": "firing", "alert": {"id": "01DEMO", "rule": "gas.tamper", "severity": "major",
                                                     "summary": "表箱被打开"},
                       "device": {"id": "gas-wuchang-0001", "kind": "gas_meter", "district": "武昌区"}}).encode()
    stamp = int(time.time())
    headers = {"Content-Type": "application/json", "X-Citywatch-Timestamp": str(stamp),
               "X-Citywatch-Signature": sign(DEMO_SECRET, stamp, body)}
    url = board.url + "/api/v1/demo/webhook"
    assert httpx.post(url, content=body, headers={**headers, "X-Citywatch-Delivery": "d-1"}).status_code == 204
    tampered = body.replace(b"firing", b"resolved")
    assert httpx.post(url, content=tampered, headers={**headers, "X-Citywatch-Delivery": "d-2"}).status_code == 401
    page = login(browser, board, "viewer", path="/#/received")
    page.wait_for_selector("td:has-text('signature does not verify')", timeout=10_000)
    text = page.inner_text("#view table")
    assert "表箱被打开" in text and "yes" in text
    assert page.locator("#nav-received").is_visible()
    page.screenshot(path=shots / "received.png", full_page=True)
