"""Derived waveform features (ingest/features.py): RMS, peak and dominant frequency of each
acceleration window, stored as readings of the device through the real pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devices.catalogue import CATALOGUE, DERIVED
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.events import EventLog
from ingest.features import waveform_windows, window_features, window_readings
from ingest.model import ReadingsBuilder
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.base import Query, open_store


@pytest.mark.parametrize("freq", [2.4, 1.3, 3.7, 5.2])
def test_dominant_frequency_within_one_bin(freq):
    rng = np.random.default_rng(7)
    n, interval_ms = 100, 10.0
    t = np.arange(n) * interval_ms / 1000
    v = 0.02 * np.sin(2 * np.pi * freq * t + 0.4) + 0.004 * rng.standard_normal(n)
    rms, peak, f = window_features(v, interval_ms)[0]
    bin_hz = 1000 / (n * interval_ms)
    assert abs(f - freq) <= bin_hz, (f, freq)
    assert abs(rms - 0.02 / np.sqrt(2)) < 0.004
    assert 0.02 <= peak <= 0.04


def test_sampling_interval_is_used():
    t = np.arange(200) * 0.005  # 200 Hz for one second
    v = np.sin(2 * np.pi * 12.0 * t)
    assert abs(window_features(v, 5.0)[0, 2] - 12.0) <= 1.0
    assert abs(window_features(v, 10.0)[0, 2] - 6.0) <= 0.5  # the same samples read at 100 Hz


def test_batch_gains_three_readings_per_accel_window():
    b = ReadingsBuilder()
    b.add_window("b-1", "bridge", "accel_ms2", 1_000, 10.0, np.sin(np.arange(100) * 0.15), "江岸区", "BR-1")
    b.add_window("b-1", "bridge", "accel_ms2", 2_000, 10.0, np.ones(3), "江岸区", "BR-1")  # too short
    b.add_window("b-2", "bridge", "accel_ms2", 3_000, 5.0, np.sin(np.arange(200) * 0.3), "汉阳区", "BR-2")
    b.add("b-3", "bridge", "strain_ue", 1_000, 12.0)
    batch = window_readings(waveform_windows(b))
    assert len(batch) == 6
    derived = [(d, m, ts, dist, a) for d, m, ts, dist, a in zip(batch.device_id, batch.metric, batch.ts,
                                                                batch.district, batch.asset_id, strict=True)
               if m in DERIVED["bridge"]]
    names = ("accel_rms_ms2", "accel_peak_ms2", "accel_freq_hz")
    assert derived == [("b-1", m, 1_000, "江岸区", "BR-1") for m in names] + [("b-2", m, 3_000, "汉阳区", "BR-2")
                                                                             for m in names]
    freq = batch.value[(batch.device_id == "b-2") & (batch.metric == "accel_freq_hz")][0]
    assert abs(freq - 0.3 / (2 * np.pi) * 200) <= 1.0  # 0.3 rad per 5 ms sample: 9.55 Hz


def test_derived_metrics_are_not_accepted_from_devices(tmp_path):
    assert not set(DERIVED["bridge"]) & set(CATALOGUE["bridge"].metrics)
    assert all(m.derived for m in DERIVED["bridge"].values())
    conn = connect(tmp_path / "state.db")
    reg = Registry(conn)
    reg.upsert([Device("br-acc-1", "bridge", district="江岸区", asset_id="BR-1")])
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb")
    q = Quarantine(connect(tmp_path / "state.db"))
    p = Pipeline(store=store, registry=reg, quarantine=q, events=EventLog(connect(tmp_path / "state.db")))
    now = 1_790_000_000_000
    p.submit("city/bridge/br-acc-1/telemetry",
             json.dumps({"ts": now, "metrics": {"accel_freq_hz": 2.0}}).encode(), received_ms=now)
    t = np.arange(100) * 0.01
    wave = [round(float(x), 4) for x in 0.03 * np.sin(2 * np.pi * 2.4 * t)]
    p.submit("city/bridge/br-acc-1/telemetry",
             json.dumps({"ts": now, "interval_ms": 10, "series": {"accel_ms2": wave}}).encode(), received_ms=now)
    p.flush()
    assert q.count() == 1 and q.count("unknown_metric") == 1, q.recent()
    got = store.query(Query("br-acc-1", "accel_freq_hz", now - 1, now + 1))
    assert len(got) == 1 and abs(got[0][1] - 2.4) <= 1.0
    assert len(store.query(Query("br-acc-1", "accel_rms_ms2", now - 1, now + 1))) == 1
    store.close()


def test_derived_readings_keep_each_windows_start_and_value():
    rng = np.random.default_rng(3)
    starts = [5_000, 0, 1_000, 2_000, 3_500, 4_000]  # out of order, unevenly spaced at the end
    waves = [rng.normal(0, 0.02, 100) + np.sin(np.arange(100) * 0.1 * (k + 1)) for k in range(len(starts))]
    b = ReadingsBuilder()
    for ts, w in zip(starts, waves, strict=True):
        b.add_window("d-1", "bridge", "accel_ms2", ts, 10.0, w, "江岸区", "BR-1")
        b.add_window("d-2", "bridge", "accel_ms2", ts, 10.0, -w, "江岸区", "BR-1")
    batch = window_readings(waveform_windows(b))
    want = window_features(np.stack(waves), 10.0)
    for dev in ("d-1", "d-2"):
        for m, name in enumerate(("accel_rms_ms2", "accel_peak_ms2", "accel_freq_hz")):
            sel = (batch.device_id == dev) & (batch.metric == name)
            got = dict(zip(batch.ts[sel].tolist(), batch.value[sel].tolist(), strict=True))
            assert got == pytest.approx({ts: want[k, m] for k, ts in enumerate(starts)}), (dev, name)
