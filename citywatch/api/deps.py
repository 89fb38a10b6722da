"""Shared API dependencies: services on ``app.state``, authentication, time parsing.

Authentication lives here, in one place: every router except health is mounted with
:func:`authenticate`. Tokens come from ``[api] tokens`` (``{token, role, name}``); roles are
``viewer`` (read), ``operator`` (read, acknowledge, silence) and ``admin`` (everything).
With no tokens configured the API is open (the embedded ``citywatch up`` default) and says so
at start.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from devices import durations

ROLES = ("viewer", "operator", "admin")


def services(request: Request) -> Any:
    return request.app.state


Services = Annotated[Any, Depends(services)]


def authenticate(request: Request) -> None:
    tokens: list[dict] = getattr(request.app.state, "tokens", []) or []
    if not tokens:
        request.state.user = "anonymous"
        request.state.role = "admin"
        return
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    for t in tokens:
        if hmac.compare_digest(str(t.get("token", "")), token):
            request.state.user = t.get("name") or t.get("role")
            request.state.role = t.get("role", "viewer")
            break
    else:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    need = "viewer" if request.method in ("GET", "HEAD") else "operator"
    if request.url.path.startswith("/api/v1/devices") and request.method not in ("GET", "HEAD"):
        need = "admin"
    if ROLES.index(request.state.role) < ROLES.index(need):
        raise HTTPException(403, f"role {request.state.role!r} may not do this (needs {need})")




def parse_time(value: str | None, name: str, default: int) -> int:
    """Epoch milliseconds or RFC 3339 (operator.md); HTTP 400 naming the parameter."""
    if value is None or value == "":
        return default
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: expected epoch milliseconds or RFC 3339, got {value!r}") from None
    if dt.tzinfo is None:
        raise HTTPException(400, f"{name}: RFC 3339 time needs an offset, got {value!r}")
    return int(dt.timestamp() * 1000)


def parse_duration_ms(value: str, name: str) -> int:
    """A positive duration (``10s``, ``1m``, ``1h``); HTTP 400 naming the parameter."""
    try:
        ms = durations.parse_duration_ms(value)
    except ValueError:
        ms = 0
    if ms <= 0:
        raise HTTPException(400, f"{name}: expected a duration like 10s, 1m, 1h, got {value!r}")
    return ms
