"""Event rules (``event: TYPE``): fire on a device event of that type; resolve on a ``clear:
{event: TYPE}`` event, or once ``clear: {after: DURATION}`` passes (in the event time of the
device's later events, or at the engine's tick) without a new matching event.

Stream state of its own (``st.memo``, saved as ``match``): the ts of the last matching event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devices.durations import format_duration

from .base import Ctx, Level, Parsed, RuleType

_EVENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class EventParams:
    event: str
    clear_event: str | None = None
    clear_after_ms: int = 0


class EventRule(RuleType):
    name = "event"
    marker = "event"
    keys = frozenset({"event", "severity", "clear"})

    def parse(self, ctx: Ctx, raw: Mapping[str, Any], kind: str) -> Parsed:
        levels = (Level(ctx.severity("severity", raw.get("severity")), ()),)
        ev = raw.get("event")
        if not isinstance(ev, str) or not _EVENT_RE.match(ev):
            raise ctx.err("event", f"expected a snake_case event type, got {ev!r}")
        clear = raw.get("clear", {"after": "1h"})
        if not isinstance(clear, Mapping) or not (set(clear) <= {"event", "after"}) or not clear:
            raise ctx.err("clear", "an event rule clears with {event: TYPE} and/or {after: DURATION}")
        clear_event = clear.get("event")
        if clear_event is not None and not isinstance(clear_event, str):
            raise ctx.err("clear.event", f"expected an event type, got {clear_event!r}")
        after = ctx.duration("clear.after", clear["after"]) if "after" in clear else 0
        return Parsed(None, levels, EventParams(ev, clear_event, after))

    def describe(self, rule) -> str:
        p: EventParams = rule.params
        clear = (f"; clears on event {p.clear_event}" if p.clear_event else
                 f"; clears {format_duration(p.clear_after_ms)} after the last one"
                 if p.clear_after_ms else "")
        return f"event {p.event}{clear}"

    def static_fields(self, rule) -> dict[str, Any]:
        return {"event": rule.params.event}

    def on_event(self, engine, call, rt, ev) -> None:
        p: EventParams = rt.rule.params
        if ev.type != p.event and ev.type != p.clear_event:
            _expire(engine, call, rt, ev.device_id, ev.ts)
            return
        slot = rt.slots[ev.device_id]
        rt.ensure(slot + 1)
        st = rt.stream(slot)
        if ev.ts <= st.last_ts:
            return
        st.last_ts = ev.ts
        call.touch(rt, slot, st)
        call.where.setdefault((rt.rule.kind, ev.device_id), (ev.district, ev.asset_id))
        _expire(engine, call, rt, ev.device_id, ev.ts)
        if ev.type == p.event:
            st.memo = ev.ts
            if st.state == "inactive":
                engine.move(call, rt, slot, st, "firing", ev.ts, sev=0, value=None)
        elif st.state == "firing":  # the clear event
            engine.move(call, rt, slot, st, "resolved", ev.ts, sev=st.sev, value=None)

    def on_tick(self, engine, call, rt, now_ms, seen) -> None:
        for st in list(rt.streams.values()):
            if st.state == "firing":
                _expire(engine, call, rt, st.device_id, now_ms)

    def encode(self, st) -> dict[str, Any]:
        return {} if st.memo is None else {"match": st.memo}

    def restore(self, st, data) -> None:
        st.memo = data.get("match")


def _expire(engine, call, rt, device_id: str, now_ms: int) -> None:
    """Resolve an event alert whose ``clear.after`` has passed since its last match."""
    after = rt.rule.params.clear_after_ms
    if not after:
        return
    slot = rt.slots.get(device_id)
    st = rt.streams.get(slot) if slot is not None else None
    if st is not None and st.state == "firing" and st.memo is not None and now_ms - st.memo >= after:
        engine.move(call, rt, slot, st, "resolved", st.memo + after, sev=st.sev, value=None)
