"""The notifier's answers: what is retryable, and the signature of webhooks.md."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from alerts.dispatch import Receiver, WebhookNotifier, sign
from alerts.dispatch.webhook import is_retryable_status

from .conftest import free_port


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = '{"status":"firing","district":"江汉区"}'.encode()
    expected = hmac.new(b"change-me", b"1764428045." + body, hashlib.sha256).hexdigest()
    assert sign("change-me", 1764428045, body) == "sha256=" + expected


@pytest.mark.parametrize("status, retryable", [
    (400, True), (401, True), (403, True), (404, True), (410, True), (422, True),
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True),
    (301, True), (302, True),
])
def test_retryable_statuses(status, retryable):
    assert is_retryable_status(status) is retryable


def test_connection_refused_is_retryable():
    async def attempt():
        notifier = WebhookNotifier(Receiver("x", f"http://127.0.0.1:{free_port()}/", "k", timeout_s=1.0))
        try:
            return await notifier.send("01JDXQ4Z8K6V1F2M3N4P5Q6R7S", b"{}")
        finally:
            await notifier.aclose()

    retryable, error = asyncio.run(attempt())
    assert retryable and error.startswith("ConnectError")


def test_receiver_headers_cannot_replace_the_contract_headers():
    r = Receiver("x", "http://127.0.0.1:1/", "k", headers={"Authorization": "Bearer t"})
    notifier = WebhookNotifier(r, clock=lambda: 1764428045.9)
    try:
        h = notifier.headers("01JDXQ4Z8K6V1F2M3N4P5Q6R7S", b"{}", 1764428045)
    finally:
        asyncio.run(notifier.aclose())
    assert h == {"Content-Type": "application/json", "X-Citywatch-Delivery": "01JDXQ4Z8K6V1F2M3N4P5Q6R7S",
                 "X-Citywatch-Timestamp": "1764428045", "X-Citywatch-Signature": sign("k", 1764428045, b"{}")}
