"""The engine reads time only from the clock it is given (``RuleEngine(clock=...)``): a test
drives it, no sleeps. The one thing it times is how often it asks whether devices' attrs
changed (``attrs_recheck_s``); alerts themselves follow event time."""

from __future__ import annotations

from alerts.engine import RuleEngine
from alerts.store import AlertState
from devices.sqlite import connect

from .helpers import PACK, M, at, batch, series

T0 = at("2026-12-01 10:00:00")


def test_attrs_are_rechecked_when_the_given_clock_says_so():
    now = [100.0]
    attrs = {"bridge-0001": {}}
    state = AlertState(connect(":memory:"))
    engine = RuleEngine(PACK, state, attrs=lambda kind: attrs, attrs_recheck_s=10.0, clock=lambda: now[0])

    def weigh(minute: int, tonnes: float) -> list:
        engine.process(batch(series("bridge-0001", "bridge", "gross_t", T0 + minute * M, M, [tonnes])))
        return [(a.rule, a.fired_ms, a.threshold) for a in state.list_alerts("firing", 10)[0]]

    assert weigh(0, 40.0) == []  # under the default posted limit, 49 t
    attrs = {"bridge-0001": {"rated_load_t": 30}}  # a new object: the registry changed
    now[0] += 9.999
    assert weigh(1, 40.0) == []  # not rechecked yet: still 49 t
    now[0] += 0.001
    assert weigh(2, 40.0) == [("bridge.overload", T0 + 2 * M, 30.0)]  # 10 s on the engine's clock
