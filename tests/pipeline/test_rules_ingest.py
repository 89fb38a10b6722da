"""Every rule of the built-in pack, proven through the ingest path.

For each rule a realistic sequence of MQTT payloads (device-protocol.md) goes through
``Pipeline.submit`` (decoder -> DuckDB store -> rule engine -> SQLite alert state), each message
flushed as its own batch and received 5 ms after its ``ts``: the rule fires with its severity;
the same sequence below the threshold (or too short, or outside its window) does not fire it.
Absence rules: the last report, then ``RuleEngine.tick(now, last_seen)`` just after and just
before the kind's threshold. The engine-level edge cases live in tests/alerts; this is the proof
that the path from bytes on a topic to an alert holds for each rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from alerts.rules import RulePack
from devices.catalogue import CATALOGUE
from devices.model import Device
from simulators.timeutil import parse_time_ms

from .helpers import H, Ingest, M, S

DAY0 = parse_time_ms("2026-11-20T00:00:00+08:00")  # a Friday, local midnight in Wuhan


def every(step_ms: int, count: int, **metrics: float) -> list[tuple[int, dict]]:
    """``count`` readings of ``metrics``, ``step_ms`` apart, from offset 0."""
    return [(i * step_ms, dict(metrics)) for i in range(count)]


def then(first: list[tuple[int, dict]], rest: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """``rest`` shifted to follow ``first`` by one step."""
    end = first[-1][0] + (first[-1][0] - first[-2][0] if len(first) > 1 else M)
    return first + [(end + dt, m) for dt, m in rest]


@dataclass(frozen=True)
class Case:
    rule: str
    kind: str
    at: str  # local time of the first message, "HH:MM"
    fire: list  # [(offset ms, metrics dict | ("event", type))]
    calm: list  # the same, below the threshold: the rule must not fire
    severity: str
    attrs: dict[str, Any] = field(default_factory=dict)


def _ev(kind: str) -> tuple[str, str]:
    return ("event", kind)


CASES = [
    # --- bridge ---------------------------------------------------------------------------
    Case("bridge.strain", "bridge", "08:10", every(S, 15, strain_ue=560), every(S, 15, strain_ue=350),
         "critical", {"design_strain_ue": 450, "sensor": "strain"}),  # 1.2 × 450 = 540; 0.8 × 450 = 360
    Case("bridge.deflection", "bridge", "08:10", every(S, 15, deflection_mm=52.0),
         then(every(S, 8, deflection_mm=52.0), every(S, 8, deflection_mm=30.0)),  # 8 s: shorter than `for`
         "major"),
    Case("bridge.tilt", "bridge", "03:00", every(M, 3, tilt_deg=0.135), every(M, 3, tilt_deg=0.06),
         "major", {"baseline_tilt_deg": 0.02}),  # 0.115° off the baseline; 0.04° off
    Case("bridge.crack", "bridge", "03:00", every(10 * M, 2, crack_mm=0.24, temp_c=6.5),
         every(10 * M, 2, crack_mm=0.24, temp_c=6.5), "major", {"crack_limit_mm": 0.20}),
    Case("bridge.overload", "bridge", "14:02", every(7 * S, 1, gross_t=62.4, axles=6, speed_kmh=48),
         every(7 * S, 1, gross_t=46.0, axles=6, speed_kmh=52), "critical"),
    # --- gas_meter ------------------------------------------------------------------------
    Case("gas.over_flow", "gas_meter", "19:05", every(30 * S, 6, flow_m3h=8.6),
         every(30 * S, 6, flow_m3h=7.0), "critical"),  # 1.2 × Qmax 6 = 7.2
    Case("gas.continuous_flow", "gas_meter", "01:00", every(H, 6, flow_m3h=0.6),
         then(then(every(H, 3, flow_m3h=0.6), every(H, 1, flow_m3h=0.0)), every(H, 3, flow_m3h=0.6)),
         "major"),  # calm: a break after 3 h
    Case("gas.micro_flow", "gas_meter", "00:00", every(H, 26, flow_m3h=0.02), every(H, 26, flow_m3h=0.02),
         "warning", {"qmin_m3h": 0.04}),
    Case("gas.volume_backwards", "gas_meter", "09:00",
         [(0, {"volume_m3": 1532.114}), (H, {"volume_m3": 1532.301}), (2 * H, {"volume_m3": 1531.950})],
         [(0, {"volume_m3": 1532.114}), (H, {"volume_m3": 1532.301}), (2 * H, {"volume_m3": 1532.301})],
         "major"),
    Case("gas.low_battery", "gas_meter", "09:00", every(H, 1, battery_v=4.6, rsrp_dbm=-101),
         every(H, 1, battery_v=5.2, rsrp_dbm=-101), "warning", {"battery_warn_v": 4.8}),  # 4×AA meter
    Case("gas.tamper", "gas_meter", "02:13", [(0, _ev("magnet_tamper")), (S, _ev("valve_closed"))],
         [(0, _ev("valve_closed")), (H, _ev("valve_opened"))], "critical"),
    # --- fume -----------------------------------------------------------------------------
    Case("fume.concentration", "fume", "12:00", every(3 * M, 4, fume_mgm3=2.6, fan_on=1, purifier_on=1),
         every(3 * M, 4, fume_mgm3=1.8, fan_on=1, purifier_on=1), "warning", {"limit_mgm3": 2.0}),
    Case("fume.purifier_off", "fume", "11:40", every(3 * M, 4, fan_on=1, purifier_on=0),
         every(3 * M, 4, fan_on=0, purifier_on=0), "major"),
    Case("fume.purifier_dirty", "fume", "11:00",
         every(3 * M, 12, purifier_current_a=0.18, purifier_on=1, fan_on=1),
         every(3 * M, 12, purifier_current_a=0.18, purifier_on=1, fan_on=1), "info",
         {"rated_current_a": 0.5}),  # calm: the same current under a smaller rated current (see below)
    # --- noise ----------------------------------------------------------------------------
    Case("noise.day_laeq", "noise", "10:00", every(M, 7, laeq_db=76.5, lmax_db=88.0),
         every(M, 7, laeq_db=68.0, lmax_db=80.0), "warning"),
    Case("noise.night_laeq", "noise", "23:10", every(M, 7, laeq_db=62.0, lmax_db=68.0),
         every(M, 7, laeq_db=54.0, lmax_db=66.0), "major"),
    Case("noise.night_lmax", "noise", "23:10", every(M, 2, laeq_db=52.0, lmax_db=78.0),
         every(M, 2, laeq_db=52.0, lmax_db=78.0), "warning"),  # calm: the same peaks at 20:10 (see below)
    Case("dust.pm10", "noise", "10:00", every(M, 66, pm10_ugm3=230.0, pm25_ugm3=90.0),
         every(M, 66, pm10_ugm3=140.0, pm25_ugm3=60.0), "major"),
    # --- toilet ---------------------------------------------------------------------------
    Case("toilet.nh3", "toilet", "08:00", every(M, 12, nh3_mgm3=0.5), every(M, 12, nh3_mgm3=0.5), "warning",
         {"class": "I"}),  # calm: the same air in a class II toilet (limit 1.0, see below)
    Case("toilet.h2s", "toilet", "08:00", every(M, 12, h2s_mgm3=0.02), every(M, 12, h2s_mgm3=0.008),
         "warning"),
    Case("toilet.consumables", "toilet", "16:00", every(M, 1, consumables_pct=15.0),
         every(M, 1, consumables_pct=35.0), "info"),
    # --- lighting -------------------------------------------------------------------------
    Case("lighting.voltage", "lighting", "20:00", every(M, 7, voltage_v=246.0, lamp_on=1),
         every(M, 7, voltage_v=231.0, lamp_on=1), "warning"),
    Case("lighting.leakage", "lighting", "20:00", every(M, 1, leakage_ma=48.0), every(M, 1, leakage_ma=12.0),
         "critical"),
    Case("lighting.door_open", "lighting", "01:00", every(20 * S, 5, door_open=1),
         then(every(20 * S, 2, door_open=1), every(20 * S, 3, door_open=0)), "major"),
    Case("lighting.lamp_fault", "lighting", "20:00", every(M, 1, lamps_failed=3), every(M, 1, lamps_failed=0),
         "warning"),
    Case("lighting.day_burning", "lighting", "10:00", every(M, 35, lamp_on=1, power_w=6000.0),
         every(M, 35, lamp_on=1, power_w=6000.0), "info"),  # calm: the same at 18:00 (see below)
    Case("lighting.power_factor", "lighting", "19:00", every(M, 35, power_factor=0.72, lamp_on=1),
         every(M, 35, power_factor=0.90, lamp_on=1), "info"),
]

# calm variants that keep the values and change the device's attrs or the local time instead
CALM_ATTRS = {"fume.purifier_dirty": {"rated_current_a": 0.3},  # 0.18 A is over half of 0.3 A
              "toilet.nh3": {"class": "II"},  # limit 1.0 instead of 0.3
              "bridge.crack": {"crack_limit_mm": 0.30},
              "gas.micro_flow": {"qmin_m3h": 0.016}}  # 0.02 m³/h is then a normal (if small) flow
CALM_AT = {"noise.night_lmax": "20:10", "lighting.day_burning": "18:00"}


def test_every_rule_of_the_pack_has_a_case():
    metric_rules = {r.id for r in RulePack.load().active if r.type != "absence"}
    absence_rules = {r.id for r in RulePack.load().active if r.type == "absence"}
    assert {c.rule for c in CASES} == metric_rules
    assert {f"{k.split('_')[0]}.offline" for k in CATALOGUE} == absence_rules


def _local(at: str) -> int:
    hh, mm = map(int, at.split(":"))
    return DAY0 + (hh * 60 + mm) * M


def _drive(tmp_path, case: Case, steps, at: str, attrs: dict) -> Ingest:
    dev = f"{case.kind.replace('_', '')}-t-0001"
    device = Device(dev, case.kind, "江汉区", 30.59, 114.30, asset_id="asset-t-1", attrs=attrs)
    ing = Ingest(tmp_path, [device])
    t0 = _local(at)
    for seq, (dt, what) in enumerate(steps):
        ts = t0 + dt
        if isinstance(what, tuple):
            topic, body = f"city/{case.kind}/{dev}/event", {"ts": ts, "type": what[1]}
        else:
            topic, body = f"city/{case.kind}/{dev}/telemetry", {"ts": ts, "seq": seq, "metrics": what}
        ing.send(topic, json.dumps(body).encode(), received_ms=ts + 5)
        ing.pipeline.flush()
    assert ing.quarantine.count() == 0, ing.quarantine.recent(5)
    return ing


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_rule_fires_through_ingest(case: Case, tmp_path):
    ing = _drive(tmp_path / "fire", case, case.fire, case.at, case.attrs)
    mine = [a for a in ing.fired() if a.rule == case.rule]
    assert len(mine) == 1, [(a.rule, a.severity, a.value) for a in ing.fired()]
    (a,) = mine
    assert a.severity == case.severity
    assert a.state == "firing" and a.started_ms >= _local(case.at)
    assert a.summary and "{" not in a.summary, a.summary
    assert a.device["district"] == "江汉区" and a.device["asset_id"] == "asset-t-1"
    ing.close()

    at = CALM_AT.get(case.rule) or case.at
    calm = _drive(tmp_path / "calm", case, case.calm, at, CALM_ATTRS.get(case.rule, case.attrs))
    assert [a for a in calm.fired() if a.rule == case.rule] == []
    calm.close()


# one ordinary report per kind, then silence
ORDINARY = {"bridge": {"temp_c": 8.5}, "gas_meter": {"volume_m3": 1532.114, "flow_m3h": 0.0},
            "fume": {"fan_on": 0, "purifier_on": 0}, "noise": {"laeq_db": 58.2, "lmax_db": 66.0},
            "toilet": {"nh3_mgm3": 0.2, "people_count": 12}, "lighting": {"voltage_v": 228.4, "lamp_on": 0}}


@pytest.mark.parametrize("kind", list(CATALOGUE))
def test_absence_rule_fires_after_the_kinds_threshold(kind, tmp_path):
    rule = f"{kind.split('_')[0]}.offline"
    case = Case(rule, kind, "12:00", every(M, 1, **ORDINARY[kind]), [], "warning")
    ing = _drive(tmp_path, case, case.fire, case.at, {})
    last = _local(case.at)
    threshold = int(CATALOGUE[kind].offline_after_s * 1000)
    assert ing.engine.tick(last + threshold - S, ing.registry.last_seen_map()) == []
    ing.engine.tick(last + threshold + S, ing.registry.last_seen_map())
    (a,) = ing.fired()
    assert (a.rule, a.severity, a.state, a.fired_ms) == (rule, "warning", "firing", last + threshold)
    ing.close()
