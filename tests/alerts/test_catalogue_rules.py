"""Every default rule of catalogue.md, driven by realistic reading sequences in event time.

For each rule: it fires with the right severity and summary; it does not fire below the
threshold, for a shorter duration, or outside its window; it clears only through its clear
condition; per-device attrs change the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ingest.model import Event

from .helpers import H, Harness, M, S, at, series

CATALOGUE_IDS = [
    "bridge.strain", "bridge.deflection", "bridge.tilt", "bridge.crack", "bridge.overload",
    "bridge.offline", "gas.over_flow", "gas.continuous_flow", "gas.micro_flow",
    "gas.volume_backwards", "gas.low_battery", "gas.tamper", "gas.offline", "fume.concentration",
    "fume.purifier_off", "fume.purifier_dirty", "fume.offline", "noise.day_laeq",
    "noise.night_laeq", "noise.night_lmax", "dust.pm10", "noise.offline", "toilet.nh3",
    "toilet.h2s", "toilet.consumables", "toilet.offline", "lighting.voltage", "lighting.leakage",
    "lighting.door_open", "lighting.lamp_fault", "lighting.day_burning",
    "lighting.power_factor", "lighting.offline",
]


def test_builtin_pack_has_every_catalogue_rule_verbatim():
    h = Harness()
    assert [r.id for r in h.pack.rules] == CATALOGUE_IDS


@dataclass
class Case:
    """A threshold rule: ``bad`` readings every ``step`` for ``hold`` fire it at ``severity``."""

    rule: str
    kind: str
    metric: str
    bad: float
    ok: float
    step: int
    hold: int
    severity: str
    summary: str
    start: str = "2026-11-29 10:00:00"
    extra: dict = field(default_factory=dict)  # other metrics at the same ts
    attrs: dict | None = None  # attrs that make `bad` harmless ...
    attrs_bad: float | None = None  # ... and a value that fires with those attrs
    below: float | None = None  # a value just on the safe side of the threshold


CASES = [
    Case("bridge.strain", "bridge", "strain_ue", 250, 100, 1 * S, 10 * S, "warning",
         "Bridge strain 250 µε at 0.8× the design strain 300 µε for 10s (est.)",
         attrs={"design_strain_ue": 450}, attrs_bad=370, below=239),
    Case("bridge.deflection", "bridge", "deflection_mm", 42, 10, 1 * S, 10 * S, "warning",
         "Bridge deflection 42.0 mm at 0.8× the design deflection 50 mm for 10s (est.)",
         attrs={"design_deflection_mm": 80}, attrs_bad=65, below=39.9),
    Case("bridge.tilt", "bridge", "tilt_deg", 0.06, 0.01, 1 * S, 0, "warning",
         "Bridge tilt 0.060° off its baseline 0° (limit 0.05°, est.)",
         attrs={"baseline_tilt_deg": 0.04}, attrs_bad=0.1, below=0.049),
    Case("bridge.crack", "bridge", "crack_mm", 0.25, 0.1, 600 * S, 0, "major",
         "Bridge crack 0.25 mm wider than the 0.20 mm limit (CJJ 99-2017)",
         attrs={"crack_limit_mm": 0.3}, attrs_bad=0.31, below=0.2),
    Case("bridge.overload", "bridge", "gross_t", 55.2, 30, 7 * S, 0, "critical",
         "Overloaded vehicle 55.2 t on a bridge rated 49 t (GB 1589-2016)",
         attrs={"rated_load_t": 60}, attrs_bad=61, below=49),
    Case("gas.over_flow", "gas_meter", "flow_m3h", 7.5, 1.0, 30 * S, 60 * S, "critical",
         "Gas flow 7.50 m³/h over 1.2× Qmax (7.20 m³/h) for 1m",
         attrs={"qmax_m3h": 10}, attrs_bad=12.5, below=7.2),
    Case("gas.continuous_flow", "gas_meter", "flow_m3h", 0.3, 0.0, 1 * H, 4 * H, "major",
         "Gas flowing continuously for 4h (0.30 m³/h now): check for a leak or an open burner"),
    Case("gas.micro_flow", "gas_meter", "flow_m3h", 0.02, 0.0, 1 * H, 24 * H, "warning",
         "Micro gas flow 0.020 m³/h below Qmin 0.04 m³/h for 1d: suspected leak",
         attrs={"qmin_m3h": 0.016}, attrs_bad=0.01, below=0.04),
    Case("gas.low_battery", "gas_meter", "battery_v", 3.2, 3.6, 1 * H, 0, "warning",
         "Gas meter battery 3.20 V below 3.3 V (est.)",
         attrs={"battery_warn_v": 3.0}, attrs_bad=2.9, below=3.3),
    Case("fume.concentration", "fume", "fume_mgm3", 2.6, 1.2, 3 * M, 6 * M, "warning",
         "Cooking fume 2.60 mg/m³ over the 2 mg/m³ limit for 9m (GB 18483-2001)",
         attrs={"limit_mgm3": 3.0}, attrs_bad=3.1, below=2.0),
    Case("fume.purifier_off", "fume", "purifier_on", 0, 1, 3 * M, 6 * M, "major",
         "Fume purifier off while the fan runs, for 6m", extra={"fan_on": 1}),
    Case("fume.purifier_dirty", "fume", "purifier_current_a", 0.2, 0.45, 3 * M, 30 * M, "info",
         "Purifier current 0.20 A below half the rated 0.5 A for 30m: clean the plates (est.)",
         extra={"purifier_on": 1}, attrs={"rated_current_a": 0.3}, attrs_bad=0.1, below=0.25),
    Case("noise.day_laeq", "noise", "laeq_db", 75.4, 62, 1 * M, 5 * M, "warning",
         "Day construction noise 75.4 dB(A) over the 70 dB(A) limit (GB 12523-2011)", below=70),
    Case("noise.night_laeq", "noise", "laeq_db", 61.3, 50, 1 * M, 5 * M, "major",
         "Night construction noise 61.3 dB(A) over the 55 dB(A) limit (GB 12523-2011)",
         start="2026-11-29 23:14:05", below=55),
    Case("noise.night_lmax", "noise", "lmax_db", 78, 60, 1 * M, 0, "warning",
         "Night construction noise peak Lmax 78.0 dB(A) over 70 dB(A) (GB 12523-2011)",
         start="2026-11-30 02:00:00", below=70),
    Case("toilet.nh3", "toilet", "nh3_mgm3", 1.4, 0.5, 1 * M, 10 * M, "warning",
         "Toilet ammonia 1.40 mg/m³ over the 1 mg/m³ limit for 10m (GB/T 17217-1998)",
         attrs={"class": "III"}, attrs_bad=3.2, below=1.0),
    Case("toilet.h2s", "toilet", "h2s_mgm3", 0.02, 0.005, 1 * M, 10 * M, "warning",
         "Toilet H2S 0.020 mg/m³ over the 0.01 mg/m³ limit for 10m (GB/T 17217-1998)", below=0.01),
    Case("toilet.consumables", "toilet", "consumables_pct", 15, 80, 1 * M, 0, "info",
         "Toilet consumables at 15 %, below 20 %: refill", below=20),
    Case("lighting.voltage", "lighting", "voltage_v", 192.5, 221, 1 * M, 5 * M, "warning",
         "Lighting cabinet voltage 192.5 V outside 198..235 V for 5m (GB/T 12325)", below=198),
    Case("lighting.leakage", "lighting", "leakage_ma", 45, 5, 1 * M, 0, "critical",
         "Lighting cabinet leakage current 45 mA over 30 mA: electric-shock risk", below=30),
    Case("lighting.door_open", "lighting", "door_open", 1, 0, 1 * M, 1 * M, "major",
         "Lighting cabinet door open for 1m: intrusion or cable theft?"),
    Case("lighting.lamp_fault", "lighting", "lamps_failed", 3, 0, 1 * M, 0, "warning",
         "3 failed lamp(s) on the lighting cabinet"),
    Case("lighting.day_burning", "lighting", "lamp_on", 1, 0, 1 * M, 30 * M, "info",
         "Street lamps burning in daylight for 30m: energy waste"),
    Case("lighting.power_factor", "lighting", "power_factor", 0.78, 0.92, 1 * M, 30 * M, "info",
         "Lighting power factor 0.78 below 0.85 for 30m (CJJ 45)", start="2026-11-29 19:00:00",
         extra={"lamp_on": 1}, below=0.85),
]


def _rows(c: Case, device: str, value: float, n: int, start: int | None = None):
    t0 = at(c.start) if start is None else start
    rows = series(device, c.kind, c.metric, t0, c.step, [value] * n)
    for metric, v in c.extra.items():
        rows += series(device, c.kind, metric, t0, c.step, [v] * n)
    return rows


def _n(c: Case) -> int:
    """Readings needed to cover ``hold``."""
    if c.rule == "fume.concentration":
        return 3  # three reports
    return c.hold // c.step + 1


def _firing(h: Harness, rule: str):
    return [a for a in h.alerts(rule) if a.state in ("firing", "acknowledged", "resolved")]


@pytest.mark.parametrize("c", CASES, ids=[c.rule for c in CASES])
def test_fires_with_severity_and_summary(c: Case):
    h = Harness()
    dev = f"{c.kind}-0001"
    h.feed(_rows(c, dev, c.bad, _n(c)))
    fired = _firing(h, c.rule)
    assert len(fired) == 1, [(a.rule, a.state) for a in h.alerts()]
    a = fired[0]
    assert (a.state, a.severity, a.device_id) == ("firing", c.severity, dev)
    assert a.summary == c.summary
    assert a.started_ms == at(c.start)
    assert a.fired_ms == at(c.start) + (_n(c) - 1) * c.step
    # the firing notice carries webhooks.md fields
    n = [x for x in h.notices if x.status == "firing" and x.alert["rule"] == c.rule][0]
    assert n.alert["id"] == a.id and n.alert["id"].startswith("a-")
    assert n.alert["started_at"].endswith("+08:00")
    assert n.device["district"] == "江汉区" and n.device["responsible_unit"]


@pytest.mark.parametrize("c", [c for c in CASES if c.hold], ids=[c.rule for c in CASES if c.hold])
def test_not_for_a_shorter_duration(c: Case):
    h = Harness()
    dev = f"{c.kind}-0001"
    rows = _rows(c, dev, c.bad, _n(c) - 1)
    rows += _rows(c, dev, c.ok, 3, start=at(c.start) + (_n(c) - 1) * c.step)
    h.feed(rows)
    assert _firing(h, c.rule) == []
    assert [x for x in h.notices if x.alert["rule"] == c.rule] == []


@pytest.mark.parametrize("c", CASES, ids=[c.rule for c in CASES])
def test_not_below_the_threshold(c: Case):
    h = Harness()
    value = c.below if c.below is not None else c.ok
    h.feed(_rows(c, f"{c.kind}-0001", value, _n(c) + 5))
    assert h.alerts(c.rule) == []


@pytest.mark.parametrize("c", CASES, ids=[c.rule for c in CASES])
def test_clears_through_its_clear_condition(c: Case):
    h = Harness()
    dev = f"{c.kind}-0001"
    n = _n(c)
    h.feed(_rows(c, dev, c.bad, n))
    assert _firing(h, c.rule)[0].state == "firing"
    t = at(c.start) + n * c.step
    h.feed(_rows(c, dev, c.ok, 1, start=t))
    a = h.alerts(c.rule)[-1]
    assert a.state == "resolved" and a.ended_ms == t
    assert [x.status for x in h.notices if x.alert["rule"] == c.rule] == ["firing", "resolved"]


@pytest.mark.parametrize("c", [c for c in CASES if c.attrs], ids=[c.rule for c in CASES if c.attrs])
def test_per_device_attrs_change_the_threshold(c: Case):
    h = Harness(attrs={f"{c.kind}-0002": c.attrs})
    h.feed(_rows(c, f"{c.kind}-0002", c.bad, _n(c)) + _rows(c, f"{c.kind}-0001", c.bad, _n(c)))
    assert [a.device_id for a in _firing(h, c.rule)] == [f"{c.kind}-0001"]
    h.feed(_rows(c, f"{c.kind}-0002", c.attrs_bad, _n(c), start=at(c.start) + H))
    assert f"{c.kind}-0002" in [a.device_id for a in _firing(h, c.rule)]


def test_attrs_changed_at_runtime_apply_to_later_readings():
    h = Harness()
    t0 = at("2026-11-29 10:00:00")
    h.feed(series("bridge-0001", "bridge", "crack_mm", t0, 600 * S, [0.15]))
    assert h.alerts("bridge.crack") == []
    h.set_attrs("bridge-0001", {"crack_limit_mm": 0.10})  # prestressed member
    h.feed(series("bridge-0001", "bridge", "crack_mm", t0 + 600 * S, 600 * S, [0.15]))
    a = h.alerts("bridge.crack")[0]
    assert a.threshold == pytest.approx(0.10) and a.summary.endswith("0.10 mm limit (CJJ 99-2017)")


# --- rules with more than a threshold ------------------------------------------------------------

def test_bridge_strain_rising_severity_upgrades_the_same_alert():
    h = Harness()
    t0 = at("2026-11-29 10:00:00")
    vals = [250] * 11 + [310] * 11 + [370] * 11  # warning at 10 s, major at 20 s, critical at 30 s
    h.feed(series("bridge-0001", "bridge", "strain_ue", t0, S, vals))
    [a] = h.alerts("bridge.strain")
    assert a.severity == "critical" and a.threshold == pytest.approx(360)
    assert [(x.change, x.severity) for x in a.history] == [
        ("pending", "warning"), ("firing", "warning"), ("escalated", "major"), ("escalated", "critical")]
    assert [n.status for n in h.notices] == ["firing", "escalated", "escalated"]
    assert [n.previous_severity for n in h.notices] == [None, "warning", "major"]  # webhooks.md's reason
    assert len({n.alert["id"] for n in h.notices}) == 1
    # falling back to warning level does not downgrade or resolve; below 0.8x resolves
    h.feed(series("bridge-0001", "bridge", "strain_ue", t0 + 40 * S, S, [250, 100]))
    a = h.state.get(a.id)
    assert a.state == "resolved" and a.severity == "critical" and a.ended_ms == t0 + 41 * S


def test_bridge_tilt_levels_from_the_baseline():
    h = Harness(attrs={"bridge-0002": {"baseline_tilt_deg": 0.5}})
    t0 = at("2026-11-29 10:00:00")
    h.feed(series("bridge-0002", "bridge", "tilt_deg", t0, S, [0.52, 0.57, 0.62, 0.75]))
    [a] = h.alerts("bridge.tilt")
    assert a.severity == "critical" and [x.severity for x in a.history] == ["warning", "major", "critical"]
    assert a.summary == "Bridge tilt 0.250° off its baseline 0.5° (limit 0.2°, est.)"
    h.feed(series("bridge-0002", "bridge", "tilt_deg", t0 + 10 * S, S, [0.46]))  # 0.04 off: clear
    assert h.state.get(a.id).state == "resolved"


def test_overload_each_vehicle():
    h = Harness()
    t0 = at("2026-11-29 10:00:00")
    h.feed(series("bridge-0003", "bridge", "gross_t", t0, 5 * S, [30, 52, 28, 61, 20]))
    got = h.alerts("bridge.overload")
    assert [(a.value, a.state) for a in got] == [(52.0, "resolved"), (61.0, "resolved")]


def test_gas_continuous_flow_breaks_on_zero():
    h = Harness()
    t0 = at("2026-11-29 00:00:00")
    h.feed(series("gas_meter-0001", "gas_meter", "flow_m3h", t0, H, [0.3, 0.3, 0.3, 0, 0.3, 0.3, 0.3, 0.3]))
    assert _firing(h, "gas.continuous_flow") == []
    h.feed(series("gas_meter-0001", "gas_meter", "flow_m3h", t0 + 8 * H, H, [0.3]))
    assert _firing(h, "gas.continuous_flow")[0].started_ms == t0 + 4 * H


def test_gas_micro_flow_not_at_zero_nor_above_qmin():
    h = Harness()
    t0 = at("2026-11-29 00:00:00")
    vals = [0.02] * 12 + [0.0] + [0.02] * 12  # a zero hour breaks the run
    h.feed(series("gas_meter-0001", "gas_meter", "flow_m3h", t0, H, vals))
    assert _firing(h, "gas.micro_flow") == []


def test_gas_volume_backwards_against_the_previous_reading_across_batches():
    h = Harness()
    t0 = at("2026-11-29 00:00:00")
    h.feed(series("gas_meter-0001", "gas_meter", "volume_m3", t0, H, [100.0, 100.4, 100.9]))
    assert h.alerts("gas.volume_backwards") == []
    h.feed(series("gas_meter-0001", "gas_meter", "volume_m3", t0 + 3 * H, H, [97.5]))
    [a] = h.alerts("gas.volume_backwards")
    assert a.state == "firing" and a.severity == "major" and a.value == pytest.approx(-3.4)
    assert a.summary == ("Gas meter volume went backwards (-3.400 m³ since the previous reading):"
                         " tamper or meter fault")
    h.feed(series("gas_meter-0001", "gas_meter", "volume_m3", t0 + 4 * H, H, [97.5]))
    assert h.state.get(a.id).state == "resolved"


def test_gas_tamper_event_fires_and_clears_after_a_day():
    h = Harness()
    t0 = at("2026-11-29 08:00:00")
    h.feed([], [Event("gas_meter-0001", "gas_meter", t0, "valve_closed")])
    assert h.alerts("gas.tamper") == []
    h.feed([], [Event("gas_meter-0001", "gas_meter", t0 + M, "magnet_tamper"),
                Event("gas_meter-0001", "gas_meter", t0 + 2 * M, "magnet_tamper")])
    [a] = h.alerts("gas.tamper")
    assert (a.state, a.severity) == ("firing", "critical")
    assert a.summary == "Gas meter magnet tamper: the valve was shut off"
    h.engine.tick(t0 + 23 * H, {})
    assert h.state.get(a.id).state == "firing"
    h.engine.tick(t0 + 2 * M + 24 * H, {})
    a = h.state.get(a.id)
    assert a.state == "resolved" and a.ended_ms == t0 + 2 * M + 24 * H


@pytest.mark.parametrize("rule,kind,silence", [
    ("bridge.offline", "bridge", 5 * M), ("gas.offline", "gas_meter", 3 * 24 * H),
    ("fume.offline", "fume", 15 * M), ("noise.offline", "noise", 10 * M),
    ("toilet.offline", "toilet", 30 * M), ("lighting.offline", "lighting", 15 * M),
])
def test_offline_rules(rule, kind, silence):
    h = Harness()
    seen = at("2026-11-29 10:00:00")
    dev = f"{kind}-0001"
    assert h.engine.tick(seen + silence - 1, {dev: seen, f"{kind}-0009": None}) == []
    h.engine.tick(seen + silence + 5 * M, {dev: seen, f"{kind}-0009": None})
    [a] = h.alerts(rule)
    assert (a.state, a.severity, a.started_ms) == ("firing", "warning", seen + silence)
    assert (a.value, a.threshold) == ((silence + 5 * M) / 1000, silence / 1000)  # seconds
    assert "silent for" in a.summary
    h.engine.tick(seen + silence + 10 * M, {dev: seen})  # still silent: no second alert
    assert len(h.alerts(rule)) == 1
    back = seen + silence + 20 * M
    h.engine.tick(back + S, {dev: back})
    a = h.state.get(a.id)
    assert a.state == "resolved" and a.ended_ms == back
    assert [n.status for n in h.notices] == ["firing", "resolved"]


def test_offline_after_from_attrs():
    """bridge.offline: a sensor's attrs.offline_after_s replaces the 5 minutes (slow gauges)."""
    h = Harness(attrs={"bridge-0002": {"sensor": "crack", "offline_after_s": 1800}})
    seen = at("2026-11-29 10:00:00")
    both = {"bridge-0001": seen, "bridge-0002": seen}
    h.engine.tick(seen + 10 * M, both)
    assert [a.device_id for a in h.alerts("bridge.offline")] == ["bridge-0001"]
    h.engine.tick(seen + 30 * M - 1, both)
    assert len(h.alerts("bridge.offline")) == 1
    h.engine.tick(seen + 31 * M, both)
    slow = [a for a in h.alerts("bridge.offline") if a.device_id == "bridge-0002"]
    assert [(a.started_ms, a.threshold) for a in slow] == [(seen + 30 * M, 1800.0)]
    assert "offline after 30m" in slow[0].summary
    h.set_attrs("bridge-0003", {"offline_after_s": "soon"})  # unusable: the rule's own 5 minutes
    h.engine.tick(seen + 32 * M, {"bridge-0003": seen + 26 * M})
    assert [a.device_id for a in h.alerts("bridge.offline") if a.device_id == "bridge-0003"] == ["bridge-0003"]


def test_never_seen_devices_are_not_offline_alerted():
    h = Harness()
    assert h.engine.tick(at("2026-11-29 10:00:00"), {"noise-0001": None}) == []
    assert h.alerts() == []


def test_fume_concentration_needs_three_reports():
    h = Harness()
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("fume-0001", "fume", "fume_mgm3", t0, 3 * M, [2.6, 2.6, 1.0, 2.6, 2.6]))
    assert _firing(h, "fume.concentration") == []
    h.feed(series("fume-0001", "fume", "fume_mgm3", t0 + 15 * M, 3 * M, [2.6]))
    assert _firing(h, "fume.concentration")[0].started_ms == t0 + 9 * M


def test_fume_purifier_off_needs_the_fan_on():
    h = Harness()
    t0 = at("2026-11-29 12:00:00")
    rows = series("fume-0001", "fume", "purifier_on", t0, 3 * M, [0] * 4)
    rows += series("fume-0001", "fume", "fan_on", t0, 3 * M, [0] * 4)
    h.feed(rows)
    assert h.alerts("fume.purifier_off") == []


def test_fume_and_uses_the_latest_value_when_metrics_arrive_separately():
    h = Harness()
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("fume-0001", "fume", "fan_on", t0 - M, 3 * M, [1]))  # an earlier batch
    h.feed(series("fume-0001", "fume", "purifier_on", t0, 3 * M, [0, 0, 0]))
    assert _firing(h, "fume.purifier_off")[0].fired_ms == t0 + 6 * M


def test_purifier_dirty_only_while_the_purifier_is_on():
    h = Harness()
    t0 = at("2026-11-29 12:00:00")
    rows = series("fume-0001", "fume", "purifier_current_a", t0, 3 * M, [0.0] * 12)
    rows += series("fume-0001", "fume", "purifier_on", t0, 3 * M, [0] * 12)
    h.feed(rows)
    assert h.alerts("fume.purifier_dirty") == []


def test_day_laeq_not_at_night_and_night_laeq_not_by_day():
    h = Harness()
    night = at("2026-11-29 22:30:00")
    h.feed(series("noise-0001", "noise", "laeq_db", night, M, [75] * 8))
    assert h.alerts("noise.day_laeq") == []
    assert _firing(h, "noise.night_laeq")
    h2 = Harness()
    day = at("2026-11-29 15:00:00")
    h2.feed(series("noise-0001", "noise", "laeq_db", day, M, [65] * 8))
    assert h2.alerts() == []


def test_day_laeq_window_end_drops_pending_and_resolves():
    h = Harness()
    t = at("2026-11-29 21:57:00")
    h.feed(series("noise-0001", "noise", "laeq_db", t, M, [75] * 4))  # 21:57..22:00
    assert _firing(h, "noise.day_laeq") == [] and h.alerts("noise.day_laeq") == []
    t = at("2026-11-29 21:50:00")
    h.feed(series("noise-0002", "noise", "laeq_db", t, M, [75] * 12))  # fires 21:55, window ends 22:00
    a = h.alerts("noise.day_laeq")[0]
    assert a.state == "resolved" and a.ended_ms == at("2026-11-29 22:00:00")


def test_night_laeq_hysteresis_and_window_across_midnight():
    h = Harness()
    t0 = at("2026-11-29 23:57:00")  # crosses midnight while pending
    h.feed(series("noise-0001", "noise", "laeq_db", t0, M, [61.3] * 6))
    [a] = h.alerts("noise.night_laeq")
    assert a.state == "firing" and a.fired_ms == at("2026-11-30 00:02:00")
    h.feed(series("noise-0001", "noise", "laeq_db", t0 + 6 * M, M, [54.0, 53.5, 54.9]))
    assert h.state.get(a.id).state == "firing"  # below 55 but not below 53: still firing
    h.feed(series("noise-0001", "noise", "laeq_db", t0 + 9 * M, M, [52.9]))
    assert h.state.get(a.id).state == "resolved"


def test_night_laeq_resolves_when_the_night_window_ends():
    h = Harness()
    t0 = at("2026-11-30 05:50:00")
    h.feed(series("noise-0001", "noise", "laeq_db", t0, M, [60] * 15))
    a = h.alerts("noise.night_laeq")[0]
    assert a.state == "resolved" and a.ended_ms == at("2026-11-30 06:00:00")


def test_night_lmax_not_by_day():
    h = Harness()
    h.feed(series("noise-0001", "noise", "lmax_db", at("2026-11-29 12:00:00"), M, [90] * 3))
    assert h.alerts() == []


def test_dust_pm10_hourly_mean_levels():
    h = Harness()
    t0 = at("2026-11-29 08:00:00")
    # 08:xx mean 140 (no alert; peaks above 150 alone do not count), 09:xx mean 180, 10:xx mean 220
    vals = [100, 180] * 30 + [180] * 60 + [220] * 60 + [40]
    h.feed(series("noise-0001", "noise", "pm10_ugm3", t0, M, vals))
    [a] = h.alerts("dust.pm10")
    assert a.severity == "major" and a.started_ms == at("2026-11-29 10:00:00")
    assert [(x.change, x.severity, x.value) for x in a.history] == [
        ("firing", "warning", 180.0), ("escalated", "major", 220.0)]
    assert a.summary == "Construction dust: hourly mean PM10 220 µg/m³ over 200 µg/m³"
    assert a.state == "firing"  # the 11:00 hour is not over yet
    h.feed(series("noise-0001", "noise", "pm10_ugm3", t0 + 181 * M, M, [40] * 60))
    a = h.state.get(a.id)
    assert a.state == "resolved" and a.ended_ms == at("2026-11-29 12:00:00")


def test_lighting_voltage_outside_on_both_sides():
    h = Harness()
    t0 = at("2026-11-29 19:00:00")
    h.feed(series("lighting-0001", "lighting", "voltage_v", t0, M, [241.0] * 6))
    [a] = h.alerts("lighting.voltage")
    assert a.threshold == 235 and a.summary.startswith("Lighting cabinet voltage 241.0 V outside")


def test_day_burning_not_in_the_evening():
    h = Harness()
    h.feed(series("lighting-0001", "lighting", "lamp_on", at("2026-11-29 18:00:00"), M, [1] * 40))
    assert h.alerts("lighting.day_burning") == []


def test_power_factor_needs_the_lamps_on():
    h = Harness()
    t0 = at("2026-11-29 12:00:00")
    rows = series("lighting-0001", "lighting", "power_factor", t0, M, [0.5] * 40)
    rows += series("lighting-0001", "lighting", "lamp_on", t0, M, [0] * 40)
    h.feed(rows)
    assert h.alerts("lighting.power_factor") == []
