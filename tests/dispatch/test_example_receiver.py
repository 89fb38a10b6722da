"""examples/receiver.py, served for real: verifies, drops repeats, and citywatch delivers to it."""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

import httpx
import pytest

from alerts.dispatch import sign

from .conftest import example_receiver, make_notice, wait_for


@pytest.fixture
def example_server():
    handled: list[dict] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 example_receiver.make_handler("s3cret", handled.append))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handled
    server.shutdown()
    server.server_close()


def test_dispatcher_delivers_to_the_example_receiver(harness, example_server):
    url, handled = example_server
    h = harness([{"name": "ex", "url": url, "secret": "s3cret"}], [{"match": {}, "receivers": ["ex"]}])
    h.dispatcher.start()
    h.notify(make_notice(), make_notice("resolved"))
    wait_for(lambda: len(h.rows(state="delivered")) == 2)
    assert [n["status"] for n in handled] == ["firing", "resolved"]


def test_wrong_secret_is_rejected_and_retried_as_failing(harness, example_server):
    url, handled = example_server
    h = harness([{"name": "ex", "url": url, "secret": "wrong"}], [{"match": {}, "receivers": ["ex"]}])
    h.dispatcher.start()
    h.notify(make_notice())
    wait_for(lambda: h.rows()[0]["attempts"] >= 2)  # 401 is retried (webhooks.md: any non-2xx)
    (item,) = h.outbox.page()["items"]
    assert item["failing"] and item["last_error"].startswith("HTTP 401") and handled == []


def test_repeats_are_answered_2xx_and_handled_once(example_server):
    url, handled = example_server
    body = b'{"version":1,"delivery_id":"01JDXQ4Z8K6V1F2M3N4P5Q6R7S","status":"firing"}'

    def post(ts: int, secret: str = "s3cret") -> int:
        headers = {"Content-Type": "application/json", "X-Citywatch-Delivery": "01JDXQ4Z8K6V1F2M3N4P5Q6R7S",
                   "X-Citywatch-Timestamp": str(ts), "X-Citywatch-Signature": sign(secret, ts, body)}
        return httpx.post(url, content=body, headers=headers).status_code

    now = int(time.time())
    assert post(now) == 204
    assert post(now + 1) == 200  # a retry: acknowledged, not handled again
    assert post(now - 301) == 401  # stale
    assert post(now, secret="nope") == 401
    assert len(handled) == 1


def test_verify_is_strict_and_case_insensitive():
    body, ts = b"{}", 1_800_000_000
    headers = {"x-citywatch-timestamp": str(ts), "x-citywatch-signature": sign("k", ts, body)}
    assert example_receiver.verify("k", headers, body, ts + 300)
    assert not example_receiver.verify("k", headers, body, ts + 301)
    assert not example_receiver.verify("k", headers, body, ts - 301)  # from the future
    assert not example_receiver.verify("k", {**headers, "x-citywatch-timestamp": "-5"}, body, ts)
    assert not example_receiver.verify("k", {}, body, ts)


def test_seen_ids_are_bounded():
    seen = example_receiver.SeenIds(capacity=3)
    assert all(seen.add(i) for i in "abcd")
    assert seen.add("a")  # forgotten, the oldest
    assert not seen.add("d")

