"""Every simulated payload is valid per device-protocol.md and catalogue.md (strict checker)."""

from __future__ import annotations

import json

import pytest

from simulators.scenarios import BAD_PAYLOAD_CLASSES, SCENARIOS

from .conftest import START
from .contract_check import Bad, check
from .helpers import registry_of, run

GOOD_SCENARIOS = [n for n in SCENARIOS if n != "bad-payloads"]


def _assert_all_valid(fleet, msgs):
    reg = registry_of(fleet)
    kinds_seen = set()
    for m in msgs:
        try:
            check(m.topic, m.payload, reg, m.sim_ts)
        except Bad as e:
            raise AssertionError(f"{m.topic} {m.payload[:300]!r}: {e}") from None
        kinds_seen.add(m.topic.split("/")[1])
    return kinds_seen


def test_bridges_publish_valid_payloads_of_every_sensor(small_fleet):
    bridges = [d for d in small_fleet if d.kind == "bridge"]
    _, msgs = run(bridges, start=START + 7 * 3_600_000, hours=0.25,
                  scenarios=["overloaded-truck", "pier-tilt", "strain-overload", "device-offline"])
    _assert_all_valid(bridges, msgs)
    metrics = set()
    for m in msgs:
        if m.topic.endswith("/telemetry"):
            o = json.loads(m.payload)
            metrics |= set(o.get("metrics", {})) | set(o.get("series", {}))
    assert metrics == {"accel_ms2", "strain_ue", "deflection_mm", "tilt_deg", "crack_mm", "bearing_kn", "temp_c",
                       "gross_t", "axles", "speed_kmh"}


@pytest.mark.slow
def test_other_kinds_publish_valid_payloads_for_a_day_with_every_scenario(small_fleet):
    fleet = [d for d in small_fleet if d.kind != "bridge"]
    scen = [s for s in GOOD_SCENARIOS if SCENARIOS[s].kind != "bridge"]
    for mode, hours in (("daily", 26), ("hourly", 3)):
        _, msgs = run(fleet, start=START, hours=hours, scenarios=scen, gas_mode=mode)
        assert _assert_all_valid(fleet, msgs) == {"gas_meter", "fume", "noise", "toilet", "lighting"}


def test_bad_payloads_produce_every_rejection_class_once(small_fleet):
    sim, msgs = run(small_fleet, start=START, hours=0.05, scenarios=["bad-payloads@30s"])
    reg = registry_of(small_fleet)
    classes = []
    for m in msgs:
        try:
            check(m.topic, m.payload, reg, m.sim_ts)
        except Bad as e:
            classes.append(e.cls)
    assert classes == list(BAD_PAYLOAD_CLASSES)
    big = [m for m in msgs if len(m.payload) > 256 * 1024]
    assert len(big) == 1 and json.loads(big[0].payload)  # too large, valid otherwise
