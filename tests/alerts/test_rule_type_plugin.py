"""A rule type added from outside the engine: a rate-of-change rule, defined and registered in
this module alone (alerts/RULES.md, "Adding a rule type"), loaded from a rule file and run
through the real engine on a real SQLite state DB.

``type: rate``: fires when a metric changes by more than ``max_change_per_min`` per minute
between two consecutive readings of a device (a PARAM, so per device if wanted); resolves at the
first reading whose change is within it. The previous reading of each device is kept in the
engine's ``rule_prev`` memory (``keeps_previous``), so a restart loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from alerts.errors import RuleError
from alerts.rule_types import RULE_TYPES, Parsed, RuleType, register, unregister
from alerts.rule_types.base import Level, Param
from alerts.rule_types.metric import candidates, run
from alerts.rules import RulePack, check_file

from .helpers import Harness, at, series

M = 60_000


@dataclass(frozen=True, slots=True)
class RateParams:
    limit: Param  # the largest change per minute that is normal


class RateRule(RuleType):
    name = "rate"
    keys = frozenset({"metric", "severity", "max_change_per_min"})

    def parse(self, ctx, raw, kind):
        metric = ctx.metric("metric", kind, raw.get("metric"))
        severity = ctx.severity("severity", raw.get("severity"))
        if "max_change_per_min" not in raw:
            raise ctx.err("max_change_per_min", "missing: the largest normal change per minute")
        limit = ctx.param("max_change_per_min", raw["max_change_per_min"])
        return Parsed(metric, (Level(severity, (limit,)),), RateParams(limit))

    def describe(self, rule):
        return f"|change of {rule.metric}| per minute > {rule.params.limit.describe()}"

    def params_of(self, rule):
        return [rule.params.limit]

    def keeps_previous(self, rule):
        return True

    def summary_values(self, engine, rule, attrs, sev, value):
        return {"threshold": rule.params.limit.resolve(attrs)}

    def evaluate(self, engine, call, rt, b, idx, slots, rows):
        n = len(rt.slots.ids)
        rt.ensure(n)
        ts, v = b.ts[idx], b.value[idx]
        fresh = ts > rt.prev_ts[slots]  # a reading evaluated already changes nothing
        o = np.lexsort((ts[fresh], slots[fresh]))
        i, s, t, x = idx[fresh][o], slots[fresh][o], ts[fresh][o], v[fresh][o]
        if not len(i):
            return
        first = np.r_[True, s[1:] != s[:-1]]
        last = np.r_[s[1:] != s[:-1], True]
        pv, pt = np.r_[np.nan, x[:-1]], np.r_[0, t[:-1]]
        pv[first], pt[first] = rt.prev_val[s[first]], rt.prev_ts[s[first]]
        ls, lt, lx = s[last], t[last], x[last]

        def remember():
            rt.prev_val[ls], rt.prev_ts[ls] = lx, lt
        call.after_commit.append(remember)
        call.prev.extend((rt.rule.id, rt.slots.ids[a], c, d)
                         for a, c, d in zip(ls.tolist(), lt.tolist(), lx.tolist(), strict=True))
        known = ~np.isnan(pv)
        i, s, t = i[known], s[known], t[known]
        rate = np.abs(x[known] - pv[known]) / ((t - pt[known]) / M)
        level = np.where(rate > engine.param(rt.rule.kind, rt.rule.params.limit, s, n), 0, -1).astype(np.int8)
        c = candidates(rt, s, level >= 0, n)
        run(engine, call, rt, b, i[c].tolist(), s[c].tolist(), t[c].tolist(), level[c].tolist(),
            (level[c] < 0).tolist(), rate[c].tolist())


RULE = """
rules:
  - id: bridge.deflection_rate
    type: rate
    kind: bridge
    metric: deflection_mm
    max_change_per_min: {limit}
    severity: major
    description: Deflection changing faster than a load or temperature explains
    source: (est.)
    summary: "{{device}}: deflection changing {{value:.2f}} mm/min (limit {{threshold:g}})"
"""


@pytest.fixture(autouse=True)
def rate_type():
    register(RateRule())
    yield
    unregister("rate")


def rule_file(tmp_path, limit="2.0"):
    f = tmp_path / "rate.yaml"
    f.write_text(RULE.format(limit=limit), encoding="utf-8")
    return f


T0 = at("2026-12-01 10:00:00")
VALUES = [10.0, 10.5, 11.0, 14.0, 17.5, 17.7, 17.8]  # per minute: 0.5 0.5 3.0 3.5 0.2 0.1


def expected_rates(values, step_min=1.0):
    return [abs(b - a) / step_min for a, b in zip(values, values[1:], strict=False)]


def test_a_rate_rule_fires_and_resolves_through_the_real_engine(tmp_path):
    pack = RulePack.load([rule_file(tmp_path)])  # with the built-in pack: they coexist
    assert pack.get("bridge.deflection_rate").type == "rate" and len(pack) == len(RulePack.load()) + 1
    h = Harness(tmp_path / "state.db", pack=pack)
    h.feed(series("bridge-0001", "bridge", "deflection_mm", T0, M, VALUES))
    [a] = h.alerts("bridge.deflection_rate")
    rates = expected_rates(VALUES)  # independent: 3.0 at the 4th reading, within 2.0 at the 6th
    fire = next(k for k, r in enumerate(rates) if r > 2.0) + 1
    clear = next(k for k, r in enumerate(rates) if k + 1 > fire and r <= 2.0) + 1
    assert (a.state, a.severity, a.value, a.threshold) == ("resolved", "major", rates[fire - 1], 2.0)
    assert (a.fired_ms, a.ended_ms) == (T0 + fire * M, T0 + clear * M)
    assert a.summary == "bridge-0001: deflection changing 3.00 mm/min (limit 2)"
    assert [(n.status, n.alert["rule"]) for n in h.notices] == [
        ("firing", "bridge.deflection_rate"), ("resolved", "bridge.deflection_rate")]


def test_one_reading_at_a_time_and_a_restart_give_the_same_alert(tmp_path):
    pack = RulePack.load([rule_file(tmp_path)], builtin=False)
    whole = Harness(tmp_path / "whole.db", pack=pack)
    whole.feed(series("bridge-0001", "bridge", "deflection_mm", T0, M, VALUES))
    h = Harness(tmp_path / "split.db", pack=pack)
    rows = series("bridge-0001", "bridge", "deflection_mm", T0, M, VALUES)
    h.feed_each(rows[:3])
    h = h.reopen()  # the previous reading (11.0) comes back from the state DB
    h.feed_each(rows[3:])
    h.feed(rows)  # a redelivery changes nothing
    sig = [(a.state, a.value, a.fired_ms, a.ended_ms) for a in h.alerts()]
    assert sig == [(a.state, a.value, a.fired_ms, a.ended_ms) for a in whole.alerts()]
    assert sig == [("resolved", 3.0, T0 + 3 * M, T0 + 5 * M)]


def test_per_device_limit_and_rules_check(tmp_path):
    f = rule_file(tmp_path, "{attr: max_deflection_rate, default: 2.0}")
    [rule] = check_file(f)
    assert rule.describe_condition() == ("|change of deflection_mm| per minute > "
                                         "attrs.max_deflection_rate (default 2)")
    h = Harness(pack=RulePack.load([f], builtin=False), attrs={"bridge-0002": {"max_deflection_rate": 5.0}})
    h.feed(series("bridge-0001", "bridge", "deflection_mm", T0, M, VALUES)
           + series("bridge-0002", "bridge", "deflection_mm", T0, M, VALUES))
    assert [a.device_id for a in h.alerts()] == ["bridge-0001"]  # 3.5/min is within bridge-0002's 5


@pytest.mark.parametrize("limit,field,words", [
    ("fast", "max_change_per_min", "expected a number"),
    ("{attr: x}", "max_change_per_min", "needs a 'default'"),
])
def test_its_errors_name_the_rule_and_key(tmp_path, limit, field, words):
    f = rule_file(tmp_path, limit)
    with pytest.raises(RuleError) as e:
        RulePack.load([f])
    assert (e.value.file, e.value.rule, e.value.field) == (str(f), "bridge.deflection_rate", field)
    assert words in str(e.value)


def test_keys_of_other_types_and_unknown_types_are_refused(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text(RULE.format(limit="2.0") + "    for: 5m\n", encoding="utf-8")
    with pytest.raises(RuleError, match="a rate rule does not take 'for'"):
        RulePack.load([f])
    unregister("rate")
    assert "rate" not in RULE_TYPES
    with pytest.raises(RuleError, match="expected one of metric, event, absence, got 'rate'") as e:
        RulePack.load([rule_file(tmp_path)])
    assert e.value.field == "type"
