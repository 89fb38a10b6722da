"""The API's edge, in pure ASGI: who may call, and how much they may send.

Authentication lives here, in one place, and runs on the request's headers before any byte of
its body is read: a request without a valid token, or whose token's role may not do it, is
answered 401 or 403 and its body is never read (the server closes the connection after the
answer). Then the body is capped: a ``Content-Length`` over ``max_body_bytes`` is answered 413
at once, a chunked body is counted while the application reads it and answered 413 as soon as
it passes the cap (the application then sees the client as gone).

Tokens come from the state DB (``app.state.token_store``, a
:class:`~citywatch.api.tokens.TokenStore`: ``citywatch tokens create``) and, for compatibility,
from ``app.state.tokens`` (``[api] tokens``: plaintext ``{token, role, name}``). Roles are
``viewer`` (read), ``operator`` (read, acknowledge, silence) and ``admin`` (everything, including
writes to the registry). The API is closed by default: without a token a request is answered
401, unless ``app.state.api_open`` (``[api] open = true``) lets it act as ``anonymous`` admin. Who
called is left in ``request.state.user``, ``request.state.role`` and ``request.state.districts``
(the districts the token is limited to; None for all). ``/api/v1/health``, the OpenAPI document
and the board's pages and assets (``/``, ``/board/...``, ``/alerts/{id}``) are public.
"""

from __future__ import annotations

import asyncio
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
PUBLIC_PATHS = frozenset({"/api/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/api/v1/demo/webhook"})  # up's webhook receiver: the signature authenticates
# the board's page and its assets (no data in them), also at /alerts/{id}: webhooks.md's
# ``alert.url`` is ``{public_url}/alerts/{id}``, opened from a link, which carries no token (the
# page's data comes from /api/v1 with one)
PUBLIC_PREFIXES = ("/board/", "/alerts/")
DEFAULT_MAX_BODY_BYTES = 1 << 20
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_role(method: str, path: str) -> str | None:
    """The least role that may do ``method path``; None for the public paths."""
    if path in PUBLIC_PATHS or path in ("/", "/board") or path.startswith(PUBLIC_PREFIXES):
        return None
    if method in READ_METHODS:
        return "viewer"
    if path == "/api/v1/devices" or path.startswith("/api/v1/devices/"):
        return "admin"
    return "operator"


Who = tuple[str, str, tuple[str, ...] | None]  # (name, role, districts or None for all)


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header; None if it is not one."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def identify(tokens: list[dict[str, str]], token: str) -> Who | None:
    """``(user, role, None)`` of a plaintext ``[api] tokens`` entry; None if unknown."""
    found = None
    for t in tokens:  # every token compared, in constant time each
        if hmac.compare_digest(str(t.get("token", "")).encode(), token.encode()):
            found = t
    if found is None:
        return None
    role = found.get("role", "viewer")
    return found.get("name") or role, role, None


def identify_any(app_state: Any, token: str) -> Who | None:
    """Who a bearer token is: a state-DB token first, then the plaintext ones."""
    store = getattr(app_state, "token_store", None)
    stored = store.identify(token) if store is not None else None
    if stored is not None:
        return stored.name, stored.role, stored.districts
    return identify(getattr(app_state, "tokens", None) or [], token)


class ApiGuard:
    """Pure ASGI middleware: authenticate and authorise on the headers, then cap the body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the same decisions, as for a GET of its path
            if self._authorise({**scope, "method": "GET"}, _headers(scope), scope.setdefault("state", {})):
                await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._authorise(scope, headers, scope.setdefault("state", {}))
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

    def _authorise(self, scope: Scope, headers: dict[str, str],
                   state: dict[str, Any]) -> tuple[int, str, dict[str, str]] | None:
        """Who calls, into ``state``; or the refusal ``(status, detail, headers)``."""
        need = required_role(scope["method"], scope["path"])
        if need is None:
            return None
        app_state = getattr(scope.get("app"), "state", None)
        challenge = {"www-authenticate": "Bearer"}
        authorization = headers.get("authorization")
        if not authorization:
            if getattr(app_state, "api_open", False):  # [api] open = true
                state["user"], state["role"], state["districts"] = "anonymous", "admin", None
                return None
            return 401, "missing bearer token", challenge
        token = bearer(authorization)
        who = identify_any(app_state, token) if token else None
        if who is None:
            return 401, "unknown or revoked token", challenge
        _flush_last_use(app_state)
        user, role, districts = who
        if ROLES.index(role) < ROLES.index(need):
            return 403, f"role {role!r} may not do this (needs {need})", {}
        state["user"], state["role"], state["districts"] = user, role, districts
        return None


def _flush_last_use(app_state: Any) -> None:
    """Write the tokens' last use from a worker thread: never wait for SQLite on the event loop."""
    store = getattr(app_state, "token_store", None)
    if store is not None and store.touch_due():
        asyncio.get_running_loop().run_in_executor(None, store.flush_used)


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
