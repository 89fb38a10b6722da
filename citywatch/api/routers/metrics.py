from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citywatch.api.deps import Services

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
def metrics(svc: Services) -> Response:
    """Prometheus metrics of citywatch itself."""
    return Response(generate_latest(svc.metrics_registry), media_type=CONTENT_TYPE_LATEST)
