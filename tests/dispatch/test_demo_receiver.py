"""``citywatch up``'s built-in webhook receiver (alerts/dispatch/receiver.py) in the real API app on
uvicorn: a delivery signed by dispatch's own notifier verifies; a tampered body, a wrong secret, a
stale timestamp do not, and are answered 401 (kept in the log as refused)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import httpx
import pytest

from alerts.dispatch import Receiver, WebhookNotifier, build_body
from alerts.dispatch.config import DispatchConfig
from alerts.dispatch.receiver import RECEIVER_NAME, WebhookLog, demo_dispatch
from tests.citywatch.api_support import TOKENS, Served, make_node

SECRET = "demo-secret-0123456789"
DELIVERY = "01JDXQ4Z8K6V1F2M3N4P5Q6R7S"
ALERT = {"id": "a-7f3c2e", "rule": "noise.night_laeq", "severity": "major",
         "summary": "Night construction noise 61.3 dB(A) over the 55 dB(A) limit (GB 12523-2011)"}
DEVICE = {"id": "noise-jianghan-0042", "kind": "noise", "district": "江汉区"}


@pytest.fixture
def served(tmp_path):
    node = make_node(tmp_path)  # tokens configured: the API is closed
    node.demo_webhooks = WebhookLog(SECRET, keep=3)
    server = Served(node.api_app())
    yield server, node.demo_webhooks
    server.close()
    node.stop()


def _send(url: str, secret: str, body: bytes, *, clock=time.time, tamper: bool = False):
    """One attempt of dispatch's notifier; with ``tamper`` the body is changed after signing."""
    async def go():
        notifier = WebhookNotifier(Receiver("demo", url, secret, timeout_s=5), clock=clock)
        if tamper:
            sign_headers = notifier.headers

            def tampered(delivery_id, b, ts):
                return sign_headers(delivery_id, b.replace(b"major", b"minor"), ts)
            notifier.headers = tampered
        try:
            return await notifier.send(DELIVERY, body)
        finally:
            await notifier.aclose()
    return asyncio.run(go())


def _listed(base: str, **params) -> dict:
    r = httpx.get(base + "/api/v1/demo/webhooks", params=params,
                  headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_signed_delivery_verifies_and_is_listed(served):
    server, _ = served
    body = build_body(DELIVERY, "firing", ALERT, DEVICE, "http://citywatch.example")
    assert _send(server.url + "/api/v1/demo/webhook", SECRET, body) == (False, None)  # 2xx, no token needed
    (item,) = _listed(server.url)["items"]
    assert item["verified"] is True and item["problem"] is None and item["repeat"] is False
    assert item["delivery_id"] == DELIVERY and item["status"] == "firing"
    assert item["alert"]["rule"] == "noise.night_laeq" and item["device"]["district"] == "江汉区"
    assert item["alert"]["url"] == "http://citywatch.example/alerts/a-7f3c2e"
    assert item["received_at"].endswith("+08:00")
    # a retry of the same delivery is marked a repeat
    assert _send(server.url + "/api/v1/demo/webhook", SECRET, body) == (False, None)
    assert _listed(server.url)["items"][0]["repeat"] is True


@pytest.mark.parametrize(("secret", "tamper", "clock", "problem"), [
    (SECRET, True, time.time, "signature does not verify"),
    ("another-secret-0123", False, time.time, "signature does not verify"),
    (SECRET, False, lambda: time.time() - 301, "more than 300 s from now"),
], ids=["tampered-body", "wrong-secret", "stale-timestamp"])
def test_a_delivery_that_does_not_verify_is_refused_and_kept(served, secret, tamper, clock, problem):
    server, _ = served
    body = build_body(DELIVERY, "firing", ALERT, DEVICE, "http://citywatch.example")
    retryable, error = _send(server.url + "/api/v1/demo/webhook", secret, body, clock=clock, tamper=tamper)
    assert error is not None and error.startswith("HTTP 401") and problem in error
    listed = _listed(server.url)
    (item,) = listed["items"]
    assert item["verified"] is False and problem in item["problem"]
    assert _listed(server.url, verified="true")["items"] == []


def test_signature_scheme_is_the_contracts(served):
    """Signed here by hand, independently of alerts.dispatch.webhook.sign (webhooks.md)."""
    server, _ = served
    body = b'{"status":"resolved"}'
    ts = int(time.time())
    mac = "sha256=" + hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    r = httpx.post(server.url + "/api/v1/demo/webhook", content=body,
                   headers={"X-Citywatch-Timestamp": str(ts), "X-Citywatch-Signature": mac,
                            "X-Citywatch-Delivery": "d1"})
    assert r.status_code == 204
    r = httpx.post(server.url + "/api/v1/demo/webhook", content=body)
    assert r.status_code == 401 and "missing" in r.json()["detail"]


def test_log_keeps_the_last_n_and_the_list_needs_a_token(served):
    server, _ = served
    for i in range(5):
        httpx.post(server.url + "/api/v1/demo/webhook", content=b"{}", headers={"X-Citywatch-Delivery": f"d{i}"})
    listed = _listed(server.url)
    assert listed["received"] == 5 and [i["delivery_id"] for i in listed["items"]] == ["d4", "d3", "d2"]
    assert httpx.get(server.url + "/api/v1/demo/webhooks").status_code == 401


def test_without_a_log_there_is_no_receiver(tmp_path):
    node = make_node(tmp_path, tokens=False)  # citywatch serve: no demo receiver
    server = Served(node.api_app())
    try:
        assert httpx.post(server.url + "/api/v1/demo/webhook", content=b"{}").status_code == 404
        assert "/api/v1/demo/webhooks" not in httpx.get(server.url + "/openapi.json").json()["paths"]
    finally:
        server.close()
        node.stop()


def test_demo_dispatch_is_a_valid_config():
    receivers, routes = demo_dispatch("http://127.0.0.1:8080/api/v1/demo/webhook", SECRET)
    config = DispatchConfig.from_raw(receivers, routes)
    route = config.route_for({"severity": "critical", "rule": "bridge.strain"}, {"kind": "bridge"})
    assert route.receivers == (RECEIVER_NAME,) and route.escalate_after_s == 300
    assert {r.url for r in config.receivers.values()} == {"http://127.0.0.1:8080/api/v1/demo/webhook"}
