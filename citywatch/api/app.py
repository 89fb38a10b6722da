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

from citywatch.api.guard import DEFAULT_MAX_BODY_BYTES, ApiGuard, required_role
from citywatch.api.routers import devices, health, metrics, quarantine, whoami
from devices.durations import parse_duration_ms

log = logging.getLogger("citywatch.api")

# Domain packages contribute their own routers; mounted when the package provides one.
_DOMAIN_ROUTERS = ("alerts.api", "alerts.dispatch.api", "devices.api", "devices.rollout_api")
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
    for r in (devices.router, quarantine.router, metrics.router, whoami.router):
        app.include_router(r)
    for modname in _DOMAIN_ROUTERS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        app.include_router(mod.router)
    if getattr(state, "demo_webhooks", None) is not None:  # citywatch up's webhook receiver
        from alerts.dispatch.receiver import router as demo_receiver

        app.include_router(demo_receiver)
    app.include_router(importlib.import_module(_BOARD_ROUTER).router)
    api = getattr(getattr(state, "settings", None), "api", None)
    if api is not None:
        app.state.max_silence_ms = parse_duration_ms(api.max_silence)
    app.add_middleware(ApiGuard, max_body_bytes=getattr(api, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
    _declare_bearer(app)
    _warn_about_access(state)
    return app


def _warn_about_access(state: Any) -> None:
    where = getattr(state, "listen", "it")
    if getattr(state, "api_open", False):
        log.warning("[api] open = true: the API is open, as admin, to anyone who can reach %s", where)
    if getattr(state, "tokens", None):
        log.warning("[api] tokens holds plaintext tokens: still accepted; replace them with "
                    "`citywatch tokens create` (stored hashed) and remove them from the config")


def _declare_bearer(app: FastAPI) -> None:
    """The OpenAPI document declares the bearer scheme and, per operation, whether it needs a
    token and which role (from the guard's :func:`required_role`: one source of truth)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["HTTPBearer"] = {"type": "http", "scheme": "bearer",
                                 "description": "a token from `citywatch tokens create` (docs/SECURITY.md)"}
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                need = required_role(method.upper(), path)
                if need is None:
                    continue
                op["security"] = [{"HTTPBearer": []}]
                op["x-required-role"] = need
                op["description"] = (op.get("description", "") + f"\n\nNeeds a **{need}** token or higher.").strip()
                responses = op.setdefault("responses", {})
                responses.setdefault("401", {"description": "no token, or an unknown or revoked one"})
                responses.setdefault("403", {"description": f"the token's role is below {need}"})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
