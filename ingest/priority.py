"""Giving the alert path the interpreter first: the bulk intake steps aside while it works.

All of a node's Python threads share one interpreter lock (the GIL). The MQTT network thread
decodes messages almost continuously under load, and a thread that hands the lock back for a
C call (every SQLite statement, every socket write) waits up to the switch interval (5 ms) to
get it back while another thread runs Python. The rules stage makes a dozen such calls per batch,
so under 10,000 msg/s an alarm's batch took three times its CPU time in wall time, measured
in bench/alert_latency (docs/PERFORMANCE.md).

:class:`Gate` is a bounded, cooperative priority. Latency-critical work (the rules stage's
evaluation and commit, the dispatcher from its wake-up to the webhook's answer) runs inside
``with gate.hold():`` or between :meth:`Gate.enter` and :meth:`Gate.leave`. The bulk threads
(the intake before each message, the write stage before each write) call :meth:`Gate.pause`,
which returns at once when nothing holds the gate and otherwise waits (without the interpreter
lock) until the holders are done, at most ``max_wait_s``. After waiting, a bulk thread runs at
least ``min_run_s`` before it waits again, so however long or often the gate is held it keeps
at least ``min_run_s / (max_wait_s + min_run_s)`` of its time (half, by default): a stuck
holder slows ingest, never stops it. Nothing is dropped or reordered: a pausing intake only
stops reading its socket for a few milliseconds, and the broker keeps the messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Gate"]


class Gate:
    def __init__(self, max_wait_s: float = 0.010, min_run_s: float = 0.010):
        if max_wait_s < 0 or min_run_s < 0:
            raise ValueError("max_wait_s and min_run_s must not be negative")
        self.max_wait_s = max_wait_s
        self.min_run_s = min_run_s
        self._lock = threading.Lock()
        self._holders = 0
        self._idle = threading.Event()
        self._idle.set()
        self._local = threading.local()  # per pausing thread: run_until (monotonic)
        self.paused_s = 0.0  # total time the bulk threads waited (read by tests and benches)

    def enter(self) -> None:
        """Latency-critical work begins (from any thread); pair it with one :meth:`leave`."""
        with self._lock:
            self._holders += 1
            self._idle.clear()

    def leave(self) -> None:
        with self._lock:
            if self._holders <= 0:
                raise RuntimeError("Gate.leave() without enter()")
            self._holders -= 1
            if not self._holders:
                self._idle.set()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Latency-critical work: the bulk threads step aside until it ends (bounded)."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @property
    def held(self) -> bool:
        return not self._idle.is_set()

    def pause(self) -> None:
        """A bulk thread's turn: returns at once unless the gate is held."""
        if self._idle.is_set() or not self.max_wait_s:
            return
        start = time.monotonic()
        if start < getattr(self._local, "run_until", 0.0):
            return
        self._idle.wait(self.max_wait_s)
        end = time.monotonic()
        self.paused_s += end - start
        self._local.run_until = end + self.min_run_s
