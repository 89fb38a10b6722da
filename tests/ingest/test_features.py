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
from ingest.features import add_window_features, window_features
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


def test_builder_gains_three_readings_per_accel_window():
    b = ReadingsBuilder()
    b.add_window("b-1", "bridge", "accel_ms2", 1_000, 10.0, np.sin(np.arange(100) * 0.15), "江岸区", "BR-1")
    b.add_window("b-1", "bridge", "accel_ms2", 2_000, 10.0, np.ones(3), "江岸区", "BR-1")  # too short
    b.add("b-2", "bridge", "strain_ue", 1_000, 12.0)
    assert add_window_features(b) == {"bridge": 3}
    batch = b.build()
    derived = {m: (ts, d, a) for m, ts, d, a in zip(batch.metric, batch.ts, batch.district, batch.asset_id,
                                                    strict=True) if m in DERIVED["bridge"]}
    assert set(derived) == {"accel_rms_ms2", "accel_peak_ms2", "accel_freq_hz"}
    assert all(v == (1_000, "江岸区", "BR-1") for v in derived.values())


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
