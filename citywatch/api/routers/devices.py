from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi import Query as Q

from citywatch.api.deps import CallerDep, Services, json_answer, parse_duration_ms, parse_time, zone
from devices import times
from devices.api import public
from devices.catalogue import CATALOGUE
from devices.times import rfc3339
from ingest.stores.base import Query

router = APIRouter(tags=["devices"])

MAX_POINTS = 1_000_000  # of one readings answer, and of the steps ``step`` may cut its range into
DETAIL_DEPTH = 16  # of an event's detail as shown: a deeper one (an older version stored it) is cut
SHORT = 200  # longest filter or cursor value


def _bounded(value: Any, depth: int = DETAIL_DEPTH) -> Any:
    """``value`` with containers nested deeper than ``depth`` replaced by a note (no recursion)."""
    out: list[Any] = [None]
    todo: list[tuple[Any, Any, Any, int]] = [(value, out, 0, 0)]
    while todo:
        v, parent, key, level = todo.pop()
        if isinstance(v, dict | list):
            if level >= depth:
                parent[key] = f"(nested deeper than {depth} levels: not shown)"
                continue
            copy: Any = {} if isinstance(v, dict) else [None] * len(v)
            parent[key] = copy
            items = v.items() if isinstance(v, dict) else enumerate(v)
            todo.extend((item, copy, str(k) if isinstance(v, dict) else k, level + 1) for k, item in items)
        else:
            parent[key] = v
    return out[0]


@router.get("/api/v1/devices")
def list_devices(svc: Services, who: CallerDep, kind: str | None = Q(None, max_length=SHORT),
                 district: str | None = Q(None, max_length=SHORT), status: str | None = Q(None, max_length=SHORT),
                 limit: int = Q(100, ge=1, le=10_000), cursor: str | None = Q(None, max_length=SHORT)) -> dict:
    """The registry with derived last-seen and online state; keyset pagination by device id
    (``next``: the cursor of the next page, null on the last). A token limited to districts
    lists only their devices."""
    reg = svc.registry_ro
    districts = who.narrow(district)
    items = reg.list(kind=kind, district=districts, status=status, limit=limit, after=cursor)
    now, tz = svc.now(), zone(svc)
    return json_answer({
        "items": [public(d, now, tz) for d in items],
        "total": reg.count(kind=kind, district=districts, status=status),
        "next": items[-1].device_id if len(items) == limit else None,
    })


def device_for(svc: Any, who: Any, device_id: str):
    """The registered device, or HTTP 404 (also when it is outside the caller's districts)."""
    d = svc.registry_ro.get(device_id)
    missing = f"no device {device_id!r}"
    if d is None:
        raise HTTPException(404, missing)
    who.check(d.district, missing)
    return d


@router.get("/api/v1/devices/{device_id}")
def get_device(svc: Services, who: CallerDep, device_id: str) -> dict:
    d = device_for(svc, who, device_id)
    tz = zone(svc)
    out = public(d, svc.now(), tz)
    events = svc.events_ro.for_device(device_id, 0, 2**62, limit=20)
    out["events"] = [{**e, "ts": rfc3339(e["ts"], tz), "detail": _bounded(e["detail"])} for e in events]
    return out


@router.get("/api/v1/devices/{device_id}/readings")
def readings(svc: Services, who: CallerDep, device_id: str, metric: str = Q(..., max_length=SHORT),
             start: str | None = None, end: str | None = None, step: str | None = Q(None, max_length=SHORT),
             limit: int = Q(100_000, ge=1, le=MAX_POINTS),
             order: Literal["desc", "asc"] = Q("desc", description="desc (default): the latest `limit` points, "
                                               "newest first; asc: the oldest `limit` points, oldest first")
             ) -> dict:
    """Points of one metric, ``[[ts_ms, value], ...]``; with ``step`` the mean per step.

    ``start``/``end``: epoch ms or RFC 3339 with an offset, within 1970..2262; ``step`` cuts the
    range into at most 1,000,000 steps. ``limit`` keeps the latest points by default
    (``order=desc``, newest first); ``order=asc`` lists the oldest first.
    """
    d = device_for(svc, who, device_id)
    kind = CATALOGUE.get(d.kind)
    if kind is None or metric not in kind.metrics:
        known = ", ".join(kind.metrics) if kind is not None else "none"
        raise HTTPException(400, f"metric: {metric!r} is not a metric of {d.kind} (known: {known})")
    now = min(max(svc.now(), times.MIN_MS), times.MAX_MS)
    t_end = parse_time(end, "end", now)
    t_start = parse_time(start, "start", max(t_end - 86_400_000, times.MIN_MS))
    if t_start >= t_end:
        raise HTTPException(400, "start: must be before end")
    step_ms = parse_duration_ms(step, "step") if step else None
    if step_ms is not None and (t_end - t_start) // step_ms > MAX_POINTS:
        raise HTTPException(400, f"step: {step!r} cuts the range into over {MAX_POINTS:,} steps; "
                                 "use a larger step or a shorter range")
    points = svc.store.query(Query(device_id, metric, t_start, t_end, step_ms, limit, newest_first=order == "desc"))
    return {"device_id": device_id, "metric": metric, "points": [[int(t), float(v)] for t, v in points]}
