"""Receivers that misbehave at the HTTP level cannot grow the node's memory or hold a lane.

Real sockets on 127.0.0.1: one answers 503 with a body that never ends (as fast as loopback
takes it), one trickles its status line a byte at a time (each read arrives within httpx's
per-read timeout, so only an overall deadline ends the attempt), one accepts the request and
never answers. A healthy receiver beside them gets every notice in time; the bad ones' deliveries
stay open and are delivered once the receivers behave.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import psutil

from alerts.dispatch import Receiver, WebhookNotifier
from alerts.dispatch.webhook import MAX_RESPONSE_BYTES

from .conftest import make_notice, wait_for

MODES = ("endless", "trickle", "silent")


class HostileReceiver:
    """An HTTP/1.1 server on a raw socket; ``mode`` says how it answers (``ok``: 204)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.sent_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        try:
            with conn:
                while not self._stop.is_set():
                    if not self._read_request(conn):
                        return
                    with self._lock:
                        self.requests += 1
                    if not self._answer(conn, self.mode):
                        return
        except OSError:  # the client closed the connection: what these receivers wait for
            pass

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                if self._stop.is_set():
                    return False
                continue
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        return True

    def _answer(self, conn: socket.socket, mode: str) -> bool:
        """Send the answer; False when the connection is not to be used again."""
        if mode == "ok":
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            return True
        if mode in ("endless", "endless-200"):
            status = b"200 OK" if mode == "endless-200" else b"503 Service Unavailable"
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
            while not self._stop.is_set():
                conn.sendall(chunk)
                self.sent_bytes += 0x10000
        elif mode == "trickle":
            for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"." * 100_000:
                if self._stop.is_set():
                    break
                conn.sendall(bytes([byte]))
                time.sleep(0.05)
        else:  # silent
            self._stop.wait()
        return False


def _notifier(r: HostileReceiver, timeout_s: float = 1.0) -> WebhookNotifier:
    return WebhookNotifier(Receiver("x", r.url, "k", timeout_s=timeout_s))


def _send(r: HostileReceiver, timeout_s: float = 1.0) -> tuple[bool, str | None, float]:
    async def attempt():
        notifier = _notifier(r, timeout_s)
        t0 = time.monotonic()
        try:
            retryable, error = await notifier.send("01JDXQ4Z8K6V1F2M3N4P5Q6R7S", b"{}")
        finally:
            await notifier.aclose()
        return retryable, error, time.monotonic() - t0

    return asyncio.run(attempt())


def test_an_endless_error_body_is_read_up_to_the_cap_and_the_connection_closed():
    r = HostileReceiver("endless")
    try:
        retryable, error, took = _send(r)
    finally:
        r.close()
    assert retryable and error.startswith("HTTP 503: xxxx")
    assert len(error) < 300 and took < 1.0
    assert MAX_RESPONSE_BYTES <= 8192


def test_a_2xx_with_an_endless_body_is_a_success_at_once():
    r = HostileReceiver("endless-200")
    try:
        retryable, error, took = _send(r)
    finally:
        r.close()
    assert error is None and took < 1.0


def test_a_trickling_receiver_is_cut_off_at_the_timeout_not_per_read():
    r = HostileReceiver("trickle")
    try:
        retryable, error, took = _send(r, timeout_s=0.5)
    finally:
        r.close()
    assert retryable and error == "timed out after 0.5 s"
    assert 0.4 < took < 1.5


def test_hostile_receivers_leave_memory_flat_and_a_healthy_one_on_time(harness, receivers):
    bad = {mode: HostileReceiver(mode) for mode in MODES}
    healthy = receivers()
    try:
        h = harness([{"name": m, "url": r.url, "secret": "k", "timeout": "1s", "max_concurrency": 2}
                     for m, r in bad.items()] + [{"name": "ok", "url": healthy.url, "secret": "k"}],
                    [{"match": {}, "receivers": [*MODES, "ok"]}])
        h.dispatcher.start()
        proc = psutil.Process()
        h.notify(make_notice(alert_id="a-warm"))
        wait_for(lambda: len(healthy.received()) == 1)
        base = proc.memory_info().rss
        peak = base
        sent: dict[str, float] = {}
        n = 30
        for i in range(n):  # ~3 s: every bad lane goes through several timed-out attempts
            sent[f"a-{i}"] = time.monotonic()
            h.notify(make_notice(alert_id=f"a-{i}"))
            deadline = time.monotonic() + 0.1
            while time.monotonic() < deadline:
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.01)
        wait_for(lambda: len(healthy.received()) == n + 1, timeout=5)
        peak = max(peak, proc.memory_info().rss)
        late = {hit.json["alert"]["id"]: hit.at - sent[hit.json["alert"]["id"]]
                for hit in healthy.received() if hit.json["alert"]["id"] in sent}
        print(f"rss {base / 2**20:.0f} MB -> peak {peak / 2**20:.0f} MB; endless receiver sent "
              f"{bad['endless'].sent_bytes / 2**20:.0f} MB; healthy latency max {max(late.values()) * 1000:.0f} ms")
        assert peak - base < 50 * 2**20
        assert max(late.values()) < 0.5  # as test_dead_receiver_does_not_delay_a_healthy_one
        for mode, r in bad.items():
            rows = h.rows(receiver=mode)
            assert len(rows) == n + 1 and {row["state"] for row in rows} <= {"pending", "scheduled"}, mode
            assert r.requests >= 2, mode  # retried, a lane never held past its timeout
        errors = {m: {row["last_error"] for row in h.rows(receiver=m) if row["last_error"]} for m in MODES}
        assert all(e.startswith("HTTP 503: xxx") for e in errors["endless"])
        assert errors["trickle"] == errors["silent"] == {"timed out after 1 s"}

        for r in bad.values():  # the receivers recover: nothing was lost
            r.mode = "ok"
        wait_for(lambda: len(h.rows(state="delivered")) == 4 * (n + 1), timeout=20)
    finally:
        for r in bad.values():
            r.close()
