from __future__ import annotations

from collections import Counter

import pytest

from devices.catalogue import DISTRICTS, KINDS, WUHAN
from devices.fleet import BRIDGE_SENSORS, GAS_PROGRAMME, allocate, sample_fleet, sample_rollout
from devices.model import DEVICE_ID_RE
from devices.registry import device_problems


@pytest.fixture(scope="module")
def fleet():
    return sample_fleet(0.02, seed=1)


def test_counts_follow_the_city_figures(fleet):
    c = Counter(d.kind for d in fleet)
    for kind in KINDS:
        if kind == "bridge":
            assert c[kind] == round(221 * 0.02) * WUHAN.bridge_sensors
        else:
            assert c[kind] == round(WUHAN.devices[kind] * 0.02)
    assert c["gas_meter"] == 10_000
    assert c["gas_meter"] > c["fume"] > c["lighting"] > c["toilet"]


def test_every_device_is_valid_and_in_wuhan(fleet):
    ids = [d.device_id for d in fleet]
    assert len(set(ids)) == len(ids)
    for d in fleet:
        assert DEVICE_ID_RE.match(d.device_id) and d.device_id.isascii()
        assert device_problems(d) == []
        assert d.district in DISTRICTS
        assert 30.3 <= d.lat <= 30.9 and 113.9 <= d.lon <= 114.6, d
        assert d.asset_id and d.asset_name and d.responsible_unit
    assert len({d.district for d in fleet if d.kind == "gas_meter"}) == len(DISTRICTS)


def test_deterministic_and_seeded(fleet):
    assert sample_fleet(0.02, seed=1) == fleet
    other = sample_fleet(0.02, seed=2)
    assert [d.device_id for d in other] == [d.device_id for d in fleet]  # ids follow the counts
    assert [d.lat for d in other] != [d.lat for d in fleet]


def test_kind_subset_gives_the_same_devices(fleet):
    toilets = sample_fleet(0.02, seed=1, kinds=["toilet"])
    assert toilets == [d for d in fleet if d.kind == "toilet"]


def test_bridges_have_every_sensor_and_their_parameters(fleet):
    bridges = [d for d in fleet if d.kind == "bridge"]
    by_bridge: dict[str, list] = {}
    for d in bridges:
        by_bridge.setdefault(d.asset_id, []).append(d)
    assert {d.asset_name for d in bridges} >= {"武汉长江大桥", "二七长江大桥"}
    for sensors in by_bridge.values():
        assert sorted(s.attrs["sensor"] for s in sensors) == sorted(BRIDGE_SENSORS)
        assert len({s.asset_name for s in sensors}) == 1
        for s in sensors:
            assert {"design_strain_ue", "design_deflection_mm", "crack_limit_mm", "rated_load_t"} <= set(s.attrs)
            assert s.responsible_unit == "市桥梁管理处"
        assert "baseline_tilt_deg" in next(s for s in sensors if s.attrs["sensor"] == "tilt").attrs
    assert bridges[0].device_id == "bridge-0001-s1"


def test_per_kind_attrs(fleet):
    first = {}
    for d in fleet:
        first.setdefault(d.kind, d)
    assert first["gas_meter"].attrs["qmax_m3h"] == 6 and first["gas_meter"].attrs["qmin_m3h"] == 0.04
    assert "battery_warn_v" in first["gas_meter"].attrs
    assert {"limit_mgm3", "rated_current_a"} <= set(first["fume"].attrs)
    assert {d.attrs["class"] for d in fleet if d.kind == "toilet"} <= {"I", "II", "III"}
    assert first["lighting"].attrs["lamps"] > 0
    assert first["fume"].responsible_unit == f"{first['fume'].district}城管执法局"
    assert first["gas_meter"].device_id.startswith("gas-") and first["gas_meter"].device_id.count("-") == 2


def test_min_per_kind_and_tiny_scale():
    f = sample_fleet(0, seed=0, min_per_kind=3)
    c = Counter(d.kind for d in f)
    assert c["bridge"] == WUHAN.bridge_sensors  # one bridge covers every sensor kind
    assert all(c[k] == 3 for k in KINDS if k != "bridge")
    assert sample_fleet(0, min_per_kind=0) == []
    with pytest.raises(ValueError, match="unknown kind"):
        sample_fleet(0.01, kinds=["bridg"])
    with pytest.raises(ValueError):
        sample_fleet(-1)


def test_rollout_sums_to_scale_and_matches_fleet():
    targets = sample_rollout(0.02)
    assert sum(t.target for t in targets) == 10_000
    assert [t.district for t in targets] == list(DISTRICTS)
    assert {t.programme for t in targets} == {GAS_PROGRAMME}
    gas = Counter(d.district for d in sample_fleet(0.02, kinds=["gas_meter"]))
    assert {t.district: t.target for t in targets} == {k: gas[k] for k in DISTRICTS}
    assert sum(t.target for t in sample_rollout(1.0)) == 500_000


def test_allocate_exact():
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(allocate(12345, [0.3, 5, 7.7, 0])) == 12345
    assert allocate(5, [0, 0]) == [0, 0]


def test_fleet_loads_into_registry(registry, fleet):
    assert registry.upsert(fleet) == len(fleet)
    assert registry.count(kind="gas_meter") == 10_000
    assert len(registry.snapshot()) == len(fleet)
