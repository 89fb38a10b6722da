"""Absence rules (``absent: DURATION``, or ``{attr: NAME, default: DURATION}`` per device): no
telemetry from a commissioned device for that long, evaluated at the engine's tick; resolves
when telemetry is back. Fires at most once per silence (``last_ts`` is the silence's start).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.durations import format_duration

from .base import Ctx, Level, Parsed, RuleType

_NEVER = -(2 ** 62)


@dataclass(frozen=True, slots=True)
class AbsenceParams:
    absent_ms: int
    absent_attr: str | None = None  # attrs key of a per-device absence (seconds), absent_ms the default


class AbsenceRule(RuleType):
    name = "absence"
    marker = "absent"
    keys = frozenset({"absent", "severity", "clear"})  # clear: refused with its reason

    def parse(self, ctx: Ctx, raw: Mapping[str, Any], kind: str) -> Parsed:
        levels = (Level(ctx.severity("severity", raw.get("severity")), ()),)
        if "clear" in raw:
            raise ctx.err("clear", "an absence rule clears when telemetry is back")
        absent, attr = raw["absent"], None
        if isinstance(absent, Mapping):  # {attr: offline_after_s, default: 5m}: per device
            if set(absent) != {"attr", "default"} or not isinstance(absent["attr"], str):
                raise ctx.err("absent", "expected a duration or {attr: NAME, default: DURATION}")
            attr = absent["attr"]
            ms = ctx.duration("absent.default", absent["default"])
        else:
            ms = ctx.duration("absent", absent)
        if ms <= 0:
            raise ctx.err("absent", "must be longer than 0")
        return Parsed(None, levels, AbsenceParams(ms, attr))

    def describe(self, rule) -> str:
        p: AbsenceParams = rule.params
        if p.absent_attr:
            return f"no telemetry for attrs.{p.absent_attr} s (default {format_duration(p.absent_ms)})"
        return f"no telemetry for {format_duration(p.absent_ms)}"

    def static_fields(self, rule) -> dict[str, Any]:
        return {"absent": format_duration(rule.params.absent_ms)}

    def on_reset(self, st) -> None:
        st.last_ts = _NEVER  # this silence may be alerted again

    def on_tick(self, engine, call, rt, now_ms, seen) -> None:
        rule = rt.rule
        for slot, st in list(rt.streams.items()):
            if st.state != "firing":
                continue
            last = seen.last_seen.get(st.device_id)
            if last is not None and last > st.last_ts and now_ms - last < absent_ms(engine, rule, st.device_id):
                engine.move(call, rt, slot, st, "resolved", int(last), sev=st.sev, value=None)
        if not seen.last_seen:
            return
        ids, times, code = seen.ids, seen.times, seen.codes()
        with np.errstate(invalid="ignore"):
            # the shortest absence any device of the kind may have, then the per-device one
            due = (code == seen.kind_code(rule.kind)) & (now_ms - times >= _min_absent_ms(engine, rt))
        for i in np.nonzero(due)[0].tolist():
            dev = ids[i]
            ls = int(times[i])
            ms = absent_ms(engine, rule, dev)
            if now_ms - ls < ms:
                continue
            slot = rt.slots[dev]
            st = rt.streams.get(slot)
            if st is not None and (st.state == "firing" or st.last_ts >= ls):
                continue  # alerted already for this silence
            rt.ensure(slot + 1)
            st = rt.stream(slot)
            st.last_ts = ls
            silent = now_ms - ls
            engine.move(call, rt, slot, st, "firing", ls + ms, sev=0, value=silent / 1000.0,
                        fields={"silent": format_duration(silent - silent % 60_000 or silent),
                                "absent": format_duration(ms), "threshold": ms / 1000.0})


def absent_ms(engine, rule, device_id: str) -> int:
    """The absence after which ``device_id`` is offline: ``attrs[absent_attr]`` seconds where the
    rule names one and the device has a usable value, else the rule's own."""
    p: AbsenceParams = rule.params
    if p.absent_attr is None:
        return p.absent_ms
    raw = (engine.attrs_map(rule.kind).get(device_id) or {}).get(p.absent_attr)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return p.absent_ms
    return int(v * 1000) if math.isfinite(v) and v > 0 else p.absent_ms


def _min_absent_ms(engine, rt) -> int:
    rule = rt.rule
    p: AbsenceParams = rule.params
    if p.absent_attr is None:
        return p.absent_ms
    amap = engine.attrs_map(rule.kind)
    cached = rt.cache.get("min_absent")
    if cached is not None and cached[0] is amap:
        return cached[1]
    least = min([p.absent_ms] + [absent_ms(engine, rule, d) for d, a in amap.items()
                                 if a and p.absent_attr in a])
    rt.cache["min_absent"] = (amap, least)
    return least
