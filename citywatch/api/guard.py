"""The API's edge, in pure ASGI: who may call, and how much they may send.

Authentication lives here, in one place, and runs on the request's headers before any byte of
its body is read: a request without a valid token, or whose token's role may not do it, is
answered 401 or 403 and its body is never read (the server closes the connection after the
answer). Then the body is capped: a ``Content-Length`` over ``max_body_bytes`` is answered 413
at once, a chunked body is counted while the application reads it and answered 413 as soon as
it passes the cap (the application then sees the client as gone).

Tokens come from ``app.state.tokens`` (``[api] tokens``: ``{token, role, name}``); roles are
``viewer`` (read), ``operator`` (read, acknowledge, silence) and ``admin`` (everything, including
writes to the registry). With no tokens configured the API is open (the embedded ``citywatch up``
default; the app says so at start). Who called is left in ``request.state.user`` and
``request.state.role``. ``/api/v1/health`` and the OpenAPI document are public.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROLES = ("viewer", "operator", "admin")
PUBLIC_PATHS = frozenset({"/api/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# the board's page (also at /alerts/{id}, where webhooks link) and its assets: no data in them
BOARD_PREFIXES = ("/board/", "/alerts/")
DEFAULT_MAX_BODY_BYTES = 1 << 20
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_role(method: str, path: str) -> str | None:
    """The least role that may do ``method path``; None for the public paths."""
    if path in PUBLIC_PATHS or path == "/" or path.startswith(BOARD_PREFIXES):
        return None
    if method in READ_METHODS:
        return "viewer"
    if path == "/api/v1/devices" or path.startswith("/api/v1/devices/"):
        return "admin"
    return "operator"


def identify(tokens: list[dict[str, str]], authorization: str) -> tuple[str, str] | None:
    """``(user, role)`` of the bearer token in an ``Authorization`` header; None if unknown."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    found = None
    for t in tokens:  # every token compared, in constant time each
        if hmac.compare_digest(str(t.get("token", "")).encode(), token.encode()):
            found = t
    if found is None:
        return None
    role = found.get("role", "viewer")
    return found.get("name") or role, role


class ApiGuard:
    """Pure ASGI middleware: authenticate and authorise on the headers, then cap the body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._authorise(scope, headers)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        limit = self.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit() and len(length) <= 18):
                await _answer(send, 400, f"Content-Length: not a byte count: {length[:40]!r}")
                return
            if int(length) > limit:
                await _answer(send, 413, _too_large(limit))
                return
        received = 0
        started = answered = False

        async def capped_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not answered:
                        answered = True
                        await _answer(send, 413, _too_large(limit))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:  # the 413 went out: what the application answers after it is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, capped_receive, guarded_send)

    def _authorise(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        need = required_role(scope["method"], scope["path"])
        state = scope.setdefault("state", {})
        if need is None:
            return None
        app = scope.get("app")
        tokens = getattr(getattr(app, "state", None), "tokens", None) or []
        if not tokens:
            state["user"], state["role"] = "anonymous", "admin"
            return None
        challenge = {"www-authenticate": "Bearer"}
        authorization = headers.get("authorization")
        if not authorization:
            return 401, "missing bearer token", challenge
        who = identify(tokens, authorization)
        if who is None:
            return 401, "unknown token", challenge
        user, role = who
        if ROLES.index(role) < ROLES.index(need):
            return 403, f"role {role!r} may not do this (needs {need})", {}
        state["user"], state["role"] = user, role
        return None


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers we read, latin-1 decoded (ASGI gives bytes), lower-cased names."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        if key in ("authorization", "content-length"):
            out[key] = value.decode("latin-1").strip()
    return out


def _too_large(limit: int) -> str:
    return f"request body over {limit} bytes ([api] max_body_bytes)"


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
