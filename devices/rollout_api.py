"""``GET /api/v1/reports/rollout`` (operator.md): the rollout report in every format.

Uses ``request.app.state.rollout``, a :class:`~devices.rollout_service.RolloutService` set by the
application (citywatch/runner.py). A bad parameter is answered 400 naming it; a programme or a
snapshot date that does not exist 404 naming it; a format whose renderer is not installed 501.
A token limited to districts gets the report of those districts only (totals over them; no
snapshots, which cover every district).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from devices.rollout_service import RendererMissing, ReportError

router = APIRouter(tags=["reports"])

_Text = Annotated[str | None, Query(max_length=200)]


@router.get("/api/v1/reports/rollout", response_class=Response, responses={
    200: {"description": "the report: JSON (docs/ROLLOUT.md), CSV, HTML or XLSX",
          "content": {"application/json": {}, "text/csv": {}, "text/html": {},
                      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}},
    400: {"description": "a bad parameter, named"}, 404: {"description": "no such programme or snapshot"}})
def rollout_report(
    request: Request,
    format: Annotated[str, Query(max_length=20, description="json, csv, html or xlsx")] = "json",
    programme: _Text = None,
    as_of: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD: from that day's snapshot")] = None,
    list_name: Annotated[str | None, Query(alias="list", max_length=40,
                                           description="one exception list (csv or json)")] = None,
    language: Annotated[str | None, Query(max_length=10, description="zh or en (html)")] = None,
) -> Response:
    service = getattr(request.app.state, "rollout", None)
    if service is None:
        raise HTTPException(503, "the rollout report is not available in this process")
    # a token limited to districts (the guard's request.state.districts, docs/SECURITY.md) sees those only
    districts = getattr(request.state, "districts", None)
    try:
        out = service.export(format, programme=programme or None, as_of=as_of or None, list_name=list_name or None,
                             language=language or None, districts=None if districts is None else frozenset(districts))
    except ReportError as e:
        raise HTTPException(404 if e.missing else 400, str(e)) from None
    except RendererMissing as e:
        raise HTTPException(501, f"format: {e}") from None
    disposition = "inline" if format in ("json", "html") and list_name is None else "attachment"
    return Response(out.body, media_type=out.content_type,
                    headers={"Content-Disposition": f'{disposition}; filename="{out.filename}"'})
