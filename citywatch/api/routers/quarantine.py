from __future__ import annotations

from fastapi import APIRouter
from fastapi import Query as Q

from citywatch.api.deps import CallerDep, Services

router = APIRouter(tags=["quarantine"])


@router.get("/api/v1/quarantine")
def quarantine(svc: Services, who: CallerDep, limit: int = Q(100, ge=1, le=10_000),
               cursor: int | None = Q(None, ge=0, le=2**63 - 1, description="`next` of the previous page")
               ) -> dict:
    """The most recent rejected messages with their reasons, newest first (a token limited to
    districts: those of its districts' registered devices)."""
    q = svc.quarantine_ro
    districts = who.narrow()
    items = q.recent(limit, before_id=cursor, districts=districts)
    return {"items": items, "total": q.count(districts=districts),
            "next": items[-1]["id"] if len(items) == limit else None}
