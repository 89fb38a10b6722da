"""The ingest pipeline: decode -> batch -> rules -> durable -> acknowledge.

Per batch, in order: the rule engine (its alert changes and outbox rows commit in one state-DB
transaction, then ``after_rules`` wakes the dispatcher, so an alert does not wait for the store
write), the readings to the store (or fsync'd to the spool while the store is down), rejections
to the quarantine, events to the event log, the rule engine's checkpoint (the memories it
saves apart from its commits) and only then the acknowledgements. Last-seen
times go to the registry at most once a second (see ``_note_seen``).

Delivery guarantee (device-protocol.md "Delivery"): a message is acknowledged only after all
it carried is durable: its readings in the store (or the spool), its events and rejections
committed to the state DB, its rule consequences committed. Acknowledgements go out in the
order messages were received. A crash at any point before an acknowledgement makes the
broker redeliver; the stores are idempotent, so a redelivered message is stored once.

Threads: :meth:`submit` (paho, per message) and :meth:`submit_many` (the wire consumer, per
read of its socket) run on the MQTT client's network thread and only decode and append (cheap;
the decoding outside the batch's lock). Two stage threads follow, each taking one batch at a time, in order:
the rules stage takes the pending batch once it is due (``linger_ms`` after its first
message, or full), evaluates it and passes it on; the write stage makes the evaluated batches
durable and acknowledges them, merging those that waited into one write (up to
``max_batch_readings``) and letting them gather for up to ``write_linger_ms`` first. So an
alarm waits for the rules of the batch before it, not for the store write in progress, and a
slow store is caught up with fewer, larger writes. While an alert is on its way (the rules
stage evaluating, the dispatcher sending what it committed), the intake and the write stage
step aside for a few milliseconds (``gate``, ingest/priority.py). :meth:`flush`
runs both stages in the calling thread, after the batches the threads hold. Memory is
bounded: ``submit`` blocks (and with it the MQTT socket, which is TCP backpressure) while more
than ``max_pending_readings`` are pending or in the stages; with MQTT 5 the broker
additionally sends at most ``receive_maximum`` unacknowledged messages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devices.backoff import Backoff
from ingest.context import Context, add_context, messages
from ingest.decode import Decoded, Decoder
from ingest.events import EventLog
from ingest.failures import CONTENT_ERRORS, unavailable
from ingest.features import add_derived, derive, merge_batches, waveform_windows
from ingest.lookup import DeviceLookup, RegistryView
from ingest.metrics import IngestMetrics
from ingest.model import Event, Reading, Readings, ReadingsBuilder, Rejection
from ingest.ports import RuleSink, SpoolLike
from ingest.priority import Gate
from ingest.quarantine import Quarantine
from ingest.stores.base import Store, StoreUnavailable, count_kinds

log = logging.getLogger("citywatch.ingest")

Ack = Callable[[], None]

SEEN_CHUNK = 256  # devices per last-seen transaction (see Pipeline._note_seen)
# a failed write or an unavailable store: retried after 0.1 s doubling to 5 s, each delay at
# least half its ceiling (devices/backoff.py)
WRITE_RETRY = Backoff(0.1, 5.0, jitter=0.5)

@dataclass(slots=True)
class _Pending:
    builder: ReadingsBuilder = field(default_factory=ReadingsBuilder)
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    per_kind: dict[str, int] = field(default_factory=dict)  # readings accepted, per kind
    readings: int = 0  # readings accepted (the decoder counts them up: Decoder.decode_into)
    channels: dict[str, int] = field(default_factory=dict)  # messages per topic channel
    acks: list[Ack] = field(default_factory=list)
    messages: int = 0
    first_at: float = 0.0
    # Progress of a write, so that a retry after a failure resumes where it stopped (no
    # quarantine entry or event added twice): the built batch and the steps done.
    batch: Readings | None = None
    steps_done: int = 0
    rules_done: bool = False  # the rule engine has seen this batch
    windows: list = field(default_factory=list)  # waveform windows (ingest/features.py add_derived)
    context: list = field(default_factory=list)  # message lists (ingest/context.py add_context)

    def absorb(self, other: _Pending) -> None:
        """Add what ``other`` carries (readings not built yet, events, rejections, last-seen
        times, counts, acknowledgements) after what this one carries."""
        self.builder.extend(other.builder)
        self.readings += other.readings
        self.events.extend(other.events)
        self.rejections.extend(other.rejections)
        seen = self.seen
        for dev, ts in other.seen.items():
            if ts > seen.get(dev, 0):
                seen[dev] = ts
        for k, n in other.per_kind.items():
            self.per_kind[k] = self.per_kind.get(k, 0) + n
        for c, n in other.channels.items():
            self.channels[c] = self.channels.get(c, 0) + n
        self.acks.extend(other.acks)
        self.messages += other.messages


def _merge(parts: list[_Pending]) -> _Pending:
    """Evaluated batches as one, in order (the write stage's catch-up)."""
    m = _Pending(messages=0, first_at=min(p.first_at for p in parts), rules_done=True)
    m.batch, m.windows = merge_batches(parts)  # with the derived waveform readings (ingest/features.py)
    m.context = [msgs for p in parts for msgs in p.context]
    for p in parts:
        m.absorb(p)
    return m


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
        linger_ms: float = 5.0,
        write_linger_ms: float = 0.0,
        seen_interval_ms: float = 1000.0,
        gate: Gate | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        context: Context | None = None,
        accept: Callable[[str], bool] | None = None,
        rules_required: bool = False,
    ):
        self.store = store
        self.registry = registry
        self.quarantine = quarantine
        self.events = events
        self.metrics = metrics or IngestMetrics()
        self.spool = spool
        self.rules = rules
        self.after_rules = after_rules
        self.context = context  # derived context readings (ingest/context.py)
        # the topics this pipeline takes (a rule-evaluation partition's devices); the others are
        # acknowledged, in order with the rest, without being decoded. None: every topic
        self.accept = accept
        # a rule-evaluation pipeline (nothing recorded): what it acknowledges is what the engine
        # committed, so an engine whose state DB is away (or whose lease is gone) stops the rules
        # stage, leaving the rest unacknowledged for whoever evaluates next (``rules_failed``)
        # instead of being passed over as a rule bug is
        self.rules_required = rules_required
        self.rules_failed: BaseException | None = None
        # the intake and the write stage step aside while an alert is on its way (ingest/priority.py)
        self.gate = gate if gate is not None else Gate()
        self.decoder = Decoder(DeviceLookup(registry))
        # the per-channel message counters, looked up once
        self._messages_by_channel = {c: self.metrics.messages.labels(c)
                                     for c in ("telemetry", "event", "status", "other")}
        self.max_batch_readings = max_batch_readings
        self.max_batch_messages = max_batch_messages
        self.max_pending_readings = max_pending_readings
        self.linger_s = linger_ms / 1000.0
        self.write_linger_s = write_linger_ms / 1000.0
        self.seen_interval_s = seen_interval_ms / 1000.0
        # Time is passed in: ``clock`` (unix seconds) stamps what is received and quarantined,
        # ``monotonic`` times the lingers, the last-seen interval, withheld acknowledgements and
        # the stop timeout, ``sleep`` waits between retries; tests drive them.
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        # last-seen times not yet written to the registry (write stage; see _note_seen)
        self._seen: dict[str, int] = {}
        self._seen_written = self.monotonic()
        # (since, why, messages) while acknowledgements are withheld (see ack_status)
        self._withheld: tuple[float, str, int] | None = None
        self._pending = _Pending()
        # Batches the rules have evaluated, oldest first, waiting for the recording stage.
        self._ruled: deque[_Pending] = deque()
        self._inflight_readings = 0  # taken from _pending, not yet acknowledged (backpressure)
        self._inflight_messages = 0
        self._cond = threading.Condition()
        # Each stage takes and processes one batch at a time, in order (the stage threads or
        # flush()): batches reach the rule engine, and then the store and the state DB, in the
        # order their messages were received.
        self._rules_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._flush_waiting = 0  # flush() calls waiting for the write lock
        self._stop = False
        self._rules_stopped = False  # the rules stage has passed on its last batch
        self._threads: list[threading.Thread] = []

    # -- intake (MQTT thread) ------------------------------------------------------------------

    def submit(self, topic: str, payload: bytes, ack: Ack | None = None,
               received_ms: int | None = None, *, retained: bool = False) -> None:
        """Decode one message into the current batch; ``ack`` is called once it is durable.
        ``retained``: the broker re-sent it because it is retained (see :meth:`_retained`)."""
        self.submit_many([(topic, payload, ack, True) if retained else (topic, payload, ack)], received_ms)

    def submit_many(self, messages: Sequence[tuple], received_ms: int | None = None) -> None:
        """:meth:`submit` for messages received together (what one read of the socket held), in
        order: the priority gate, the clock and the batch's lock once for all of them, and the
        decoding outside the lock, so that the rules stage never waits for it. Each message is
        ``(topic, payload, ack)``, or ``(topic, payload, ack, retained)``."""
        if not messages:
            return
        self.gate.pause()
        now_ms = received_ms if received_ms is not None else int(self.clock() * 1000)
        with self._cond:
            while (self._pending.readings + self._inflight_readings > self.max_pending_readings
                   and not self._stop):
                self._cond.wait(0.5)  # backpressure: the MQTT socket stops being read
            if self._stop:
                return  # stopping: not taken, not acknowledged; the broker redelivers them later
        started = self.monotonic()
        q = _Pending(messages=len(messages))  # decoded here, then added to the pending batch in one step
        decode_into = self.decoder.decode_into
        per_kind, channels, acks = q.per_kind, q.channels, q.acks
        accept = self.accept
        for msg in messages:
            if len(msg) == 3:
                topic, payload, ack = msg
                retained = False
            else:
                topic, payload, ack, retained = msg
            if accept is not None and not accept(topic):
                if ack is not None:
                    acks.append(ack)
                continue
            if retained:
                self._retained(topic, payload, ack, now_ms, q)
                continue
            before = q.readings
            try:
                decode_into(topic, payload, now_ms, q.builder, q)
            except Exception as e:  # a decoder bug must not stop the consumer: quarantine it
                log.exception("decoding %s failed", topic)
                q.rejections.append(Rejection(topic, payload, now_ms, f"internal: {type(e).__name__}: {e}"))
            if q.readings != before:
                kind = topic.split("/", 2)[1]
                per_kind[kind] = per_kind.get(kind, 0) + q.readings - before
            # counted per batch (a prometheus counter takes a lock per inc: hot-path work)
            channel = topic.rsplit("/", 1)[-1]
            channels[channel] = channels.get(channel, 0) + 1
            if ack is not None:
                acks.append(ack)
        with self._cond:
            if self._stop:
                return
            p = self._pending
            if p.messages == 0:
                p.first_at = started
                self._cond.notify_all()  # an idle rules stage starts the linger timer now, not at its next poll
            p.absorb(q)
            if p.readings >= self.max_batch_readings or p.messages >= self.max_batch_messages:
                self._cond.notify_all()

    def _retained(self, topic: str, payload: bytes, ack: Ack | None, now_ms: int, q: _Pending) -> None:
        """A message the broker sent because it is retained: a copy of one published earlier,
        re-sent on every (re)subscription. It is state, not news: a ``status`` is not recorded
        as a new event, nor is an ``event``; the readings it carries are stored (the stores
        drop them as duplicates if they are there already) and raise last-seen only to their
        own times; if it is rejected it is not quarantined again (every message published since
        the consumer's first subscription reached it live, and was quarantined then). Counted
        in ``citywatch_ingest_retained_total{outcome}`` (status, event, readings, rejected)."""
        channel = topic.rsplit("/", 1)[-1]
        q.channels[channel] = q.channels.get(channel, 0) + 1
        if ack is not None:
            q.acks.append(ack)
        counter = self.metrics.retained
        if channel == "status":
            counter.labels("status").inc()
            return
        scratch = Decoded()
        try:
            self.decoder.decode_into(topic, payload, now_ms, q.builder, scratch)
        except Exception:  # a decoder bug: not quarantined either (see above)
            log.exception("decoding the retained message on %s failed", topic)
            counter.labels("rejected").inc()
            return
        if scratch.rejections:
            counter.labels("rejected").inc()
        elif scratch.events:
            counter.labels("event").inc()
        if scratch.readings:
            counter.labels("readings").inc()
            q.readings += scratch.readings
            kind = topic.split("/", 2)[1]
            q.per_kind[kind] = q.per_kind.get(kind, 0) + scratch.readings
            for dev, ts in scratch.seen.items():
                if ts > q.seen.get(dev, 0):
                    q.seen[dev] = ts

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._rules_stage, name="citywatch-rules-stage", daemon=True),
            threading.Thread(target=self._write_stage, name="citywatch-flusher", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking messages, flush what is pending (acknowledging it) and stop the stages.

        Messages submitted after this are neither stored nor acknowledged: the broker keeps
        them in the session for the next start. Stop the pipeline before disconnecting the
        consumer, so that the last acknowledgements still reach the broker.
        """
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._threads:
            deadline = self.monotonic() + timeout
            for t in self._threads:
                t.join(max(deadline - self.monotonic(), 0.0))
        else:
            self.flush()

    def flush(self) -> None:
        """Make everything submitted so far durable and acknowledge it (tests, shutdown).

        Runs the rules on what is pending and writes every evaluated batch in the calling
        thread, after the batch a stage is working on (a write in progress then gives up
        retrying if it fails, so that a flush at shutdown is never held up by a broken state
        DB): batches are never evaluated or written concurrently, so acknowledgements stay in
        order. Raises what the write raised.
        """
        with self._cond:
            self._flush_waiting += 1
            self._cond.notify_all()  # a write stage lingering for more batches writes now
        waiting = True
        try:
            self._rules_step()
            with self._write_lock:
                with self._cond:
                    self._flush_waiting -= 1
                waiting = False
                while True:
                    with self._cond:
                        p = self._take_ruled()
                    if p is None:
                        self._note_seen({}, force=True)
                        return
                    try:
                        self._write(p)
                    finally:
                        self._done(p)
        finally:
            if waiting:
                with self._cond:
                    self._flush_waiting -= 1

    def pending_messages(self) -> int:
        with self._cond:
            return self._pending.messages

    # -- stage 1: rules ------------------------------------------------------------------------

    def _take(self) -> _Pending:
        p = self._pending
        self._pending = _Pending()
        self._inflight_readings += len(p.builder)
        self._inflight_messages += p.messages
        self.metrics.inflight.set(self._inflight_messages)
        return p

    def _due(self) -> bool:
        p = self._pending
        if p.messages == 0:
            return False
        if len(p.builder) >= self.max_batch_readings or p.messages >= self.max_batch_messages:
            return True
        return self.monotonic() - p.first_at >= self.linger_s

    def _rules_stage(self) -> None:
        """Takes the pending batch once it is due, evaluates it, passes it to the write stage."""
        try:
            while True:
                with self._cond:
                    while not self._due() and not self._stop:
                        if self._pending.messages:
                            wait = self.linger_s - (self.monotonic() - self._pending.first_at)
                        else:
                            wait = 0.5
                        self._cond.wait(max(wait, 0.001))
                    stopping = self._stop
                self._rules_step()
                if stopping:
                    with self._cond:
                        if self._pending.messages == 0:
                            return
        except BaseException:
            # not a rule bug (those are caught in _evaluate): the stage cannot go on; the write
            # stage finishes what it holds, the rest stays unacknowledged for redelivery
            log.critical("the rules stage stopped", exc_info=True)
            raise
        finally:
            with self._cond:
                self._rules_stopped = True
                self._cond.notify_all()

    def _rules_step(self) -> None:
        """Take the pending batch, evaluate it and pass it to the write stage (one at a time)."""
        with self._rules_lock:
            with self._cond:
                p = self._take()
            if p.messages:
                with self.gate.hold():
                    self._evaluate(p)
                p.windows = derive(p.windows)  # waveform features, after the gate (ingest/features.py)
                with self._cond:
                    self._ruled.append(p)
                    self._cond.notify_all()

    def _evaluate(self, p: _Pending) -> None:
        """Build ``p``'s batch and run the rule engine on it (once; never raises for a rule bug).

        The rules run before the store write, so that an alert's notice (committed with the
        alert change) and the dispatcher's wake-up do not wait for it, and while the write
        stage stores the batch before: the acknowledgement still waits for both. A crash
        between the two redelivers the batch: the engine skips what it has evaluated
        (idempotent) and the store gets the readings.
        """
        if p.batch is None:
            p.windows = waveform_windows(p.builder) if self.store is not None else []  # features: derive()
            p.context = (messages(p.builder) if self.store is not None and self.context is not None
                         and self.context.wanted(p.per_kind) else [])
            p.batch = p.builder.build()
            p.builder = ReadingsBuilder()  # its rows are in the batch now: free them
            for k, c in p.per_kind.items():
                self.metrics.received.labels(k).inc(c)
            for channel, n in p.channels.items():
                counter = self._messages_by_channel.get(channel) or self._messages_by_channel["other"]
                counter.inc(n)
        if p.rules_done:
            return
        batch = p.batch
        changed = False
        if self.rules is not None and (len(batch) or p.events):
            try:
                changed = len(self.rules.process(batch, p.events)) > 0
                self.metrics.rules_evaluated.inc(len(batch))
            except Exception as e:
                if self.rules_required and unavailable(e):
                    self.rules_failed = e
                    raise
                # a rule bug (or a state DB that refuses the commit) must not hold the stream back
                log.exception("rule evaluation failed for a batch of %d readings", len(batch))
                self.metrics.rule_errors.inc()
        p.rules_done = True
        # only a batch that changed an alert can have queued a notice: each wake-up costs an
        # outbox scan and holds the priority gate (under load ~90 batches/s, nearly all without)
        if changed and self.after_rules is not None:
            try:
                self.after_rules()
            except Exception:
                log.exception("waking the dispatcher failed")

    # -- stage 2: store, quarantine, events, last seen, acknowledgements --------------------------

    def _take_ruled(self) -> _Pending | None:
        """The evaluated batches waiting, oldest first, merged into one write of at most
        ``max_batch_readings`` (at least one batch): a store falling behind the rules catches
        up with fewer, larger writes, which cost much less per reading."""
        if not self._ruled:
            return None
        parts = [self._ruled.popleft()]
        n = len(parts[0].batch)
        while self._ruled and n + len(self._ruled[0].batch) <= self.max_batch_readings:
            nxt = self._ruled.popleft()
            n += len(nxt.batch)
            parts.append(nxt)
        return parts[0] if len(parts) == 1 else _merge(parts)

    def _done(self, p: _Pending) -> None:
        with self._cond:
            self._inflight_readings -= len(p.batch) if p.batch is not None else 0
            self._inflight_messages -= p.messages
            self.metrics.inflight.set(self._inflight_messages)
            self._cond.notify_all()

    def _write_stage(self) -> None:
        while True:
            with self._cond:
                while not self._ruled and not self._rules_stopped:
                    self._cond.wait(0.5 if self.spool is None else 0.2)
                    if not self._ruled and not self._rules_stopped:
                        break  # idle: give the spool drainer a turn
                finished = self._rules_stopped and not self._ruled
                self._linger_for_write()
            with self._write_lock:
                with self._cond:
                    p = self._take_ruled()
                if p is not None:
                    self.gate.pause()  # an alert on its way goes first (ingest/priority.py)
                    try:
                        self._write_until_done(p)
                    finally:
                        self._done(p)
                    self._maintain_quarantine()
                    continue
                self._maintain_quarantine()
                try:
                    self._note_seen({})  # idle: the last-seen times of the last batches
                except Exception:
                    log.exception("writing last-seen times failed; kept for the next attempt")
                if self.spool is not None and not finished:
                    try:
                        self._drain_spool()
                    except Exception:
                        log.exception("draining the spool failed; it is kept for the next attempt")
            if finished:
                with self._write_lock:
                    try:
                        self._note_seen({}, force=True)
                    except Exception:
                        log.exception("writing the last-seen times at stop failed")
                    if self.quarantine is not None:
                        try:
                            self.quarantine.flush_limits()
                        except Exception:
                            log.exception("writing the quarantine's rate-limit counts at stop failed")
                return

    def _maintain_quarantine(self) -> None:
        """The quarantine's retention and rate-limit counts (at most once a minute: its own clock)."""
        if self.quarantine is None:
            return
        try:
            self.quarantine.maintain(int(self.clock() * 1000))
        except Exception:
            log.exception("quarantine retention failed; tried again in a minute")

    def _linger_for_write(self) -> None:
        """(Holding ``_cond``.) Let evaluated batches gather into one store write until the oldest
        message among them has waited ``write_linger_ms``, unless they fill a write, the pending
        readings reach half the backpressure limit, or a flush or a stop wants them now.

        A store write has a large fixed cost (DuckDB: ~13 ms of CPU per write, measured in
        bench/alert_latency), and under load every write also takes the interpreter from the
        alert path; fewer, larger writes leave more of both to it. Acknowledgements wait for the
        write, so this is the longest extra time a message stays unacknowledged."""
        while self._ruled and not (self._rules_stopped or self._stop or self._flush_waiting):
            age = self.monotonic() - self._ruled[0].first_at
            if (age >= self.write_linger_s
                    or sum(len(b.batch) for b in self._ruled) >= self.max_batch_readings
                    or 2 * (self._pending.readings + self._inflight_readings) >= self.max_pending_readings):
                return
            self._cond.wait(self.write_linger_s - age)

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
        resumes at the failed step; meanwhile ``submit`` applies backpressure and
        :meth:`ack_status` says why the acknowledgements wait. What a write refuses because of
        a message's content is set aside by the step itself (:meth:`_isolate`), so only an
        unavailable store or state DB can keep a batch here.
        """
        retry = WRITE_RETRY.streak()
        while True:
            try:
                self._write(p)
                return
            except Exception as e:
                if self._stop or self._flush_waiting:
                    # shutting down (or a flush() waits): do not hold it up; give up on this batch
                    log.exception("writing a batch of %d messages failed while stopping; they stay "
                                  "unacknowledged (redelivered at the next connection)", p.messages)
                    self._withheld = None
                    return
                self._hold(f"writing a batch failed: {type(e).__name__}: {e}", p.messages)
                delay = retry.next()
                log.exception("writing a batch of %d messages failed; retrying in %.1f s (not acknowledged "
                              "meanwhile)", p.messages, delay)
                self.sleep(delay)

    def _hold(self, reason: str, messages: int) -> None:
        """Note that the acknowledgements of ``messages`` are withheld, and why (:meth:`ack_status`)."""
        since = self._withheld[0] if self._withheld is not None else self.monotonic()
        self._withheld = (since, reason[:500], messages)

    def ack_status(self) -> dict[str, Any] | None:
        """None while acknowledgements flow; else why they are withheld, for how long, for how
        many messages (``/api/v1/health`` reports it as degraded)."""
        w = self._withheld
        if w is None:
            return None
        since, reason, messages = w
        return {"reason": reason, "for_s": round(self.monotonic() - since, 1), "messages": messages}

    def _write(self, p: _Pending) -> None:
        """Make ``p`` durable, then acknowledge it. Resumable: a step that raised is repeated by
        the next call, the steps before it are not."""
        if p.messages == 0:
            return
        t0 = time.perf_counter()
        self._evaluate(p)  # done by the rules stage (or flush) already, unless called directly
        batch = p.batch = add_derived(self, p) if p.windows else p.batch  # + waveform features
        batch = p.batch = add_context(self, p) if p.context else batch  # + sun elevation, design values
        # store, quarantine and events are None in a rules-only node (citywatch.runner): the
        # ingest nodes of the shared subscription record them
        if p.steps_done < 1:
            if len(batch) and self.store is not None:
                refused_rows: list[Rejection] = []  # added once the step is done: a retry starts afresh
                self._isolate(batch, lambda part: self._store_durably(part, count_kinds(part.kind)),
                              lambda i, e: refused_rows.append(self._refused_reading(batch.row(i), e)),
                              "store")
                p.rejections.extend(refused_rows)
            p.steps_done = 1
        if p.steps_done < 2:
            if p.rejections and self.quarantine is not None:
                self._isolate(p.rejections, self.quarantine.add,
                              lambda i, e: log.error("the quarantine refused an entry for %r (%s: %s); "
                                                     "dropped", p.rejections[i].topic[:200], type(e).__name__, e),
                              "quarantine")
                for r in p.rejections:
                    self.metrics.quarantined.labels(r.reason.split(":", 1)[0]).inc()
            p.steps_done = 2
        if p.steps_done < 3:
            if p.events and self.events is not None:
                refused: list[Rejection] = []
                self._isolate(p.events, self.events.add,
                              lambda i, e: refused.append(self._refused_event(p.events[i], e)), "event log")
                if refused and self.quarantine is not None:
                    self.quarantine.add(refused)
                for e in p.events:
                    self.metrics.events.labels(e.kind).inc()
            p.steps_done = 3
        if p.steps_done < 4:
            if self.rules is not None:
                # the rule engine's per-reading memories (window means, previous values) that its
                # commits left to this moment: saved before the readings are acknowledged. It
                # takes the state DB's write lock, which an alert's commit waits for: after it.
                self.gate.pause()
                self.rules.checkpoint()
            p.steps_done = 4
        try:
            self._note_seen(p.seen)
        except Exception:  # presence, not durability: the acknowledgements do not wait for it
            log.exception("writing last-seen times failed; kept for the next attempt")
        for ack in p.acks:
            ack()
        self._withheld = None
        self.metrics.flush_seconds.observe(time.perf_counter() - t0)

    def _isolate(self, items, write: Callable[[Any], Any], refused: Callable[[int, Exception], None],
                 what: str) -> None:
        """``write(items)``; if it raises one of CONTENT_ERRORS, write the halves, and so on down
        to single items: an item refused on its own goes to ``refused(index, error)``, all the
        others are written. One bad message can then never hold back the ones behind it. Other
        errors (unavailable store, locked database) propagate: the batch is retried."""
        def go(lo: int, hi: int) -> None:
            try:
                write(items[lo:hi])
                return
            except CONTENT_ERRORS as e:
                if hi - lo == 1:
                    self.metrics.refused.labels(what).inc()
                    refused(lo, e)
                    return
                if (lo, hi) == (0, len(items)):
                    log.error("the %s refused a batch of %d (%s: %s); writing it in parts to find what it "
                              "refuses", what, len(items), type(e).__name__, e)
            mid = (lo + hi) // 2
            go(lo, mid)
            go(mid, hi)

        go(0, len(items))

    def _refused_reading(self, r: Reading, e: Exception) -> Rejection:
        payload = json.dumps({"ts": r.ts, "metrics": {r.metric: r.value}}).encode()
        return Rejection(f"city/{r.kind}/{r.device_id}/telemetry", payload, int(self.clock() * 1000),
                         f"store_refused: the store refused this reading: {type(e).__name__}: {e}"[:1000],
                         r.device_id, r.kind)

    def _refused_event(self, ev: Event, e: Exception) -> Rejection:
        payload = json.dumps({"ts": ev.ts, "type": ev.type, "detail": ev.detail}, default=str,
                             ensure_ascii=False).encode("utf-8", "backslashreplace")
        return Rejection(f"city/{ev.kind}/{ev.device_id}/event", payload, int(self.clock() * 1000),
                         f"state_refused: the event log refused this event: {type(e).__name__}: {e}"[:1000],
                         ev.device_id, ev.kind)

    def _note_seen(self, seen: dict[str, int], force: bool = False) -> None:
        """Record last-seen times, writing them to the registry at most every
        ``seen_interval_ms`` (and at :meth:`flush` and stop).

        Last-seen times drive presence (online/offline, the absence rules, whose limits are
        minutes), not the readings: acknowledgements do not wait for them. A write per batch
        held the state DB's write lock ~10 times a second under load, delaying the rule
        engine's commits (the alert path); a crash now loses at most the last
        ``seen_interval_ms`` of them, which each device's next message restores. A time the
        registry refuses (it cannot be, after the decoder's checks) is dropped with an error
        log, so that it cannot stop every other device's presence.
        """
        mine = self._seen
        for dev, ts in seen.items():
            if ts > mine.get(dev, 0):
                mine[dev] = ts
        if mine and (force or self.monotonic() - self._seen_written >= self.seen_interval_s):
            # in transactions of SEEN_CHUNK devices: each holds the state DB's write lock, which
            # the rule engine's commit (on the alert path) waits for; one of 1,000 devices took
            # ~20 ms under load, a chunk ~5
            items = list(mine.items())
            for i in range(0, len(items), SEEN_CHUNK):
                chunk = items[i:i + SEEN_CHUNK]
                # on another failure the rest stay here for the next write
                self._isolate(chunk, lambda part: self.registry.mark_seen(dict(part)),
                              lambda j, e, chunk=chunk: log.error(
                                  "the registry refused the last-seen time %r of %r (%s); dropped",
                                  chunk[j][1], chunk[j][0], e), "registry")
                for dev, _ in chunk:
                    del mine[dev]
            self._seen_written = self.monotonic()

    def _store_durably(self, batch: Readings, per_kind: dict[str, int]) -> None:
        """Write ``batch`` (``per_kind``: its readings per kind) to the store, or to the spool while
        the store is unavailable. What the store refuses (:class:`StoreRejected`) is raised, for
        :meth:`_isolate` to find the readings it refuses."""
        retry = WRITE_RETRY.streak()
        while True:
            spool = self.spool
            if spool is not None and spool.depth()[0]:
                self._drain_spool()  # older spooled data goes first, in order
            try:
                if spool is not None and spool.depth()[0]:
                    raise StoreUnavailable("spool not yet drained")
                new = self.store.write(batch)
            except StoreUnavailable as e:
                if self._stop or self._flush_waiting:
                    raise  # stopping: the batch stays unacknowledged (_write_until_done)
                delay = retry.next()
                if spool is None:
                    log.warning("store unavailable (%s); retrying in %.1f s", e, delay)
                    self._hold(f"store unavailable: {e}", self._inflight_messages)
                elif not spool.full():
                    spool.append(batch)
                    self._count(self.metrics.spooled, per_kind)
                    return
                else:
                    log.warning("store unavailable and spool full: holding acknowledgements")
                    self._hold(f"store unavailable and the spool full: {e}", self._inflight_messages)
                self.sleep(delay)
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
