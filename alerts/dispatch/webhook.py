"""The webhook notifier (webhooks.md): one signed HTTP POST per attempt.

A notifier answers ``(retryable, error)``: ``error`` is None on success (any 2xx); otherwise
``retryable`` says whether another attempt can help. Connection errors, timeouts, 5xx, 408 and
429 (and any non-2xx status outside 4xx) are retryable; other 4xx answers are not — the receiver
rejected this body, and sending it again will not change its mind.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from .config import Receiver

RETRYABLE_4XX = frozenset({408, 429})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``{timestamp}.{body}`` keyed with ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def is_retryable_status(status: int) -> bool:
    """Whether a non-2xx HTTP status deserves another attempt."""
    return not (400 <= status < 500) or status in RETRYABLE_4XX


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
            headers={"User-Agent": user_agent, **receiver.headers},
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
        try:
            resp = await self._client.post(self.receiver.url, content=body,
                                           headers=self.headers(delivery_id, body, timestamp))
        except httpx.TimeoutException:
            return True, f"timed out after {self._timeout_s:g} s"
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= resp.status_code < 300:
            return False, None
        text = resp.text[:200].strip()
        error = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
        return is_retryable_status(resp.status_code), error

    async def aclose(self) -> None:
        await self._client.aclose()
