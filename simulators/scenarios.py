"""Named fault scenarios: what they do, when, to which devices, and which rules they target.

A scenario is given as a spec string ``NAME[@WHEN][,key=value...]``:

- ``WHEN`` is an offset from the simulation start (``30m``, ``2h``), a local time of day
  (``22:30``: its next occurrence at or after the start, Asia/Shanghai) or an absolute time
  (``2026-11-29T22:30+08:00``); without it, the scenario's own default (``default_at``).
- ``for=DURATION`` how long the fault lasts (default per scenario),
- ``devices=N`` how many devices (for bridge scenarios: bridges) it hits (default 1),
- ``p=P`` instead of one fixed time: every device of the kind suffers the fault with
  probability P on each simulated day, at the scenario's time of day if it has one, else at a
  uniformly random time (``WHEN`` is then ignored),
- ``kind=K`` (``device-offline`` only) the kind of the devices that go offline,
- any other key is a parameter of the fault, e.g. ``gross_t=70`` (overloaded-truck),
  ``rate=0.03`` (gas-leak, m³/h), ``tilt_deg=0.3``, ``factor=1.6`` (strain-overload), ``pm10_ugm3=400``,
  ``lamps=20``, ``flow_m3h=9``, ``extra_db=12`` (night-construction: machines this much louder than
  by day, default 4), ``drains=4`` (toilet-ventilation-failure: drains give off this many times their
  usual gas, default 1).

Scenarios compose: give several, or the same one several times. Devices are chosen with the
simulation's seed, so a spec list and a seed always hit the same devices at the same times.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from devices.catalogue import CATALOGUE

from .errors import ScenarioError
from .timeutil import DAY_MS, local_midnight, parse_duration_ms, parse_time_ms


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named fault: the model ``effect`` it injects into devices of ``kind``."""

    name: str
    kind: str  # "" for scenarios spanning kinds
    effect: str
    rules: tuple[str, ...]  # default rules of catalogue.md it is designed to trigger
    default_at: str  # offset ("5m") or local time of day ("22:30")
    duration: str
    description: str
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


def _s(name, kind, effect, rules, at, dur, desc, **params) -> Scenario:
    return Scenario(name, kind, effect, tuple(rules), at, dur, desc, MappingProxyType(params))


SCENARIOS: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in (
    _s("overloaded-truck", "bridge", "overloaded_truck", ["bridge.overload"], "5m", "1m",
       "a 62 t six-axle truck crosses the bridge (limit 49 t, GB 1589-2016)", gross_t=62.0, axles=6),
    _s("pier-tilt", "bridge", "pier_tilt", ["bridge.tilt"], "5m", "2h",
       "a single-column pier tilts by 0.25° over ten minutes and stays tilted", tilt_deg=0.25),
    _s("strain-overload", "bridge", "strain_overload", ["bridge.strain"], "5m", "5m",
       "a jam of heavy vehicles adds 1.4 × the design strain (attrs.design_strain_ue, default 300 µε) "
       "on the bridge's strain gauges", factor=1.4),
    _s("gas-leak", "gas_meter", "leak", ["gas.micro_flow", "gas.continuous_flow"], "0s", "26h",
       "a household away from home with a leak: a steady 0.02 m³/h micro-flow for 26 hours",
       rate=0.02),
    _s("gas-over-flow", "gas_meter", "over_flow", ["gas.over_flow"], "5m", "6h",
       "a burst hose: 8.6 m³/h (over 1.2 × Qmax 6) reported every 30 s, valve shut after 3 min, "
       "reopened by service when the fault ends", flow_m3h=8.6),
    _s("meter-tamper", "gas_meter", "tamper", ["gas.tamper"], "5m", "6h",
       "a strong magnet on the meter: magnet_tamper event, valve shut until service"),
    _s("purifier-off", "fume", "purifier_off", ["fume.purifier_off", "fume.concentration"], "11:30", "90m",
       "the restaurant runs its fan with the purifier switched off through the lunch peak"),
    _s("night-construction", "noise", "night_construction", ["noise.night_laeq", "noise.night_lmax"],
       "22:30", "3h", "a site keeps its machines running at night"),
    _s("dust-storm", "noise", "dust_storm", ["dust.pm10"], "10:00", "2h",
       "earthworks without dust suppression: PM10 climbs by 280 µg/m³", pm10_ugm3=280.0),
    _s("toilet-ventilation-failure", "toilet", "ventilation_failure", ["toilet.nh3", "toilet.h2s"],
       "08:00", "3h", "the toilet's exhaust fans fail in the morning rush"),
    _s("cabinet-door-open", "lighting", "door_open", ["lighting.door_open"], "01:00", "15m",
       "a lighting cabinet's door is opened at night (cable theft)"),
    _s("lamp-failures", "lighting", "lamp_failures", ["lighting.lamp_fault"], "20:00", "12h",
       "a cable fault takes out 12 lamps of a cabinet for the night", lamps=12),
    _s("device-offline", "", "offline", ["bridge.offline", "gas.offline", "fume.offline", "noise.offline",
                                         "toilet.offline", "lighting.offline"], "5m", "",
       "one device of each kind (or of kind=K) goes silent, with a retained 'offline' status, for "
       "twice its kind's offline threshold"),
    _s("bad-payloads", "", "bad_payloads", [], "1m", "0s",
       "one message of every rejection class of device-protocol.md 'Bad input'"),
)})


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A parsed scenario spec (see the module doc)."""

    scenario: Scenario
    at: str | None
    duration_ms: int | None
    devices: int
    p: float | None
    kind: str | None
    params: Mapping[str, Any]
    text: str

    def resolve_at(self, start_ms: int) -> int:
        """The start time of a fixed-time scenario for a simulation starting at ``start_ms``."""
        return resolve_when(self.at or self.scenario.default_at, start_ms)

    def resolve_duration(self, kind: str) -> int:
        if self.duration_ms is not None:
            return self.duration_ms
        if self.scenario.effect == "offline":
            return int(2 * CATALOGUE[kind].offline_after_s * 1000)
        return parse_duration_ms(self.scenario.duration)

    def time_of_day_ms(self) -> int | None:
        """For probabilistic runs: the scenario's local time of day, if it has one."""
        m = _TOD_RE.fullmatch(self.scenario.default_at)
        return (int(m.group(1)) * 60 + int(m.group(2))) * 60_000 if m else None


_TOD_RE = re.compile(r"(\d{1,2}):(\d{2})")


def resolve_when(when: str, start_ms: int) -> int:
    m = _TOD_RE.fullmatch(when)
    if m:
        hh, mm = int(m.group(1)), int(m.group(2))
        if hh > 23 or mm > 59:
            raise ScenarioError(f"bad time of day {when!r}")
        t = local_midnight(start_ms) + (hh * 60 + mm) * 60_000
        return t if t >= start_ms else t + DAY_MS
    try:
        return start_ms + parse_duration_ms(when)
    except ValueError:
        pass
    try:
        return parse_time_ms(when)
    except ValueError:
        raise ScenarioError(f"bad scenario time {when!r}: use an offset (30m, 2h), a local time of day "
                            "(22:30) or an ISO time (2026-11-29T22:30+08:00)") from None


def parse_spec(text: str) -> ScenarioSpec:
    """Parse ``NAME[@WHEN][,key=value...]``; ScenarioError naming the problem."""
    head, *opts = [p.strip() for p in text.split(",")]
    name, _, at = head.partition("@")
    name = name.strip()
    if name not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    sc = SCENARIOS[name]
    duration = None
    devices = 1
    p = None
    kind = None
    params: dict[str, Any] = dict(sc.params)
    for opt in opts:
        key, eq, val = opt.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or not key:
            raise ScenarioError(f"scenario {text!r}: option {opt!r} is not key=value")
        try:
            if key == "for":
                duration = parse_duration_ms(val)
            elif key == "devices":
                devices = int(val)
                if devices < 1:
                    raise ValueError
            elif key == "p":
                p = float(val)
                if not 0.0 < p <= 1.0:
                    raise ValueError
            elif key == "kind":
                if sc.effect != "offline":
                    raise ScenarioError(f"scenario {text!r}: kind= applies to device-offline only")
                if val not in CATALOGUE:
                    raise ScenarioError(f"scenario {text!r}: unknown kind {val!r}")
                kind = val
            else:
                params[key] = float(val)
        except ValueError:
            raise ScenarioError(f"scenario {text!r}: bad value for {key!r}: {val!r}") from None
    if at:
        resolve_when(at, 0)  # validate now, not mid-run
    return ScenarioSpec(sc, at or None, duration, devices, p, kind, MappingProxyType(params), text)


# --- bad payloads -----------------------------------------------------------------------------

BAD_PAYLOAD_CLASSES: tuple[str, ...] = (
    "bad_topic", "unknown_kind", "unregistered_device", "wrong_kind", "not_json", "not_object",
    "unknown_metric", "non_finite", "out_of_range", "missing_ts", "unparseable_ts", "future_ts",
    "past_ts", "series_lengths_differ", "too_large",
)

UNREGISTERED_ID = "SIM-UNREGISTERED-0001"
MAX_PAYLOAD = 256 * 1024


def _valid_value(kind: str, metric: str) -> float:
    m = CATALOGUE[kind].metrics[metric]
    if m.boolean:
        return 1
    if m.lo <= 0 <= m.hi and m.lo < 0:
        return 1.5
    return m.lo + 1.5 if m.lo + 1.5 <= m.hi else (m.lo + m.hi) / 2


def bad_payloads(device_id: str, kind: str, other_kind_device: tuple[str, str] | None,
                 t: int) -> list[tuple[str, str, bytes]]:
    """One ``(class, topic, payload)`` per rejection class of device-protocol.md "Bad input",
    for a registered device ``device_id`` of ``kind`` at simulated time ``t``.

    ``other_kind_device`` is another registered ``(device_id, kind)`` with a different kind;
    without one, the "wrong kind" case publishes ``device_id`` under a kind other than its own.
    Every payload is wrong for exactly the one reason its class names.
    """
    from .jsonfmt import dumps

    metrics = list(CATALOGUE[kind].metrics)
    m0 = metrics[0]
    v0 = _valid_value(kind, m0)
    tel = f"city/{kind}/{device_id}/telemetry"

    def ok(ts: Any = t, **extra: Any) -> bytes:
        return dumps({"ts": ts, "metrics": {m0: v0}, **extra})

    if other_kind_device:  # a registered device of another kind, published under this kind
        oid, _ = other_kind_device
        wrong_topic, wrong_payload = f"city/{kind}/{oid}/telemetry", ok()
    else:  # this device, published under another kind, with a payload valid for that kind
        okind = next(k for k in CATALOGUE if k != kind)
        om = next(iter(CATALOGUE[okind].metrics))
        wrong_topic = f"city/{okind}/{device_id}/telemetry"
        wrong_payload = dumps({"ts": t, "metrics": {om: _valid_value(okind, om)}})
    lo_hi = CATALOGUE[kind].metrics[m0]
    out_of_range = lo_hi.hi + max(1.0, abs(lo_hi.hi))
    m1 = metrics[1]  # every kind has several metrics
    series = {m0: [v0, v0, v0], m1: [_valid_value(kind, m1)] * 2}
    # a batch of valid readings larger than the limit
    n = MAX_PAYLOAD // len(dumps({"ts": t, "metrics": {m0: v0}})) + 64
    big = dumps({"readings": [{"ts": t - i * 1000, "metrics": {m0: v0}} for i in range(n)]})
    cases = [
        ("bad_topic", f"city/{kind}/{device_id}", ok()),
        ("unknown_kind", f"city/spaceship/{device_id}/telemetry", ok()),
        ("unregistered_device", f"city/{kind}/{UNREGISTERED_ID}/telemetry", ok()),
        ("wrong_kind", wrong_topic, wrong_payload),
        ("not_json", tel, b'{"ts": %d, "metrics": {"' % t + m0.encode() + b'": 1.5,'),
        ("not_object", tel, b"[%d, 1.5]" % t),
        ("unknown_metric", tel, dumps({"ts": t, "metrics": {"colour_nm": 550}})),
        ("non_finite", tel, b'{"ts":%d,"metrics":{"%s":1e999}}' % (t, m0.encode())),
        ("out_of_range", tel, dumps({"ts": t, "metrics": {m0: out_of_range}})),
        ("missing_ts", tel, dumps({"metrics": {m0: v0}})),
        ("unparseable_ts", tel, ok(ts="yesterday at noon")),
        ("future_ts", tel, ok(ts=t + 10 * 60_000)),
        ("past_ts", tel, ok(ts=t - 31 * DAY_MS)),
        ("series_lengths_differ", tel, dumps({"ts": t, "interval_ms": 10, "series": series})),
        ("too_large", tel, big),
    ]
    assert [c[0] for c in cases] == list(BAD_PAYLOAD_CLASSES)
    return cases

