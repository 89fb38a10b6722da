"""Each scenario produces the condition it is named for (the rule conditions of catalogue.md),
and the healthy baseline of the same fleet does not."""

from __future__ import annotations

import numpy as np
import pytest

from devices.fleet import sample_fleet
from simulators.timeutil import local_hour

from .conftest import START
from .helpers import HOUR, events, longest_run, run, series_by

MIN = 60_000


@pytest.fixture(scope="module")
def gas():
    return sample_fleet(0, seed=11, kinds=["gas_meter"], min_per_kind=20)


@pytest.fixture(scope="module")
def bridges():
    return sample_fleet(0, seed=12, kinds=["bridge"], min_per_kind=16)


def _target(sim, name):
    (inj,) = [i for i in sim.injections if i.name == name]
    return inj


@pytest.mark.slow
def test_gas_leak_is_a_micro_flow_for_more_than_a_day(gas):
    sim, msgs = run(gas, start=START, hours=52, scenarios=["gas-leak@1h"])
    inj = _target(sim, "gas-leak")
    dev = inj.device_ids[0]
    flows = series_by(gas, msgs)[(dev, "flow_m3h")]
    assert longest_run(flows, lambda f: 0 < f < 0.04) >= 24 * HOUR
    # nobody else leaks: no other meter has gas flowing for 4 h in a row
    data = series_by(gas, msgs)
    for d in gas:
        if d.device_id != dev:
            assert longest_run(data[(d.device_id, "flow_m3h")], lambda f: f > 0) < 4 * HOUR


def test_gas_over_flow_exceeds_1_2_qmax_for_a_minute_then_shuts_the_valve(gas):
    sim, msgs = run(gas, start=START, hours=3, scenarios=["gas-over-flow@1h"])
    dev = _target(sim, "gas-over-flow").device_ids[0]
    data = series_by(gas, msgs)
    assert longest_run(data[(dev, "flow_m3h")], lambda f: f > 1.2 * 6) >= 60_000
    ev = events(msgs, dev)
    assert [e[1] for e in ev] == ["valve_closed"] and ev[0][2] == {"reason": "over_flow"}
    assert data[(dev, "valve_open")][-1][1] == 0


def test_meter_tamper_sends_the_event_and_closes_the_valve(gas):
    sim, msgs = run(gas, start=START, hours=1, scenarios=["meter-tamper@10m,for=20m"])
    dev = _target(sim, "meter-tamper").device_ids[0]
    assert [e[1] for e in events(msgs, dev)] == ["magnet_tamper", "valve_closed", "valve_opened"]
    assert all(e[1] != "magnet_tamper" for e in events(msgs) if e not in events(msgs, dev))


def test_overloaded_truck_weighs_over_the_limit(bridges):
    sim, msgs = run(bridges, start=START + 10 * HOUR, hours=0.2, scenarios=["overloaded-truck@2m"])
    dev = _target(sim, "overloaded-truck").device_ids[0]
    gross = series_by(bridges, msgs)[(dev, "gross_t")]
    over = [(ts, g) for ts, g in gross if g > 49]
    assert len(over) == 1 and over[0][1] == pytest.approx(62.0)


def test_pier_tilt_moves_the_tilt_by_over_0_2_degrees(bridges):
    sim, msgs = run(bridges, start=START + 10 * HOUR, hours=0.3, scenarios=["pier-tilt@1m"])
    dev = _target(sim, "pier-tilt").device_ids[0]
    base = next(d for d in bridges if d.device_id == dev).attrs.get("baseline_tilt_deg", 0)
    data = series_by(bridges, msgs)
    assert longest_run(data[(dev, "tilt_deg")], lambda v: abs(v - base) >= 0.2) >= 60_000
    others = [d for d in bridges if d.attrs.get("sensor") == "tilt" and d.device_id != dev]
    for d in others:
        assert longest_run(data[(d.device_id, "tilt_deg")],
                           lambda v, b=d.attrs.get("baseline_tilt_deg", 0): abs(v - b) >= 0.05) < 0


def test_strain_overload_holds_over_1_2_design_for_10_s(bridges):
    sim, msgs = run(bridges, start=START + 10 * HOUR, hours=0.2, scenarios=["strain-overload@1m"])
    dev = _target(sim, "strain-overload").device_ids[0]
    design = next(d for d in bridges if d.device_id == dev).attrs["design_strain_ue"]
    data = series_by(bridges, msgs)
    assert longest_run(data[(dev, "strain_ue")], lambda v: v >= 1.2 * design) >= 10_000
    for d in bridges:
        if d.attrs.get("sensor") == "strain" and d.device_id != dev:
            near_design = 0.8 * d.attrs["design_strain_ue"]
            assert longest_run(data[(d.device_id, "strain_ue")], lambda v, lim=near_design: v >= lim) < 0


@pytest.fixture(scope="module")
def city():
    return sample_fleet(0, seed=13, kinds=["fume", "noise", "toilet", "lighting"], min_per_kind=8)


@pytest.mark.slow
def test_purifier_off_runs_the_fan_alone_and_exceeds_the_fume_limit(city):
    sim, msgs = run(city, start=START, hours=14, scenarios=["purifier-off"])
    dev = _target(sim, "purifier-off").device_ids[0]
    data = series_by(city, msgs)
    fan = dict(data[(dev, "fan_on")])
    pur = data[(dev, "purifier_on")]
    alone = [(ts, fan[ts] == 1 and p == 0) for ts, p in pur]
    assert longest_run(alone, bool) >= 6 * MIN
    assert longest_run(data[(dev, "fume_mgm3")], lambda v: v > 2.0) >= 6 * MIN  # three reports
    for d in city:
        if d.kind == "fume" and d.device_id != dev:
            assert longest_run(data[(d.device_id, "fume_mgm3")], lambda v: v > 2.0) < 6 * MIN


def _night(ts):
    h = local_hour(ts)
    return h >= 22 or h < 6


@pytest.mark.slow
def test_night_construction_is_over_55_dba_at_night(city):
    sim, msgs = run(city, start=START + 12 * HOUR, hours=16, scenarios=["night-construction"])
    dev = _target(sim, "night-construction").device_ids[0]
    data = series_by(city, msgs)
    for d in city:
        if d.kind != "noise":
            continue
        night = [(ts, v) for ts, v in data[(d.device_id, "laeq_db")] if _night(ts)]
        held = longest_run(night, lambda v: v > 55)
        if d.device_id == dev:
            assert held > 5 * MIN
            assert max(v for ts, v in data[(d.device_id, "lmax_db")] if _night(ts)) > 70
        else:
            assert held < 5 * MIN


def test_dust_storm_takes_hourly_pm10_over_200(city):
    sim, msgs = run(city, start=START, hours=14, scenarios=["dust-storm"])
    dev = _target(sim, "dust-storm").device_ids[0]
    data = series_by(city, msgs)
    for d in city:
        if d.kind != "noise":
            continue
        pts = np.array(data[(d.device_id, "pm10_ugm3")])
        hourly = [pts[(pts[:, 0] >= h) & (pts[:, 0] < h + HOUR), 1].mean()
                  for h in range(START, START + 14 * HOUR, HOUR)]
        assert (max(hourly) > 200) == (d.device_id == dev), (d.device_id, max(hourly))


def test_toilet_ventilation_failure_raises_nh3_and_h2s_over_the_limits(city):
    sim, msgs = run(city, start=START, hours=12, scenarios=["toilet-ventilation-failure"])
    dev = _target(sim, "toilet-ventilation-failure").device_ids[0]
    data = series_by(city, msgs)
    limits = {"I": 0.3, "II": 1.0, "III": 3.0}
    for d in city:
        if d.kind != "toilet":
            continue
        lim = limits[d.attrs.get("class", "II")]
        nh3 = longest_run(data[(d.device_id, "nh3_mgm3")], lambda v, lim=lim: v > lim)
        h2s = longest_run(data[(d.device_id, "h2s_mgm3")], lambda v: v > 0.01)
        if d.device_id == dev:
            assert nh3 >= 10 * MIN and h2s >= 10 * MIN
        else:
            assert nh3 < 10 * MIN and h2s < 10 * MIN


def test_cabinet_door_open_and_lamp_failures(city):
    sim, msgs = run(city, start=START + 12 * HOUR, hours=14, scenarios=["cabinet-door-open", "lamp-failures,lamps=9"])
    door = _target(sim, "cabinet-door-open").device_ids[0]
    lamps = _target(sim, "lamp-failures").device_ids[0]
    data = series_by(city, msgs)
    assert longest_run(data[(door, "door_open")], lambda v: v == 1) >= MIN
    assert max(v for _, v in data[(lamps, "lamps_failed")]) >= 9
    for d in city:
        if d.kind == "lighting" and d.device_id != door:
            assert max(v for _, v in data[(d.device_id, "door_open")]) == 0


def test_device_offline_goes_quiet_with_a_retained_offline_status(city):
    sim, msgs = run(city, start=START, hours=3, scenarios=["device-offline"])
    for inj in sim.injections:
        dev = inj.device_ids[0]
        status = [(m.sim_ts, m.payload) for m in msgs if m.topic == f"city/{inj.kind}/{dev}/status"]
        assert status[0] == (START, b"online") and (inj.start_ms, b"offline") in status
        assert all(m.retain for m in msgs if m.topic.endswith("/status"))
        tel = [m.sim_ts for m in msgs if m.topic == f"city/{inj.kind}/{dev}/telemetry"]
        gaps = np.diff(tel)
        from devices.catalogue import CATALOGUE
        assert gaps.max() >= CATALOGUE[inj.kind].offline_after_s * 1000
        assert not [t for t in tel if inj.start_ms <= t < inj.end_ms]


def test_gas_over_flow_near_the_hour_never_runs_the_register_backwards(gas):
    sim, msgs = run(gas, start=START, hours=27, scenarios=["gas-over-flow@59m"], gas_mode="daily")
    inj = _target(sim, "gas-over-flow")
    assert inj.start_ms == START + HOUR + 60_000  # moved past the hour boundary
    vols = sorted(series_by(gas, msgs)[(inj.device_ids[0], "volume_m3")])
    assert [v for _, v in vols] == sorted(v for _, v in vols)


def test_probabilistic_bridge_faults_hit_whole_bridges(bridges):
    # planned for the whole day at its first minute (at random times: start at midnight)
    sim, _ = run(bridges, start=START, hours=0.01, scenarios=["pier-tilt,p=1"])
    tilts = {d.device_id for d in bridges if d.attrs.get("sensor") == "tilt"}
    hit = {dev for inj in sim.injections for dev in inj.device_ids}
    assert hit == tilts and len(sim.injections) == len({d.asset_id for d in bridges})
