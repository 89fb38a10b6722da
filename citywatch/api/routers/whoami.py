from __future__ import annotations

from fastapi import APIRouter

from citywatch.api.deps import CallerDep

router = APIRouter(tags=["auth"])


@router.get("/api/v1/whoami")
def whoami(who: CallerDep) -> dict:
    """Who this token is: ``{"name", "role", "districts": [...] or null (all)}``; the open API's
    caller without a token is ``anonymous`` admin."""
    return {"name": who.name, "role": who.role,
            "districts": None if who.districts is None else sorted(who.districts)}
