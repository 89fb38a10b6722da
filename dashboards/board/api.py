"""The board's routes: its page and assets (public: they hold no data; the page asks for a token),
the tiles, and the two live streams (server-sent events; each API call of the page, streams
included, carries the token in ``Authorization``, so the page reads them with ``fetch``).

- ``GET /`` and ``GET /alerts/{id}`` (where a webhook's ``alert.url`` lands): the page.
- ``GET /board/{path}``: its files under ``static/``.
- ``GET /api/v1/summary``: the tiles (:mod:`.tiles`).
- ``GET /api/v1/stream``: ``alert`` events (each alert transition, :mod:`.feed`), ``tiles``
  events (when they change) and ``resync`` (events were missed: reload the lists).
- ``GET /api/v1/devices/{id}/live``: ``ready`` once subscribed, then one ``message`` event per
  MQTT message of the device (:mod:`.live`); ``failed`` if the broker cannot be reached.

Both streams answer 406 unless asked for ``text/event-stream`` (a client reading to the end
would wait forever), and send a comment line every ``heartbeat_s`` (15 s; ``app.state.board_heartbeat_s``),
which keeps proxies from closing them and lets the server notice a page that went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse

from devices.catalogue import CATALOGUE, SEVERITIES
from devices.db import connect, parse_url
from devices.times import rfc3339

from .feed import CLOSED, AlertFeed
from .live import Broker, device_messages
from .tiles import Tiles

router = APIRouter()
STATIC = (Path(__file__).parent / "static").resolve()
HEARTBEAT_S = 15.0
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_init_lock = threading.Lock()


def sse(event: str, data: Any) -> str:
    """One server-sent event (JSON data, UTF-8: Chinese names as they are; escaped when the data
    holds what UTF-8 cannot encode, e.g. a lone surrogate a device sent as ``"\\ud800"``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n"


def _districts(request: Request) -> frozenset[str] | None:
    d = getattr(request.state, "districts", None)  # set by the guard for district-limited tokens
    return None if d is None else frozenset(d)


def _accepts_events(request: Request) -> None:
    """A stream never ends: only a client that asks for one (``Accept: text/event-stream``, as
    EventSource and the board send) gets it; any other is answered 406 at once."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise HTTPException(406, "accept: this endpoint streams server-sent events; "
                                 "send 'Accept: text/event-stream'")


def _heartbeat_s(request: Request) -> float:
    return float(getattr(request.app.state, "board_heartbeat_s", HEARTBEAT_S))


def _once(app: Any, name: str, make) -> Any:
    with _init_lock:
        value = getattr(app.state, name, None)
        if value is None:
            value = make()
            setattr(app.state, name, value)
        return value


def _feed(request: Request) -> AlertFeed:
    return _once(request.app, "board_feed", AlertFeed)  # a process without rules: acknowledgements only


def _tiles(request: Request) -> Tiles:
    s = request.app.state

    def make() -> Tiles:
        return Tiles(connect(parse_url(s.settings.state.url), readonly=True), now_ms=s.now,
                     metrics_registry=getattr(s, "metrics_registry", None))
    return _once(request.app, "board_tiles", make)


# --- the page ---------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
@router.get("/alerts/{alert_id}", include_in_schema=False)
def page() -> HTMLResponse:
    """The board (one page; it shows the alert of ``/alerts/{id}`` itself)."""
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})


@router.get("/board/catalogue.json", include_in_schema=False)
def catalogue(request: Request) -> dict[str, Any]:
    """The kinds (names, metrics with units) and severities of catalogue.md, and the city's time
    zone (the page shows every time in it, as the API does), for the page."""
    return {"severities": list(SEVERITIES), "timezone": request.app.state.settings.timezone,
            "kinds": {k.name: {"title": k.title, "title_zh": k.title_zh,
                               "metrics": {m.name: {"unit": m.unit, "boolean": m.boolean}
                                           for m in k.metrics.values()}}
                      for k in CATALOGUE.values()}}


@router.get("/board/{path:path}", include_in_schema=False)
def asset(path: str) -> FileResponse:
    target = (STATIC / path).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():
        raise HTTPException(404, f"no board file {path!r}")
    return FileResponse(target, media_type=_TYPES.get(target.suffix, "text/plain; charset=utf-8"),
                        headers={"Cache-Control": "no-cache"})


# --- tiles and the alert stream ---------------------------------------------------------------


@router.get("/api/v1/summary", tags=["board"])
def summary(request: Request) -> dict[str, Any]:
    """Per kind: devices ``online`` and ``offline``, ``readings_per_min`` (city-wide; null until
    known) and ``open`` alerts by severity; limited to the token's districts."""
    s = request.app.state
    out = _tiles(request).summary(_districts(request))
    return {"at": rfc3339(s.now(), ZoneInfo(s.settings.timezone)), **out}


@router.get("/api/v1/stream", tags=["board"])
async def stream(request: Request) -> StreamingResponse:
    """Server-sent events: ``alert`` (each alert transition: ``status``, ``state``, ``alert``,
    ``device`` as in webhooks.md), ``tiles`` (the summary, when it changes), ``resync``."""
    _accepts_events(request)
    events = _alert_events(_feed(request), _tiles(request), _districts(request), _heartbeat_s(request))
    return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)


async def _alert_events(feed: AlertFeed, tiles: Tiles, districts: frozenset[str] | None,
                        heartbeat_s: float) -> AsyncIterator[str]:
    with feed.subscribe(districts) as sub:
        yield sse("hello", {"heartbeat_s": heartbeat_s})
        last = None
        while True:  # the tiles at the start, after each burst of alert events, at each heartbeat
            current = await run_in_threadpool(tiles.summary, districts)
            if current != last:
                yield sse("tiles", current)
                last = current
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            batch = [event]
            while not sub.queue.empty():
                batch.append(sub.queue.get_nowait())
            if CLOSED in batch:
                return
            if sub.overflowed:
                sub.overflowed = False
                yield sse("resync", {"reason": "events were missed; reload the lists"})
            for e in batch:
                yield sse("alert", e)


# --- a device's live telemetry ----------------------------------------------------------------


@router.get("/api/v1/devices/{device_id}/live", tags=["board"])
async def device_live(request: Request, device_id: str) -> StreamingResponse:
    """Server-sent events of the device's MQTT messages as they arrive (``city/{kind}/{id}/#``):
    ``ready``, then ``message`` (``channel``: telemetry, event or status; ``payload``)."""
    _accepts_events(request)
    s = request.app.state
    d = await run_in_threadpool(s.registry_ro.get, device_id)
    districts = _districts(request)
    if d is None or (districts is not None and d.district not in districts):
        raise HTTPException(404, f"no device {device_id!r}")
    broker = Broker.from_settings(s.settings.mqtt, getattr(s, "broker_url", None))
    events = _live_events(request.app, _feed(request), broker, d.kind, d.device_id, _heartbeat_s(request))
    return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)


async def _live_events(app: Any, feed: AlertFeed, broker: Broker, kind: str, device_id: str,
                       heartbeat_s: float) -> AsyncIterator[str]:
    app.state.board_live_clients = getattr(app.state, "board_live_clients", 0) + 1
    try:
        with feed.subscribe(frozenset()) as sub:  # no alerts: only the end when the API stops
            async for item in _beating(device_messages(broker, kind, device_id), heartbeat_s, sub.queue):
                if item is _BEAT:
                    yield ": keep-alive\n\n"
                elif item is None:
                    yield sse("ready", {"topic": f"city/{kind}/{device_id}/#"})
                else:
                    yield sse("message", item)
    except aiomqtt.MqttError as e:
        yield sse("failed", {"detail": f"the broker {broker.address.host}:{broker.address.port}: {e}"})
    finally:
        app.state.board_live_clients -= 1


_BEAT = object()


async def _beating(source: AsyncIterator[Any], every_s: float, queue: asyncio.Queue) -> AsyncIterator[Any]:
    """``source``'s items, with ``_BEAT`` after each ``every_s`` without one, until ``CLOSED``
    arrives on ``queue`` (whose other items this puts there); closing this cancels the reading
    of ``source`` (an aiomqtt client then disconnects)."""

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(("item", item))
            await queue.put(("end", None))
        except Exception as e:  # handed to the reader, raised there
            await queue.put(("error", e))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                got = await asyncio.wait_for(queue.get(), timeout=every_s)
            except TimeoutError:
                yield _BEAT
                continue
            if got is CLOSED:
                return
            what, item = got
            if what == "end":
                return
            if what == "error":
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
