"""Model sanity: the physics a gas, lighting or bridge engineer would check first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devices.fleet import sample_fleet
from devices.model import Device
from simulators.timeutil import local_hour, sun_times_ms

from .conftest import START
from .helpers import DAY, HOUR, run, series_by


def test_gas_volume_is_consistent_with_flow_and_daily_use_is_household_sized():
    fleet = sample_fleet(0, seed=21, kinds=["gas_meter"], min_per_kind=40)
    _, msgs = run(fleet, start=START, hours=72)
    aa = {d.device_id for d in fleet if d.attrs.get("battery") == "4xAA 6.0V"}
    assert aa and len(aa) < len(fleet)  # both battery types in the sample
    packets = [(json.loads(m.payload), m.topic.split("/")[2]) for m in msgs if m.topic.endswith("/telemetry")]
    assert len(packets) >= 3 * 40 - 40  # one packet a day each (the first day's may fall before the start)
    for p, device_id in packets:
        r = p["readings"]
        assert len(r) == 24
        ts = [x["ts"] for x in r]
        assert all(b - a == HOUR for a, b in zip(ts, ts[1:], strict=False)) and ts[-1] % HOUR == 0
        vol = np.array([x["metrics"]["volume_m3"] for x in r])
        flow = np.array([x["metrics"]["flow_m3h"] for x in r])
        # volume(H) - volume(H - 1h) = mean flow over that hour x 1 h (both rounded to 1 litre)
        assert np.abs(np.diff(vol) - flow[1:]).max() <= 0.0015
        assert 0.2 <= flow.sum() <= 3.0  # m³ a day
        last = r[-1]["metrics"]
        lo, hi = (4.6, 6.4) if device_id in aa else (3.2, 3.7)  # 4xAA 6.0 V or lithium 3.6 V
        assert last["valve_open"] == 1 and lo < last["battery_v"] < hi and -140 <= last["rsrp_dbm"] <= -60
        # cooking hours only: breakfast, lunch, dinner
        hours = {int(local_hour(x["ts"] - HOUR)) for x in r if x["metrics"]["flow_m3h"] > 0}
        assert hours <= {6, 7, 11, 12, 17, 18, 19}
    # consecutive packets of one meter chain up: the volume never goes backwards
    by_dev = {}
    for m in msgs:
        by_dev.setdefault(m.topic, []).append(json.loads(m.payload)["readings"])
    for chain in by_dev.values():
        vols = [x["metrics"]["volume_m3"] for p in chain for x in p]
        assert vols == sorted(vols)


def test_hourly_mode_sends_one_reading_an_hour():
    fleet = sample_fleet(0, seed=21, kinds=["gas_meter"], min_per_kind=10)
    _, msgs = run(fleet, start=START, hours=5, gas_mode="hourly")
    per_dev = {}
    for m in msgs:
        per_dev.setdefault(m.topic, []).append(json.loads(m.payload)["ts"])
    assert len(per_dev) == 10 and all(len(v) in (4, 5) and all(t % HOUR == 0 for t in v) for v in per_dev.values())


@pytest.mark.slow
def test_lamps_burn_from_dusk_to_dawn_only():
    fleet = sample_fleet(0, seed=22, kinds=["lighting"], min_per_kind=10)
    _, msgs = run(fleet, start=START, hours=48)
    data = series_by(fleet, msgs)
    days = [START, START + DAY]
    for d in fleet:
        on = data[(d.device_id, "lamp_on")]
        power = dict(data[(d.device_id, "power_w")])
        for ts, v in on:
            rise, sets = sun_times_ms(days[0] if ts < days[1] else days[1])
            if rise + 20 * 60_000 <= ts < sets - 10 * 60_000:
                assert v == 0, "lamp on in daylight"
            if ts >= sets + 20 * 60_000 or ts < rise - 20 * 60_000:
                assert v == 1, "lamp off at night"
            assert (power[ts] > 1000) == (v == 1)
    # Wuhan, 29 November: sunrise about 06:58, sunset about 17:22 local time
    rise, sets = sun_times_ms(START)
    assert abs(local_hour(rise) - (6 + 58 / 60)) < 0.1 and abs(local_hour(sets) - (17 + 22 / 60)) < 0.1


def test_bridge_natural_frequency_is_the_peak_of_the_acceleration_spectrum():
    fleet = [Device(f"br-x-{s}", "bridge", "江岸区", asset_id="BR-X",
                    attrs={"sensor": s, "natural_hz": 2.3, "main_span_m": 45}) for s in ("accel", "wim")]
    _, msgs = run(fleet, start=START + 8 * HOUR, hours=120 / 3600)
    windows = [json.loads(m.payload) for m in msgs if b'"series"' in m.payload]
    assert len(windows) == 120 and all(w["interval_ms"] == 10 for w in windows)
    sig = np.concatenate([w["series"]["accel_ms2"] for w in windows])
    assert np.all(np.diff([w["ts"] for w in windows]) == 1000)  # contiguous 100 Hz
    spec = np.abs(np.fft.rfft(sig - sig.mean()))
    freqs = np.fft.rfftfreq(len(sig), 0.01)
    assert abs(freqs[spec[freqs > 0.3].argmax() + (freqs <= 0.3).sum()] - 2.3) < 0.1
    rms = np.sqrt(np.mean(sig ** 2))
    assert 0.003 < rms < 0.3  # ambient 0.005-0.05, trucks 0.05-0.3 m/s²
    wim = [json.loads(m.payload)["metrics"] for m in msgs if b'"gross_t"' in m.payload]
    assert len(wim) > 10 and all(2 <= w["axles"] <= 6 for w in wim)


@pytest.mark.slow
def test_noise_is_quiet_at_night_and_loud_in_working_hours():
    fleet = sample_fleet(0, seed=23, kinds=["noise", "toilet", "fume"], min_per_kind=10)
    _, msgs = run(fleet, start=START, hours=24)
    data = series_by(fleet, msgs)
    night, work = [], []
    for d in fleet:
        if d.kind == "noise":
            for ts, v in data[(d.device_id, "laeq_db")]:
                h = local_hour(ts)
                (night if (h >= 22 or h < 6) else work if 8 <= h < 11 else []).append(v)
    assert np.mean(night) < 50 and 60 < np.mean(work) < 72
    # toilets: 150-2500 visitors a day; fume peaks at lunch over mid-afternoon
    for d in fleet:
        if d.kind == "toilet":
            assert 150 <= sum(v for _, v in data[(d.device_id, "people_count")]) <= 2500
    lunch, afternoon = [], []
    for d in fleet:
        if d.kind == "fume":
            for ts, v in data[(d.device_id, "fume_mgm3")]:
                h = local_hour(ts)
                (lunch if 11.5 <= h < 12.5 else afternoon if 15 <= h < 16 else []).append(v)
    assert np.mean(lunch) > 3 * np.mean(afternoon)


def test_each_vehicle_is_weighed_at_a_millisecond_of_its_own():
    """Two vehicles entering one bridge in the same millisecond would be one reading to the
    store (keyed by device, metric and time): a busy hour of 300 weigh-in-motion stations has
    dozens of such pairs unless the model keeps them apart (it moves the later one on by 1 ms)."""
    fleet = [Device(f"br-{i:03d}-wim", "bridge", "江岸区", asset_id=f"BR-{i:03d}",
                    attrs={"sensor": "wim", "main_span_m": 45}) for i in range(300)]
    sim, msgs = run(fleet, start=START + 8 * HOUR, hours=0.25)
    wim = [(m.topic, json.loads(m.payload)["ts"]) for m in msgs if b'"gross_t"' in m.payload]
    assert len(wim) > 50_000  # 600-2,500 vehicles an hour per bridge
    assert len(set(wim)) == len(wim)
    by_station: dict[str, list[int]] = {}
    for topic, ts in wim:
        by_station.setdefault(topic, []).append(ts)
    assert all(ts == sorted(ts) for ts in by_station.values())  # still in the order they enter
