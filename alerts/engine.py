"""The rule engine: evaluates a rule pack on batches of readings, in event time.

Evaluation is vectorised per (kind, metric): a batch is grouped by metric once and each rule's
type (``alerts/rule_types``) gets its slice; a metric rule compares it with its (per-device)
thresholds in a few numpy operations, and only the rows of devices where a condition is true
or a (rule, device) stream is already active go through the Python state machine. When nothing
fires the cost per rule is a handful of array operations on its slice. The engine keeps the
batch loop, the event-time bookkeeping, the transitions and the commit.

Per (rule, device) stream state: ``inactive -> pending -> firing -> resolved`` (back to
``inactive``). :meth:`RuleEngine._move` is the one place where a stream changes state; it logs
every transition (``noise.night_laeq noise-0042: PENDING => FIRING (major)``).

Guarantees:
- Event time only: the same readings give the same alerts whether they come live, replayed at
  100x, in one batch or in many (within a stream, rows are evaluated in ``ts`` order).
- Idempotent: each stream remembers the ``ts`` of the newest reading it evaluated
  (``last_ts``, saved with the alerts); a reading with ``ts <= last_ts`` is skipped, so a batch
  processed again after a crash changes nothing. The same holds for the previous-value and
  window-aggregate memories (each skips readings at or before the newest one it used).
  Consequence: a reading more than a batch late (older than the newest one already evaluated
  for its stream) is not evaluated for that stream.
- All alert changes of one :meth:`process`/:meth:`tick` call commit in ONE state-DB transaction
  with the stream state; listeners run inside it. If anything raises, nothing is committed and
  the engine reloads its state from the database before re-raising.
- Restart-safe: stream state (pending start per severity level, report counts, open alert),
  window aggregates and each device's previous value for ``change`` rules are restored from
  the state DB, so a restart loses no pending duration and creates no duplicate alert. Not
  persisted: the latest value of ``and`` metrics (the same message usually carries them; after
  a restart the device's next reading of that metric re-establishes it).
- Deferred mode (``deferred=True``, what a node runs): the window aggregates and previous values,
  which change with nearly every reading, are not saved by each call but by :meth:`checkpoint`,
  which the caller runs before it acknowledges the readings it passed (the ingest pipeline does,
  before every acknowledgement). Everything else still commits with the call, but the commit
  does not wait for the disk (``synchronous=NORMAL``: durable against a crash of the process at
  once, against a crash of the machine at the checkpoint, whose fsync of the WAL covers every
  commit before it). After a crash the engine resumes from what was saved, and the readings
  evaluated after the last checkpoint were not acknowledged, so the broker redelivers them and
  they are counted again, once: the same alerts as without the crash. The one difference a
  machine crash (not a process crash) can make: a notice sent before the checkpoint may be
  sent again for the redelivered reading (same alert id, new delivery id). It takes a
  transaction per batch and the disk's latency off the alert path: under ordinary traffic a
  batch changes every dust station's hourly mean and no alert (measured in
  bench/alert_latency, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from devices.catalogue import CATALOGUE
from ingest.model import Event, Readings

from .checkpoints import Checkpoints, CheckpointStore
from .model import Transition
from .notice import NoticeListener
from .rule_types.base import grow as _grow
from .rules import Param, Rule, RulePack
from .runtime import Call as _Call
from .runtime import Codes as _Codes
from .runtime import KindCodes as _KindCodes
from .runtime import Runtime as _Runtime
from .runtime import Seen as _Seen
from .runtime import Slots as _Slots
from .runtime import Stream as _Stream
from .runtime import acc_row as _acc_row
from .store import AlertState, AlertStore

log = logging.getLogger("citywatch.alerts")

_NAN = float("nan")
_NO_ATTRS: Mapping[str, Mapping[str, Any]] = MappingProxyType({})

AttrsFn = Callable[[str], Mapping[str, Mapping[str, Any]]]
DeviceInfoFn = Callable[[str], "Mapping[str, Any] | None"]


class RuleEngine:
    """Evaluates ``pack`` on readings and events, records alerts in ``state``.

    ``attrs(kind)`` returns ``{device_id: attrs}`` for the kind's devices. Per-device parameters
    read from it are cached until ``attrs(kind)`` returns a different object: the registry
    should hand out a cached mapping and replace it (a new object) when attrs change.
    ``device_info(device_id)`` returns the webhook ``device`` object (id, kind, district,
    asset_id, lat, lon, responsible_unit) or None. ``tz`` is the zone of ``during`` windows and
    aggregate windows. ``listeners`` are added to ``state.listeners``.

    ``attrs_recheck_s``: how often :meth:`process` asks ``attrs`` whether the attrs changed
    (0: every batch; a node uses 1 s, as each asking is a state-DB query on the alert path),
    measured on ``clock`` (seconds, monotonic; the engine reads no other clock: alerts follow
    event time, and :meth:`tick` and :meth:`retire_removed_rules` are given ``now_ms``).

    Rules are evaluated by their type (``alerts/rule_types``): the engine groups each batch by
    metric and hands each rule its rows (``RuleType.evaluate``), events (``on_event``) and ticks
    (``on_tick``); a type changes streams through :meth:`move` and the services below it.

    :meth:`process` (the ingest pipeline's rules stage) and :meth:`tick` (a timer thread) may be
    called from different threads: they take turns on one lock. The :class:`AlertState` may be
    shared with API threads.
    """

    def __init__(self, pack: RulePack | Sequence[Rule], state: AlertStore, *,
                 attrs: AttrsFn = lambda kind: _NO_ATTRS, device_info: DeviceInfoFn = lambda d: None,
                 tz: str = "Asia/Shanghai", listeners: Iterable[NoticeListener] = (),
                 attrs_recheck_s: float = 0.0, deferred: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 checkpoints: CheckpointStore | None = None,
                 fence: Callable[[Any], None] | None = None,
                 owns: Callable[[str], bool] | None = None) -> None:
        rules = pack.active if isinstance(pack, RulePack) else tuple(r for r in pack if r.enabled)
        self._lock = threading.Lock()
        self.clock = clock
        self.state = state
        # its stream state, in the alert store's state DB (one transaction for both) unless given
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints(state.db)
        self.deferred = deferred
        # called inside each commit's transaction with its connection; raises to refuse the
        # commit (several nodes: this node no longer holds the lease on these devices' rules)
        self.fence = fence
        # the devices this engine evaluates (a partition, alerts/partitions.py); None: all. It
        # restores only their state and takes only their manual resets; readings and ticks of
        # other devices are not passed to it (the pipeline's ``accept``, the caller's tick map)
        self.owns = owns
        # deferred mode: memories changed since the last checkpoint, and those it is saving
        # ((rule id, device id) -> acc list, or -> (ts, value) for change rules)
        self._unsaved_acc: dict[tuple[str, str], list] = {}
        self._unsaved_prev: dict[tuple[str, str], tuple[int, float]] = {}
        self._saving_acc: dict[tuple[str, str], list] = {}
        self._saving_prev: dict[tuple[str, str], tuple[int, float]] = {}
        self._checkpoint_lock = threading.Lock()  # one checkpoint at a time, saved in order
        self._unsynced = False  # deferred mode: a commit since the last checkpoint's fsync
        if deferred:
            state.relax_commits()
        self.attrs = attrs
        self.attrs_recheck_s = attrs_recheck_s
        self._attrs_checked = -float("inf")
        self.device_info = device_info
        self.tz = ZoneInfo(tz)
        for listener in listeners:
            if listener not in state.listeners:
                state.listeners.append(listener)
        state.tz = self.tz  # notices and the API show times in the engine's zone
        self._slots: dict[str, _Slots] = {k: _Slots() for k in CATALOGUE}
        self._slots_by_index = list(self._slots.values())
        self._kind_index = _Codes({k: i for i, k in enumerate(self._slots)})
        self._rts = [_Runtime(r, self._slots[r.kind]) for r in rules]
        self._by_id = {rt.rule.id: rt for rt in self._rts}
        self._reading_rts = [rt for rt in self._rts if rt.rule.metric and rt.impl.handles("evaluate")]
        self._event_rts = [rt for rt in self._rts if rt.impl.handles("on_event")]
        self._tick_rts = [rt for rt in self._rts if rt.impl.handles("on_tick")]
        used = sorted(set().union(*(rt.impl.metrics(rt.rule) for rt in self._reading_rts)))
        # metrics whose latest value per device some rule needs (`and` conditions)
        self._latest_keys = sorted({(rt.rule.kind, m) for rt in self._reading_rts
                                    for m in rt.impl.latest_metrics(rt.rule)})
        # every catalogue metric has an entry (-1: no rule reads it), so valid rows never miss
        self._codes = _Codes({m: -1 for k in CATALOGUE.values() for m in k.metrics})
        self._codes.update({m: i for i, m in enumerate(used)})
        self._ncodes = len(used)
        self._used = used  # code -> metric
        self._offsets: dict[int, int] = {}  # minute (epoch ms // 60,000) -> UTC offset ms
        # per-device parameters: (kind, Param) -> float array by slot (NaN: not resolved yet)
        self._params: dict[tuple[str, Param], np.ndarray] = {}
        self._attrs_seen: dict[str, Any] = {}
        # latest value of `and` metrics per slot: (kind, metric) -> (values, ts)
        self._latest: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._kind_codes = _KindCodes(self._kind_of)
        self._tick_cache: tuple[list[str], np.ndarray] = ([], np.empty(0, np.int64))
        self._attr_kinds = sorted({rt.rule.kind for rt in self._rts if not all(
            p.constant for p in rt.impl.params_of(rt.rule))})
        self._load()

    # --- restore ----------------------------------------------------------------------------

    def _load(self) -> None:
        for rt in self._rts:
            rt.streams.clear()
            rt.active[:] = False
            rt.n_active = 0
            rt.prev_val[:] = np.nan
            rt.prev_ts[:] = -(2 ** 62)
        owns = self.owns or (lambda device_id: True)
        for row in self.checkpoints.load_streams():
            rt = self._by_id.get(row.rule)
            if rt is None or not owns(row.device_id):
                continue  # a rule since removed or disabled
            slot = rt.slots[row.device_id]
            st = _Stream.from_row(row, rt.rule)
            rt.streams[slot] = st
            rt.ensure(slot + 1)
            rt.set_active(slot, st.state in ("pending", "firing"))
        # an open alert always has a firing stream (also if stream rows were lost): adopt it
        for a in self.state.open_alerts():
            rt = self._by_id.get(a.rule)
            if rt is None or a.severity not in rt.rule.severities or not owns(a.device_id):
                continue
            slot = rt.slots[a.device_id]
            st = rt.stream(slot)
            if st.state != "firing" or st.alert_id != a.id:
                log.warning("%s %s: adopting open alert %s without engine state", a.rule,
                            a.device_id, a.id)
                st.state, st.alert_id, st.started = "firing", a.id, a.started_ms
                st.sev = rt.rule.severities.index(a.severity)
                st.last_ts = max(st.last_ts, a.fired_ms or a.started_ms)
                rt.ensure(slot + 1)
                rt.set_active(slot, True)
        self._restore_acc((rule, dev, [bucket, total, n, ts])
                          for rule, dev, bucket, total, n, ts in self.checkpoints.load_acc() if owns(dev))
        self._restore_prev((rule_id, device_id, ts, value)
                           for rule_id, device_id, ts, value in self.checkpoints.load_prev() if owns(device_id))

    def _restore_acc(self, rows: Iterable[tuple[str, str, list]]) -> None:
        for rule_id, device_id, acc in rows:
            rt = self._by_id.get(rule_id)
            if rt is not None:
                slot = rt.slots[device_id]
                rt.ensure(slot + 1)
                rt.stream(slot).acc = acc

    def _restore_prev(self, rows: Iterable[tuple[str, str, int, float]]) -> None:
        for rule_id, device_id, ts, value in rows:
            rt = self._by_id.get(rule_id)
            if rt is not None:
                slot = rt.slots[device_id]
                rt.ensure(slot + 1)
                rt.prev_val[slot], rt.prev_ts[slot] = value, ts

    def _reload(self) -> None:
        """Back to the state DB's state after a failed commit; in deferred mode the memories
        not saved yet (by a checkpoint, or in the one being saved) are kept."""
        acc = {**self._saving_acc, **self._unsaved_acc}
        prev = {**self._saving_prev, **self._unsaved_prev}
        self._load()
        self._restore_acc((rule, dev, a) for (rule, dev), a in acc.items())
        self._restore_prev((rule, dev, ts, value) for (rule, dev), (ts, value) in prev.items())

    # --- the one place a stream changes state (what that does to alerts: alerts/lifecycle.py) ---

    def _move(self, call: _Call, rt: _Runtime, slot: int, st: _Stream, to: str, ts: int, *,
              sev: int, value: float | None, started: int | None = None,
              fields: Mapping[str, Any] | None = None) -> None:
        """Change a stream's state, log it, queue the Transition for the commit."""
        rule = rt.rule
        frm = st.state
        if frm == "inactive":
            st.started = started if started is not None else ts
        if to == "pending":
            st.alert_id = AlertState.pending_alert_id(rule.id, st.device_id, st.started)
        elif to == "firing" and frm != "firing":
            st.alert_id = self.state.new_alert_id(rule.id, st.device_id, st.started, call.reserved)
        severity = rule.levels[max(sev, 0)].severity
        where = call.where.get((rule.kind, st.device_id), ("", ""))
        fvalue = None if value is None else float(value)
        if to == "inactive":
            info = {"summary": "", "threshold": None}  # a pending alert dropped: never shown again
            log.debug("%s %s: %s => %s (%s)", rule.id, st.device_id, frm.upper(), to.upper(), severity)
        elif to == "pending":  # not notified, shown by the API (the alert store's pending_alerts)
            info = self._summary(rt, st.device_id, sev, value, fields)
            log.debug("%s %s: %s => %s (%s)", rule.id, st.device_id, frm.upper(), to.upper(), severity)
        else:
            info = self._summary(rt, st.device_id, sev, value, fields)
            log.info("%s %s: %s => %s (%s)", rule.id, st.device_id, frm.upper(), to.upper(), severity)
        view = st.view or {}
        call.transitions.append(Transition(
            rule.id, st.device_id, rule.kind, st.alert_id or "", frm, to, ts, severity,
            info["summary"], rule.metric, fvalue, info["threshold"], st.started,
            rule.levels[st.sev].severity if st.sev >= 0 else None, *where,
            view.get("severity"), view.get("value"),
        ))
        st.view = None
        if to in ("resolved", "inactive"):
            st.state, st.sev, st.alert_id, st.started = "inactive", -1, None, None
            st.since = [None] * rt.nlev
            st.count = [0] * rt.nlev
        else:
            st.state, st.sev = to, sev
            if to == "pending":
                st.view = {"sev": sev, "severity": severity, "value": fvalue, "metric": rule.metric,
                           "kind": rule.kind, "district": where[0]}
        rt.set_active(slot, st.state in ("pending", "firing"))
        call.touch(rt, slot, st)
        if to == "inactive" and st.disposable:
            # a pending condition that stopped: nothing to keep (a replay repeats the same)
            del rt.streams[slot]
            call.dirty.pop((rule.id, slot), None)
            call.dropped.add((rule.id, slot))

    def _take_resets(self, call: _Call) -> None:
        """Forget the streams of alerts an operator resolved by hand (AlertState.resolve).

        If the condition still holds, the evaluation that follows starts it over: pending, then
        a new alert after the rule's ``for`` (an absence alert: at the next tick; an event
        alert: at the next matching event). A manual resolve is not a silence.
        """
        for alert_id, rule_id, device_id in self.state.take_resets():
            if self.owns is not None and not self.owns(device_id):
                continue  # another partition's: its engine takes it
            call.resets.append(alert_id)
            rt = self._by_id.get(rule_id)
            slot = rt.slots.get(device_id) if rt is not None else None
            st = rt.streams.get(slot) if slot is not None else None
            if st is None or st.alert_id != alert_id or st.state != "firing":
                continue  # resolved by the engine meanwhile, or a rule no longer loaded
            st.state, st.sev, st.alert_id, st.started, st.memo = "inactive", -1, None, None, None
            st.since, st.count = [None] * rt.nlev, [0] * rt.nlev
            rt.impl.on_reset(st)
            rt.set_active(slot, False)
            call.touch(rt, slot, st)
            log.info("%s %s: alert %s resolved by hand; evaluating afresh", rule_id, device_id, alert_id)

    def _summary(self, rt: _Runtime, device: str, sev: int, value: float | None,
                 extra: Mapping[str, Any] | None) -> dict:
        rule = rt.rule
        attrs = self.attrs_map(rule.kind).get(device)
        fields: dict[str, Any] = dict(rt.fields)
        fields.update(value=value if value is not None else _NAN, severity=rule.levels[max(sev, 0)].severity,
                      device=device)
        fields.update(rt.impl.summary_values(self, rule, attrs, sev, value))
        if extra:
            fields.update(extra)
        if fields["threshold"] is None:
            fields["threshold"] = _NAN
        try:
            text = rule.summary.format(**fields)
        except (ValueError, TypeError):
            text = f"{rule.id}: {rule.metric or fields['event'] or 'device'} {value}"
        thr = fields["threshold"]
        thr = None if thr != thr else thr  # NaN: no threshold
        return {"summary": text, "threshold": None if thr is None else float(thr)}

    # --- services for the rule types ---------------------------------------------------------

    def move(self, call: _Call, rt: _Runtime, slot: int, st: _Stream, to: str, ts: int, *,
             sev: int, value: float | None, started: int | None = None,
             fields: Mapping[str, Any] | None = None) -> None:
        """What a rule type calls to change a stream's state (see :meth:`_move`)."""
        self._move(call, rt, slot, st, to, ts, sev=sev, value=value, started=started, fields=fields)

    def latest(self, kind: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(values, ts) by device slot: the newest reading of ``metric`` before this batch, for
        the metrics some rule's type lists in ``latest_metrics`` (None: none seen yet)."""
        return self._latest.get((kind, metric))

    def attrs_map(self, kind: str) -> Mapping[str, Mapping[str, Any]]:
        m = self.attrs(kind)
        if m is not self._attrs_seen.get(kind, self):
            self._attrs_seen[kind] = m
            for (k, _), arr in self._params.items():
                if k == kind:
                    arr[:] = np.nan
        return m

    def param(self, kind: str, p: Param, slots: np.ndarray, n: int):
        """The parameter per row (an array), or a float if it is a constant."""
        if p.constant:
            return float(p.value)  # type: ignore[arg-type]
        arr = self._params.get((kind, p))
        if arr is None or len(arr) < n:
            arr = _grow(arr if arr is not None else np.full(0, np.nan), n, np.nan)
            self._params[(kind, p)] = arr
        vals = arr[slots]
        missing = np.isnan(vals)
        if missing.any():
            amap = self.attrs_map(kind)
            ids = self._slots[kind].ids
            for s in np.unique(slots[missing]).tolist():
                arr[s] = p.resolve(amap.get(ids[s]))
            vals = arr[slots]
        return vals

    def _offset_ms(self, ms: int) -> int:
        """The zone's UTC offset at ``ms``, remembered per minute: every batch asks for the
        same few minutes, and zones change their offsets on whole minutes (tzdata since 1972)."""
        minute = ms // 60_000
        got = self._offsets.get(minute)
        if got is None:
            off = datetime.fromtimestamp(ms / 1000, self.tz).utcoffset()
            got = int(off.total_seconds() * 1000) if off else 0
            if len(self._offsets) >= 4096:
                self._offsets.clear()
            self._offsets[minute] = got
        return got

    def local(self, ts: np.ndarray) -> np.ndarray:
        """Local wall-clock ms (epoch ms shifted by the zone's offset at each ts)."""
        if len(ts) == 0:
            return ts
        a, b = self._offset_ms(int(ts.min())), self._offset_ms(int(ts.max()))
        if a == b:
            return ts + a
        return ts + np.fromiter((self._offset_ms(int(t)) for t in ts), np.int64, len(ts))

    def _device(self, t: Transition) -> dict:
        info = self.device_info(t.device_id) or {}
        return {
            "id": t.device_id, "kind": info.get("kind", t.kind),
            "district": info.get("district") or t.district,
            "asset_id": info.get("asset_id") or t.asset_id,
            "lat": info.get("lat"), "lon": info.get("lon"),
            "responsible_unit": info.get("responsible_unit") or "",
        }

    def _commit(self, call: _Call) -> list[Transition]:
        deferred = self.deferred
        if (call.transitions or call.dirty or call.dropped or call.resets
                or (not deferred and (call.acc or call.prev))):
            try:
                with self.state.transaction() as conn:
                    if self.fence is not None:
                        self.fence(conn)
                    self.state.clear_resets(call.resets)
                    self.state.apply(call.transitions, self._device)
                    gone = [(rid, self._by_id[rid].slots.ids[slot]) for rid, slot in call.dropped
                            if (rid, slot) not in call.dirty]
                    self.checkpoints.save_streams((st.to_row(rt.rule) for rt, st in call.dirty.values()), gone)
                    if not deferred:
                        self.checkpoints.save_acc(_acc_row(rt.rule.id, st.device_id, st.acc)
                                            for rt, st in call.acc.values())
                        self.checkpoints.save_prev(call.prev)
            except BaseException:
                log.exception("alert changes rolled back; reloading rule-engine state")
                self._reload()
                raise
            self._unsynced = deferred
        if deferred:
            for rt, st in call.acc.values():
                self._unsaved_acc[(rt.rule.id, st.device_id)] = st.acc
            for rule_id, device_id, ts, value in call.prev:
                self._unsaved_prev[(rule_id, device_id)] = (ts, value)
        for f in call.after_commit:
            f()
        return call.transitions

    def retire_removed_rules(self, now_ms: int) -> list[Transition]:
        """Resolve at ``now_ms`` the open alerts of rules this engine does not run (removed from
        the rule files, or disabled), each with a ``resolved`` notice, drop their pending ones, and
        delete those rules' stream, window and previous-value rows. Returns the transitions.

        Nothing would ever evaluate such an alert again: left open, it would stay on the board
        and unresolved at the dispatch centre for good. Call it once at start, with the machine
        clock (there is no reading to take the time from).
        """
        with self._lock:
            with self.state.transaction():
                gone = self.state.retire_rules(self._by_id, now_ms)
                deleted = self.checkpoints.forget_rules(self._by_id)
            transitions = [
                Transition(a.rule, a.device_id, a.kind, a.id, "firing", "resolved", a.ended_ms or now_ms,
                           a.severity, a.summary, a.metric, None, a.threshold, a.started_ms, district=a.district)
                for a in gone]
            self._unsynced = self._unsynced or (self.deferred and bool(transitions or deleted))
            for a in gone:
                log.warning("alert %s (%s on %s) resolved: its rule is no longer loaded", a.id, a.rule,
                            a.device_id)
            if deleted:
                log.info("deleted %d rows of engine state of rules no longer loaded", deleted)
            return transitions

    def checkpoint(self) -> int:
        """Deferred mode: save the window aggregates and previous values changed since the last
        checkpoint and make every commit so far durable (one fsync). Returns the rows saved
        (without deferred mode there is never anything to do).

        Call it before acknowledging the readings passed to :meth:`process`. It holds the
        engine only to take the changes, not while it writes, so the rules go on meanwhile.
        On failure the changes stay for the next checkpoint.
        """
        with self._checkpoint_lock:
            with self._lock:
                if not self._unsaved_acc and not self._unsaved_prev and not self._unsynced:
                    return 0
                acc, self._unsaved_acc = self._unsaved_acc, {}
                prev, self._unsaved_prev = self._unsaved_prev, {}
                self._saving_acc, self._saving_prev = acc, prev
                self._unsynced = False
            try:
                if acc or prev:
                    with self.state.transaction() as conn:
                        if self.fence is not None:
                            self.fence(conn)
                        self.checkpoints.save_acc(_acc_row(rule, dev, a) for (rule, dev), a in acc.items())
                        self.checkpoints.save_prev((rule, dev, ts, value) for (rule, dev), (ts, value) in prev.items())
                self.state.sync()  # outside the state's lock: the rules commit meanwhile
            except BaseException:
                with self._lock:
                    # newer changes made meanwhile win over these
                    self._unsaved_acc = {**acc, **self._unsaved_acc}
                    self._unsaved_prev = {**prev, **self._unsaved_prev}
                    self._unsynced = True
                raise
            finally:
                with self._lock:
                    self._saving_acc, self._saving_prev = {}, {}
            return len(acc) + len(prev)

    # --- readings ---------------------------------------------------------------------------

    def process(self, batch: Readings, events: Sequence[Event] = ()) -> list[Transition]:
        """Evaluate a batch of readings and events (event time); commit; return transitions.

        The pipeline calls it in its rules stage, before the batch's store write, so a notice
        does not wait for the store; a message is acknowledged only after both the store write
        and this commit. Processing the same batch again is a no-op (see the module docstring).
        The alerts do not depend on how readings are split into batches; the returned list
        may omit pending-then-dropped pairs that start and end inside one batch.
        """
        with self._lock:
            return self._process(batch, events)

    def _process(self, batch: Readings, events: Sequence[Event]) -> list[Transition]:
        call = _Call()
        self._take_resets(call)
        if len(batch):
            now = self.clock()
            if now - self._attrs_checked >= self.attrs_recheck_s:
                self._attrs_checked = now
                for kind in self._attr_kinds:
                    self.attrs_map(kind)  # drops cached per-device parameters if attrs changed
            codes = np.fromiter(map(self._codes.__getitem__, batch.metric), np.int64, len(batch))
            present = np.bincount(codes + 1, minlength=self._ncodes + 1)
            groups: dict[str, np.ndarray] = {}
            for c in np.flatnonzero(present[1:]).tolist():  # the metrics some rule reads, present
                groups[self._used[c]] = np.flatnonzero(codes == c)
            slot_of = self._device_slots(batch, codes)
            cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

            def rows(kind: str, metric: str):
                key = (kind, metric)
                got = cache.get(key)
                if got is None:
                    idx = groups.get(metric)
                    if idx is None:
                        got = (np.empty(0, np.int64), np.empty(0, np.int64))
                    else:
                        # ingest only passes a kind's own metrics; checked anyway, as a reading
                        # of another kind must never be evaluated with this kind's device slots
                        idx = idx[batch.kind[idx] == kind]
                        got = (idx, slot_of[idx])
                    cache[key] = got
                return got

            for rt in self._reading_rts:
                if rt.rule.metric not in groups:
                    continue  # most rules read metrics this batch does not carry
                idx, slots = rows(rt.rule.kind, rt.rule.metric)
                if len(idx):
                    rt.impl.evaluate(self, call, rt, batch, idx, slots, rows)
            self._remember_latest(call, batch, rows)
        if events:
            self._eval_events(call, events)
        return self._commit(call)

    def _device_slots(self, b: Readings, codes: np.ndarray) -> np.ndarray:
        """Each row's device slot (in its kind's numbering) for the rows some rule reads.

        A message's readings are consecutive rows of one device, so the dictionary lookup runs
        once per run of equal device ids, not once per row.
        """
        out = np.full(len(codes), -1, np.int64)
        rel = np.nonzero(codes >= 0)[0]
        if not len(rel):
            return out
        dev, kind = b.device_id[rel], b.kind[rel]
        new = np.ones(len(rel), bool)
        new[1:] = (dev[1:] != dev[:-1]) | (kind[1:] != kind[:-1])
        starts = np.nonzero(new)[0]
        sdev = dev[starts]
        skind = np.fromiter(map(self._kind_index.__getitem__, kind[starts]), np.int64, len(starts))
        sslot = np.full(len(starts), -1, np.int64)  # -1: a kind not in the catalogue
        for k in np.unique(skind).tolist():
            if k >= 0:
                m = skind == k
                sslot[m] = self._slots_by_index[k].lookup(sdev[m])
        out[rel] = sslot[np.cumsum(new) - 1]
        return out

    def _remember_latest(self, call: _Call, b: Readings, rows) -> None:
        """After the commit: keep the newest value per device of every `and` metric."""
        for kind, metric in self._latest_keys:
            idx, slots = rows(kind, metric)
            if not len(idx):
                continue
            ts, v = b.ts[idx], b.value[idx]

            def apply(kind=kind, metric=metric, slots=slots, ts=ts, v=v) -> None:
                n = len(self._slots[kind].ids)
                vals, tss = self._latest.get((kind, metric), (np.full(0, np.nan), np.zeros(0, np.int64)))
                vals, tss = _grow(vals, n, np.nan), _grow(tss, n, -(2 ** 62))
                o = np.argsort(ts, kind="stable")
                s, t_, x = slots[o], ts[o], v[o]
                newer = t_ >= tss[s]
                vals[s[newer]] = x[newer]
                tss[s[newer]] = t_[newer]
                self._latest[(kind, metric)] = (vals, tss)
            call.after_commit.append(apply)

    # --- events and ticks ------------------------------------------------------------------

    def _eval_events(self, call: _Call, events: Sequence[Event]) -> None:
        for ev in sorted(events, key=lambda e: e.ts):
            for rt in self._event_rts:
                if ev.kind == rt.rule.kind:
                    rt.impl.on_event(self, call, rt, ev)

    # --- ticks: the kinds of the devices in last_seen ---------------------------------------

    def _kind_of(self, device_id: str) -> str | None:
        """The kind of a device: from the readings seen, else from ``device_info``."""
        for kind, slots in self._slots.items():
            if device_id in slots:
                return kind
        info = self.device_info(device_id)
        return info.get("kind") if info else None

    def kind_codes(self, ids: list[str]) -> np.ndarray:
        """Per device id, the index of its kind in the catalogue (-1: unknown); reuses the
        previous tick's when the ids are the same or only new ones were appended (a registry
        dict updated in place)."""
        old_ids, old_codes = self._tick_cache
        k = len(old_ids)
        if k and len(ids) >= k and ids[:k] == old_ids:
            new = np.fromiter(map(self._kind_codes.__getitem__, ids[k:]), np.int64, len(ids) - k)
            codes = np.concatenate([old_codes, new]) if len(new) else old_codes
        else:
            if len(ids) > len(self._kind_codes):
                self._prime_kinds()
            codes = np.fromiter(map(self._kind_codes.__getitem__, ids), np.int64, len(ids))
        self._tick_cache = (ids, codes)
        return codes

    def _prime_kinds(self) -> None:
        """Learn devices' kinds in bulk from ``attrs(kind)`` (the registry's devices of each
        kind), so that ``device_info`` is only asked about the few it does not list."""
        for i, kind in enumerate(CATALOGUE):
            for device_id in self.attrs_map(kind):
                self._kind_codes.setdefault(device_id, i)

    def tick(self, now_ms: int, last_seen: Mapping[str, int | None]) -> list[Transition]:
        """Absence rules and event-alert expiry at ``now_ms``; commit; return transitions.

        ``last_seen`` maps device id -> event time (ms) of its newest reading; devices never
        seen (absent or None) are not alerted. An absence alert fires at most once per silence
        and resolves when the device's last_seen is back within the rule's duration.
        """
        with self._lock:
            return self._tick(now_ms, last_seen)

    def _tick(self, now_ms: int, last_seen: Mapping[str, int | None]) -> list[Transition]:
        call = _Call()
        self._take_resets(call)
        seen = _Seen(self.kind_codes, last_seen)
        for rt in self._tick_rts:
            rt.impl.on_tick(self, call, rt, now_ms, seen)
        return self._commit(call)

    # --- introspection ----------------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rt.rule for rt in self._rts)
