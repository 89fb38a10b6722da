"""The rule format: YAML files of rules, parsed once into frozen values, validated completely.

A rule file is a mapping with a ``rules`` list (see ``alerts/pack/default.yaml``, the built-in
pack, for every feature in use). A rule has a type, one module each in ``alerts/rule_types``
(registered by name in ``alerts/rule_types/__init__.py``), selected by ``type: NAME`` or by the
type's marker key; the built-in types:

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
``summary``, a ``str.format`` template over :data:`SUMMARY_FIELDS` (and its type's own fields);
:func:`parse_rule` parses these once, then hands the rule to its type's parser.

Operators add files: a rule whose id is already defined (built-in or an earlier file)
overrides it field by field (a shallow merge), so ``{id: fume.concentration, enabled: false}``
disables a built-in rule and ``{id: fume.concentration, threshold: 1.0}`` changes its limit.
Errors raise :class:`~alerts.errors.RuleError` naming the file, the rule id and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devices.catalogue import KINDS

from .errors import RuleError
from .rule_types import RULE_TYPES, Ctx, RuleType
from .rule_types.base import ONE, OPS, RANGE_OPS, Condition, Level, Param, Rule, Window, parse_duration

__all__ = ["BUILTIN_PACK", "ONE", "OPS", "RANGE_OPS", "SUMMARY_FIELDS", "Condition", "Level", "Param", "Rule",
           "RulePack", "Window", "check_file", "parse_duration", "parse_rule"]

BUILTIN_PACK = Path(__file__).parent / "pack" / "default.yaml"

SUMMARY_FIELDS = (
    "value", "threshold", "lo", "hi", "severity", "device", "kind", "metric", "unit", "scale",
    "factor", "baseline", "for", "event", "silent", "absent",
)
_COMMON_KEYS = {"id", "kind", "description", "source", "summary", "enabled", "type"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*(\.[a-z0-9_]+)*$")


# --- parsing ---------------------------------------------------------------------------------

def _text(ctx: Ctx, raw: Mapping, field: str) -> str:
    v = raw.get(field)
    if not isinstance(v, str) or not v.strip():
        raise ctx.err(field, "missing: every rule needs a non-empty " + field)
    return v.strip()


def _check_summary(ctx: Ctx, template: str, rule_type: RuleType) -> None:
    names = SUMMARY_FIELDS + rule_type.summary_fields
    sample: dict[str, Any] = {f: 1.0 for f in names}
    sample.update(severity="warning", device="dev-1", kind="noise", metric="m", unit="u",
                  event="e", silent="5m", absent="5m")
    sample["for"] = "5m"
    try:
        template.format(**sample)
    except KeyError as e:
        raise ctx.err("summary", f"unknown field {{{e.args[0]}}}; known: {', '.join(names)}") from None
    except (ValueError, IndexError) as e:
        raise ctx.err("summary", f"bad template: {e}") from None


def _type_of(ctx: Ctx, raw: Mapping) -> RuleType:
    """The rule's type: its ``type`` key, else the one registered type whose marker key it has."""
    if "type" in raw:
        got = RULE_TYPES.get(raw["type"])
        if got is None:
            raise ctx.err("type", f"expected one of {', '.join(RULE_TYPES)}, got {raw['type']!r}")
        return got
    markers = {t.marker: t for t in RULE_TYPES.values() if t.marker}
    found = [m for m in markers if m in raw]
    if len(found) != 1:
        raise ctx.err("metric", f"a rule has exactly one of {', '.join(markers)} (or a type)"
                      + (f" (found {', '.join(found)})" if found else ""))
    return markers[found[0]]


def parse_rule(raw: Any, *, file: str = "") -> Rule:
    """One rule from its YAML mapping: the common fields, then its type's own. Raises RuleError
    naming file, rule and field."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"each rule must be a mapping, got {raw!r}", file=file)
    rid = raw.get("id")
    ctx = Ctx(file, str(rid) if rid is not None else "?")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise ctx.err("id", f"expected a dotted lower-case id like noise.night_laeq, got {rid!r}")
    if "type" in raw:
        _type_of(ctx, raw)  # an unknown type first: its keys would all look unknown
    known = _COMMON_KEYS.union(*(t.keys for t in RULE_TYPES.values()))
    unknown = set(raw) - known
    if unknown:
        raise ctx.err(sorted(unknown)[0], f"unknown field; known: {', '.join(sorted(known))}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ctx.err("enabled", f"expected true or false, got {enabled!r}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ctx.err("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    description, source = _text(ctx, raw, "description"), _text(ctx, raw, "source")
    summary = _text(ctx, raw, "summary")
    rule_type = _type_of(ctx, raw)
    _check_summary(ctx, summary, rule_type)
    foreign = sorted(set(raw) - _COMMON_KEYS - rule_type.keys)
    if foreign:
        raise ctx.err(foreign[0], f"a {rule_type.name} rule does not take {foreign[0]!r}")
    parsed = rule_type.parse(ctx, raw, kind)
    return Rule(rid, kind, description, source, summary, rule_type.name, parsed.levels, parsed.params,
                parsed.metric, enabled, file)


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
