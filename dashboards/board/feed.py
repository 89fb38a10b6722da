"""Alert transitions for the board's live stream, straight from the alert state.

:meth:`AlertFeed.listener` is an alert-state notice listener (alerts/notice.py): the runner
registers it on every :class:`~alerts.store.AlertState` of the process (the rule engine's and
the API's), so each ``firing``, ``escalated``, ``acknowledged`` and ``resolved`` change reaches
the subscribers as it is recorded; nothing polls the database. A listener runs inside the
transaction that records the change (and a listener that raises rolls it back), so this one
only copies the notice onto each subscriber's queue, never raises, and never blocks: a
subscriber whose queue is full is told to reload (``resync``) instead of holding the engine.
:meth:`AlertFeed.close` ends every stream (the board's device streams subscribe for that alone).

Each subscriber is an asyncio queue on the server's event loop, filled from whatever thread
records the change (``call_soon_threadsafe``). The event reaches the loop after the listener
returns, so normally after the commit; the event carries the alert as the notice has it, so a
page can show it without reading it back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from alerts.notice import AlertNotice

log = logging.getLogger("citywatch.board")

CLOSED = object()  # put on every queue by AlertFeed.close(): the stream ends

# notice status -> the alert's state after it (an escalation leaves the state as it was)
_STATE_AFTER = {"firing": "firing", "acknowledged": "acknowledged", "resolved": "resolved"}


def notice_event(notice: AlertNotice) -> dict[str, Any]:
    """The stream's ``alert`` event of one notice: the webhook's ``alert`` and ``device``
    objects (webhooks.md), the change (``status``), the state after it when it implies one."""
    return {"status": notice.status, "state": _STATE_AFTER.get(notice.status), "silenced": notice.silenced,
            "alert": dict(notice.alert), "device": dict(notice.device)}


class Subscription:
    """One stream's queue of events; ``overflowed`` once it missed one (the page then reloads)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, districts: frozenset[str] | None, max_queued: int):
        self.loop = loop
        self.districts = districts
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queued)
        self.overflowed = False

    def wants(self, event: Mapping[str, Any]) -> bool:
        return self.districts is None or event["device"].get("district") in self.districts

    def _put(self, event: dict[str, Any]) -> None:  # on the loop
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    def _end(self) -> None:  # on the loop: CLOSED goes in, even if an event must make room
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSED)

    def offer(self, event: dict[str, Any]) -> None:  # from any thread
        self._call(self._put, event)

    def end(self) -> None:  # from any thread
        self._call(self._end)

    def _call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the stream is gone
            pass


class AlertFeed:
    """Fans the alert state's notices out to the board's live streams."""

    def __init__(self, max_queued: int = 1000) -> None:
        self.max_queued = max_queued
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        """End every stream (``CLOSED`` on each queue), and those subscribing later at once:
        the runner calls it before stopping the API server, which waits for open responses."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
        for s in subs:
            s.end()

    def listener(self, conn: Any, notice: AlertNotice) -> None:
        """The alert-state listener (``(conn, notice)``); never raises."""
        try:
            with self._lock:
                subs = list(self._subs)
            if not subs:
                return
            event = notice_event(notice)
            for s in subs:
                if s.wants(event):
                    s.offer(event)
        except Exception:  # a listener that raises would roll the alert change back
            log.exception("board feed: notice %s not streamed", notice.status)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    @contextmanager
    def subscribe(self, districts: frozenset[str] | None = None) -> Iterator[Subscription]:
        """A subscription on the running loop, for the ``with`` block (``districts``: only
        alerts of those districts; None: all)."""
        sub = Subscription(asyncio.get_running_loop(), districts, self.max_queued)
        with self._lock:
            self._subs.add(sub)
            if self.closed:
                sub.end()
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)
