from __future__ import annotations

from fastapi import APIRouter

from citywatch.api.deps import Services

router = APIRouter(tags=["health"])


@router.get("/api/v1/health")
def health(svc: Services) -> dict:
    """Liveness and the state of the broker, store and state connections."""
    checks = {
        "broker": bool(svc.broker_connected()),
        "store": bool(svc.store.ping()),
        "state": _state_ok(svc),
    }
    broker = svc.broker_status() if hasattr(svc, "broker_status") else None
    if broker and broker["problem"]:  # the consumer failed closed (e.g. its subscription refused)
        checks["broker"] = False
    # acknowledgements withheld (a store or state DB failing): the broker is holding the city's
    # messages, whatever the connections above say
    withheld = svc.ack_status() if getattr(svc, "ack_status", None) else None
    checks["acks"] = withheld is None
    spool = getattr(svc, "spool", None)
    body = {"status": "ok" if all(checks.values()) else "degraded", "checks": checks}
    if broker:
        body["broker"] = broker
    if withheld is not None:
        body["acks_withheld"] = withheld
    if spool is not None:
        batches, size = spool.depth()
        body["spool"] = {"batches": batches, "bytes": size}
    cluster = svc.cluster_status() if getattr(svc, "cluster_status", None) else None
    if cluster is not None:  # several nodes: this node, and the duties it runs now
        body["cluster"] = cluster
    return body


def _state_ok(svc) -> bool:
    try:
        svc.registry_ro.count()
        return True
    except Exception:
        return False
