#!/usr/bin/env python3
"""A minimal, correct receiver of citywatch alert webhooks (standard library only).

Copy it as the starting point of a dispatch centre's endpoint. It does what webhooks.md asks
of every receiver:

* verifies ``X-Citywatch-Signature`` (HMAC-SHA256 of ``{timestamp}.{raw body}``, compared in
  constant time) and rejects a ``X-Citywatch-Timestamp`` more than five minutes away;
* drops repeats: citywatch retries until it gets a 2xx, with the same ``X-Citywatch-Delivery``
  every time, so a receiver remembers the ids it has handled (a bounded set here; use your
  database in production) and answers 200 to a repeat without handling it again;
* answers 2xx only once the notice is handled (here: printed), so nothing is lost.

Run::

    python examples/receiver.py --port 9000 --secret change-me

and point a ``[[receivers]]`` entry at ``http://127.0.0.1:9000/``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_SKEW_S = 300  # five minutes
MAX_BODY = 1 << 20


def _header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    value = headers.get(name)  # http.server's headers are case-insensitive already
    if value is None and isinstance(headers, Mapping):
        lname = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lname), None)
    return value


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """True when the signature matches ``body`` and the timestamp is within five minutes of ``now``."""
    ts, sig = _header(headers, "X-Citywatch-Timestamp"), _header(headers, "X-Citywatch-Signature")
    if not ts or not sig or not ts.isdigit():
        return False
    if abs(now - int(ts)) > MAX_SKEW_S:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig)


class SeenIds:
    """The most recent ``capacity`` delivery ids; thread-safe."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, delivery_id: str) -> bool:
        """Remember ``delivery_id``; False if it was already there (a repeat)."""
        with self._lock:
            if delivery_id in self._ids:
                self._ids.move_to_end(delivery_id)
                return False
            self._ids[delivery_id] = None
            if len(self._ids) > self._capacity:
                self._ids.popitem(last=False)
            return True

    def forget(self, delivery_id: str) -> None:
        with self._lock:
            self._ids.pop(delivery_id, None)


def make_handler(secret: str, handle: Callable[[dict], None], seen: SeenIds | None = None,
                 clock: Callable[[], float] = time.time) -> type[BaseHTTPRequestHandler]:
    """A request handler class that verifies, de-duplicates and passes each notice to ``handle``.

    Answers 401 for a bad signature or stale timestamp, 400 for a body that is not a notice,
    200 for a repeat (not handled again), 204 once ``handle`` has returned, 500 if it raised
    (citywatch will send the notice again).
    """
    seen = seen if seen is not None else SeenIds()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                return self._answer(400, b"bad Content-Length")
            body = self.rfile.read(length)
            if not verify(secret, self.headers, body, clock()):
                return self._answer(401, b"bad signature or timestamp")
            try:
                notice = json.loads(body)
                delivery_id = notice["delivery_id"]
            except (ValueError, KeyError, TypeError):
                return self._answer(400, b"not a citywatch notice")
            if delivery_id != self.headers.get("X-Citywatch-Delivery"):
                return self._answer(400, b"delivery id of header and body differ")
            if not seen.add(delivery_id):
                return self._answer(200, b"repeat")
            try:
                handle(notice)
            except Exception:
                seen.forget(delivery_id)  # not handled: accept the retry
                return self._answer(500, b"handler failed")
            self._answer(204, b"")

        def _answer(self, status: int, text: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Receive citywatch alert webhooks and print them.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--secret", required=True, help="the receiver's secret in citywatch's config")
    args = p.parse_args(argv)

    def show(notice: dict) -> None:
        a, d = notice.get("alert", {}), notice.get("device", {})
        print(f"{notice.get('status', '?'):12} {a.get('severity', '?'):8} {d.get('id', '?')} "
              f"{a.get('summary', '')}", flush=True)

    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.secret, show))
    print(f"listening on http://{args.host}:{server.server_address[1]}/", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
