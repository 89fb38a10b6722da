"""The rule-type interface, and the values and YAML helpers the types share.

A rule type (``alerts/rule_types/<type>.py``, registered in ``alerts/rule_types/__init__.py``)
is a :class:`RuleType`: it parses and validates its part of a rule's YAML into a frozen params
object, evaluates the engine's batches vectorised (readings, events and/or ticks) and encodes
and restores what it keeps per (rule, device) stream. The engine (``alerts/engine.py``) keeps
the batch loop, event-time bookkeeping (``last_ts``), the transitions and the commit; a type
changes a stream's state only through ``engine.move`` (or :func:`alerts.rule_types.metric.run`,
the level state machine built on it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from devices.catalogue import CATALOGUE, SEVERITIES
from devices.durations import parse_duration_ms

from ..errors import RuleError

if TYPE_CHECKING:  # pragma: no cover
    from ingest.model import Event, Readings

OPS = (">", ">=", "<", "<=", "==", "!=", "outside", "inside")
RANGE_OPS = ("outside", "inside")
_NUMBER_RE = re.compile(r"^[+-]?\d+(\.\d*)?$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_duration(text: Any) -> int:
    """A rule file's duration in milliseconds (``devices.durations``). Raises ValueError.

    A number is seconds; a string needs its unit (a quoted ``"10"`` is refused: the unit was
    probably forgotten)."""
    if isinstance(text, str) and _NUMBER_RE.match(text.strip()):
        raise ValueError(f"expected a duration like 10s, 5m, 4h, 3d, got {text!r}: add the unit")
    return parse_duration_ms(text)


@dataclass(frozen=True, slots=True)
class Param:
    """A number, or a per-device parameter from ``attrs[attr]`` (through ``mapping`` if given)."""

    value: float | None = None
    attr: str | None = None
    default: float | None = None
    mapping: tuple[tuple[str, float], ...] | None = None  # attr value -> number

    @property
    def constant(self) -> bool:
        return self.attr is None

    def resolve(self, attrs: Mapping[str, Any] | None) -> float:
        """The number for a device with these attrs; the default when absent or unusable."""
        if self.attr is None:
            return float(self.value)  # type: ignore[arg-type]
        raw = (attrs or {}).get(self.attr)
        if raw is None:
            return float(self.default)  # type: ignore[arg-type]
        if self.mapping is not None:
            got = dict(self.mapping).get(str(raw))
            return float(self.default if got is None else got)  # type: ignore[arg-type]
        try:
            v = float(raw)
        except (TypeError, ValueError):
            return float(self.default)  # type: ignore[arg-type]
        return v if math.isfinite(v) else float(self.default)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.attr is None:
            return f"{self.value:g}"
        if self.mapping is not None:
            m = ", ".join(f"{k} {v:g}" for k, v in self.mapping)
            return f"attrs.{self.attr} ({m}; default {self.default:g})"
        return f"attrs.{self.attr} (default {self.default:g})"


ONE = Param(1.0)


@dataclass(frozen=True, slots=True)
class Level:
    """One severity of a rule and its threshold (one PARAM, or two for a range; none for
    event and absence rules)."""

    severity: str
    threshold: tuple[Param, ...]


@dataclass(frozen=True, slots=True)
class Condition:
    """``metric op threshold`` (``metric`` None: the rule's own, transformed value)."""

    op: str
    threshold: tuple[Param, ...]
    metric: str | None = None

    def describe(self, name: str = "value") -> str:
        what = self.metric or name
        t = self.threshold
        if self.op == "outside":
            return f"{what} outside {t[0].describe()}..{t[1].describe()}"
        if self.op == "inside":
            return f"{t[0].describe()} < {what} < {t[1].describe()}"
        return f"{what} {self.op} {t[0].describe()}"


@dataclass(frozen=True, slots=True)
class Window:
    """A local time-of-day window, start inclusive, end exclusive; may cross midnight."""

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, text: str) -> Window:
        try:
            a, b = (p.strip() for p in str(text).split("-"))
            ma, mb = _HHMM_RE.match(a), _HHMM_RE.match(b)
            if not (ma and mb):
                raise ValueError
        except ValueError:
            raise ValueError(f"expected a local-time window like 22:00-06:00, got {text!r}") from None
        start = int(ma.group(1)) * 60 + int(ma.group(2))
        end = int(mb.group(1)) * 60 + int(mb.group(2))
        if start == end:
            raise ValueError(f"window {text!r} is empty")
        return cls(start, end)

    def contains_ms(self, tod_ms):
        """Vectorised: local time-of-day in ms (numpy array or int) inside the window."""
        lo, hi = self.start_min * 60_000, self.end_min * 60_000
        if lo < hi:
            return (tod_ms >= lo) & (tod_ms < hi)
        return (tod_ms >= lo) | (tod_ms < hi)

    def __str__(self) -> str:
        return (f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-"
                f"{self.end_min // 60:02d}:{self.end_min % 60:02d}")


# --- parsing helpers: each raises RuleError naming the file, rule and field ----------------------

class Ctx:
    """Where a parse error is: file and rule id, for RuleError."""

    def __init__(self, file: str, rule: str) -> None:
        self.file, self.rule = file, rule

    def err(self, field: str, message: str) -> RuleError:
        return RuleError(message, file=self.file, rule=self.rule, field=field)

    def number(self, field: str, raw: Any) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise self.err(field, f"expected a number, got {raw!r}")
        return float(raw)

    def duration(self, field: str, raw: Any) -> int:
        try:
            return parse_duration(raw)
        except ValueError as e:
            raise self.err(field, str(e)) from None

    def severity(self, field: str, raw: Any) -> str:
        if raw not in SEVERITIES:
            raise self.err(field, f"expected one of {', '.join(SEVERITIES)}, got {raw!r}")
        return raw

    def op(self, field: str, raw: Any) -> str:
        if raw not in OPS:
            raise self.err(field, f"expected one of {', '.join(OPS)}, got {raw!r}")
        return raw

    def metric(self, field: str, kind: str, raw: Any) -> str:
        metrics = CATALOGUE[kind].metrics
        if raw not in metrics:
            raise self.err(field, f"{kind} has no metric {raw!r} (known: {', '.join(metrics)})")
        return raw

    def param(self, field: str, raw: Any) -> Param:
        """A PARAM: a number, or ``{attr: NAME, default: NUMBER[, map: {...}]}``."""
        if not isinstance(raw, Mapping):
            return Param(self.number(field, raw))
        unknown = set(raw) - {"attr", "default", "map"}
        if unknown:
            raise self.err(field, f"unknown key(s) {sorted(unknown)}; a parameter has attr, default, map")
        attr = raw.get("attr")
        if not isinstance(attr, str) or not attr:
            raise self.err(field, "a per-device parameter needs 'attr' (the attrs key to read)")
        if "default" not in raw:
            raise self.err(field, f"attrs.{attr} needs a 'default' for devices without it")
        mapping = raw.get("map")
        if mapping is None:
            return Param(attr=attr, default=self.number(f"{field}.default", raw["default"]))
        if not isinstance(mapping, Mapping) or not mapping:
            raise self.err(field, "'map' must map attr values to numbers")
        m = {str(k): self.number(f"{field}.map.{k}", v) for k, v in mapping.items()}
        d = raw["default"]
        default = m[str(d)] if str(d) in m else self.number(f"{field}.default", d)
        return Param(attr=attr, default=default, mapping=tuple(m.items()))

    def threshold(self, field: str, raw: Any, op: str) -> tuple[Param, ...]:
        if op in RANGE_OPS:
            if not isinstance(raw, (list, tuple)) or len(raw) != 2:
                raise self.err(field, f"op {op!r} needs a range [lo, hi], got {raw!r}")
            lo, hi = self.param(f"{field}[0]", raw[0]), self.param(f"{field}[1]", raw[1])
            if lo.constant and hi.constant and not lo.value < hi.value:  # type: ignore[operator]
                raise self.err(field, f"range [{lo.value:g}, {hi.value:g}] is empty")
            return (lo, hi)
        if isinstance(raw, (list, tuple)):
            raise self.err(field, f"op {op!r} takes one threshold, not a list (use outside/inside for ranges)")
        return (self.param(field, raw),)

    def condition(self, field: str, kind: str, raw: Any, *, own: bool) -> Condition:
        if not isinstance(raw, Mapping):
            raise self.err(field, f"expected a mapping with op and threshold, got {raw!r}")
        allowed = {"op", "threshold"} | ({"metric"} if not own else set())
        unknown = set(raw) - allowed
        if unknown:
            raise self.err(field, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        metric = None if own else self.metric(f"{field}.metric", kind, raw.get("metric"))
        op = self.op(f"{field}.op", raw.get("op"))
        if "threshold" not in raw:
            raise self.err(f"{field}.threshold", "missing")
        return Condition(op, self.threshold(f"{field}.threshold", raw["threshold"], op), metric)


# --- the interface ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Parsed:
    """What a type's parser returns: the metric the rule reads (None: none), its severity
    levels (lowest first) and the type's own params object (frozen, hashable)."""

    metric: str | None
    levels: tuple[Level, ...]
    params: Any


class RuleType:
    """One kind of rule. Subclass it, set the class attributes, override what the type does.

    Every method gets the rule (``rule.params`` is what :meth:`parse` returned). The evaluation
    hooks get the engine (its services: ``param``, ``local``, ``latest``, ``move``, ``attrs_map``,
    ``kind_codes``), the call being committed (``call``) and the rule's runtime ``rt`` (its
    streams by device slot: ``rt.stream(slot)``, ``rt.streams``, ``rt.slots``, ``rt.ensure``).
    Hooks run under the engine's lock; they raise nothing for bad data (skip it).
    """

    name: str = ""
    #: the YAML key that selects this type for a rule without ``type:`` (None: needs ``type:``)
    marker: str | None = None
    #: the type's own YAML keys (besides the common ones: id, kind, description, ...)
    keys: frozenset[str] = frozenset()
    #: summary template fields the type adds to :data:`alerts.rules.SUMMARY_FIELDS`
    summary_fields: tuple[str, ...] = ()

    # --- the rule file -----------------------------------------------------------------------

    def parse(self, ctx: Ctx, raw: Mapping[str, Any], kind: str) -> Parsed:
        """Validate the type's keys of ``raw`` (a whole rule mapping); raise ``ctx.err(field, ...)``."""
        raise NotImplementedError

    def describe(self, rule: Rule) -> str:
        """One line for ``citywatch rules check``."""
        return self.name

    # --- what the engine prepares --------------------------------------------------------------

    def params_of(self, rule: Rule) -> Sequence[Param]:
        """Every PARAM of the rule (per-device ones make the engine watch the kind's attrs)."""
        return ()

    def metrics(self, rule: Rule) -> set[str]:
        """Every metric the rule reads (the engine groups batches by these)."""
        return {rule.metric} if rule.metric else set()

    def latest_metrics(self, rule: Rule) -> set[str]:
        """Metrics whose latest value per device the engine keeps for it (``engine.latest``)."""
        return set()

    def keeps_previous(self, rule: Rule) -> bool:
        """Whether it uses ``rt.prev_val``/``rt.prev_ts`` (saved by the engine, see ``call.prev``)."""
        return False

    def static_fields(self, rule: Rule) -> dict[str, Any]:
        """Summary fields that depend on the rule only."""
        return {}

    def summary_values(self, engine, rule: Rule, attrs: Mapping[str, Any] | None, sev: int,
                       value: float | None) -> dict[str, Any]:
        """Summary fields for one device (``threshold`` is the notice's threshold)."""
        return {}

    # --- evaluation ------------------------------------------------------------------------------

    def evaluate(self, engine, call, rt, batch: Readings, idx: np.ndarray, slots: np.ndarray,
                 rows) -> None:
        """Rows ``idx`` of ``batch`` (the rule's kind and ``rule.metric``; ``slots`` their device
        slots); ``rows(kind, metric)`` gives another metric's (idx, slots)."""

    def on_event(self, engine, call, rt, event: Event) -> None:
        """One device event of the rule's kind (events in ts order)."""

    def on_tick(self, engine, call, rt, now_ms: int, seen) -> None:
        """The engine's tick at ``now_ms``; ``seen`` is the tick's last-seen view."""

    # --- stream state ----------------------------------------------------------------------------

    def encode(self, st) -> dict[str, Any]:
        """The type's part of a stream's saved ``data`` (``st.memo``)."""
        return {}

    def restore(self, st, data: Mapping[str, Any]) -> None:
        """Set ``st.memo`` from a saved stream's ``data``."""

    def on_reset(self, st) -> None:
        """An operator resolved the stream's alert by hand: forget what would stop a new one."""

    # --- overrides ---------------------------------------------------------------------------------

    def handles(self, hook: str) -> bool:
        """Whether this type overrides ``evaluate``, ``on_event`` or ``on_tick``."""
        return getattr(type(self), hook) is not getattr(RuleType, hook)


# The registry of rule types by name (alerts/rule_types/__init__.py registers the built-in ones).
# It lives here, beside the interface and the rule value, so that no type module imports back.
RULE_TYPES: dict[str, RuleType] = {}


def register(rule_type: RuleType) -> RuleType:
    """Make ``rule_type`` known by its name (a later one of the same name replaces it)."""
    if not rule_type.name:
        raise ValueError("a rule type needs a name")
    RULE_TYPES[rule_type.name] = rule_type
    return rule_type


def unregister(name: str) -> None:
    RULE_TYPES.pop(name, None)


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule: the fields every rule has, and its type's own ``params`` (a frozen
    value of the type's module, e.g. ``MetricParams``). See the module docstring."""

    id: str
    kind: str
    description: str
    source: str
    summary: str
    type: str  # a name in alerts.rule_types.RULE_TYPES: "metric", "event", "absence", ...
    levels: tuple[Level, ...]  # severities lowest first (event, absence: one, without threshold)
    params: Any = None
    metric: str | None = None  # the metric it reads (None: none)
    enabled: bool = True
    origin: str = ""  # the file that defined (or last overrode) it

    @property
    def impl(self) -> RuleType:
        """The rule's type (parser, evaluation, stream state)."""
        return RULE_TYPES[self.type]

    @property
    def severities(self) -> tuple[str, ...]:
        return tuple(lv.severity for lv in self.levels)

    @property
    def unit(self) -> str:
        if self.metric is None:
            return ""
        return CATALOGUE[self.kind].metrics[self.metric].unit

    def describe_condition(self) -> str:
        """A one-line human form of the condition, for ``rules check`` and the docs."""
        return self.impl.describe(self)


def grow(a: np.ndarray, n: int, fill) -> np.ndarray:
    """``a`` with room for ``n`` items (doubling, at least 64), new places set to ``fill``; ``a``
    itself if it is long enough. The per-device arrays of the engine and the rule types."""
    if len(a) >= n:
        return a
    out = np.full(max(n, 2 * len(a), 64), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out
