"""The rule engine's working state, per rule and per device: the pieces :mod:`alerts.engine`
and the rule types (``alerts/rule_types``) share.

- :class:`Slots`: device id -> slot (an index into per-device arrays), one numbering per kind.
- :class:`Stream`: one (rule, device) stream's state; saved as a ``rule_streams`` row, the rule
  type encoding its own part (``RuleType.encode``/``restore``).
- :class:`Runtime`: a rule, its type and its streams by slot, the ``active`` flags.
- :class:`Call`: what one ``process``/``tick`` call accumulates before its single commit.
- :class:`Seen`: one tick's view of the devices' last-seen times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from devices.catalogue import CATALOGUE

from .checkpoints import StreamRow
from .model import Transition
from .rule_types.base import grow
from .rules import Rule

_NAN = float("nan")


# --- per-kind device slots ---------------------------------------------------------------------

class Slots(dict):
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


class KindCodes(dict):
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


class Codes(dict):
    """name -> code; -1 for a name without one."""

    def __missing__(self, key: str) -> int:
        return -1


# --- stream state --------------------------------------------------------------------------------

def acc_row(rule_id: str, device_id: str, acc: list) -> tuple[str, str, int, float, int, int]:
    bucket, total, n, last_ts = acc
    return rule_id, device_id, bucket, total, n, last_ts


@dataclass(slots=True)
class Stream:
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
    acc: list | None = None  # [bucket, sum, n, last_ts] for mean rules (saved apart: rule_acc)
    memo: Any = None  # the rule type's own state (RuleType.encode/restore), e.g. an event's match
    view: dict | None = None  # while pending: what the API shows (summary, value, ...)

    @property
    def disposable(self) -> bool:
        """Inactive and remembering nothing a replay or a later reading would need."""
        return self.state == "inactive" and self.acc is None and self.memo is None

    def to_row(self, rule: Rule) -> StreamRow:
        data = {"since": self.since, "count": self.count, "sev": self.sev, "alert": self.alert_id,
                "started": self.started}
        data.update(rule.impl.encode(self))  # acc: saved apart (rule_acc), see RuleEngine.checkpoint
        if self.view is not None:
            data["view"] = self.view
        return StreamRow(rule.id, self.device_id, self.state, self.last_ts, data)

    @classmethod
    def from_row(cls, r: StreamRow, rule: Rule) -> Stream:
        d = r.data
        levels = len(rule.levels)
        since = (list(d.get("since") or []) + [None] * levels)[:levels]
        count = (list(d.get("count") or []) + [0] * levels)[:levels]
        st = cls(r.device_id, r.state, r.last_ts, since, count, d.get("sev", -1), d.get("alert"),
                 d.get("started"), d.get("acc"), None, d.get("view"))
        rule.impl.restore(st, d)
        return st


class Runtime:
    """A rule and its evaluation state: streams by slot and the ``active`` flag array."""

    def __init__(self, rule: Rule, slots: Slots) -> None:
        self.rule = rule
        self.impl = rule.impl
        self.slots = slots
        self.cache: dict[str, Any] = {}  # the rule type's own derived values
        self.nlev = len(rule.levels)
        self.streams: dict[int, Stream] = {}
        self.active = np.zeros(64, bool)
        self.n_active = 0
        # the previous value per slot, for types that keep it (saved in the state DB's rule_prev)
        self.keeps_previous = self.impl.keeps_previous(rule)
        self.prev_val = np.full(64, np.nan)
        self.prev_ts = np.full(64, -(2 ** 62), np.int64)
        # summary fields that do not depend on the device or the reading
        self.fields = {
            "kind": rule.kind, "metric": rule.metric or "", "unit": rule.unit, "factor": _NAN,
            "event": "", "silent": "", "absent": "0s", "for": "0s", "lo": _NAN, "hi": _NAN,
            "threshold": None, "scale": 1.0, "baseline": 0.0, **self.impl.static_fields(rule),
        }

    def stream(self, slot: int) -> Stream:
        st = self.streams.get(slot)
        if st is None:
            st = Stream(self.slots.ids[slot], since=[None] * self.nlev, count=[0] * self.nlev)
            self.streams[slot] = st
        return st

    def set_active(self, slot: int, on: bool) -> None:
        if slot >= len(self.active):
            self.active = grow(self.active, slot + 1, False)
        if bool(self.active[slot]) is not on:
            self.active[slot] = on
            self.n_active += 1 if on else -1

    def ensure(self, n: int) -> None:
        self.active = grow(self.active, n, False)
        if self.keeps_previous:
            self.prev_val = grow(self.prev_val, n, np.nan)
            self.prev_ts = grow(self.prev_ts, n, -(2 ** 62))


class Call:
    """What one process/tick call accumulates before its single commit."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.dirty: dict[tuple[str, int], tuple[Runtime, Stream]] = {}
        self.acc: dict[tuple[str, int], tuple[Runtime, Stream]] = {}  # window aggregates changed
        self.dropped: set[tuple[str, int]] = set()  # streams to forget (rule id, slot)
        self.prev: list[tuple[str, str, int, float]] = []  # change rules: newest value per device
        self.reserved: set[str] = set()
        self.after_commit: list[Callable[[], None]] = []
        self.where: dict[tuple[str, str], tuple[str, str]] = {}  # (kind, device) -> district, asset
        self.resets: list[str] = []  # alerts resolved by hand whose streams this call forgot

    def touch(self, rt: Runtime, slot: int, st: Stream) -> None:
        self.dirty[(rt.rule.id, slot)] = (rt, st)


class Seen:
    """What one tick knows of the devices' last-seen times, computed once for all its rules."""

    def __init__(self, kind_codes: Callable[[list[str]], np.ndarray], last_seen: Mapping[str, int | None]) -> None:
        self.last_seen = last_seen
        self._kind_codes = kind_codes  # the engine's: device ids -> catalogue kind indexes
        self._codes: np.ndarray | None = None

    @cached_property
    def ids(self) -> list[str]:
        return list(self.last_seen.keys())

    @cached_property
    def times(self) -> np.ndarray:
        """Per device (``ids``), its last-seen ms (None, never seen: NaN)."""
        return np.array(list(self.last_seen.values()), dtype=np.float64)

    def codes(self) -> np.ndarray:
        """Per device (``ids``), the index of its kind in the catalogue (-1: unknown)."""
        if self._codes is None:
            self._codes = self._kind_codes(self.ids)
        return self._codes

    @staticmethod
    def kind_code(kind: str) -> int:
        return list(CATALOGUE).index(kind)
