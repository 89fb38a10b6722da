"""The ingest pipeline: decode -> batch -> rules -> durable -> acknowledge.

Per batch, in order: the rule engine (its alert changes and outbox rows commit in one state-DB
transaction, then ``after_rules`` wakes the dispatcher, so an alert does not wait for the store
write), the readings to the store (or fsync'd to the spool while the store is down), rejections
to the quarantine, events to the event log, last-seen times to the registry, and only then the
acknowledgements.

Delivery guarantee (device-protocol.md "Delivery"): a message is acknowledged only after all
it carried is durable: its readings in the store (or the spool), its events and rejections
committed to the state DB, its rule consequences committed. Acknowledgements go out in the
order messages were received. A crash at any point before an acknowledgement makes the
broker redeliver; the stores are idempotent, so a redelivered message is stored once.

Threads: :meth:`submit` runs on the MQTT client's network thread and only decodes and
appends (cheap); one flusher thread makes batches durable and acknowledges them, so decoding
of the next batch overlaps the write of the previous one. Batches are written one at a time,
in order, also when :meth:`flush` is called from another thread. Memory is bounded: ``submit``
blocks (and with it the MQTT socket, which is TCP backpressure) while more than
``max_pending_readings`` wait; with MQTT 5 the broker additionally sends at most
``receive_maximum`` unacknowledged messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.decode import Decoder
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.model import Event, Readings, ReadingsBuilder, Rejection
from ingest.quarantine import Quarantine
from ingest.stores.base import Store, StoreRejected, StoreUnavailable

log = logging.getLogger("citywatch.ingest")

Ack = Callable[[], None]


class RegistryView(Protocol):
    def snapshot(self) -> dict[str, tuple[str, str, str]]: ...
    def version(self) -> int: ...
    def mark_seen(self, seen: dict[str, int]) -> None: ...


class RuleSink(Protocol):
    def process(self, batch: Readings, events: Sequence[Event]) -> Any: ...


class SpoolLike(Protocol):
    def append(self, batch: Readings) -> None: ...
    def full(self) -> bool: ...
    def depth(self) -> tuple[int, int]: ...
    def oldest_age_ms(self, now_ms: int) -> int | None: ...
    def drain(self, store: Store, max_batches: int | None = None) -> int: ...
    @property
    def drained_by_kind(self) -> dict[str, int]: ...  # cumulative readings drain() wrote, per kind


@dataclass(slots=True)
class _Pending:
    builder: ReadingsBuilder = field(default_factory=ReadingsBuilder)
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    per_kind: dict[str, int] = field(default_factory=dict)  # readings accepted, per kind
    acks: list[Ack] = field(default_factory=list)
    messages: int = 0
    first_at: float = 0.0
    # Progress of a write, so that a retry after a failure resumes where it stopped (no
    # quarantine entry or event added twice): the built batch and the steps done.
    batch: Readings | None = None
    steps_done: int = 0
    rules_done: bool = False  # the rule engine has seen this batch


class DeviceLookup:
    """device_id -> (kind, district, asset_id), from a registry snapshot refreshed on change.

    A miss re-reads the registry's version at most every ``recheck_s`` so that a device
    registered a moment ago is accepted without a restart.
    """

    def __init__(self, registry: RegistryView, recheck_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._version = registry.version()
        self._map = registry.snapshot()
        self._checked = clock()

    def __call__(self, device_id: str) -> tuple[str, str, str] | None:
        hit = self._map.get(device_id)
        if hit is not None:
            return hit
        now = self._clock()
        if now - self._checked < self._recheck_s:
            return None
        with self._lock:
            self._checked = now
            v = self._registry.version()
            if v != self._version:
                self._map = self._registry.snapshot()
                self._version = v
        return self._map.get(device_id)


class Pipeline:
    def __init__(
        self,
        *,
        store: Store | None,
        registry: RegistryView,
        quarantine: Quarantine | None,
        events: EventLog | None,
        metrics: IngestMetrics | None = None,
        spool: SpoolLike | None = None,
        rules: RuleSink | None = None,
        after_rules: Callable[[], None] | None = None,
        max_batch_readings: int = 100_000,
        max_batch_messages: int = 20_000,
        max_pending_readings: int = 1_000_000,
        linger_ms: float = 20.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.registry = registry
        self.quarantine = quarantine
        self.events = events
        self.metrics = metrics or IngestMetrics()
        self.spool = spool
        self.rules = rules
        self.after_rules = after_rules
        self.decoder = Decoder(DeviceLookup(registry))
        # the per-channel message counters, looked up once (labels() per message is hot-path work)
        self._messages_by_channel = {c: self.metrics.messages.labels(c)
                                     for c in ("telemetry", "event", "status", "other")}
        self.max_batch_readings = max_batch_readings
        self.max_batch_messages = max_batch_messages
        self.max_pending_readings = max_pending_readings
        self.linger_s = linger_ms / 1000.0
        self.clock = clock
        self._pending = _Pending()
        self._flushing = 0  # readings of the batch being written
        self._cond = threading.Condition()
        # Held while one batch is taken and written (flusher or flush()): batches go to the
        # store, the state DB connections and the rule engine one at a time, in order.
        self._write_lock = threading.Lock()
        self._flush_waiting = 0  # flush() calls waiting for the write lock
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- intake (MQTT thread) ------------------------------------------------------------------

    def submit(self, topic: str, payload: bytes, ack: Ack | None = None,
               received_ms: int | None = None) -> None:
        """Decode one message into the current batch; ``ack`` is called once it is durable."""
        now_ms = received_ms if received_ms is not None else int(self.clock() * 1000)
        with self._cond:
            while (len(self._pending.builder) + self._flushing > self.max_pending_readings
                   and not self._stop):
                self._cond.wait(0.5)  # backpressure: the MQTT socket stops being read
            if self._stop:
                return  # stopping: not taken, not acknowledged; the broker redelivers it later
            p = self._pending
            try:
                d = self.decoder.decode(topic, payload, now_ms, p.builder)
            except Exception as e:  # a decoder bug must not stop the consumer: quarantine it
                log.exception("decoding %s failed", topic)
                p.rejections.append(Rejection(topic, payload, now_ms, f"internal: {type(e).__name__}: {e}"))
            else:
                if d.events:
                    p.events.extend(d.events)
                if d.rejections:
                    p.rejections.extend(d.rejections)
                for dev, ts in d.seen.items():
                    if ts > p.seen.get(dev, 0):
                        p.seen[dev] = ts
                if d.readings:
                    kind = topic.split("/", 2)[1]
                    p.per_kind[kind] = p.per_kind.get(kind, 0) + d.readings
            counter = self._messages_by_channel.get(topic.rsplit("/", 1)[-1])
            (counter or self._messages_by_channel["other"]).inc()
            if ack is not None:
                p.acks.append(ack)
            if p.messages == 0:
                p.first_at = time.monotonic()
                self._cond.notify_all()  # an idle flusher starts the linger timer now, not at its next poll
            p.messages += 1
            if len(p.builder) >= self.max_batch_readings or p.messages >= self.max_batch_messages:
                self._cond.notify_all()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="citywatch-flusher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking messages, flush what is pending (acknowledging it) and stop the flusher.

        Messages submitted after this are neither stored nor acknowledged: the broker keeps
        them in the session for the next start. Stop the pipeline before disconnecting the
        consumer, so that the last acknowledgements still reach the broker.
        """
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.flush()

    def flush(self) -> None:
        """Make everything submitted so far durable and acknowledge it (tests, shutdown).

        Waits for a batch the flusher is writing (which then gives up retrying if its write
        fails, so that a flush at shutdown is never held up by a broken state DB), then writes
        the rest in the calling thread: batches are never written concurrently, so
        acknowledgements stay in order. Raises what the write raised.
        """
        with self._cond:
            self._flush_waiting += 1
        self._write_lock.acquire()
        try:
            with self._cond:
                self._flush_waiting -= 1
                p = self._take()
            self._write(p)
        finally:
            with self._cond:
                self._flushing = 0
                self._cond.notify_all()
            self._write_lock.release()

    def pending_messages(self) -> int:
        with self._cond:
            return self._pending.messages

    # -- flusher -------------------------------------------------------------------------------

    def _take(self) -> _Pending:
        p = self._pending
        self._pending = _Pending()
        self._flushing = len(p.builder)
        self.metrics.inflight.set(p.messages)
        return p

    def _due(self) -> bool:
        p = self._pending
        if p.messages == 0:
            return False
        if len(p.builder) >= self.max_batch_readings or p.messages >= self.max_batch_messages:
            return True
        return time.monotonic() - p.first_at >= self.linger_s

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due() and not self._stop:
                    if self._pending.messages:
                        wait = self.linger_s - (time.monotonic() - self._pending.first_at)
                    else:
                        wait = 0.5 if self.spool is None else 0.2
                    self._cond.wait(max(wait, 0.001))
                    if self._pending.messages == 0 and not self._stop:
                        break  # idle: give the spool drainer a turn
                stopping = self._stop
            with self._write_lock:
                with self._cond:
                    p = self._take()
                if p.messages:
                    self._write_until_done(p)
                elif self.spool is not None:
                    try:
                        self._drain_spool()
                    except Exception:
                        log.exception("draining the spool failed; it is kept for the next attempt")
                with self._cond:
                    self._flushing = 0
                    self._cond.notify_all()
                    if stopping and self._pending.messages == 0:
                        return

    def _drain_spool(self) -> None:
        spool = self.spool
        assert spool is not None and self.store is not None
        batches, size = spool.depth()
        if batches == 0:
            self.metrics.spool_bytes.set(0)
            self.metrics.spool_age.set(0)
            return
        # Count readings, like ``spooled`` (drained == spooled once the spool is empty); drain()
        # returns batches. It stops by itself at the first store error, keeping the rest.
        before = dict(spool.drained_by_kind)
        spool.drain(self.store, max_batches=8)
        self._count(self.metrics.drained, {k: n - before.get(k, 0) for k, n in spool.drained_by_kind.items()})
        batches, size = spool.depth()
        self.metrics.spool_bytes.set(size)
        age = spool.oldest_age_ms(int(self.clock() * 1000))
        self.metrics.spool_age.set((age or 0) / 1000)

    def _write_until_done(self, p: _Pending) -> None:
        """Write ``p``, retrying with backoff until it succeeds (or the pipeline stops).

        A failed write must not be dropped: on a live MQTT connection the broker never resends
        an unacknowledged message (only after a reconnect), and with MQTT 5 each one keeps a
        slot of ``receive_maximum``: dropped acknowledgements would lose the batch's quarantine
        entries and events until a restart, and enough of them stall the consumer. Retrying
        resumes at the failed step; meanwhile ``submit`` applies backpressure.
        """
        delay = 0.1
        while True:
            try:
                self._write(p)
                return
            except Exception:
                if self._stop or self._flush_waiting:
                    # shutting down (or a flush() waits): do not hold it up; give up on this batch
                    log.exception("writing a batch of %d messages failed while stopping; they stay "
                                  "unacknowledged (redelivered at the next connection)", p.messages)
                    return
                log.exception("writing a batch of %d messages failed; retrying in %.1f s (not acknowledged "
                              "meanwhile)", p.messages, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _write(self, p: _Pending) -> None:
        """Make ``p`` durable, then acknowledge it. Resumable: a step that raised is repeated by
        the next call, the steps before it are not."""
        if p.messages == 0:
            return
        t0 = time.perf_counter()
        if p.batch is None:
            p.batch = p.builder.build()
            for k, c in p.per_kind.items():
                self.metrics.received.labels(k).inc(c)
        batch = p.batch
        # Rules first, so that an alert's notice (committed with the alert change) and the
        # dispatcher's wake-up do not wait for the store write; the acknowledgement still waits
        # for everything. A crash between the two redelivers the batch: the engine skips what it
        # has evaluated (idempotent) and the store gets the readings.
        if not p.rules_done:
            if self.rules is not None and (len(batch) or p.events):
                try:
                    self.rules.process(batch, p.events)
                except Exception:
                    # a rule bug must not hold the stream back
                    log.exception("rule evaluation failed for a batch of %d readings", len(batch))
                    self.metrics.rule_errors.inc()
            p.rules_done = True
            if self.after_rules is not None:
                self.after_rules()
        # store, quarantine and events are None in a rules-only node (citywatch.runner): the
        # ingest nodes of the shared subscription record them
        if p.steps_done < 1:
            if len(batch) and self.store is not None:
                self._store_durably(batch, p.per_kind)
            p.steps_done = 1
        if p.steps_done < 2:
            if p.rejections and self.quarantine is not None:
                self.quarantine.add(p.rejections)
                for r in p.rejections:
                    self.metrics.quarantined.labels(r.reason.split(":", 1)[0]).inc()
            p.steps_done = 2
        if p.steps_done < 3:
            if p.events and self.events is not None:
                self.events.add(p.events)
                for e in p.events:
                    self.metrics.events.labels(e.kind).inc()
            p.steps_done = 3
        if p.seen:
            self.registry.mark_seen(p.seen)  # idempotent: repeated by a retry
        for ack in p.acks:
            ack()
        self.metrics.flush_seconds.observe(time.perf_counter() - t0)

    def _store_durably(self, batch: Readings, per_kind: dict[str, int]) -> None:
        """Write ``batch`` (``per_kind``: its readings per kind) to the store, or the spool."""
        delay = 0.1
        while True:
            spool = self.spool
            if spool is not None and spool.depth()[0]:
                self._drain_spool()  # older spooled data goes first, in order
            try:
                if spool is not None and spool.depth()[0]:
                    raise StoreUnavailable("spool not yet drained")
                new = self.store.write(batch)
            except StoreRejected as e:
                # data the store will always refuse (e.g. a tag InfluxDB cannot carry): retrying
                # cannot help; the spool keeps it on disk and its drain sets it aside in corrupt/
                if spool is None:
                    raise
                log.error("the store refused a batch of %d readings (%s); kept in the spool's corrupt/",
                          len(batch), e)
                spool.append(batch)
                self._count(self.metrics.spooled, per_kind)
                return
            except StoreUnavailable as e:
                if spool is None:
                    log.warning("store unavailable (%s); retrying in %.1f s", e, delay)
                elif not spool.full():
                    spool.append(batch)
                    self._count(self.metrics.spooled, per_kind)
                    return
                else:
                    log.warning("store unavailable and spool full: holding acknowledgements")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            dups = getattr(new, "duplicates_by_kind", None)
            if dups is None:  # a store that does not say: duplicates are rare, count them together
                dups = {"unknown": len(batch) - new} if new < len(batch) else {}
            self._count(self.metrics.duplicates, dups)
            self._count(self.metrics.stored, {k: n - dups.get(k, 0) for k, n in per_kind.items()})
            return

    @staticmethod
    def _count(counter, by_kind: dict[str, int]) -> None:
        for kind, n in by_kind.items():
            if n:
                counter.labels(kind).inc(n)
