from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi import Query as Q

from citywatch.api.deps import Services, parse_duration_ms, parse_time
from devices.catalogue import CATALOGUE
from devices.registry import online
from ingest.stores.base import Query

router = APIRouter(tags=["devices"])


def _public(d, now_ms: int) -> dict[str, Any]:
    out = asdict(d)
    out["attrs"] = dict(d.attrs)
    out["online"] = online(d, now_ms) if d.last_seen is not None else False
    return out


@router.get("/api/v1/devices")
def list_devices(svc: Services, kind: str | None = None, district: str | None = None,
                 status: str | None = None, limit: int = Q(100, ge=1, le=10_000),
                 cursor: str | None = None) -> dict:
    """The registry with derived last-seen and online state; keyset pagination by device id."""
    reg = svc.registry_ro
    items = reg.list(kind=kind, district=district, status=status, limit=limit, after=cursor)
    now = svc.now()
    return {
        "items": [_public(d, now) for d in items],
        "total": reg.count(kind=kind, district=district, status=status),
        "next": items[-1].device_id if len(items) == limit else None,
    }


@router.get("/api/v1/devices/{device_id}")
def get_device(svc: Services, device_id: str) -> dict:
    d = svc.registry_ro.get(device_id)
    if d is None:
        raise HTTPException(404, f"no device {device_id!r}")
    out = _public(d, svc.now())
    out["events"] = svc.events_ro.for_device(device_id, 0, 2**62, limit=20)
    return out


@router.get("/api/v1/devices/{device_id}/readings")
def readings(svc: Services, device_id: str, metric: str, start: str | None = None, end: str | None = None,
             step: str | None = None, limit: int = Q(100_000, ge=1, le=1_000_000)) -> dict:
    """Points of one metric, ``[[ts_ms, value], ...]``; with ``step`` the mean per step."""
    d = svc.registry_ro.get(device_id)
    if d is None:
        raise HTTPException(404, f"no device {device_id!r}")
    kind = CATALOGUE[d.kind]
    if metric not in kind.metrics:
        raise HTTPException(400, f"metric: {metric!r} is not a metric of {d.kind} "
                                 f"(known: {', '.join(kind.metrics)})")
    now = svc.now()
    t_end = parse_time(end, "end", now)
    t_start = parse_time(start, "start", t_end - 86_400_000)
    if t_start >= t_end:
        raise HTTPException(400, "start: must be before end")
    step_ms = parse_duration_ms(step, "step") if step else None
    points = svc.store.query(Query(device_id, metric, t_start, t_end, step_ms, limit))
    return {"device_id": device_id, "metric": metric, "points": [[int(t), float(v)] for t, v in points]}
