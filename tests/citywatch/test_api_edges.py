"""The API's edges: authentication before the body, the body cap, and every parameter answered
with a 4xx naming it (never a 500), against the app ``citywatch serve`` builds over a real state
DB and store; the body tests through a real uvicorn on loopback."""

from __future__ import annotations

import json
import socket

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from citywatch.settings import ConfigError, load_settings
from devices import times

from .api_support import DEVICE, NOW, TOKENS, Served, auth, make_node, seeded_node

MB = 1 << 20


@pytest.fixture
def node(tmp_path):
    with seeded_node(tmp_path / "node", max_body_bytes=64 * 1024) as n:
        yield n


@pytest.fixture
def served(node):
    s = Served(node.api_app())
    yield s
    s.close()


def post_json(client, path: str, body, role: str):
    """JSON as a client may send it: ASCII with escapes, lone surrogates (``\\ud800``) included."""
    return client.post(path, content=json.dumps(body), headers={**auth(role), "Content-Type": "application/json"})


def _ask_headers_only(port: int, head: bytes) -> bytes:
    """Send a request's headers and no body; the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def _body(total: int, counter: list[int], chunk: int = 256 * 1024):
    """``total`` bytes of a JSON-looking body, made as it is sent, counting what was taken."""
    block = b" " * chunk
    while counter[0] < total:
        counter[0] += chunk
        yield block


def test_unauthenticated_200mb_post_is_refused_unread(served):
    proc = psutil.Process()
    base = proc.memory_info().rss
    # the answer comes on the headers alone, before one byte of the body is sent
    head = _ask_headers_only(served.port, b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 209715200\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"www-authenticate: bearer" in head.lower()
    assert head.endswith(b'{"detail": "missing bearer token"}')
    # streamed from a generator (chunked, no length): the server answers and closes, and the
    # client cannot push more than the sockets' buffers into it
    taken = [0]
    try:
        r = httpx.post(served.url + "/api/v1/silences", content=_body(200 * MB, taken), timeout=10,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 401
    except httpx.TransportError:
        pass  # the server closed the connection under the upload: it did not read the body
    grown = proc.memory_info().rss - base
    print(f"200 MB unauthenticated: the client got {taken[0] / MB:.1f} MB out before the server "
          f"closed; rss grew {grown / MB:.1f} MB")
    assert taken[0] < 32 * MB
    assert grown < 8 * MB


def test_wrong_role_is_refused_before_the_body(served):
    head = _ask_headers_only(served.port, b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                             b"Authorization: Bearer " + TOKENS["viewer"].encode() + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403") and b"needs operator" in head


def test_authenticated_oversized_body_gets_413(served):
    head = _ask_headers_only(served.port, b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n"
                             b"Authorization: Bearer " + TOKENS["operator"].encode() + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"max_body_bytes" in head
    # chunked, no length: counted while read, 413 when over the cap (64 KiB here)
    taken = [0]
    try:
        r = httpx.post(served.url + "/api/v1/silences", content=_body(50 * MB, taken, 16 * 1024),
                       headers={**auth("operator"), "Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 413
    except httpx.TransportError:
        pass
    assert taken[0] < 32 * MB


def test_bodies_under_the_cap_and_public_paths_pass(served):
    r = httpx.post(served.url + "/api/v1/silences", headers=auth("operator"), timeout=10,
                   json={"matchers": {"kind": "noise"}, "end": NOW + 3_600_000, "reason": "night works"})
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "operator-user"
    assert httpx.get(served.url + "/api/v1/health", timeout=10).status_code == 200
    assert httpx.get(served.url + "/openapi.json", timeout=10).status_code == 200
    assert httpx.get(served.url + "/api/v1/alerts", timeout=10).status_code == 401
    assert httpx.get(served.url + "/api/v1/alerts", headers={"Authorization": "Bearer nope-nope-nope-nope"},
                     timeout=10).status_code == 401
    assert httpx.get(served.url + "/api/v1/alerts", headers=auth("viewer"), timeout=10).status_code == 200
    assert httpx.post(served.url + "/api/v1/alerts/a-1/ack", headers=auth("viewer"), timeout=10).status_code == 403
    assert httpx.get(served.url + "/metrics", headers=auth("viewer"), timeout=10).status_code == 200


def test_no_tokens_leaves_the_api_closed(tmp_path):
    node = make_node(tmp_path / "closed", tokens=False)
    try:
        client = TestClient(node.api_app())
        assert client.get("/api/v1/devices").status_code == 401
        assert client.get("/api/v1/health").status_code == 200
    finally:
        node.store.close()


def test_open_mode_acts_as_anonymous_admin_recording_the_by_given(tmp_path):
    node = make_node(tmp_path / "open", tokens=False, open=True)
    try:
        client = TestClient(node.api_app())
        assert client.get("/api/v1/devices").status_code == 200
        assert client.get("/api/v1/whoami").json() == {"name": "anonymous", "role": "admin", "districts": None}
        body = {"matchers": {"kind": "noise"}, "end": NOW + 60_000, "reason": "x"}
        r = client.post("/api/v1/silences", json=body)
        assert r.status_code == 201 and r.json()["created_by"] == "anonymous"
        r = client.post("/api/v1/silences", json={**body, "by": "officer-li"})
        assert r.status_code == 201 and r.json()["created_by"] == "officer-li"
    finally:
        node.store.close()


READINGS = f"/api/v1/devices/{DEVICE}/readings"


@pytest.mark.parametrize("params, name", [
    ({"start": "²"}, "start"),
    ({"start": "9" * 5000}, "start"),
    ({"end": str(2**63)}, "end"),
    ({"end": "-5"}, "end"),
    ({"end": "9999-12-31T23:59:59+00:00"}, "end"),
    ({"start": "2026-11-29T12:00:00"}, "start"),  # no offset
    ({"start": str(NOW), "end": str(NOW - 1)}, "start"),
    ({"step": "1e308"}, "step"),
    ({"step": "0"}, "step"),
    ({"step": "-1s"}, "step"),
    ({"step": "9" * 400 + "w"}, "step"),
    ({"step": "1ms", "start": "0"}, "step"),  # more steps than the cap
    ({"limit": "0"}, "limit"),
    ({"limit": str(10**30)}, "limit"),
    ({"metric": "colour"}, "metric"),
])
def test_readings_parameters_give_a_4xx_naming_them(client, params, name):
    r = client.get(READINGS, params={"metric": "laeq_db", **params}, headers=auth("admin"))
    assert 400 <= r.status_code < 500, (params, r.status_code, r.text[:300])
    assert name in r.text


def test_readings_with_sane_parameters(client):
    r = client.get(READINGS, params={"metric": "laeq_db", "start": "2025-11-29T00:00:00Z", "end": str(NOW + 1),
                                     "step": "10m"}, headers=auth("viewer"))
    assert r.status_code == 200, r.text
    assert len(r.json()["points"]) == 4  # 30 one-minute readings in 10-minute steps from 15:04:05


@pytest.mark.parametrize("path, params, name", [
    ("/api/v1/quarantine", {"cursor": "9" * 30}, "cursor"),
    ("/api/v1/quarantine", {"cursor": "garbage"}, "cursor"),
    ("/api/v1/quarantine", {"limit": "100000"}, "limit"),
    ("/api/v1/alerts", {"cursor": "9" * 30}, "cursor"),
    ("/api/v1/alerts", {"cursor": "c-1"}, "cursor"),
    ("/api/v1/alerts", {"cursor": "p" + "9" * 30, "state": "pending"}, "cursor"),
    ("/api/v1/alerts", {"limit": "1001"}, "limit"),
    ("/api/v1/deliveries", {"cursor": "9" * 30}, "cursor"),
    ("/api/v1/deliveries", {"limit": "-1"}, "limit"),
    ("/api/v1/devices", {"cursor": "x" * 5000}, "cursor"),
    ("/api/v1/devices", {"limit": "1e3"}, "limit"),
])
def test_list_parameters_give_a_4xx_naming_them(client, path, params, name):
    r = client.get(path, params=params, headers=auth("admin"))
    assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text[:300])
    assert name in r.text


def test_a_quarantine_cursor_pages(client):
    page = client.get("/api/v1/quarantine", params={"limit": 2}, headers=auth("admin")).json()
    rest = client.get("/api/v1/quarantine", params={"cursor": page["next"]}, headers=auth("admin")).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1


SILENCE = {"matchers": {"kind": "noise"}, "reason": "works"}


@pytest.mark.parametrize("body, name", [
    ({**SILENCE, "end": 2**63}, "end"),
    ({**SILENCE, "end": 10**30}, "end"),
    ({**SILENCE, "end": NOW + 100 * 365 * 86_400_000}, "end"),  # 100 years
    ({**SILENCE, "start": NOW, "end": NOW + 91 * 86_400_000}, "end"),
    ({**SILENCE, "end": "²"}, "end"),
    ({**SILENCE, "end": "9" * 5000}, "end"),
    ({**SILENCE, "start": -1, "end": NOW + 60_000}, "start"),
    ({**SILENCE, "end": True}, "end"),
    ({**SILENCE, "end": NOW + 60_000, "reason": "x" * 5000}, "reason"),
    ({**SILENCE, "end": NOW + 60_000, "reason": "\ud800"}, "reason"),
    ({**SILENCE, "end": NOW + 60_000, "matchers": {f"k{i}": "v" for i in range(50)}}, "matchers"),
    ({**SILENCE, "end": NOW + 60_000, "matchers": {"device": "d" * 1000}}, "matchers"),
    ({**SILENCE, "end": NOW + 60_000, "by": ["x"]}, "by"),
])
def test_silence_fields_give_a_4xx_naming_them(client, body, name):
    r = post_json(client, "/api/v1/silences", body, "operator")
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text[:300])
    assert name in r.text


def test_a_silence_is_capped_at_max_silence(client, tmp_path):
    ok = client.post("/api/v1/silences", json={**SILENCE, "end": NOW + 90 * 86_400_000}, headers=auth("operator"))
    assert ok.status_code == 201, ok.text
    r = client.post("/api/v1/silences", json={**SILENCE, "end": NOW + 90 * 86_400_000 + 1}, headers=auth("operator"))
    assert r.status_code == 422 and "at most 90d" in r.text and "max_silence" in r.text
    short = make_node(tmp_path / "short", max_silence="1d")
    try:
        c = TestClient(short.api_app())
        r = c.post("/api/v1/silences", json={**SILENCE, "end": NOW + 2 * 86_400_000}, headers=auth("operator"))
        assert r.status_code == 422 and "at most 1d" in r.text
    finally:
        short.store.close()


@pytest.mark.parametrize("body, name", [
    ({"note": "n" * 5000}, "note"),
    ({"note": 5}, "note"),
    ({"by": "b" * 500}, "by"),
    ({"note": "\udfff"}, "note"),
])
def test_ack_fields_give_a_4xx_naming_them(client, body, name):
    r = post_json(client, "/api/v1/alerts/a-000001/ack", body, "operator")
    assert 400 <= r.status_code < 500 and name in r.text, (body, r.status_code, r.text[:300])


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"end": ' + b"9" * 5000 + b"}", b"\xff\xfe", b"{"])
def test_malformed_json_bodies_give_a_4xx(client, raw):
    r = client.post("/api/v1/silences", content=raw, headers={**auth("operator"), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (raw[:20], r.status_code, r.text[:300])


def test_an_event_detail_nested_300_deep_does_not_break_the_device_page(client):
    r = client.get(f"/api/v1/devices/{DEVICE}", headers=auth("viewer"))
    assert r.status_code == 200, r.text[:300]
    events = {times.parse_time_ms(e["ts"]): e for e in r.json()["events"]}  # RFC 3339, as every API time
    deep = events[NOW - 1000]["detail"]
    for _ in range(16):
        deep = deep["a"]
    assert deep == "(nested deeper than 16 levels: not shown)"
    assert "undecodable" in events[NOW - 2000]["detail"]  # 5,000 deep: past what the parser takes
    assert events[NOW - 3000]["detail"] == {"reason": "watchdog"}


@pytest.mark.parametrize("api, key", [({"max_body_bytes": 10}, "api.max_body_bytes"),
                                      ({"max_silence": "forever"}, "api.max_silence"),
                                      ({"max_silence": "0s"}, "api.max_silence"),
                                      ({"max_silence": "100000d"}, "api.max_silence")])
def test_bad_caps_are_refused_naming_the_key(api, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(env={}, api=api)
