"""REST endpoints of the alert lifecycle (operator.md): list, acknowledge, silence.

Handlers use ``request.app.state.alerts`` (an :class:`~alerts.state.AlertState`) and
``request.app.state.now()`` (epoch ms), both set by the application. Who acts is
``request.state.user`` when authentication sets it, else the ``by`` of the body.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from devices import durations, times

from .errors import AlertNotFound, AlertsError, InvalidSilence
from .state import ALERT_STATES, SILENCE_MATCHERS, AlertState

router = APIRouter(tags=["alerts"])

# The longest silence; the application may set ``app.state.max_silence_ms`` ([api] max_silence).
MAX_SILENCE_MS = 90 * 86_400_000


def _storable(text: str) -> str:
    """JSON may carry lone surrogates (``\\ud800``), which the state DB cannot store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return text


Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]
Text = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_storable)]
Time = int | Annotated[str, StringConstraints(max_length=times.MAX_TEXT)]


class AckBody(BaseModel):
    by: Name | None = Field(None, description="who acknowledges (ignored when authenticated)")
    note: Text = ""


class SilenceBody(BaseModel):
    matchers: dict[Name, Name] = Field(..., max_length=len(SILENCE_MATCHERS),
                                       description="any of rule, kind, district, device, severity")
    start: Time | None = Field(None, description="epoch ms or RFC 3339; default now")
    end: Time = Field(..., description="epoch ms or RFC 3339; at most 90 days after start by default")
    reason: Text
    by: Name | None = None


def _state(request: Request) -> AlertState:
    return request.app.state.alerts


# the user an open API (no tokens) leaves in request.state.user: not a token's name
OPEN_API_USER = "anonymous"


def _who(request: Request, by: str | None) -> str:
    """Who acts: the token's name; with no token (an open API), the ``by`` given; else anonymous."""
    user = getattr(request.state, "user", None)
    name = getattr(user, "name", None) or (user if isinstance(user, str) else None)
    if name == OPEN_API_USER:
        name = None
    return name or (by or "").strip() or OPEN_API_USER


def _ms(value: int | str, field: str) -> int:
    try:
        return times.parse_time_ms(value)
    except ValueError as e:
        raise HTTPException(422, f"{field}: {e}") from None


@router.get("/api/v1/alerts")
def list_alerts(
    request: Request,
    state: Annotated[str | None, Query(description="pending, firing, acknowledged or resolved")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[cp]?[0-9]{1,18}$",
                                        description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """Alerts, newest first: ``{"items": [...], "total": N, "next": cursor-or-null}``."""
    if state is not None and state not in ALERT_STATES:
        raise HTTPException(422, f"state must be one of {', '.join(ALERT_STATES)}, got {state!r}")
    st = _state(request)
    try:
        items, nxt = st.list_alerts(state, limit, cursor)
    except AlertsError as e:
        raise HTTPException(422, str(e)) from None
    return {"items": [a.to_api(st.tz) for a in items], "total": st.count_alerts(state), "next": nxt}


@router.get("/api/v1/alerts/{alert_id}")
def get_alert(request: Request, alert_id: str) -> dict[str, Any]:
    """One alert with its history."""
    st = _state(request)
    try:
        return st.get(alert_id).to_api(st.tz)
    except AlertNotFound as e:
        raise HTTPException(404, str(e)) from None


@router.post("/api/v1/alerts/{alert_id}/ack")
def ack_alert(request: Request, alert_id: str, body: Annotated[AckBody | None, Body()] = None) -> dict[str, Any]:
    """Acknowledge a firing alert (operator). 404 if unknown, 409 if not firing."""
    body = body or AckBody()
    st = _state(request)
    try:
        alert = st.ack(alert_id, _who(request, body.by), int(request.app.state.now()), body.note)
    except AlertNotFound as e:
        raise HTTPException(404, str(e)) from None
    except AlertsError as e:
        raise HTTPException(409, str(e)) from None
    return alert.to_api(st.tz)


@router.post("/api/v1/silences", status_code=201)
def add_silence(request: Request, body: SilenceBody) -> dict[str, Any]:
    """Silence matching alerts for a period (operator): recorded, not sent on."""
    st = _state(request)
    now = int(request.app.state.now())
    start = now if body.start is None else _ms(body.start, "start")
    end = _ms(body.end, "end")
    longest = int(getattr(request.app.state, "max_silence_ms", MAX_SILENCE_MS))
    if end - start > longest:
        raise HTTPException(422, f"end: a silence lasts at most {durations.format_duration(longest)} "
                                 "([api] max_silence); set a new one when it ends")
    try:
        s = st.add_silence(body.matchers, start, end, body.reason, _who(request, body.by), now_ms=now)
    except InvalidSilence as e:
        raise HTTPException(422, str(e)) from None
    return s.to_api(st.tz)
