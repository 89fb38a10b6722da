"""Metric rules (``metric: NAME``): a condition on a metric's readings, in event time.

The value compared is the reading, or ``deviation: PARAM`` (``abs(value - PARAM)``),
``change: previous`` (value minus the device's previous reading) or ``aggregate: {fn: mean,
window: 1h}`` (the mean of each closed local-time window); one or several severity levels,
``scale``, ``for``/``reports``, ``during``, ``and`` and ``clear`` (see alerts/rules.py).

Evaluation is vectorised per rule: its slice of the batch is compared with its (per-device)
thresholds in a few numpy operations, and only the rows of devices where a condition is true or
whose stream is active go through :func:`run`, the per-row level state machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.catalogue import SEVERITIES
from devices.durations import format_duration

from .base import ONE, RANGE_OPS, Condition, Ctx, Level, Param, Parsed, RuleType, Window, grow

DAY_MS = 86_400_000
_NAN = float("nan")
_NEVER = -(2 ** 62)


@dataclass(frozen=True, slots=True)
class MetricParams:
    transform: str = "value"  # "value", "deviation", "change" or "mean"
    baseline: Param | None = None
    window_ms: int = 0
    op: str = ">"
    scale: Param = ONE
    for_ms: int = 0
    reports: int = 0
    during: Window | None = None
    and_: tuple[Condition, ...] = ()
    clear: Condition | None = None


def scaled(x, scale):
    """``x * scale`` without binary noise (1.2 × 6 is 7.2, not 7.199999999999999)."""
    if isinstance(scale, float) and scale == 1.0:
        return x
    return np.round(np.multiply(x, scale), 9)


def compare(op: str, v: np.ndarray, t) -> np.ndarray:
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


def levels_of(engine, rt, op: str, v: np.ndarray, slots: np.ndarray, n: int, scale=1.0) -> np.ndarray:
    """Per row, the highest level whose threshold ``v`` passes (``-1``: none)."""
    level = np.full(len(v), -1, np.int8)
    kind = rt.rule.kind
    for k, lv in enumerate(rt.rule.levels):
        t = tuple(scaled(engine.param(kind, p, slots, n), scale) for p in lv.threshold)
        level[compare(op, v, t if op in RANGE_OPS else t[0])] = k
    return level


def candidates(rt, slots: np.ndarray, hot: np.ndarray, n: int) -> np.ndarray:
    """Rows of devices with a true condition or an active stream (the others change nothing)."""
    if not rt.n_active and not hot.any():
        return np.empty(0, np.int64)
    mark = np.zeros(max(n, len(rt.active)), bool)
    mark[slots[hot]] = True
    mark[: len(rt.active)] |= rt.active
    return np.nonzero(mark[slots])[0]


def lasting(for_ms: int, reports: int, s: np.ndarray, t: np.ndarray, level: np.ndarray,
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
    long = (last_row[ends] | (t[ends] - t[starts] >= for_ms)
            | (reports > 0) & (ends - starts + 1 >= reports))
    group = np.cumsum(first_row) - 1
    begin = np.full(group[-1] + 1, n, np.int64)
    np.minimum.at(begin, group[starts[long]], starts[long])
    begin[group[first_row & active]] = 0
    return np.arange(n) >= begin[group]


def run(engine, call, rt, b, idx: list, slots: list, ts: list, level: list, clear: list,
        value: list, for_ms: int = 0, reports: int = 0) -> None:
    """The per-row level state machine, for rows in (device, ts) order: ``level`` is the
    highest level whose condition holds (-1: none), ``clear`` whether a firing alert resolves."""
    rule = rt.rule
    nlev, move = rt.nlev, engine.move
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
                to = "firing" if elig >= 0 else "pending"
                move(call, rt, slot, st, to, t, sev=elig if elig >= 0 else lv, value=x, started=since[0])
        elif st.state == "pending":
            if lv < 0:
                move(call, rt, slot, st, "inactive", t, sev=st.sev, value=x)
            elif elig >= 0:
                move(call, rt, slot, st, "firing", t, sev=elig, value=x)
        elif st.state == "firing":
            if cl:
                move(call, rt, slot, st, "resolved", t, sev=st.sev, value=x)
            elif elig > st.sev:
                move(call, rt, slot, st, "firing", t, sev=elig, value=x)


class MetricRule(RuleType):
    name = "metric"
    marker = "metric"
    keys = frozenset({"metric", "op", "threshold", "severity", "levels", "scale", "deviation", "change",
                      "aggregate", "for", "reports", "during", "and", "clear"})

    # --- the rule file -----------------------------------------------------------------------

    def parse(self, ctx: Ctx, raw: Mapping[str, Any], kind: str) -> Parsed:
        metric = ctx.metric("metric", kind, raw["metric"])
        op = ctx.op("op", raw.get("op"))
        if ("levels" in raw) == ("threshold" in raw):
            raise ctx.err("threshold", "give either threshold (with severity) or levels")
        if "levels" in raw:
            levels = _levels(ctx, raw, op)
        else:
            levels = (Level(ctx.severity("severity", raw.get("severity")),
                            ctx.threshold("threshold", raw["threshold"], op)),)
        for_ms = ctx.duration("for", raw["for"]) if "for" in raw else 0
        reports = raw.get("reports", 0)
        if isinstance(reports, bool) or not isinstance(reports, int) or reports < 0:
            raise ctx.err("reports", f"expected a count of readings, got {reports!r}")
        if reports and not for_ms:
            raise ctx.err("reports", "reports only makes sense with for")
        params = MetricParams(
            *_transform(ctx, raw), op=op, for_ms=for_ms, reports=reports, during=_during(ctx, raw),
            scale=ctx.param("scale", raw["scale"]) if "scale" in raw else ONE,
            and_=_and_conditions(ctx, raw, kind, metric),
            clear=ctx.condition("clear", kind, raw["clear"], own=True) if "clear" in raw else None,
        )
        return Parsed(metric, levels, params)

    def describe(self, rule) -> str:
        p: MetricParams = rule.params
        name = {
            "value": rule.metric,
            "deviation": f"abs({rule.metric} - {p.baseline.describe() if p.baseline else 0})",
            "change": f"{rule.metric} - previous {rule.metric}",
            "mean": f"mean {format_duration(p.window_ms)} {rule.metric}",
        }[p.transform]
        scale = "" if p.scale == ONE else f" × {p.scale.describe()}"
        if len(rule.levels) > 1 and p.op not in RANGE_OPS:
            thr = "/".join(lv.threshold[0].describe() for lv in rule.levels)
            text = f"{name} {p.op} {thr}{scale}"
        else:
            text = Condition(p.op, rule.levels[0].threshold).describe(name or "value") + scale
        if p.and_:
            text += " and " + " and ".join(c.describe() for c in p.and_)
        if p.for_ms:
            text += f" for {format_duration(p.for_ms)}"
            if p.reports:
                text += f" (or {p.reports} reports)"
        if p.during:
            text += f", {p.during}"
        if p.clear:
            text += f"; clears when {p.clear.describe(name or 'value')}"
        return text

    # --- what the engine prepares --------------------------------------------------------------

    def params_of(self, rule) -> list[Param]:
        p: MetricParams = rule.params
        ps = [p.scale] + ([p.baseline] if p.baseline else [])
        ps += [t for lv in rule.levels for t in lv.threshold]
        ps += [t for c in p.and_ for t in c.threshold]
        ps += list(p.clear.threshold) if p.clear else []
        return ps

    def metrics(self, rule) -> set[str]:
        return {rule.metric} | self.latest_metrics(rule)

    def latest_metrics(self, rule) -> set[str]:
        return {c.metric for c in rule.params.and_}

    def keeps_previous(self, rule) -> bool:
        return rule.params.transform == "change"

    def static_fields(self, rule) -> dict[str, Any]:
        return {"for": format_duration(rule.params.for_ms)}

    def summary_values(self, engine, rule, attrs, sev, value) -> dict[str, Any]:
        p: MetricParams = rule.params
        lv = rule.levels[max(sev, 0)]
        scale = p.scale.resolve(attrs)
        out: dict[str, Any] = {"scale": scale, "baseline": p.baseline.resolve(attrs) if p.baseline else 0.0}
        raw = [t.resolve(attrs) for t in lv.threshold]
        if p.op in RANGE_OPS:
            out["lo"], out["hi"] = float(scaled(raw[0], scale)), float(scaled(raw[1], scale))
            below = value is not None and value <= out["lo"]
            out["threshold"] = out["lo"] if (p.op == "outside" and below) else out["hi"]
        else:
            out["factor"] = raw[0]
            out["threshold"] = float(scaled(raw[0], scale))
        return out

    # --- evaluation ------------------------------------------------------------------------------

    def evaluate(self, engine, call, rt, b, idx, slots, rows) -> None:
        rule = rt.rule
        p: MetricParams = rule.params
        kind = rule.kind
        n = len(rt.slots.ids)
        rt.ensure(n)
        ts = b.ts[idx]
        v = b.value[idx]
        if p.transform == "deviation":
            v = np.abs(v - engine.param(kind, p.baseline, slots, n))
        elif p.transform == "change":
            got = _changes(call, rt, slots, ts, v)
            if got is None:
                return
            idx, slots, ts, v = idx[got[0]], got[1], got[2], got[3]
        elif p.transform == "mean":
            got = _means(engine, call, rt, idx, slots, ts, v)
            if got is None:
                return
            idx, slots, ts, v = got
        level = levels_of(engine, rt, p.op, v, slots, n, engine.param(kind, p.scale, slots, n))
        outside = None
        if p.during is not None:
            outside = ~p.during.contains_ms(engine.local(ts) % DAY_MS)
            level[outside] = -1
        cand = candidates(rt, slots, level >= 0, n)
        if not len(cand):
            return
        if p.and_:
            ok = _and(engine, rule, b, slots[cand], ts[cand], rows, n)
            sub = level[cand]
            sub[~ok] = -1
            level[cand] = sub
        if p.clear is not None:
            ct = tuple(engine.param(kind, t, slots[cand], n) for t in p.clear.threshold)
            clear = compare(p.clear.op, v[cand], ct if p.clear.op in RANGE_OPS else ct[0])
            if outside is not None:
                clear |= outside[cand]
        else:
            clear = level[cand] < 0
        order = np.lexsort((ts[cand], slots[cand]))
        c = cand[order]
        clear = clear[order]
        if p.for_ms and len(c) > 1:
            keep = lasting(p.for_ms, p.reports, slots[c], ts[c], level[c], rt.active[slots[c]])
            c, clear = c[keep], clear[keep]
        run(engine, call, rt, b, idx[c].tolist(), slots[c].tolist(), ts[c].tolist(), level[c].tolist(),
            clear.tolist(), v[c].tolist(), p.for_ms, p.reports)


# --- parsing ---------------------------------------------------------------------------------------

def _levels(ctx: Ctx, raw: Mapping[str, Any], op: str) -> tuple[Level, ...]:
    if "severity" in raw:
        raise ctx.err("severity", "with levels, the severities are the keys of levels")
    lvraw = raw["levels"]
    if not isinstance(lvraw, Mapping) or not lvraw:
        raise ctx.err("levels", "expected a mapping severity -> threshold, e.g. {warning: 150, major: 200}")
    levels = tuple(Level(ctx.severity(f"levels.{sev}", sev), ctx.threshold(f"levels.{sev}", thr, op))
                   for sev, thr in lvraw.items())
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
    return levels


def _transform(ctx: Ctx, raw: Mapping[str, Any]) -> tuple[str, Param | None, int]:
    """(transform, baseline, window_ms) from deviation / change / aggregate."""
    transforms = [t for t in ("deviation", "change", "aggregate") if t in raw]
    if len(transforms) > 1:
        raise ctx.err(transforms[1], "a rule takes at most one of deviation, change, aggregate")
    if "deviation" in raw:
        return "deviation", ctx.param("deviation", raw["deviation"]), 0
    if "change" in raw:
        if raw["change"] != "previous":
            raise ctx.err("change", f"expected 'previous', got {raw['change']!r}")
        return "change", None, 0
    if "aggregate" in raw:
        agg = raw["aggregate"]
        if not isinstance(agg, Mapping) or agg.get("fn") != "mean" or set(agg) != {"fn", "window"}:
            raise ctx.err("aggregate", "expected {fn: mean, window: DURATION}")
        window_ms = ctx.duration("aggregate.window", agg["window"])
        if window_ms <= 0 or DAY_MS % window_ms:
            raise ctx.err("aggregate.window", "the window must divide a day (e.g. 1m, 15m, 1h)")
        return "mean", None, window_ms
    return "value", None, 0


def _during(ctx: Ctx, raw: Mapping[str, Any]) -> Window | None:
    if "during" not in raw:
        return None
    try:
        return Window.parse(raw["during"])
    except ValueError as e:
        raise ctx.err("during", str(e)) from None


def _and_conditions(ctx: Ctx, raw: Mapping[str, Any], kind: str, metric: str) -> tuple[Condition, ...]:
    and_raw = raw.get("and", [])
    if not isinstance(and_raw, list):
        raise ctx.err("and", "expected a list of {metric, op, threshold}")
    and_ = tuple(ctx.condition(f"and[{i}]", kind, c, own=False) for i, c in enumerate(and_raw))
    for i, c in enumerate(and_):
        if c.metric == metric:
            raise ctx.err(f"and[{i}].metric", "use the rule's own op/threshold for its metric")
    return and_


# --- evaluation helpers -------------------------------------------------------------------------

def _and(engine, rule, b, pslots: np.ndarray, pts: np.ndarray, rows, n: int) -> np.ndarray:
    """For each candidate row, whether every ``and`` condition holds on the device's value
    of that metric at the same ts, else its latest earlier one (unknown: false)."""
    ok = np.ones(len(pslots), bool)
    for cond in rule.params.and_:
        sidx, sslots = rows(rule.kind, cond.metric)
        val = np.full(len(pslots), np.nan)
        mem = engine.latest(rule.kind, cond.metric)
        if mem is not None:
            mv, mt = grow(mem[0], n, np.nan), grow(mem[1], n, _NEVER)
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
        t = tuple(engine.param(rule.kind, p, pslots, n) for p in cond.threshold)
        with np.errstate(invalid="ignore"):
            ok &= compare(cond.op, val, t if cond.op in RANGE_OPS else t[0]) & ~np.isnan(val)
    return ok


def _changes(call, rt, slots, ts, v):
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


def _means(engine, call, rt, idx, slots, ts, v):
    """Close aggregate windows: one row (ts = window end, value = mean) per closed window."""
    w = rt.rule.params.window_ms
    local = engine.local(ts)
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
    return (idx[np.array(out_i)], np.array(out_s, np.int64), np.array(out_t, np.int64), np.array(out_v))
