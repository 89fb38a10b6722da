from __future__ import annotations

from fastapi import APIRouter
from fastapi import Query as Q

from citywatch.api.deps import Services

router = APIRouter(tags=["quarantine"])


@router.get("/api/v1/quarantine")
def quarantine(svc: Services, limit: int = Q(100, ge=1, le=10_000),
               cursor: int | None = Q(None, ge=0, le=2**63 - 1, description="`next` of the previous page")
               ) -> dict:
    """The most recent rejected messages with their reasons, newest first."""
    q = svc.quarantine_ro
    items = q.recent(limit, before_id=cursor)
    return {"items": items, "total": q.count(),
            "next": items[-1]["id"] if len(items) == limit else None}
