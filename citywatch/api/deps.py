"""Shared API dependencies: services on ``app.state``, who called, parameter parsing.

Authentication is not here: :mod:`citywatch.api.guard` does it, in one place, before a request's
body is read, and leaves who called in ``request.state``; :class:`Caller` reads it back for the
routes, with the district scoping every route applies (docs/SECURITY.md "Districts").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from fastapi import Depends, HTTPException, Request, Response

from devices import durations, times


def services(request: Request) -> Any:
    return request.app.state


Services = Annotated[Any, Depends(services)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called (the guard's findings): token name, role, and the districts the token is
    limited to (None: all). Without the guard (an app built in a test) it is an unlimited
    ``anonymous`` admin.

    A token limited to districts sees and acts on only those districts' devices, readings,
    alerts, quarantine entries and deliveries: lists filter with :meth:`narrow`, single reads
    and actions call :meth:`check`, which answers 404 as for an unknown id (not revealing that
    it exists).
    """

    name: str = "anonymous"
    role: str = "admin"
    districts: frozenset[str] | None = None

    @property
    def limited(self) -> bool:
        return self.districts is not None

    def allows(self, district: str | None) -> bool:
        """Whether this caller may see something of ``district`` (None or "": of no district)."""
        return self.districts is None or (district or "") in self.districts

    def narrow(self, district: str | None = None) -> list[str] | None:
        """The districts a list is filtered to: None for all; ``[]`` when nothing may be shown
        (``district`` asked for is outside the token's)."""
        if district is not None:
            return [district] if self.allows(district) else []
        return None if self.districts is None else sorted(self.districts)

    def check(self, district: str | None, not_found: str) -> None:
        """HTTP 404 with ``not_found`` (the message an unknown id gets) if ``district`` is outside."""
        if not self.allows(district):
            raise HTTPException(404, not_found)

    def by(self, given: str | None) -> str:
        """Who acts, as recorded: the token's name; without a token (open API) the ``by`` given,
        else ``anonymous``. (No token may be named ``anonymous``.)"""
        if self.name != "anonymous":
            return self.name
        return (given or "").strip() or "anonymous"


def caller(request: Request) -> Caller:
    st = request.state
    districts = getattr(st, "districts", None)
    return Caller(getattr(st, "user", None) or "anonymous", getattr(st, "role", None) or "admin",
                  None if districts is None else frozenset(districts))


CallerDep = Annotated[Caller, Depends(caller)]


_encode = msgspec.json.Encoder().encode


def json_answer(body: Any) -> Response:
    """``body`` as JSON, encoded in one C call: for long lists (a page of 10,000 devices), where
    FastAPI's own encoding (``jsonable_encoder``) took 0.6 s."""
    return Response(_encode(body), media_type="application/json")


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
