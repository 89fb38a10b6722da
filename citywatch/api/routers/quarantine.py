from __future__ import annotations

from fastapi import APIRouter
from fastapi import Query as Q

from citywatch.api.deps import CallerDep, Services, zone
from devices.times import rfc3339

router = APIRouter(tags=["quarantine"])

SHORT = 200  # longest filter value


@router.get("/api/v1/quarantine")
def quarantine(svc: Services, who: CallerDep, limit: int = Q(100, ge=1, le=10_000),
               cursor: int | None = Q(None, ge=0, le=2**63 - 1, description="`next` of the previous page"),
               device_id: str | None = Q(None, max_length=SHORT, description="rejections of this device"),
               kind: str | None = Q(None, max_length=SHORT, description="rejections of this kind"),
               reason: str | None = Q(None, max_length=SHORT,
                                      description="the reason's code: unregistered, json, out_of_range, ...")
               ) -> dict:
    """The most recent rejected messages with their reasons, newest first; ``received_at`` in
    RFC 3339. A whole-message rejection carries the ``device_id`` and ``kind`` its topic names.
    A token limited to districts sees those of its districts' registered devices."""
    q = svc.quarantine_ro
    filters = {"device_id": device_id, "kind": kind, "code": reason, "districts": who.narrow()}
    items = q.recent(limit, before_id=cursor, **filters)
    tz = zone(svc)
    for item in items:
        item["received_at"] = rfc3339(item["received_at"], tz)
    return {"items": items, "total": q.count(**filters),
            "next": items[-1]["id"] if len(items) == limit else None}
