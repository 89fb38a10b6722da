"""The dispatcher: sends what the outbox holds, retries until delivered, survives restarts.

Guarantees:

* At least once: a delivery leaves the outbox only on a 2xx answer (``delivered``), a
  non-retryable outcome (``failed``; no HTTP status is one: webhook.py), or when an attempt
  fails after the retry horizon (default 24 h) has passed since its first attempt (``failed``).
  Every attempt carries the same ``X-Citywatch-Delivery``, so receivers drop repeats (a crash
  between the 2xx and recording it sends the delivery again).
* Restart: nothing lives only in memory; :meth:`Dispatcher.run` reads the outbox at start and
  picks up every pending and due-scheduled delivery.
* Isolation: one lane per receiver, each with its own HTTP connection pool, at most
  ``max_concurrency`` requests in flight and a bounded queue; claiming is done per receiver, so a
  slow or dead receiver never delays another.
* A receiver that keeps failing is probed, not hammered: after a retryable failure its lane
  claims nothing more until the lane's own backoff (same formula, per failure streak) has
  passed; its first 2xx or non-retryable answer ends the pause. Deliveries of a paused lane keep
  their place and go out in due order once the receiver answers again.
* Order: per receiver and alert, notices go out in the order they were written (outbox).
* Backoff: after the n-th failed attempt, wait ``uniform(0, min(cap, base * 2**(n-1)))``
  (exponential backoff with full jitter; 1 s doubling, capped at 5 min by default).
* Latency: :meth:`wake` (thread-safe, cheap) makes the dispatcher look at the outbox at once;
  the lifecycle's caller calls it after each commit that wrote deliveries. Without it the
  outbox is polled every ``poll_interval_s``.

State-DB work (SQLite or PostgreSQL, devices/db.py) runs on two threads of the dispatcher's own,
each with its own connection: one reads the outbox, one records outcomes (SQLite's WAL and
PostgreSQL's snapshots: reads never wait for writes), so the event loop
never blocks on the database; outcomes of attempts that finish together are recorded in
one transaction (group commit), and an attempt's claim is released only once its outcome is
durable, so no delivery is sent twice by one process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerts.statedb import target_of
from devices.backoff import Backoff
from devices.db import DBError, Target, connect, write_transaction

from . import outbox as ob
from .config import DispatchConfig, Receiver
from .errors import DispatchError
from .metrics import DispatchMetrics, default_metrics
from .webhook import Notifier, WebhookNotifier

log = logging.getLogger("citywatch.dispatch")

NOTIFIER_GRACE_S = 2.0  # past a receiver's timeout, an attempt is cut off by the dispatcher itself
PRUNE_EVERY_S = 3600.0  # how often delivered/cancelled rows past the retention are deleted
HOLD_MAX_S = 0.1  # the longest a wake-up holds the priority gate (see Dispatcher, ``gate``)


class PriorityGate(Protocol):
    """What the dispatcher needs of a priority gate (ingest/priority.py's ``Gate``)."""

    def enter(self) -> None: ...
    def leave(self) -> None: ...


class _Hold:
    """The gate holds of the wake-ups one scan answered: left when the attempts that scan
    started have all been answered, or after ``HOLD_MAX_S``, whichever comes first."""

    def __init__(self, gate: PriorityGate, holds: int, attempts: int) -> None:
        self.gate, self.holds, self.attempts = gate, holds, attempts

    def attempted(self) -> None:
        self.attempts -= 1
        if self.attempts <= 0:
            self.release()

    def release(self) -> None:
        holds, self.holds = self.holds, 0
        for _ in range(holds):
            self.gate.leave()


class _DbThread:
    """One state-DB connection with a thread of its own: ``call`` runs ``fn(conn, *args)`` there
    (``call_here`` in the caller's thread); never two calls at once."""

    def __init__(self, name: str) -> None:
        self._exec = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: Any = None

    async def open(self, target: Target) -> None:
        self._conn = await self._run(connect, target)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._conn is not None
        return await self._run(fn, self._conn, *args)

    def call_here(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(conn, *args)`` in the calling thread: for short reads by the one caller that uses
        this connection (the scheduler), when the hop to the thread costs more than the read."""
        assert self._conn is not None
        return fn(self._conn, *args)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._exec.shutdown(wait=True)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)


@dataclass(eq=False)
class _Lane:
    """One receiver's queue, workers and the deliveries it has claimed (queued or in flight)."""

    receiver: Receiver
    notifier: Notifier
    capacity: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    claimed: set[str] = field(default_factory=set)
    busy: int = 0
    workers: list[asyncio.Task] = field(default_factory=list)
    streak: int = 0  # retryable failures since the receiver last answered
    paused_until: float = 0.0  # clock time before which the lane claims nothing


class Dispatcher:
    """Delivers the outbox of the state DB at ``state_db_path`` to the receivers of ``config``:
    a SQLite file's path, a ``[state] url`` (``sqlite:///...``, ``postgresql://...``) or what
    :func:`devices.db.parse_url` gave.

    Run it with ``await run(stop)`` in an event loop, or with :meth:`start`/:meth:`stop` on a
    thread of its own beside synchronous code. ``clock`` (unix seconds) is the only source of
    time for scheduling and signing; tests pass a controllable one.

    ``backoff_base_s``/``backoff_cap_s``: the retry backoff (1 s doubling, capped at 5 min);
    ``retry_horizon_s``: how long a delivery is retried before it is failed (24 h);
    ``poll_interval_s``: the fallback look at the outbox when nobody calls :meth:`wake`;
    ``drain_timeout_s``: how long a stop waits for requests in flight; ``queue_per_slot``: claimed
    deliveries per unit of a receiver's ``max_concurrency``; ``retention_s``: delivered and
    cancelled rows older than this are deleted (None keeps everything); ``metrics``: where the
    counters go (default: prometheus_client's registry); ``notifier_factory``: the notifier per
    receiver (default :class:`WebhookNotifier`); ``gate``: a priority gate the dispatcher holds
    from each :meth:`wake` until the attempts it started are answered (at most ``HOLD_MAX_S``),
    so that the node's bulk threads step aside on an alert's path (ingest/priority.py).
    """

    def __init__(self, state_db_path: str | Target, config: DispatchConfig, *,
                 clock: Callable[[], float] = time.time,
                 public_url: str = "http://127.0.0.1:8080",
                 backoff_base_s: float = 1.0, backoff_cap_s: float = 300.0,
                 retry_horizon_s: float = 86400.0, poll_interval_s: float = 0.25,
                 drain_timeout_s: float = 5.0, queue_per_slot: int = 4,
                 retention_s: float | None = 30 * 86400.0,
                 metrics: DispatchMetrics | None = None, rng: random.Random | None = None,
                 notifier_factory: Callable[[Receiver], Notifier] | None = None,
                 gate: PriorityGate | None = None) -> None:
        if not (0 < backoff_base_s <= backoff_cap_s):
            raise ValueError("backoff: need 0 < backoff_base_s <= backoff_cap_s")
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, jitter=1.0, rng=rng or random.Random())
        if (retry_horizon_s < 0 or poll_interval_s <= 0 or drain_timeout_s < 0 or queue_per_slot < 1
                or (retention_s is not None and retention_s <= 0)):
            raise ValueError("need retry_horizon_s >= 0, poll_interval_s > 0, drain_timeout_s >= 0, "
                             "queue_per_slot >= 1, retention_s > 0 or None")
        self._path = target_of(state_db_path)
        self.config = config
        self._clock = clock
        self.public_url = public_url
        self._base = backoff_base_s
        self._horizon = retry_horizon_s
        self._poll = poll_interval_s
        self._drain = drain_timeout_s
        self._queue_per_slot = queue_per_slot
        self._retention = retention_s
        self.metrics = metrics or default_metrics()
        self._make_notifier = notifier_factory or (lambda r: WebhookNotifier(r, clock=clock))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken_early = False
        self._reads: _DbThread | None = None
        self._writes_db: _DbThread | None = None
        self._outcomes: list[tuple[Callable[..., None], tuple[Any, ...],
                                 Callable[[BaseException | None], None]]] = []
        self._outcomes_ready: asyncio.Event | None = None
        self._writing = False
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_stop: asyncio.Event | None = None
        self._thread_error: BaseException | None = None
        self._gate = gate
        self._gate_lock = threading.Lock()
        self._gate_holds = 0  # wake-ups holding the gate, not yet taken by a scan
        self._holding: dict[str, _Hold] = {}  # delivery_id -> the hold its attempt answers

    # --- wiring ---------------------------------------------------------------------------

    def make_outbox(self, conn: Any) -> ob.Outbox:
        """An :class:`Outbox` on ``conn`` with this dispatcher's config, clock and public URL."""
        return ob.Outbox(conn, self.config, clock=self._clock, public_url=self.public_url)

    def wake(self) -> None:
        """Look at the outbox now (call after committing deliveries). Thread-safe, non-blocking."""
        loop, event = self._loop, self._wake
        if loop is None or event is None:
            self._woken_early = True
            return
        if self._gate is not None:
            self._gate.enter()
            with self._gate_lock:
                self._gate_holds += 1
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop has just closed: nothing left to wake
            self._release_holds()

    def _take_holds(self) -> int:
        with self._gate_lock:
            holds, self._gate_holds = self._gate_holds, 0
        return holds

    def _release_holds(self) -> None:
        holds = self._take_holds()
        if self._gate is not None:
            for _ in range(holds):
                self._gate.leave()

    def backoff(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed attempt (full jitter)."""
        return self._backoff.delay(failed_attempts)

    # --- thread wrapper -------------------------------------------------------------------

    def start(self) -> None:
        """Run on a daemon thread; returns once the outbox is open and the lanes are running.

        Raises DispatchError if it cannot start (e.g. the state DB cannot be opened).
        """
        if self._thread is not None:
            raise DispatchError("dispatcher already started")
        self._running.clear()
        self._thread_error = None
        self._thread = threading.Thread(target=self._thread_main, name="citywatch-dispatch",
                                        daemon=True)
        self._thread.start()
        while not self._running.wait(0.05):
            if not self._thread.is_alive():
                self._thread = None
                raise DispatchError(f"dispatcher failed to start: {self._thread_error}")

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread started by :meth:`start`: finish in-flight attempts (up to the drain
        timeout), leave the rest pending in the outbox."""
        thread, loop, event = self._thread, self._loop, self._thread_stop
        if thread is None:
            return
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        if not thread.is_alive():
            self._thread = None

    def _thread_main(self) -> None:
        async def main() -> None:
            self._thread_stop = asyncio.Event()
            await self.run(self._thread_stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start(), or logged if it happens later
            self._thread_error = exc
            log.exception("dispatcher stopped by an error")

    # --- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then drain in-flight attempts and return."""
        loop = asyncio.get_running_loop()
        self._reads = _DbThread("citywatch-dispatch-read")
        self._writes_db = _DbThread("citywatch-dispatch-write")
        lanes: dict[str, _Lane] = {}
        stopper: asyncio.Task | None = None
        writer: asyncio.Task | None = None
        try:
            await self._writes_db.open(self._path)
            await self._writes_db.call(ob.ensure_schema)
            await self._reads.open(self._path)
            orphans = await self._writes_db.call(ob.fail_orphans, list(self.config.receivers),
                                                 self._clock())
            if orphans:
                log.warning("dispatch: %d open deliveries name receivers no longer configured; "
                            "marked failed", orphans)
            self._wake = asyncio.Event()
            self._outcomes_ready = asyncio.Event()
            writer = asyncio.create_task(self._writer(), name="dispatch-writer")
            self._loop = loop
            if self._woken_early:
                self._woken_early = False
                self._wake.set()
            for name, receiver in self.config.receivers.items():
                lane = _Lane(receiver, self._make_notifier(receiver),
                             capacity=receiver.max_concurrency * self._queue_per_slot)
                lane.workers = [asyncio.create_task(self._work(lane), name=f"dispatch-{name}-{i}")
                                for i in range(receiver.max_concurrency)]
                lanes[name] = lane
                self.metrics.pending.labels(name)
            stopper = asyncio.create_task(self._wake_on(stop))
            self._running.set()
            await self._schedule(stop, lanes)
        finally:
            if stopper is not None:
                stopper.cancel()
            await self._shutdown(lanes, writer)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        assert self._wake is not None
        self._wake.set()

    async def _schedule(self, stop: asyncio.Event, lanes: dict[str, _Lane]) -> None:
        assert self._wake is not None
        gauges_at = pruned_at = float("-inf")
        while not stop.is_set():
            self._wake.clear()
            holds = self._take_holds()
            now = self._clock()
            wants = {n: (lane.capacity - len(lane.claimed), frozenset(lane.claimed))
                     for n, lane in lanes.items()
                     if len(lane.claimed) < lane.capacity and lane.paused_until <= now}
            refresh = time.monotonic() - gauges_at >= 1.0
            if self._retention is not None and time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                pruned_at = time.monotonic()
                try:
                    gone = await self._writes_db.call(ob.prune, now - self._retention)
                except DBError:
                    log.exception("dispatch: cannot prune old deliveries")
                else:
                    if gone:
                        log.info("dispatch: pruned %d deliveries done over %.0f days ago", gone,
                                 self._retention / 86400)
            try:
                # In the loop's own thread: a few indexed reads (~0.2 ms), where a hop to the
                # reader thread and back cost two GIL hand-overs on every alert's path (several
                # ms each when other threads run Python; bench/alert_latency).
                batch, next_due, pending = self._reads.call_here(self._scan, wants, now, refresh)
            except DBError:  # e.g. the disk is full or the file locked for too long
                log.exception("dispatch: cannot read the outbox; trying again in %.2f s", self._poll)
                batch, next_due, pending = [], None, None
            for due in batch:
                lane = lanes[due.receiver]
                lane.claimed.add(due.delivery_id)
                lane.queue.put_nowait(due)
            if holds:
                assert self._gate is not None
                hold = _Hold(self._gate, holds, len(batch))
                if batch:
                    for due in batch:
                        self._holding[due.delivery_id] = hold
                    asyncio.get_running_loop().call_later(HOLD_MAX_S, hold.release)
                else:
                    hold.release()
            if pending is not None:
                gauges_at = time.monotonic()
                for name in lanes:
                    self.metrics.pending.labels(name).set(pending.get(name, 0))
            resume = [lane.paused_until for lane in lanes.values() if lane.paused_until > now]
            wake_at = min([t for t in (next_due, *resume) if t is not None], default=None)
            timeout = self._poll if wake_at is None else min(self._poll, max(wake_at - now, 0.0))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _scan(self, conn: Any, wants: dict[str, tuple[int, frozenset[str]]],
              now: float, refresh: bool
              ) -> tuple[list[ob.Due], float | None, dict[str, int] | None]:
        batch: list[ob.Due] = []
        for name, (free, claimed) in wants.items():
            batch += ob.claim_due(conn, name, now, free, claimed)
        later = [ob.next_due_after(conn, name, now) for name in self.config.receivers]
        next_due = min((t for t in later if t is not None), default=None)
        return batch, next_due, ob.pending_by_receiver(conn) if refresh else None

    async def _work(self, lane: _Lane) -> None:
        while True:
            due = await lane.queue.get()
            lane.busy += 1
            attempted_at = self._clock()
            try:
                # the notifier keeps to the receiver's timeout; this bounds a notifier that does not
                async with asyncio.timeout(lane.receiver.timeout_s + NOTIFIER_GRACE_S):
                    retryable, error = await lane.notifier.send(due.delivery_id, due.body)
            except TimeoutError:
                log.error("dispatch: notifier of %s overran its %g s timeout", lane.receiver.name,
                          lane.receiver.timeout_s)
                retryable, error = True, f"no answer within {lane.receiver.timeout_s:g} s"
            except Exception as exc:  # a notifier answers failures; this is a bug, logged
                log.exception("dispatch: notifier of %s raised", lane.receiver.name)
                retryable, error = True, f"notifier error: {type(exc).__name__}: {exc}"
            finally:
                lane.busy -= 1
                hold = self._holding.pop(due.delivery_id, None)
                if hold is not None:
                    hold.attempted()
            self._settle(lane, due, attempted_at, self._clock(), retryable, error)

    def _settle(self, lane: _Lane, due: ob.Due, attempted_at: float, now: float, retryable: bool,
                error: str | None) -> None:
        """Decide an attempt's outcome and queue it for the writer; the worker moves on at once.

        The delivery stays claimed (not sent again) until its outcome is committed.
        """
        name = lane.receiver.name
        if error is None or not retryable:  # the receiver answered: end any pause
            lane.streak, lane.paused_until = 0, 0.0
        elif lane.paused_until <= now:
            lane.streak += 1
            lane.paused_until = now + self.backoff(lane.streak)
        first = due.first_attempt_at if due.first_attempt_at is not None else attempted_at
        attempts = due.attempts + 1

        if error is None:
            def done() -> None:
                self.metrics.delivered.labels(name).inc()
                self.metrics.latency.labels(name).observe(max(0.0, now - due.due_at))

            self._record(lane, due, done, ob.record_delivered, due, attempted_at, now)
        elif not retryable or now - first >= self._horizon:
            if retryable:
                error = f"{error} (gave up after {attempts} attempts over {now - first:.0f} s)"

            def done() -> None:
                self.metrics.failed.labels(name).inc()
                log.warning("dispatch: delivery %s to %s failed: %s", due.delivery_id, name, error)

            self._record(lane, due, done, ob.record_failed, due, attempted_at, error, now)
        else:
            delay = self.backoff(attempts)

            def done() -> None:
                self.metrics.retried.labels(name).inc()
                log.info("dispatch: delivery %s to %s: %s; attempt %d in %.1f s", due.delivery_id,
                         name, error, attempts + 1, delay)

            self._record(lane, due, done, ob.record_retry, due, attempted_at, error, now + delay)

    def _record(self, lane: _Lane, due: ob.Due, done: Callable[[], None],
                fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(conn, *args)`` for the next group commit; then run ``done`` and release
        the claim. If the write fails the delivery stays open and is released after a pause, so
        a broken database does not turn into a hot resend loop."""
        assert self._outcomes_ready is not None and self._loop is not None
        loop = self._loop

        def release() -> None:
            lane.claimed.discard(due.delivery_id)
            if self._wake is not None:
                self._wake.set()

        def committed(exc: BaseException | None) -> None:
            if exc is None:
                done()
                release()
            else:
                log.error("dispatch: delivery %s to %s: could not record the attempt: %s",
                          due.delivery_id, lane.receiver.name, exc)
                loop.call_later(self._base, release)

        self._outcomes.append((fn, args, committed))
        self._outcomes_ready.set()

    async def _writer(self) -> None:
        assert self._outcomes_ready is not None
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            batch, self._outcomes = self._outcomes, []
            self._writing = True
            try:
                await self._writes_db.call(self._write_batch, [(fn, args) for fn, args, _ in batch])
                outcome: BaseException | None = None
            except Exception as exc:
                outcome = exc
            finally:
                self._writing = False
            for _, _, committed in batch:
                committed(outcome)

    @staticmethod
    def _write_batch(conn: Any,
                     batch: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
        with write_transaction(conn):
            for fn, args in batch:
                fn(conn, *args)

    async def _shutdown(self, lanes: dict[str, _Lane], writer: asyncio.Task | None) -> None:
        for lane in lanes.values():  # queued, not started: stays pending in the outbox
            while not lane.queue.empty():
                lane.claimed.discard(lane.queue.get_nowait().delivery_id)
        deadline = time.monotonic() + self._drain
        while ((any(lane.busy for lane in lanes.values()) or self._outcomes or self._writing)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)
        workers = [t for lane in lanes.values() for t in lane.workers]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if writer is not None:  # outcomes not yet written stay open in the outbox
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        self._outcomes = []
        for hold in self._holding.values():
            hold.release()
        self._holding.clear()
        self._release_holds()
        for lane in lanes.values():
            await lane.notifier.aclose()
        self._loop = None
        self._wake = None
        self._running.clear()
        for db in (self._reads, self._writes_db):
            if db is not None:
                await db.close()
        self._reads = self._writes_db = None
