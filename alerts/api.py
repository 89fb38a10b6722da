"""REST endpoints of the alert lifecycle (operator.md): list and export, one alert with its
history, acknowledge and take it back, resolve by hand, assign, comment; silences; maintenance
windows.

Handlers use ``request.app.state.alerts`` (an :class:`~alerts.store.AlertState`) and
``request.app.state.now()`` (epoch ms), both set by the application. Who acts is
``request.state.user`` when authentication sets it (a token's name), else the ``by`` of the
body. A token limited to districts (``request.state.districts``, None: all) sees and acts on
only those districts' alerts: others are answered 404, as if they did not exist.

Times in bodies are epoch ms or RFC 3339 with an offset (devices.times: one parser); a bad one
is 422 naming the field, like every other body field. Times shown are RFC 3339 in the configured
zone's offset (devices.times.rfc3339).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from citywatch.api.deps import caller
from devices import durations, times
from devices.api import storable
from devices.catalogue import KINDS, SEVERITIES

from .errors import AlertNotFound, AlertsError, InvalidSilence
from .model import ALERT_STATES, SILENCE_MATCHERS, Alert
from .store import AlertFilter, AlertState

router = APIRouter(tags=["alerts"])

# The longest silence; the application may set ``app.state.max_silence_ms`` ([api] max_silence).
MAX_SILENCE_MS = 90 * 86_400_000


Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(storable)]
Text = Annotated[str, StringConstraints(max_length=2000), AfterValidator(storable)]
Time = int | Annotated[str, StringConstraints(max_length=times.MAX_TEXT)]


class AckBody(BaseModel):
    by: Name | None = Field(None, description="who acknowledges (ignored when authenticated)")
    note: Text = ""


class NoteBody(BaseModel):
    """Un-acknowledge or resolve by hand: an optional note for the alert's history."""

    by: Name | None = Field(None, description="who acts (ignored when authenticated)")
    note: Text = ""


class AssignBody(BaseModel):
    unit: Name = Field(..., description="the responsible unit the alert is handed to; \"\" takes it back")
    by: Name | None = Field(None, description="who assigns (ignored when authenticated)")


class CommentBody(BaseModel):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
                    AfterValidator(storable)]
    by: Name | None = Field(None, description="who comments (ignored when authenticated)")


class ByBody(BaseModel):
    by: Name | None = Field(None, description="who acts (ignored when authenticated)")


class SilenceBody(BaseModel):
    matchers: dict[Name, Name] = Field(..., max_length=len(SILENCE_MATCHERS),
                                       description="any of rule, kind, district, device, severity")
    start: Time | None = Field(None, description="epoch ms or RFC 3339; default now")
    end: Time = Field(..., description="epoch ms or RFC 3339; at most 90 days after start by default")
    reason: Text
    by: Name | None = None


class MaintenanceBody(BaseModel):
    matchers: dict[Name, Name] = Field(..., max_length=len(SILENCE_MATCHERS),
                                       description="any of rule, kind, district, device, severity")
    start: Time = Field(..., description="the first start: epoch ms or RFC 3339 with an offset")
    duration: Annotated[str, StringConstraints(max_length=40)] = Field(
        ..., description="how long each occurrence lasts (e.g. 4h); at most the period")
    every: Literal["daily", "weekly", "monthly"] | None = Field(
        None, description="daily, weekly or monthly (same day of month; the last day in a month lacking it); "
                          "null: once")
    reason: Text
    by: Name | None = None


def _state(request: Request) -> AlertState:
    return request.app.state.alerts


def _now(request: Request) -> int:
    return int(request.app.state.now())


def _scope(request: Request) -> list[str] | None:
    """The districts the caller's token is limited to (None: all)."""
    return caller(request).narrow()


def _visible(request: Request, alert: Alert) -> Alert:
    """``alert`` if the caller may see it, else 404 (not revealing that it exists)."""
    scope = _scope(request)
    if scope is not None and alert.district not in scope:
        raise HTTPException(404, f"no alert {alert.id!r}")
    return alert


def _who(request: Request, by: str | None) -> str:
    """Who acts: the token's name; with no token (an open API), the ``by`` given; else anonymous."""
    return caller(request).by(by)


def _within_districts(request: Request, matchers: dict[str, str]) -> None:
    """A token limited to districts silences within them: ``matchers.district`` one of its own."""
    who = caller(request)
    if who.limited and not (matchers.get("district") and who.allows(matchers["district"])):
        raise HTTPException(403, "matchers.district: this token is limited to "
                                 f"{', '.join(sorted(who.districts or ()))}; name one of them")


def _ms(value: int | str, field: str) -> int:
    try:
        return times.parse_time_ms(value)
    except ValueError as e:
        raise HTTPException(422, f"{field}: {e}") from None


CSV_COLUMNS = ("id", "rule", "state", "severity", "silenced", "summary", "device_id", "kind", "district",
               "metric", "value", "threshold", "started_at", "fired_at", "ended_at", "acknowledged_by",
               "acknowledged_at", "ack_note", "assignee")


@router.get("/api/v1/alerts", response_model=None)
def list_alerts(
    request: Request,
    state: Annotated[str | None, Query(description="pending, firing, acknowledged or resolved")] = None,
    district: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[Literal[KINDS] | None, Query()] = None,  # type: ignore[valid-type]
    severity: Annotated[Literal[SEVERITIES] | None, Query()] = None,  # type: ignore[valid-type]
    device_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^(c-?[0-9]-[0-9]{1,18}|p[0-9]{1,18})$",
                                        description="`next` of the previous page")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="csv: every matching alert as a "
                                                                 "spreadsheet (RFC 4180, UTF-8 with BOM)")] = "json",
) -> dict[str, Any] | StreamingResponse:
    """Alerts, most severe first, then newest: ``{"items": [...], "total": N, "next": cursor-or-null}``.

    Without ``state``: the alerts that fired (firing, acknowledged, resolved). ``format=csv``
    answers every matching alert (no paging) as ``text/csv``.
    """
    if state is not None and state not in ALERT_STATES:
        raise HTTPException(422, f"state must be one of {', '.join(ALERT_STATES)}, got {state!r}")
    st = _state(request)
    where = AlertFilter(district, kind, severity, device_id, _scope(request))
    if format == "csv":
        return StreamingResponse(_csv_rows(st, state, where), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="alerts.csv"'})
    try:
        items, nxt = st.list_alerts(state, limit, cursor, where)
    except AlertsError as e:
        raise HTTPException(422, f"cursor: {e}") from None
    return {"items": [a.to_api(st.tz) for a in items], "total": st.count_alerts(state, where), "next": nxt}


def _csv_rows(st: AlertState, state: str | None, where: AlertFilter) -> Iterator[bytes]:
    """The alerts as RFC 4180 CSV (CRLF, quoted where needed), UTF-8 with a BOM so that Excel
    reads the Chinese names right; a page of the state DB at a time."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(CSV_COLUMNS)
    yield "\ufeff".encode() + buf.getvalue().encode()
    cursor = None
    while True:
        items, cursor = st.list_alerts(state, 1000, cursor, where)
        buf.seek(0)
        buf.truncate()
        for a in items:
            row = a.to_api(st.tz)
            out.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
        yield buf.getvalue().encode()
        if cursor is None:
            return


def _act(request: Request, alert_id: str, action) -> dict[str, Any]:
    """Run ``action(state)`` on a visible alert: 404 if unknown (or outside the caller's
    districts), 409 if its state does not allow it."""
    st = _state(request)
    try:
        _visible(request, st.get(alert_id))
        return action(st).to_api(st.tz, detail=True)
    except AlertNotFound as e:
        raise HTTPException(404, str(e)) from None
    except AlertsError as e:
        raise HTTPException(409, str(e)) from None


@router.get("/api/v1/alerts/{alert_id}")
def get_alert(request: Request, alert_id: str) -> dict[str, Any]:
    """One alert with its ``history`` (every transition: who, when, note), ``comments`` and
    ``assignee``."""
    return _act(request, alert_id, lambda st: st.get(alert_id))


@router.post("/api/v1/alerts/{alert_id}/ack")
def ack_alert(request: Request, alert_id: str, body: Annotated[AckBody | None, Body()] = None) -> dict[str, Any]:
    """Acknowledge a firing alert (operator). 404 if unknown, 409 if not firing."""
    body = body or AckBody()
    return _act(request, alert_id, lambda st: st.ack(alert_id, _who(request, body.by), _now(request), body.note))


@router.post("/api/v1/alerts/{alert_id}/unack")
def unack_alert(request: Request, alert_id: str, body: Annotated[NoteBody | None, Body()] = None) -> dict[str, Any]:
    """Take an acknowledgement back: the alert is firing again (operator). No webhook notice."""
    body = body or NoteBody()
    return _act(request, alert_id, lambda st: st.unack(alert_id, _who(request, body.by), _now(request), body.note))


@router.post("/api/v1/alerts/{alert_id}/resolve")
def resolve_alert(request: Request, alert_id: str,
                  body: Annotated[NoteBody | None, Body()] = None) -> dict[str, Any]:
    """Resolve an open alert by hand (operator): a ``resolved`` notice like the engine's. If its
    condition still holds, the rule starts over and a new alert fires after its ``for``."""
    body = body or NoteBody()
    return _act(request, alert_id, lambda st: st.resolve(alert_id, _who(request, body.by), _now(request), body.note))


@router.post("/api/v1/alerts/{alert_id}/assign")
def assign_alert(request: Request, alert_id: str, body: AssignBody) -> dict[str, Any]:
    """Hand an alert to a responsible unit (operator); ``"unit": ""`` takes it back."""
    return _act(request, alert_id, lambda st: st.assign(alert_id, body.unit, _who(request, body.by), _now(request)))


@router.post("/api/v1/alerts/{alert_id}/comments", status_code=201)
def comment_alert(request: Request, alert_id: str, body: CommentBody) -> dict[str, Any]:
    """Comment on an alert (operator); answers the alert with its ``comments``."""
    return _act(request, alert_id, lambda st: st.comment(alert_id, body.text, _who(request, body.by), _now(request)))


@router.post("/api/v1/silences", status_code=201)
def add_silence(request: Request, body: SilenceBody) -> dict[str, Any]:
    """Silence matching alerts for a period (operator): recorded, not sent on."""
    _within_districts(request, body.matchers)
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


@router.get("/api/v1/silences")
def list_silences(
    request: Request,
    active: Annotated[bool | None, Query(description="true: active now; false: over or not started")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """Silences, latest start first: ``{"items", "total", "next"}``."""
    st = _state(request)
    now = _now(request)
    found = [s for s in reversed(st.silences()) if active is None or s.active(now) is active]
    return _page([s.to_api(st.tz) for s in found], limit, cursor)


def _page(items: list[dict], limit: int, cursor: str | None) -> dict[str, Any]:
    start = int(cursor or 0)
    more = len(items) > start + limit
    return {"items": items[start:start + limit], "total": len(items), "next": str(start + limit) if more else None}


@router.delete("/api/v1/silences/{silence_id}")
def end_silence(request: Request, silence_id: str, body: Annotated[ByBody | None, Body()] = None) -> dict[str, Any]:
    """End a silence early (operator): alerts matching it are sent on again from now on."""
    st = _state(request)
    try:
        s = st.end_silence(silence_id, _who(request, (body or ByBody()).by), _now(request))
    except KeyError:
        raise HTTPException(404, f"no silence {silence_id!r}") from None
    return s.to_api(st.tz)


@router.get("/api/v1/maintenance")
def list_maintenance(
    request: Request,
    active: Annotated[bool | None, Query(description="true: in an occurrence now; false: not")] = None,
    ended: Annotated[bool, Query(description="also the windows ended (DELETE)")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """Maintenance windows, newest first, each with ``active`` and ``next_start``."""
    st = _state(request)
    now = _now(request)
    found = [w for w in reversed(st.maintenance_windows(include_ended=ended))
             if active is None or w.active(now) is active]
    return _page([w.to_api(st.tz, now) for w in found], limit, cursor)


@router.post("/api/v1/maintenance", status_code=201)
def add_maintenance(request: Request, body: MaintenanceBody) -> dict[str, Any]:
    """A maintenance window (operator): alerts matching it while an occurrence lasts are
    silenced exactly as by a silence. Occurrences follow the wall clock of the configured zone."""
    st = _state(request)
    now = _now(request)
    start = _ms(body.start, "start")
    try:
        duration = durations.parse_duration_ms(body.duration)
    except ValueError as e:
        raise HTTPException(422, f"duration: {e}") from None
    try:
        w = st.add_maintenance(body.matchers, start, duration, body.every, body.reason, _who(request, body.by),
                               now_ms=now)
    except InvalidSilence as e:
        raise HTTPException(422, str(e)) from None
    return w.to_api(st.tz, now)


@router.delete("/api/v1/maintenance/{window_id}")
def end_maintenance(request: Request, window_id: str,
                    body: Annotated[ByBody | None, Body()] = None) -> dict[str, Any]:
    """End a maintenance window (operator): no occurrence from now on; the past is kept."""
    st = _state(request)
    now = _now(request)
    try:
        w = st.end_maintenance(window_id, _who(request, (body or ByBody()).by), now)
    except KeyError:
        raise HTTPException(404, f"no maintenance window {window_id!r}") from None
    return w.to_api(st.tz, now)
