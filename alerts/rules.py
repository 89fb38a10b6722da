"""The rule format: YAML files of rules, parsed once into frozen values, validated completely.

A rule file is a mapping with a ``rules`` list (see ``alerts/pack/default.yaml``, the built-in
pack, for every feature in use). One rule is one of three types:

- **metric** (has ``metric``): a condition on a metric of one kind, evaluated per reading in
  event time. The value compared is the reading itself, or a transform of it:
  ``deviation: PARAM`` (``abs(value - PARAM)``, a per-device baseline),
  ``change: previous`` (``value - previous reading of the device``, e.g. a counter going
  backwards) or ``aggregate: {fn: mean, window: 1h}`` (the mean of each closed, local-time
  aligned window). ``op`` is one of ``> >= < <= == !=`` or ``outside``/``inside`` (``inside``
  is exclusive: ``lo < v < hi``; ``outside`` is ``v < lo or v > hi``).
  One level (``severity`` + ``threshold``) or several (``levels: {warning: t1, major: t2}``,
  severities rising); every threshold is multiplied by ``scale`` (default 1).
  ``for`` (a duration) makes the condition hold that long in event time before the alert fires;
  ``reports: N`` additionally lets N consecutive true readings count as held.
  ``during: "22:00-06:00"`` limits the rule to a local-time window of the engine's zone (may
  cross midnight; start inclusive, end exclusive); leaving the window clears the alert.
  ``and`` lists conditions on other metrics of the same device (value at the same ``ts``, else
  the device's latest value).  ``clear`` is the condition that resolves a firing alert
  (hysteresis); without it the alert resolves when the firing condition no longer holds.
- **event** (has ``event``): fires on a device event of that type; resolves on a
  ``clear: {event: TYPE}`` event, or when ``clear: {after: DURATION}`` passes (event time of the
  device's later events, or the engine's ``tick``) without a new matching event.
- **absence** (has ``absent``): no telemetry from a commissioned device for that long
  (evaluated by ``RuleEngine.tick``); resolves when telemetry is back.

A PARAM (thresholds, ``scale``, ``deviation``) is a number, or a per-device parameter
``{attr: NAME, default: NUMBER}`` read from the device's registry ``attrs``, optionally through
a ``map`` (``{attr: class, map: {I: 0.3, II: 1.0}, default: II}``).

Every rule has ``id``, ``kind``, ``description``, ``source`` (the standard, or "(est.)") and
``summary``, a ``str.format`` template over :data:`SUMMARY_FIELDS`.

Operators add files: a rule whose id is already defined (built-in or an earlier file)
overrides it field by field (a shallow merge), so ``{id: fume.concentration, enabled: false}``
disables a built-in rule and ``{id: fume.concentration, threshold: 1.0}`` changes its limit.
Errors raise :class:`~alerts.errors.RuleError` naming the file, the rule id and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devices.catalogue import CATALOGUE, KINDS, SEVERITIES
from devices.durations import format_duration, parse_duration_ms

from .errors import RuleError

BUILTIN_PACK = Path(__file__).parent / "pack" / "default.yaml"

OPS = (">", ">=", "<", "<=", "==", "!=", "outside", "inside")
RANGE_OPS = ("outside", "inside")
SUMMARY_FIELDS = (
    "value", "threshold", "lo", "hi", "severity", "device", "kind", "metric", "unit", "scale",
    "factor", "baseline", "for", "event", "silent", "absent",
)
_RULE_KEYS = {
    "id", "kind", "description", "source", "summary", "enabled", "metric", "event", "absent",
    "op", "threshold", "severity", "levels", "scale", "deviation", "change", "aggregate", "for",
    "reports", "during", "and", "clear",
}
_NUMBER_RE = re.compile(r"^[+-]?\d+(\.\d*)?$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*(\.[a-z0-9_]+)*$")
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
    """One severity of a rule and its threshold (one PARAM, or two for a range)."""

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


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule. See the module docstring for the meaning of each field."""

    id: str
    kind: str
    description: str
    source: str
    summary: str
    type: str  # "metric", "event" or "absence"
    enabled: bool = True
    origin: str = ""  # the file that defined (or last overrode) it
    # metric rules
    metric: str | None = None
    transform: str = "value"  # "value", "deviation", "change" or "mean"
    baseline: Param | None = None
    window_ms: int = 0
    op: str = ">"
    levels: tuple[Level, ...] = ()
    scale: Param = ONE
    for_ms: int = 0
    reports: int = 0
    during: Window | None = None
    and_: tuple[Condition, ...] = ()
    clear: Condition | None = None
    # event rules
    event: str | None = None
    clear_event: str | None = None
    clear_after_ms: int = 0
    # absence rules
    absent_ms: int = 0
    absent_attr: str | None = None  # attrs key of a per-device absence (seconds), absent_ms the default

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
        if self.type == "event":
            clear = (f"; clears on event {self.clear_event}" if self.clear_event else
                     f"; clears {format_duration(self.clear_after_ms)} after the last one"
                     if self.clear_after_ms else "")
            return f"event {self.event}{clear}"
        if self.type == "absence":
            if self.absent_attr:
                return f"no telemetry for attrs.{self.absent_attr} s (default {format_duration(self.absent_ms)})"
            return f"no telemetry for {format_duration(self.absent_ms)}"
        name = {
            "value": self.metric,
            "deviation": f"abs({self.metric} - {self.baseline.describe() if self.baseline else 0})",
            "change": f"{self.metric} - previous {self.metric}",
            "mean": f"mean {format_duration(self.window_ms)} {self.metric}",
        }[self.transform]
        scale = "" if self.scale == ONE else f" × {self.scale.describe()}"
        if len(self.levels) > 1 and self.op not in RANGE_OPS:
            thr = "/".join(lv.threshold[0].describe() for lv in self.levels)
            text = f"{name} {self.op} {thr}{scale}"
        else:
            text = Condition(self.op, self.levels[0].threshold).describe(name or "value") + scale
        if self.and_:
            text += " and " + " and ".join(c.describe() for c in self.and_)
        if self.for_ms:
            text += f" for {format_duration(self.for_ms)}"
            if self.reports:
                text += f" (or {self.reports} reports)"
        if self.during:
            text += f", {self.during}"
        if self.clear:
            text += f"; clears when {self.clear.describe(name or 'value')}"
        return text


# --- parsing ---------------------------------------------------------------------------------

class _Ctx:
    """Where a parse error is: file and rule id, for RuleError."""

    def __init__(self, file: str, rule: str) -> None:
        self.file, self.rule = file, rule

    def err(self, field: str, message: str) -> RuleError:
        return RuleError(message, file=self.file, rule=self.rule, field=field)


def _number(ctx: _Ctx, field: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ctx.err(field, f"expected a number, got {raw!r}")
    return float(raw)


def _param(ctx: _Ctx, field: str, raw: Any) -> Param:
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"attr", "default", "map"}
        if unknown:
            raise ctx.err(field, f"unknown key(s) {sorted(unknown)}; a parameter has attr, default, map")
        attr = raw.get("attr")
        if not isinstance(attr, str) or not attr:
            raise ctx.err(field, "a per-device parameter needs 'attr' (the attrs key to read)")
        if "default" not in raw:
            raise ctx.err(field, f"attrs.{attr} needs a 'default' for devices without it")
        mapping = raw.get("map")
        if mapping is not None:
            if not isinstance(mapping, Mapping) or not mapping:
                raise ctx.err(field, "'map' must map attr values to numbers")
            m = {str(k): _number(ctx, f"{field}.map.{k}", v) for k, v in mapping.items()}
            d = raw["default"]
            if str(d) in m:
                default = m[str(d)]
            else:
                default = _number(ctx, f"{field}.default", d)
            return Param(attr=attr, default=default, mapping=tuple(m.items()))
        return Param(attr=attr, default=_number(ctx, f"{field}.default", raw["default"]))
    return Param(_number(ctx, field, raw))


def _threshold(ctx: _Ctx, field: str, raw: Any, op: str) -> tuple[Param, ...]:
    if op in RANGE_OPS:
        if not isinstance(raw, (list, tuple)) or len(raw) != 2:
            raise ctx.err(field, f"op {op!r} needs a range [lo, hi], got {raw!r}")
        lo, hi = _param(ctx, f"{field}[0]", raw[0]), _param(ctx, f"{field}[1]", raw[1])
        if lo.constant and hi.constant and not lo.value < hi.value:  # type: ignore[operator]
            raise ctx.err(field, f"range [{lo.value:g}, {hi.value:g}] is empty")
        return (lo, hi)
    if isinstance(raw, (list, tuple)):
        raise ctx.err(field, f"op {op!r} takes one threshold, not a list (use outside/inside for ranges)")
    return (_param(ctx, field, raw),)


def _op(ctx: _Ctx, field: str, raw: Any) -> str:
    if raw not in OPS:
        raise ctx.err(field, f"expected one of {', '.join(OPS)}, got {raw!r}")
    return raw


def _metric(ctx: _Ctx, field: str, kind: str, raw: Any) -> str:
    metrics = CATALOGUE[kind].metrics
    if raw not in metrics:
        raise ctx.err(field, f"{kind} has no metric {raw!r} (known: {', '.join(metrics)})")
    return raw


def _condition(ctx: _Ctx, field: str, kind: str, raw: Any, *, own: bool) -> Condition:
    if not isinstance(raw, Mapping):
        raise ctx.err(field, f"expected a mapping with op and threshold, got {raw!r}")
    allowed = {"op", "threshold"} | ({"metric"} if not own else set())
    unknown = set(raw) - allowed
    if unknown:
        raise ctx.err(field, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    metric = None if own else _metric(ctx, f"{field}.metric", kind, raw.get("metric"))
    op = _op(ctx, f"{field}.op", raw.get("op"))
    if "threshold" not in raw:
        raise ctx.err(f"{field}.threshold", "missing")
    return Condition(op, _threshold(ctx, f"{field}.threshold", raw["threshold"], op), metric)


def _text(ctx: _Ctx, raw: Mapping, field: str) -> str:
    v = raw.get(field)
    if not isinstance(v, str) or not v.strip():
        raise ctx.err(field, "missing: every rule needs a non-empty " + field)
    return v.strip()


def _check_summary(ctx: _Ctx, template: str) -> None:
    sample = {f: 1.0 for f in SUMMARY_FIELDS}
    sample.update(severity="warning", device="dev-1", kind="noise", metric="m", unit="u",
                  event="e", silent="5m", absent="5m")
    sample["for"] = "5m"
    try:
        template.format(**sample)
    except KeyError as e:
        raise ctx.err("summary", f"unknown field {{{e.args[0]}}}; known: {', '.join(SUMMARY_FIELDS)}") from None
    except (ValueError, IndexError) as e:
        raise ctx.err("summary", f"bad template: {e}") from None


def parse_rule(raw: Any, *, file: str = "") -> Rule:
    """One rule from its YAML mapping. Raises RuleError naming file, rule and field."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"each rule must be a mapping, got {raw!r}", file=file)
    rid = raw.get("id")
    ctx = _Ctx(file, str(rid) if rid is not None else "?")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise ctx.err("id", f"expected a dotted lower-case id like noise.night_laeq, got {rid!r}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ctx.err(sorted(unknown)[0], f"unknown field; known: {', '.join(sorted(_RULE_KEYS))}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ctx.err("enabled", f"expected true or false, got {enabled!r}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ctx.err("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    common = dict(
        id=rid, kind=kind, enabled=enabled, origin=file,
        description=_text(ctx, raw, "description"), source=_text(ctx, raw, "source"),
        summary=_text(ctx, raw, "summary"),
    )
    _check_summary(ctx, common["summary"])
    types = [t for t in ("metric", "event", "absent") if t in raw]
    if len(types) != 1:
        raise ctx.err("metric", "a rule has exactly one of metric, event, absent"
                      + (f" (found {', '.join(types)})" if types else ""))

    def severity(field: str, v: Any) -> str:
        if v not in SEVERITIES:
            raise ctx.err(field, f"expected one of {', '.join(SEVERITIES)}, got {v!r}")
        return v

    def duration(field: str) -> int:
        try:
            return parse_duration(raw[field])
        except ValueError as e:
            raise ctx.err(field, str(e)) from None

    metric_only = {"op", "threshold", "levels", "scale", "deviation", "change", "aggregate",
                   "for", "reports", "during", "and"}
    if types[0] != "metric":
        extra = sorted(metric_only & set(raw))
        if extra:
            raise ctx.err(extra[0], f"only metric rules take {extra[0]!r}")
        sev = severity("severity", raw.get("severity"))
        lv = (Level(sev, ()),)
        if types[0] == "absent":
            if "clear" in raw:
                raise ctx.err("clear", "an absence rule clears when telemetry is back")
            absent, attr = raw["absent"], None
            if isinstance(absent, Mapping):  # {attr: offline_after_s, default: 5m}: per device
                if set(absent) != {"attr", "default"} or not isinstance(absent["attr"], str):
                    raise ctx.err("absent", "expected a duration or {attr: NAME, default: DURATION}")
                attr = absent["attr"]
                try:
                    ms = parse_duration(absent["default"])
                except ValueError as e:
                    raise ctx.err("absent.default", str(e)) from None
            else:
                ms = duration("absent")
            if ms <= 0:
                raise ctx.err("absent", "must be longer than 0")
            return Rule(**common, type="absence", levels=lv, absent_ms=ms, absent_attr=attr)
        ev = raw.get("event")
        if not isinstance(ev, str) or not re.match(r"^[a-z][a-z0-9_]*$", ev):
            raise ctx.err("event", f"expected a snake_case event type, got {ev!r}")
        clear = raw.get("clear", {"after": "1h"})
        if not isinstance(clear, Mapping) or not (set(clear) <= {"event", "after"}) or not clear:
            raise ctx.err("clear", "an event rule clears with {event: TYPE} and/or {after: DURATION}")
        clear_event = clear.get("event")
        if clear_event is not None and not isinstance(clear_event, str):
            raise ctx.err("clear.event", f"expected an event type, got {clear_event!r}")
        after = 0
        if "after" in clear:
            try:
                after = parse_duration(clear["after"])
            except ValueError as e:
                raise ctx.err("clear.after", str(e)) from None
        return Rule(**common, type="event", levels=lv, event=ev, clear_event=clear_event,
                    clear_after_ms=after)

    metric = _metric(ctx, "metric", kind, raw["metric"])
    op = _op(ctx, "op", raw.get("op"))
    if ("levels" in raw) == ("threshold" in raw):
        raise ctx.err("threshold", "give either threshold (with severity) or levels")
    if "levels" in raw:
        if "severity" in raw:
            raise ctx.err("severity", "with levels, the severities are the keys of levels")
        lvraw = raw["levels"]
        if not isinstance(lvraw, Mapping) or not lvraw:
            raise ctx.err("levels", "expected a mapping severity -> threshold, e.g. {warning: 150, major: 200}")
        levels = []
        for sev, thr in lvraw.items():
            severity(f"levels.{sev}", sev)
            levels.append(Level(sev, _threshold(ctx, f"levels.{sev}", thr, op)))
        order = [SEVERITIES.index(lv.severity) for lv in levels]
        if order != sorted(order):
            raise ctx.err("levels", "list severities from the lowest to the highest")
        if op in RANGE_OPS and len(levels) > 1:
            raise ctx.err("levels", f"op {op!r} takes a single level")
        consts = [lv.threshold[0].value for lv in levels if lv.threshold[0].constant]
        if len(consts) == len(levels) and op in (">", ">=", "<", "<="):
            rising = op in (">", ">=")
            if consts != sorted(consts, reverse=not rising):
                raise ctx.err("levels", f"thresholds must {'rise' if rising else 'fall'} with severity for op {op!r}")
    else:
        levels = [Level(severity("severity", raw.get("severity")),
                        _threshold(ctx, "threshold", raw["threshold"], op))]
    scale = _param(ctx, "scale", raw["scale"]) if "scale" in raw else ONE
    transforms = [t for t in ("deviation", "change", "aggregate") if t in raw]
    if len(transforms) > 1:
        raise ctx.err(transforms[1], "a rule takes at most one of deviation, change, aggregate")
    transform, baseline, window_ms = "value", None, 0
    if "deviation" in raw:
        transform, baseline = "deviation", _param(ctx, "deviation", raw["deviation"])
    elif "change" in raw:
        if raw["change"] != "previous":
            raise ctx.err("change", f"expected 'previous', got {raw['change']!r}")
        transform = "change"
    elif "aggregate" in raw:
        agg = raw["aggregate"]
        if not isinstance(agg, Mapping) or agg.get("fn") != "mean" or set(agg) != {"fn", "window"}:
            raise ctx.err("aggregate", "expected {fn: mean, window: DURATION}")
        try:
            window_ms = parse_duration(agg["window"])
        except ValueError as e:
            raise ctx.err("aggregate.window", str(e)) from None
        if window_ms <= 0 or 86_400_000 % window_ms:
            raise ctx.err("aggregate.window", "the window must divide a day (e.g. 1m, 15m, 1h)")
        transform = "mean"
    for_ms = duration("for") if "for" in raw else 0
    reports = raw.get("reports", 0)
    if isinstance(reports, bool) or not isinstance(reports, int) or reports < 0:
        raise ctx.err("reports", f"expected a count of readings, got {reports!r}")
    if reports and not for_ms:
        raise ctx.err("reports", "reports only makes sense with for")
    during = None
    if "during" in raw:
        try:
            during = Window.parse(raw["during"])
        except ValueError as e:
            raise ctx.err("during", str(e)) from None
    and_raw = raw.get("and", [])
    if not isinstance(and_raw, list):
        raise ctx.err("and", "expected a list of {metric, op, threshold}")
    and_ = tuple(_condition(ctx, f"and[{i}]", kind, c, own=False) for i, c in enumerate(and_raw))
    for i, c in enumerate(and_):
        if c.metric == metric:
            raise ctx.err(f"and[{i}].metric", "use the rule's own op/threshold for its metric")
    clear = _condition(ctx, "clear", kind, raw["clear"], own=True) if "clear" in raw else None
    return Rule(
        **common, type="metric", metric=metric, transform=transform, baseline=baseline,
        window_ms=window_ms, op=op, levels=tuple(levels), scale=scale, for_ms=for_ms,
        reports=reports, during=during, and_=and_, clear=clear,
    )


def _read_file(path: Path) -> list[Mapping]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleError(f"cannot read: {e.strerror or e}", file=name) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RuleError(f"not valid YAML: {e}", file=name) from None
    if doc is None:
        return []
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
        raise RuleError("expected a mapping with a 'rules' list", file=name)
    unknown = set(doc) - {"rules", "version"}
    if unknown:
        raise RuleError(f"unknown top-level key(s) {sorted(unknown)}; expected rules (and version)", file=name)
    if doc.get("version", 1) != 1:
        raise RuleError(f"unsupported version {doc['version']!r}; this citywatch reads version 1", file=name)
    out = []
    seen: set[str] = set()
    for i, r in enumerate(doc["rules"]):
        if not isinstance(r, Mapping) or not isinstance(r.get("id"), str):
            raise RuleError(f"rule #{i + 1} needs an id", file=name, field="id")
        if r["id"] in seen:
            raise RuleError("defined twice in this file", file=name, rule=r["id"], field="id")
        seen.add(r["id"])
        out.append(r)
    return out


@dataclass(frozen=True, slots=True)
class RulePack:
    """The effective rules: the built-in pack (unless left out) overridden by operator files.

    ``rules`` holds every rule in definition order, disabled ones included (``rules check``
    shows them); ``active`` only the enabled ones, which the engine evaluates.
    """

    rules: tuple[Rule, ...]

    @property
    def active(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"no rule {rule_id!r}")

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def load(cls, files: Iterable[str | Path] = (), *, builtin: bool = True) -> RulePack:
        """The built-in pack then each file in order; a known id overrides field by field.

        Validates everything before returning; raises RuleError on the first problem.
        """
        merged: dict[str, tuple[dict, str]] = {}
        sources = ([BUILTIN_PACK] if builtin else []) + [Path(f) for f in files]
        for path in sources:
            for raw in _read_file(path):
                rid = raw["id"]
                if rid in merged:
                    base, _ = merged[rid]
                    merged[rid] = ({**base, **raw}, str(path))
                else:
                    _check_new(raw, str(path))
                    merged[rid] = (dict(raw), str(path))
        return cls(tuple(parse_rule(raw, file=origin) for raw, origin in merged.values()))

    @classmethod
    def from_rules(cls, rules: Sequence[Rule]) -> RulePack:
        ids = [r.id for r in rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise RuleError(f"rule ids defined twice: {sorted(dup)}")
        return cls(tuple(rules))


def check_file(path: str | Path) -> list[Rule]:
    """Validate one rule file on its own (``citywatch rules check``) and return its rules.

    A partial override (``{id: x, enabled: false}``) of a built-in rule is valid: it is
    checked merged over the built-in rule it overrides.
    """
    builtin = {r["id"]: r for r in _read_file(BUILTIN_PACK)}
    out = []
    for raw in _read_file(Path(path)):
        base = builtin.get(raw["id"])
        if base is None:
            _check_new(raw, str(path))
        out.append(parse_rule({**(base or {}), **raw}, file=str(path)))
    return out


def _check_new(raw: Mapping, file: str) -> None:
    """A rule id seen for the first time must be a whole rule (catch a mistyped override)."""
    if "kind" not in raw:
        raise RuleError("no built-in or earlier rule has this id (a typo?); a new rule needs kind, "
                        "description, source, summary and metric, event or absent",
                        file=file, rule=str(raw["id"]), field="id")
