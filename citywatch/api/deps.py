"""Shared API dependencies: services on ``app.state``, parameter parsing.

Authentication is not here: :mod:`citywatch.api.guard` does it, in one place, before a request's
body is read.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request

from devices import durations, times


def services(request: Request) -> Any:
    return request.app.state


Services = Annotated[Any, Depends(services)]


def zone(svc: Any) -> ZoneInfo:
    """The configured zone ([timezone]) every time the API shows is in (devices.times.rfc3339)."""
    settings = getattr(svc, "settings", None)
    return ZoneInfo(getattr(settings, "timezone", "Asia/Shanghai"))


def parse_time(value: str | None, name: str, default: int) -> int:
    """Epoch milliseconds or RFC 3339 with an offset (operator.md), 1970..2262; HTTP 400 naming
    the parameter. The one parser of times in query parameters (devices.times.parse_time_ms)."""
    if value is None or value == "":
        return default
    try:
        return times.parse_time_ms(value)
    except ValueError as e:
        raise HTTPException(400, f"{name}: {e}") from None


def parse_duration_ms(value: str, name: str, *, max_ms: int = times.MAX_MS) -> int:
    """A positive duration (``10s``, ``1m``, ``1h``) of at most ``max_ms``; HTTP 400 naming the parameter."""
    try:
        ms = durations.parse_duration_ms(value)
    except ValueError:
        ms = 0
    if ms <= 0:
        raise HTTPException(400, f"{name}: expected a duration like 10s, 1m, 1h, got {value[:40]!r}")
    if ms > max_ms:
        raise HTTPException(400, f"{name}: at most {durations.format_duration(max_ms)}, got {value[:40]!r}")
    return ms
