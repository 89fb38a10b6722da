"""A webhook receiver built into the API, as a dispatch centre would run one (``citywatch up``'s demo).

``POST /api/v1/demo/webhook`` checks each delivery as webhooks.md tells receivers to: the
``X-Citywatch-Signature`` must be the HMAC-SHA256 of ``{timestamp}.{raw body}`` under the
receiver's secret and ``X-Citywatch-Timestamp`` at most five minutes old. A verified delivery is
answered 204, any other 401 (so dispatch sees the refusal, as it would from a real receiver).
Either way the receipt is kept, newest first, in a bounded :class:`WebhookLog` (memory only),
with ``verified`` and, when not, the reason; ``GET /api/v1/demo/webhooks`` lists it.

The POST needs no API token: the signature is its authentication (the API guard lists the path
as public). The routes exist only where the application's state holds a ``demo_webhooks`` log:
``citywatch up`` makes one and points a dispatch receiver at it (:func:`demo_dispatch`) when the
config names no receivers of its own.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response

from .webhook import sign

PATH = "/api/v1/demo/webhook"
MAX_AGE_S = 300  # webhooks.md: reject a timestamp more than five minutes old
RECEIVER_NAME = "citywatch-up-demo"

router = APIRouter(tags=["demo"])


class WebhookLog:
    """The last ``keep`` deliveries received, each verified against ``secret`` at ``clock()`` (unix s)."""

    def __init__(self, secret: str, *, keep: int = 200, tz: str = "Asia/Shanghai",
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("the demo receiver needs a secret")
        if keep < 1:
            raise ValueError(f"keep: at least 1, got {keep}")
        self._secret = secret
        self._clock = clock
        self._tz = ZoneInfo(tz)
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)
        self._seen: deque[str] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.received = 0

    def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None when the delivery verifies, else why not."""
        signature = headers.get("x-citywatch-signature", "")
        stamp = headers.get("x-citywatch-timestamp", "")
        if not signature or not stamp:
            return "missing X-Citywatch-Signature or X-Citywatch-Timestamp"
        if not (stamp.isascii() and stamp.isdigit()):
            return f"X-Citywatch-Timestamp is not unix seconds: {stamp[:40]!r}"
        if abs(self._clock() - int(stamp)) > MAX_AGE_S:
            return f"timestamp {stamp} more than {MAX_AGE_S} s from now"
        if not hmac.compare_digest(sign(self._secret, int(stamp), body).encode(), signature.encode()):
            return "signature does not verify"
        return None

    def receive(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Verify and record one delivery; returns its receipt."""
        problem = self.verify(headers, body)
        receipt = {"received_at": datetime.fromtimestamp(self._clock(), self._tz).isoformat(timespec="milliseconds"),
                   "delivery_id": headers.get("x-citywatch-delivery", ""), "verified": problem is None,
                   "problem": problem, **_summary(body)}
        with self._lock:
            receipt["repeat"] = problem is None and receipt["delivery_id"] in self._seen
            if problem is None and not receipt["repeat"]:
                self._seen.append(receipt["delivery_id"])
            self._items.appendleft(receipt)
            self.received += 1
        return receipt

    def items(self, limit: int, verified: bool | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._items)
        return [r for r in items if verified is None or r["verified"] is verified][:limit]


def _summary(body: bytes) -> dict[str, Any]:
    """What the log shows of a body: its status, the alert and the device (None where absent)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        return {"status": None, "alert": None, "device": None, "reason": None}
    alert = doc.get("alert") if isinstance(doc.get("alert"), dict) else {}
    device = doc.get("device") if isinstance(doc.get("device"), dict) else {}
    return {"status": doc.get("status"), "reason": doc.get("reason"),
            "alert": {k: alert.get(k) for k in ("id", "rule", "severity", "summary", "url")} if alert else None,
            "device": {k: device.get(k) for k in ("id", "kind", "district")} if device else None}


def _log(request: Request) -> WebhookLog:
    log = getattr(request.app.state, "demo_webhooks", None)
    if log is None:
        raise HTTPException(404, "the demo webhook receiver runs with citywatch up only")
    return log


@router.post(PATH, status_code=204, responses={401: {"description": "signature or timestamp does not verify"}})
async def receive_webhook(request: Request) -> Response:
    """A signed alert delivery (webhooks.md), checked and kept in the demo log."""
    log = _log(request)
    body = await request.body()
    receipt = log.receive({k.lower(): v for k, v in request.headers.items()}, body)
    if not receipt["verified"]:
        raise HTTPException(401, receipt["problem"])
    return Response(status_code=204)


@router.get("/api/v1/demo/webhooks")
def list_webhooks(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    verified: bool | None = Query(None, description="only verified (true) or refused (false) deliveries"),
) -> dict[str, Any]:
    """The deliveries the demo receiver got, newest first: ``{"items", "received"}``. Each item:
    ``received_at``, ``delivery_id``, ``verified``, ``problem`` (why not verified), ``repeat`` (a
    retry of a delivery already received), ``status``, ``reason``, ``alert`` and ``device``."""
    log = _log(request)
    return {"items": log.items(limit, verified), "received": log.received}


def demo_dispatch(url: str, secret: str, *, escalate_after: str = "5m") -> tuple[list[dict], list[dict]]:
    """``(receivers, routes)`` in the config's raw form: every notice to the demo receiver at
    ``url``, major and critical alerts unacknowledged for ``escalate_after`` escalated to it again
    (as the city duty office), so the log shows each kind of notice."""
    receivers = [{"name": RECEIVER_NAME, "url": url, "secret": secret},
                 {"name": RECEIVER_NAME + "-duty-office", "url": url, "secret": secret}]
    routes = [{"match": {}, "receivers": [RECEIVER_NAME], "escalate_to": [RECEIVER_NAME + "-duty-office"],
               "escalate_after": escalate_after}]
    return receivers, routes
