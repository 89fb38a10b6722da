"""The API application: routers mounted in one place, authentication applied in one place."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import Depends, FastAPI

from citywatch.api.deps import authenticate
from citywatch.api.routers import devices, health, metrics, quarantine

log = logging.getLogger("citywatch.api")

# Domain packages contribute their own routers; mounted when the package provides one.
_DOMAIN_ROUTERS = ("alerts.api", "alerts.dispatch.api")


def create_app(state: Any) -> FastAPI:
    """``state`` carries the services (store, registry, ...) the routers read from ``app.state``."""
    app = FastAPI(title="citywatch", version="0.1.0",
                  description="City infrastructure telemetry: devices, readings, alerts.")
    for name, value in vars(state).items():
        setattr(app.state, name, value)
    app.include_router(health.router)
    protected = [Depends(authenticate)]
    for r in (devices.router, quarantine.router, metrics.router):
        app.include_router(r, dependencies=protected)
    for modname in _DOMAIN_ROUTERS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        app.include_router(mod.router, dependencies=protected)
    if not getattr(state, "tokens", None):
        log.warning("no [api] tokens configured: the API is open to anyone who can reach %s",
                    getattr(state, "listen", "it"))
    return app
