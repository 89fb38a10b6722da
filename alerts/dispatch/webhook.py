"""The webhook notifier (webhooks.md): one signed HTTP POST per attempt.

A notifier answers ``(retryable, error)``: ``error`` is None on success (any 2xx); otherwise
``retryable`` says whether another attempt can help. Every answer other than a 2xx is retryable
(webhooks.md: "any other status" is retried for the whole horizon), 4xx included: a receiver
answering 404 while it is being deployed, or 401 while its secret is being rotated, must not lose
an alarm. Meanwhile the delivery stays ``pending`` with its ``last_error`` (the API shows it as
``failing``).

What a receiver can make the node hold is bounded: an attempt ends ``timeout_s`` after it
started whatever the receiver does (httpx's own timeout is per read, so a receiver trickling
bytes could hold a lane for ever), and of the answer's body at most :data:`MAX_RESPONSE_BYTES`
are read (for the error text), the rest is never read: the connection is closed instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from .config import Receiver

MAX_RESPONSE_BYTES = 4096  # of an answer's body read at most: enough for an error text
ERROR_TEXT_CHARS = 200


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``{timestamp}.{body}`` keyed with ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def is_retryable_status(status: int) -> bool:
    """Whether a non-2xx HTTP status deserves another attempt: always (webhooks.md, Retries)."""
    return not 200 <= status < 300


class Notifier(Protocol):
    """Sends one delivery once. Must not raise for delivery failures: it answers them."""

    async def send(self, delivery_id: str, body: bytes) -> tuple[bool, str | None]: ...

    async def aclose(self) -> None: ...


class WebhookNotifier:
    """POSTs to one :class:`Receiver`; at most ``max_concurrency`` connections, ``timeout_s`` each.

    Each attempt is signed afresh with the time of that attempt (``clock``, unix seconds), so a
    retry an hour later still passes the receiver's five-minute timestamp check.
    """

    def __init__(self, receiver: Receiver, *, clock: Callable[[], float] = time.time,
                 user_agent: str = "citywatch-dispatch/1") -> None:
        self.receiver = receiver
        self._clock = clock
        self._timeout_s = receiver.timeout_s
        limits = httpx.Limits(max_connections=receiver.max_concurrency,
                              max_keepalive_connections=receiver.max_concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(receiver.timeout_s),
            # headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm
            # and the receiver's delayed ACK add ~40 ms to every request on a kept-alive connection
            transport=httpx.AsyncHTTPTransport(
                limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
            # identity: the body is read raw (a few KiB at most), never inflated
            headers={"User-Agent": user_agent, **receiver.headers, "Accept-Encoding": "identity"},
            follow_redirects=False,
            trust_env=False,  # a dispatch centre's URL must not silently go through a proxy
        )

    def headers(self, delivery_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """The contract headers of one attempt signed at ``timestamp``."""
        return {
            "Content-Type": "application/json",
            "X-Citywatch-Delivery": delivery_id,
            "X-Citywatch-Timestamp": str(timestamp),
            "X-Citywatch-Signature": sign(self.receiver.secret, timestamp, body),
        }

    async def send(self, delivery_id: str, body: bytes) -> tuple[bool, str | None]:
        timestamp = int(self._clock())
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        request = self._client.build_request("POST", self.receiver.url, content=body,
                                             headers=self.headers(delivery_id, body, timestamp))
        try:
            async with asyncio.timeout_at(deadline):
                resp = await self._client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            return True, f"timed out after {self._timeout_s:g} s"
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            head = await _read_head(resp, deadline)
        finally:
            await resp.aclose()  # a body not read to its end closes the connection
        if 200 <= resp.status_code < 300:
            return False, None
        text = head.decode("utf-8", "replace")[:ERROR_TEXT_CHARS].strip()
        error = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
        return is_retryable_status(resp.status_code), error

    async def aclose(self) -> None:
        await self._client.aclose()


async def _read_head(resp: httpx.Response, deadline: float) -> bytes:
    """At most :data:`MAX_RESPONSE_BYTES` of the body, read before ``deadline``.

    The status has already decided the outcome; the body is only the error text, so a body
    that breaks off, trickles past the deadline or never ends gives what arrived until then.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES:
                    break
    except (TimeoutError, httpx.HTTPError):
        pass
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]
