"""``GET /api/v1/deliveries``: the outbox as seen by operators (operator.md list conventions).

The application must set ``app.state.outbox`` to an :class:`~alerts.dispatch.outbox.Outbox`;
authentication (a ``viewer`` token at least) is added where the router is included.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from citywatch.api.deps import caller

router = APIRouter(tags=["dispatch"])

DeliveryStatus = Literal["scheduled", "pending", "delivered", "failed", "cancelled"]


@router.get("/api/v1/deliveries")
def list_deliveries(
    request: Request,
    status: DeliveryStatus | None = Query(None, description="delivery state to list; all when absent"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, description="`next` of the previous page"),
) -> dict[str, Any]:
    """Webhook deliveries, newest first: ``{"items", "total", "next"}``.

    Each item: ``delivery_id``, ``alert_id``, ``receiver``, ``notice`` (firing, resolved,
    acknowledged, escalated), ``status`` (the delivery state), ``attempts``, ``last_error`` and
    RFC 3339 times ``created_at``, ``first_attempt_at``, ``last_attempt_at``,
    ``next_attempt_at`` (open deliveries), ``done_at``. A token limited to districts lists
    the deliveries about its districts' devices.
    """
    outbox = getattr(request.app.state, "outbox", None)
    if outbox is None:
        raise HTTPException(503, "dispatch is not configured in this process")
    try:
        return outbox.page(status=status, limit=limit, cursor=cursor, districts=caller(request).narrow())
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
