"""The API application: routers mounted in one place; authentication and the body cap applied in
one place, :class:`~citywatch.api.guard.ApiGuard`, before any route (and any body) is read."""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from citywatch.api.guard import DEFAULT_MAX_BODY_BYTES, ApiGuard
from citywatch.api.routers import devices, health, metrics, quarantine
from devices.durations import parse_duration_ms

log = logging.getLogger("citywatch.api")

# Domain packages contribute their own routers; mounted when the package provides one.
_DOMAIN_ROUTERS = ("alerts.api", "alerts.dispatch.api")
# The duty board (presentation): its page at /, its assets, tiles and live streams.
_BOARD_ROUTER = "dashboards.board.api"


class _AsciiJSON(JSONResponse):
    """JSON with non-ASCII escaped: a request's lone surrogate (``"\\ud800"`` is valid JSON)
    echoed in a validation error cannot be encoded as UTF-8, but can be escaped."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field (FastAPI's answer), renderable whatever the request held."""
    return _AsciiJSON(status_code=422, content={"detail": jsonable_encoder(exc.errors())})


def create_app(state: Any) -> FastAPI:
    """``state`` carries the services (store, registry, ...) the routers read from ``app.state``."""
    app = FastAPI(title="citywatch", version="0.1.0",
                  description="City infrastructure telemetry: devices, readings, alerts.")
    for name, value in vars(state).items():
        setattr(app.state, name, value)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health.router)
    for r in (devices.router, quarantine.router, metrics.router):
        app.include_router(r)
    for modname in _DOMAIN_ROUTERS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        app.include_router(mod.router)
    app.include_router(importlib.import_module(_BOARD_ROUTER).router)
    api = getattr(getattr(state, "settings", None), "api", None)
    if api is not None:
        app.state.max_silence_ms = parse_duration_ms(api.max_silence)
    app.add_middleware(ApiGuard, max_body_bytes=getattr(api, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
    if not getattr(state, "tokens", None):
        log.warning("no [api] tokens configured: the API is open to anyone who can reach %s",
                    getattr(state, "listen", "it"))
    return app
