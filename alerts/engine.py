"""The rule engine: evaluates a rule pack on batches of readings, in event time.

Evaluation is vectorised per (kind, metric): a batch is grouped by metric once, each rule
compares its slice of values with its (per-device) thresholds in a few numpy operations, and
only the rows of devices where a condition is true or a (rule, device) stream is already
active go through the Python state machine. When nothing fires the cost per rule is a handful
of array operations on its slice.

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
- All alert changes of one :meth:`process`/:meth:`tick` call commit in ONE SQLite transaction
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
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from devices.catalogue import CATALOGUE
from ingest.model import Event, Readings

from .checkpoints import CheckpointStore, SqliteCheckpoints, StreamRow
from .model import Transition
from .notice import NoticeListener
from .rules import RANGE_OPS, Param, Rule, RulePack, format_duration
from .store import AlertState, AlertStore

log = logging.getLogger("citywatch.alerts")

DAY_MS = 86_400_000
_NAN = float("nan")
_NO_ATTRS: Mapping[str, Mapping[str, Any]] = MappingProxyType({})

AttrsFn = Callable[[str], Mapping[str, Mapping[str, Any]]]
DeviceInfoFn = Callable[[str], "Mapping[str, Any] | None"]


# --- per-kind device slots ---------------------------------------------------------------------

class _Slots(dict):
    """device id -> slot for one kind; an unknown id gets the next slot on lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def __missing__(self, key: str) -> int:
        n = len(self.ids)
        self[key] = n
        self.ids.append(key)
        return n

    def lookup(self, devices: np.ndarray) -> np.ndarray:
        return np.fromiter(map(self.__getitem__, devices), np.int64, len(devices))


class _KindCodes(dict):
    """device id -> index of its kind in CATALOGUE (-1 unknown, not cached), cached."""

    def __init__(self, kind_of: Callable[[str], str | None]) -> None:
        super().__init__()
        self._kind_of = kind_of
        self._kinds = list(CATALOGUE)

    def __missing__(self, device_id: str) -> int:
        k = self._kind_of(device_id)
        if k not in self._kinds:
            return -1
        self[device_id] = code = self._kinds.index(k)
        return code


class _Codes(dict):
    """name -> code; -1 for a name without one."""

    def __missing__(self, key: str) -> int:
        return -1


def _grow(a: np.ndarray, n: int, fill) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.full(max(n, 2 * len(a), 64), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


# --- stream state --------------------------------------------------------------------------------

def _acc_row(rule_id: str, device_id: str, acc: list) -> tuple[str, str, int, float, int, int]:
    bucket, total, n, last_ts = acc
    return rule_id, device_id, bucket, total, n, last_ts


@dataclass(slots=True)
class _Stream:
    """State of one (rule, device) stream. ``since``/``count`` are per severity level: the ts
    of the first reading of the current run where the level's condition holds, and the number
    of readings in that run."""

    device_id: str
    state: str = "inactive"  # inactive, pending, firing
    last_ts: int = -(2 ** 62)
    since: list = field(default_factory=list)
    count: list = field(default_factory=list)
    sev: int = -1
    alert_id: str | None = None
    started: int | None = None
    acc: list | None = None  # [bucket, sum, n, last_ts] for mean rules
    match: int | None = None  # ts of the last matching event (event rules)
    view: dict | None = None  # while pending: what the API shows (summary, value, ...)

    @property
    def disposable(self) -> bool:
        """Inactive and remembering nothing a replay or a later reading would need."""
        return self.state == "inactive" and self.acc is None and self.match is None

    def to_row(self, rule: str) -> StreamRow:
        data = {"since": self.since, "count": self.count, "sev": self.sev, "alert": self.alert_id,
                "started": self.started}
        for k in ("match", "view"):  # acc: saved apart (rule_acc), see RuleEngine.checkpoint
            v = getattr(self, k)
            if v is not None:
                data[k] = v
        return StreamRow(rule, self.device_id, self.state, self.last_ts, data)

    @classmethod
    def from_row(cls, r: StreamRow, levels: int) -> _Stream:
        d = r.data
        since = list(d.get("since") or [])
        count = list(d.get("count") or [])
        since = (since + [None] * levels)[:levels]
        count = (count + [0] * levels)[:levels]
        return cls(r.device_id, r.state, r.last_ts, since, count, d.get("sev", -1), d.get("alert"),
                   d.get("started"), d.get("acc"), d.get("match"), d.get("view"))


class _Runtime:
    """A rule and its evaluation state: streams by slot and the ``active`` flag array."""

    def __init__(self, rule: Rule, slots: _Slots) -> None:
        self.rule = rule
        self.slots = slots
        self.nlev = len(rule.levels)
        self.streams: dict[int, _Stream] = {}
        self.active = np.zeros(64, bool)
        self.n_active = 0
        # change rules: the previous value per slot (saved in the state DB's rule_prev)
        self.prev_val = np.full(64, np.nan)
        self.prev_ts = np.full(64, -(2 ** 62), np.int64)
        # summary fields that do not depend on the device or the reading
        self.fields = {
            "kind": rule.kind, "metric": rule.metric or "", "unit": rule.unit, "factor": _NAN,
            "event": rule.event or "", "silent": "", "absent": format_duration(rule.absent_ms),
            "for": format_duration(rule.for_ms), "lo": _NAN, "hi": _NAN, "threshold": None,
        }

    def stream(self, slot: int) -> _Stream:
        st = self.streams.get(slot)
        if st is None:
            st = _Stream(self.slots.ids[slot], since=[None] * self.nlev, count=[0] * self.nlev)
            self.streams[slot] = st
        return st

    def set_active(self, slot: int, on: bool) -> None:
        if slot >= len(self.active):
            self.active = _grow(self.active, slot + 1, False)
        if bool(self.active[slot]) is not on:
            self.active[slot] = on
            self.n_active += 1 if on else -1

    def ensure(self, n: int) -> None:
        self.active = _grow(self.active, n, False)
        if self.rule.transform == "change":
            self.prev_val = _grow(self.prev_val, n, np.nan)
            self.prev_ts = _grow(self.prev_ts, n, -(2 ** 62))


class _Call:
    """What one process/tick call accumulates before its single commit."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.dirty: dict[tuple[str, int], tuple[_Runtime, _Stream]] = {}
        self.acc: dict[tuple[str, int], tuple[_Runtime, _Stream]] = {}  # window aggregates changed
        self.dropped: set[tuple[str, int]] = set()  # streams to forget (rule id, slot)
        self.prev: list[tuple[str, str, int, float]] = []  # change rules: newest value per device
        self.reserved: set[str] = set()
        self.after_commit: list[Callable[[], None]] = []
        self.where: dict[tuple[str, str], tuple[str, str]] = {}  # (kind, device) -> district, asset
        self.resets: list[str] = []  # alerts resolved by hand whose streams this call forgot

    def touch(self, rt: _Runtime, slot: int, st: _Stream) -> None:
        self.dirty[(rt.rule.id, slot)] = (rt, st)


def _scaled(x, scale):
    """``x * scale`` without binary noise (1.2 × 6 is 7.2, not 7.199999999999999)."""
    if isinstance(scale, float) and scale == 1.0:
        return x
    return np.round(np.multiply(x, scale), 9)


def _lasting(rule: Rule, s: np.ndarray, t: np.ndarray, level: np.ndarray,
             active: np.ndarray) -> np.ndarray:
    """Which rows (sorted by device, ts) can leave a trace, for a rule with ``for``.

    A device without an active stream whose runs of true rows all end inside the batch
    before lasting ``for`` (or ``reports`` rows) would only go pending and drop again: such
    rows change no alert and no state worth keeping, so the state machine skips them. Kept:
    every row of active devices, and an inactive device's rows from its first run that fires
    or is still open at the end of the batch.
    """
    n = len(s)
    first_row = np.ones(n, bool)
    first_row[1:] = s[1:] != s[:-1]
    last_row = np.ones(n, bool)
    last_row[:-1] = first_row[1:]
    hot = level >= 0
    prev_hot = np.zeros(n, bool)
    prev_hot[1:] = hot[:-1]
    next_hot = np.zeros(n, bool)
    next_hot[:-1] = hot[1:]
    starts = np.nonzero(hot & (~prev_hot | first_row))[0]
    ends = np.nonzero(hot & (~next_hot | last_row))[0]
    lasting = (last_row[ends] | (t[ends] - t[starts] >= rule.for_ms)
               | (rule.reports > 0) & (ends - starts + 1 >= rule.reports))
    group = np.cumsum(first_row) - 1
    begin = np.full(group[-1] + 1, n, np.int64)
    np.minimum.at(begin, group[starts[lasting]], starts[lasting])
    begin[group[first_row & active]] = 0
    return np.arange(n) >= begin[group]


def _compare(op: str, v: np.ndarray, t) -> np.ndarray:
    if op == ">":
        return v > t
    if op == ">=":
        return v >= t
    if op == "<":
        return v < t
    if op == "<=":
        return v <= t
    if op == "==":
        return v == t
    if op == "!=":
        return v != t
    lo, hi = t
    if op == "inside":
        return (v > lo) & (v < hi)
    return (v < lo) | (v > hi)  # outside


class RuleEngine:
    """Evaluates ``pack`` on readings and events, records alerts in ``state``.

    ``attrs(kind)`` returns ``{device_id: attrs}`` for the kind's devices. Per-device parameters
    read from it are cached until ``attrs(kind)`` returns a different object: the registry
    should hand out a cached mapping and replace it (a new object) when attrs change.
    ``device_info(device_id)`` returns the webhook ``device`` object (id, kind, district,
    asset_id, lat, lon, responsible_unit) or None. ``tz`` is the zone of ``during`` windows and
    aggregate windows. ``listeners`` are added to ``state.listeners``.

    ``attrs_recheck_s``: how often :meth:`process` asks ``attrs`` whether the attrs changed
    (0: every batch; a node uses 1 s, as each asking is a state-DB query on the alert path).

    :meth:`process` (the ingest pipeline's rules stage) and :meth:`tick` (a timer thread) may be
    called from different threads: they take turns on one lock. The :class:`AlertState` may be
    shared with API threads.
    """

    def __init__(self, pack: RulePack | Sequence[Rule], state: AlertStore, *,
                 attrs: AttrsFn = lambda kind: _NO_ATTRS, device_info: DeviceInfoFn = lambda d: None,
                 tz: str = "Asia/Shanghai", listeners: Iterable[NoticeListener] = (),
                 attrs_recheck_s: float = 0.0, deferred: bool = False,
                 checkpoints: CheckpointStore | None = None) -> None:
        rules = pack.active if isinstance(pack, RulePack) else tuple(r for r in pack if r.enabled)
        self._lock = threading.Lock()
        self.state = state
        # its stream state, in the alert store's state DB (one transaction for both) unless given
        self.checkpoints = checkpoints if checkpoints is not None else SqliteCheckpoints(state.db)
        self.deferred = deferred
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
        self._min_absent_cache: dict[str, tuple[Mapping, int]] = {}
        self._by_id = {rt.rule.id: rt for rt in self._rts}
        self._metric_rts = [rt for rt in self._rts if rt.rule.type == "metric"]
        self._event_rts = [rt for rt in self._rts if rt.rule.type == "event"]
        self._absence_rts = [rt for rt in self._rts if rt.rule.type == "absence"]
        used = sorted({rt.rule.metric for rt in self._metric_rts}
                      | {c.metric for rt in self._metric_rts for c in rt.rule.and_})
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
            p.constant for p in self._params_of(rt.rule))})
        self._load()

    @staticmethod
    def _params_of(rule: Rule) -> list[Param]:
        ps = [rule.scale] + ([rule.baseline] if rule.baseline else [])
        ps += [p for lv in rule.levels for p in lv.threshold]
        ps += [p for c in rule.and_ for p in c.threshold]
        ps += list(rule.clear.threshold) if rule.clear else []
        return ps

    # --- restore ----------------------------------------------------------------------------

    def _load(self) -> None:
        for rt in self._rts:
            rt.streams.clear()
            rt.active[:] = False
            rt.n_active = 0
            rt.prev_val[:] = np.nan
            rt.prev_ts[:] = -(2 ** 62)
        for row in self.checkpoints.load_streams():
            rt = self._by_id.get(row.rule)
            if rt is None:
                continue  # a rule since removed or disabled
            slot = rt.slots[row.device_id]
            st = _Stream.from_row(row, rt.nlev)
            rt.streams[slot] = st
            rt.ensure(slot + 1)
            rt.set_active(slot, st.state in ("pending", "firing"))
        # an open alert always has a firing stream (also if stream rows were lost): adopt it
        for a in self.state.open_alerts():
            rt = self._by_id.get(a.rule)
            if rt is None or a.severity not in rt.rule.severities:
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
                          for rule, dev, bucket, total, n, ts in self.checkpoints.load_acc())
        self._restore_prev((rule_id, device_id, ts, value)
                           for rule_id, device_id, ts, value in self.checkpoints.load_prev())

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
            call.resets.append(alert_id)
            rt = self._by_id.get(rule_id)
            slot = rt.slots.get(device_id) if rt is not None else None
            st = rt.streams.get(slot) if slot is not None else None
            if st is None or st.alert_id != alert_id or st.state != "firing":
                continue  # resolved by the engine meanwhile, or a rule no longer loaded
            st.state, st.sev, st.alert_id, st.started, st.match = "inactive", -1, None, None, None
            st.since, st.count = [None] * rt.nlev, [0] * rt.nlev
            if rt.rule.type == "absence":
                st.last_ts = -(2 ** 62)  # this silence may be alerted again
            rt.set_active(slot, False)
            call.touch(rt, slot, st)
            log.info("%s %s: alert %s resolved by hand; evaluating afresh", rule_id, device_id, alert_id)

    def _summary(self, rt: _Runtime, device: str, sev: int, value: float | None,
                 extra: Mapping[str, Any] | None) -> dict:
        rule = rt.rule
        attrs = self._attrs_map(rule.kind).get(device)
        lv = rule.levels[max(sev, 0)]
        scale = rule.scale.resolve(attrs)
        fields: dict[str, Any] = dict(rt.fields)
        fields.update(
            value=value if value is not None else _NAN, severity=lv.severity, device=device,
            scale=scale, baseline=rule.baseline.resolve(attrs) if rule.baseline else 0.0,
        )
        if lv.threshold:
            raw = [p.resolve(attrs) for p in lv.threshold]
            if rule.op in RANGE_OPS:
                fields["lo"], fields["hi"] = float(_scaled(raw[0], scale)), float(_scaled(raw[1], scale))
                below = value is not None and value <= fields["lo"]
                fields["threshold"] = fields["lo"] if (rule.op == "outside" and below) else fields["hi"]
            else:
                fields["factor"] = raw[0]
                fields["threshold"] = float(_scaled(raw[0], scale))
        if extra:
            fields.update(extra)
        if fields["threshold"] is None:
            fields["threshold"] = _NAN
        try:
            text = rule.summary.format(**fields)
        except (ValueError, TypeError):
            text = f"{rule.id}: {rule.metric or rule.event or 'device'} {value}"
        thr = fields["threshold"]
        thr = None if thr != thr else thr  # NaN: no threshold
        return {"summary": text, "threshold": None if thr is None else float(thr)}

    # --- helpers ----------------------------------------------------------------------------

    def _absent_ms(self, rule: Rule, device_id: str) -> int:
        """The absence after which ``device_id`` is offline: ``attrs[rule.absent_attr]`` seconds
        where the rule names one and the device has a usable value, else the rule's own."""
        if rule.absent_attr is None:
            return rule.absent_ms
        raw = (self._attrs_map(rule.kind).get(device_id) or {}).get(rule.absent_attr)
        try:
            v = float(raw)
        except (TypeError, ValueError):
            return rule.absent_ms
        return int(v * 1000) if math.isfinite(v) and v > 0 else rule.absent_ms

    def _min_absent_ms(self, rule: Rule) -> int:
        if rule.absent_attr is None:
            return rule.absent_ms
        amap = self._attrs_map(rule.kind)
        cached = self._min_absent_cache.get(rule.id)
        if cached is not None and cached[0] is amap:
            return cached[1]
        least = min([rule.absent_ms] + [self._absent_ms(rule, d) for d, a in amap.items()
                                        if a and rule.absent_attr in a])
        self._min_absent_cache[rule.id] = (amap, least)
        return least

    def _attrs_map(self, kind: str) -> Mapping[str, Mapping[str, Any]]:
        m = self.attrs(kind)
        if m is not self._attrs_seen.get(kind, self):
            self._attrs_seen[kind] = m
            for (k, _), arr in self._params.items():
                if k == kind:
                    arr[:] = np.nan
        return m

    def _param(self, kind: str, p: Param, slots: np.ndarray, n: int):
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
            amap = self._attrs_map(kind)
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

    def _local(self, ts: np.ndarray) -> np.ndarray:
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
                with self.state.transaction():
                    self.state.clear_resets(call.resets)
                    self.state.apply(call.transitions, self._device)
                    gone = [(rid, self._by_id[rid].slots.ids[slot]) for rid, slot in call.dropped
                            if (rid, slot) not in call.dirty]
                    self.checkpoints.save_streams((st.to_row(rt.rule.id) for rt, st in call.dirty.values()), gone)
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
                    with self.state.transaction():
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

        Call it after the batch is durable in the store and before acknowledging its
        messages: processing the same batch again is a no-op (see the module docstring).
        The alerts do not depend on how readings are split into batches; the returned list
        may omit pending-then-dropped pairs that start and end inside one batch.
        """
        with self._lock:
            return self._process(batch, events)

    def _process(self, batch: Readings, events: Sequence[Event]) -> list[Transition]:
        call = _Call()
        self._take_resets(call)
        if len(batch):
            now = time.monotonic()
            if now - self._attrs_checked >= self.attrs_recheck_s:
                self._attrs_checked = now
                for kind in self._attr_kinds:
                    self._attrs_map(kind)  # drops cached per-device parameters if attrs changed
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

            for rt in self._metric_rts:
                if rt.rule.metric not in groups:
                    continue  # most rules read metrics this batch does not carry
                idx, slots = rows(rt.rule.kind, rt.rule.metric)
                if len(idx):
                    self._eval_metric(call, rt, batch, idx, slots, rows)
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
        for kind, metric in {(rt.rule.kind, c.metric) for rt in self._metric_rts for c in rt.rule.and_}:
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

    def _eval_metric(self, call: _Call, rt: _Runtime, b: Readings, idx: np.ndarray,
                     slots: np.ndarray, rows) -> None:
        rule = rt.rule
        kind = rule.kind
        n = len(rt.slots.ids)
        rt.ensure(n)
        ts = b.ts[idx]
        v = b.value[idx]
        if rule.transform == "deviation":
            v = np.abs(v - self._param(kind, rule.baseline, slots, n))
        elif rule.transform == "change":
            got = self._changes(call, rt, slots, ts, v)
            if got is None:
                return
            idx, slots, ts, v = idx[got[0]], got[1], got[2], got[3]
        elif rule.transform == "mean":
            got = self._means(call, rt, b, idx, slots, ts, v)
            if got is None:
                return
            idx, slots, ts, v = got
        m = len(v)
        scale = self._param(kind, rule.scale, slots, n)
        level = np.full(m, -1, np.int8)
        for k, lv in enumerate(rule.levels):
            t = tuple(_scaled(self._param(kind, p, slots, n), scale) for p in lv.threshold)
            level[_compare(rule.op, v, t if rule.op in RANGE_OPS else t[0])] = k
        outside = None
        if rule.during is not None:
            outside = ~rule.during.contains_ms(self._local(ts) % DAY_MS)
            level[outside] = -1
        hot = level >= 0
        if not rt.n_active and not hot.any():
            return
        mark = np.zeros(max(n, len(rt.active)), bool)
        mark[slots[hot]] = True
        mark[: len(rt.active)] |= rt.active
        cand = np.nonzero(mark[slots])[0]
        if not len(cand):
            return
        if rule.and_:
            ok = self._and(rule, b, slots[cand], ts[cand], rows, n)
            sub = level[cand]
            sub[~ok] = -1
            level[cand] = sub
        if rule.clear is not None:
            ct = tuple(self._param(kind, p, slots[cand], n) for p in rule.clear.threshold)
            clear = _compare(rule.clear.op, v[cand], ct if rule.clear.op in RANGE_OPS else ct[0])
            if outside is not None:
                clear |= outside[cand]
        else:
            clear = level[cand] < 0
        order = np.lexsort((ts[cand], slots[cand]))
        c = cand[order]
        clear = clear[order]
        if rule.for_ms and len(c) > 1:
            keep = _lasting(rule, slots[c], ts[c], level[c], rt.active[slots[c]])
            c, clear = c[keep], clear[keep]
        self._run(call, rt, b, idx[c].tolist(), slots[c].tolist(), ts[c].tolist(),
                  level[c].tolist(), clear.tolist(), v[c].tolist())

    def _and(self, rule: Rule, b: Readings, pslots: np.ndarray, pts: np.ndarray, rows,
             n: int) -> np.ndarray:
        """For each candidate row, whether every ``and`` condition holds on the device's value
        of that metric at the same ts, else its latest earlier one (unknown: false)."""
        ok = np.ones(len(pslots), bool)
        for cond in rule.and_:
            sidx, sslots = rows(rule.kind, cond.metric)
            val = np.full(len(pslots), np.nan)
            mem = self._latest.get((rule.kind, cond.metric))
            if mem is not None:
                mv, mt = _grow(mem[0], n, np.nan), _grow(mem[1], n, -(2 ** 62))
                known = mt[pslots] <= pts
                val[known] = mv[pslots][known]
            if len(sidx):
                sts = b.ts[sidx]
                base = int(min(sts.min(), pts.min()))
                span = int(max(sts.max(), pts.max())) - base + 1
                skey = sslots * span + (sts - base)
                o = np.argsort(skey, kind="stable")
                skey, sv, ss = skey[o], b.value[sidx][o], sslots[o]
                pos = np.searchsorted(skey, pslots * span + (pts - base), side="right") - 1
                hit = pos >= 0
                hit[hit] = ss[pos[hit]] == pslots[hit]
                val[hit] = sv[pos[hit]]
            t = tuple(self._param(rule.kind, p, pslots, n) for p in cond.threshold)
            with np.errstate(invalid="ignore"):
                ok &= _compare(cond.op, val, t if cond.op in RANGE_OPS else t[0]) & ~np.isnan(val)
        return ok

    def _changes(self, call: _Call, rt: _Runtime, slots, ts, v):
        """value - previous value of the device, for rows after the newest one seen."""
        fresh = ts > rt.prev_ts[slots]
        if not fresh.all():
            sel = np.nonzero(fresh)[0]
            slots, ts, v = slots[sel], ts[sel], v[sel]
        else:
            sel = np.arange(len(ts))
        if not len(ts):
            return None
        o = np.lexsort((ts, slots))
        s, t, x = slots[o], ts[o], v[o]
        first = np.ones(len(s), bool)
        first[1:] = s[1:] != s[:-1]
        prev = np.empty(len(x))
        prev[1:] = x[:-1]
        prev[first] = rt.prev_val[s[first]]
        last = np.ones(len(s), bool)
        last[:-1] = s[1:] != s[:-1]
        ls, lt, lx = s[last], t[last], x[last]

        def remember() -> None:
            rt.prev_val[ls], rt.prev_ts[ls] = lx, lt
        call.after_commit.append(remember)
        ids = rt.slots.ids
        call.prev.extend((rt.rule.id, ids[slot], tt, xx)
                         for slot, tt, xx in zip(ls.tolist(), lt.tolist(), lx.tolist(), strict=False))
        known = ~np.isnan(prev)
        if not known.any():
            return None
        keep = np.nonzero(known)[0]
        return sel[o[keep]], s[keep], t[keep], (x - prev)[keep]

    def _means(self, call: _Call, rt: _Runtime, b: Readings, idx, slots, ts, v):
        """Close aggregate windows: one row (ts = window end, value = mean) per closed window."""
        rule = rt.rule
        w = rule.window_ms
        local = self._local(ts)
        off = local - ts
        o = np.lexsort((ts, slots))
        out_i, out_s, out_t, out_v = [], [], [], []
        streams, stream, key, saved = rt.streams, rt.stream, rt.rule.id, call.acc
        for j, slot, t, lt, x in zip(o.tolist(), slots[o].tolist(), ts[o].tolist(),
                                     local[o].tolist(), v[o].tolist(), strict=False):
            st = streams.get(slot) or stream(slot)
            acc = st.acc
            if acc is not None and t <= acc[3]:
                continue  # seen already
            bucket = lt // w
            if acc is not None and bucket != acc[0]:
                if bucket < acc[0]:
                    continue  # late for a window already closed
                out_i.append(j)
                out_s.append(slot)
                out_t.append((acc[0] + 1) * w - int(off[j]))
                out_v.append(acc[1] / acc[2])
                acc = None
            # a new list each time (never changed in place): a checkpoint may hold the old one
            st.acc = [bucket, x, 1, t] if acc is None else [bucket, acc[1] + x, acc[2] + 1, t]
            saved[(key, slot)] = (rt, st)
        if not out_i:
            return None
        return (idx[np.array(out_i)], np.array(out_s, np.int64), np.array(out_t, np.int64),
                np.array(out_v))

    def _run(self, call: _Call, rt: _Runtime, b: Readings, idx: list, slots: list, ts: list,
             level: list, clear: list, value: list) -> None:
        """The per-row state machine, for rows in (device, ts) order."""
        rule = rt.rule
        nlev, for_ms, reports = rt.nlev, rule.for_ms, rule.reports
        for i, slot, t, lv, cl, x in zip(idx, slots, ts, level, clear, value, strict=False):
            st = rt.stream(slot)
            if t <= st.last_ts:
                continue
            st.last_ts = t
            since, count = st.since, st.count
            for k in range(nlev):
                if lv >= k:
                    if since[k] is None:
                        since[k], count[k] = t, 1
                    else:
                        count[k] += 1
                else:
                    since[k], count[k] = None, 0
            elig = -1
            for k in range(nlev - 1, -1, -1):
                s = since[k]
                if s is not None and (t - s >= for_ms or (reports and count[k] >= reports)):
                    elig = k
                    break
            call.touch(rt, slot, st)
            key = (rule.kind, st.device_id)
            if key not in call.where:
                call.where[key] = (str(b.district[i]), str(b.asset_id[i]))
            if st.state == "inactive":
                if lv >= 0:
                    if elig >= 0:
                        self._move(call, rt, slot, st, "firing", t, sev=elig, value=x, started=since[0])
                    else:
                        self._move(call, rt, slot, st, "pending", t, sev=lv, value=x, started=since[0])
            elif st.state == "pending":
                if lv < 0:
                    self._move(call, rt, slot, st, "inactive", t, sev=st.sev, value=x)
                elif elig >= 0:
                    self._move(call, rt, slot, st, "firing", t, sev=elig, value=x)
            elif st.state == "firing":
                if cl:
                    self._move(call, rt, slot, st, "resolved", t, sev=st.sev, value=x)
                elif elig > st.sev:
                    self._move(call, rt, slot, st, "firing", t, sev=elig, value=x)

    # --- events -----------------------------------------------------------------------------

    def _eval_events(self, call: _Call, events: Sequence[Event]) -> None:
        for ev in sorted(events, key=lambda e: e.ts):
            for rt in self._event_rts:
                rule = rt.rule
                if ev.kind != rule.kind:
                    continue
                if ev.type != rule.event and ev.type != rule.clear_event:
                    self._expire(call, rt, ev.device_id, ev.ts)
                    continue
                slot = rt.slots[ev.device_id]
                rt.ensure(slot + 1)
                st = rt.stream(slot)
                if ev.ts <= st.last_ts:
                    continue
                st.last_ts = ev.ts
                call.touch(rt, slot, st)
                call.where.setdefault((rule.kind, ev.device_id), (ev.district, ev.asset_id))
                self._expire(call, rt, ev.device_id, ev.ts)
                if ev.type == rule.event:
                    st.match = ev.ts
                    if st.state == "inactive":
                        self._move(call, rt, slot, st, "firing", ev.ts, sev=0, value=None)
                elif st.state == "firing":  # the clear event
                    self._move(call, rt, slot, st, "resolved", ev.ts, sev=st.sev, value=None)

    def _expire(self, call: _Call, rt: _Runtime, device_id: str, now_ms: int) -> None:
        """Resolve an event alert whose ``clear.after`` has passed since its last match."""
        after = rt.rule.clear_after_ms
        if not after:
            return
        slot = rt.slots.get(device_id)
        st = rt.streams.get(slot) if slot is not None else None
        if st is not None and st.state == "firing" and st.match is not None and now_ms - st.match >= after:
            self._move(call, rt, slot, st, "resolved", st.match + after, sev=st.sev, value=None)

    # --- absence ----------------------------------------------------------------------------

    def _kind_of(self, device_id: str) -> str | None:
        """The kind of a device: from the readings seen, else from ``device_info``."""
        for kind, slots in self._slots.items():
            if device_id in slots:
                return kind
        info = self.device_info(device_id)
        return info.get("kind") if info else None

    def _tick_kinds(self, ids: list[str]) -> np.ndarray:
        """Kind codes of ``ids``; reuses the previous tick's when the ids are the same or
        only new ones were appended (a registry dict updated in place)."""
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
            for device_id in self._attrs_map(kind):
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
        for rt in self._event_rts:
            for st in list(rt.streams.values()):
                if st.state == "firing":
                    self._expire(call, rt, st.device_id, now_ms)
        for rt in self._absence_rts:
            for slot, st in list(rt.streams.items()):
                if st.state != "firing":
                    continue
                seen = last_seen.get(st.device_id)
                if seen is not None and seen > st.last_ts and now_ms - seen < self._absent_ms(rt.rule, st.device_id):
                    self._move(call, rt, slot, st, "resolved", int(seen), sev=st.sev, value=None)
        if self._absence_rts and last_seen:
            ids = list(last_seen.keys())
            seen = np.array(list(last_seen.values()), dtype=np.float64)  # None (never seen): NaN
            code = self._tick_kinds(ids)
            kinds = list(CATALOGUE)
            for rt in self._absence_rts:
                rule = rt.rule
                with np.errstate(invalid="ignore"):
                    # the shortest absence any device of the kind may have, then the per-device one
                    due = (code == kinds.index(rule.kind)) & (now_ms - seen >= self._min_absent_ms(rule))
                for i in np.nonzero(due)[0].tolist():
                    dev = ids[i]
                    ls = int(seen[i])
                    absent_ms = self._absent_ms(rule, dev)
                    if now_ms - ls < absent_ms:
                        continue
                    slot = rt.slots[dev]
                    st = rt.streams.get(slot)
                    if st is not None and (st.state == "firing" or st.last_ts >= ls):
                        continue  # alerted already for this silence
                    rt.ensure(slot + 1)
                    st = rt.stream(slot)
                    st.last_ts = ls
                    silent = now_ms - ls
                    self._move(call, rt, slot, st, "firing", ls + absent_ms, sev=0,
                               value=silent / 1000.0,
                               fields={"silent": format_duration(silent - silent % 60_000 or silent),
                                       "absent": format_duration(absent_ms),
                                       "threshold": absent_ms / 1000.0})
        return self._commit(call)

    # --- introspection ----------------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rt.rule for rt in self._rts)
