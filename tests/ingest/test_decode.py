"""Every payload shape decodes to the right readings; every rejection class is quarantined with
a reason that names the problem (device-protocol.md)."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

import ingest.decode as decode_module
from ingest.decode import MAX_PAYLOAD, Decoder
from ingest.model import ReadingsBuilder

NOW = 1_764_403_200_000  # 2025-11-29T08:00:00Z
DEVICES = {
    "noise-1": ("noise", "江汉区", "site-118"),
    "bridge-1-s1": ("bridge", "江岸区", "bridge-1"),
    "gas-1": ("gas_meter", "武昌区", "acct-9"),
}


def decode(topic: str, payload, now: int = NOW):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    b = ReadingsBuilder()
    d = Decoder(DEVICES.get).decode(topic, raw, now, b)
    return d, b.build()


def test_single_reading_gives_one_row_per_metric_with_registry_tags():
    d, r = decode("city/noise/noise-1/telemetry",
                  {"ts": NOW - 1000, "seq": 812, "metrics": {"laeq_db": 63.2, "lmax_db": 71.8, "pm10_ugm3": 88}})
    assert d.rejections == [] and d.readings == 3
    assert sorted(zip(r.metric, r.value, strict=False)) == [("laeq_db", 63.2), ("lmax_db", 71.8), ("pm10_ugm3", 88.0)]
    assert set(r.ts) == {NOW - 1000} and set(r.district) == {"江汉区"} and set(r.asset_id) == {"site-118"}
    assert d.seen == {"noise-1": NOW - 1000}


def test_rfc3339_timestamp_with_offset():
    d, r = decode("city/noise/noise-1/telemetry",
                  {"ts": "2025-11-29T16:00:00.123+08:00", "metrics": {"laeq_db": 50}})
    assert d.rejections == []
    assert r.ts[0] == NOW + 123


def test_readings_batch_keeps_good_readings_and_quarantines_each_bad_one():
    payload = {"seq": 813, "readings": [
        {"ts": NOW - 7_200_000, "metrics": {"volume_m3": 1532.114}},
        {"ts": NOW - 3_600_000, "metrics": {"volume_m3": -5}},
        {"ts": NOW, "metrics": {"volume_m3": 1532.301, "flow_m3h": 0.3}},
        {"metrics": {"volume_m3": 1}},
    ]}
    d, r = decode("city/gas_meter/gas-1/telemetry", payload)
    assert d.readings == 3 and len(r) == 3
    assert list(r.ts) == [NOW - 7_200_000, NOW, NOW]
    reasons = [x.reason for x in d.rejections]
    assert reasons[0].startswith("out_of_range: readings[1]: metric 'volume_m3'")
    assert reasons[1].startswith("missing_ts: readings[3]")


def test_series_samples_are_spaced_by_interval():
    samples = [0.01, -0.02, 0.03, 0.0]
    d, r = decode("city/bridge/bridge-1-s1/telemetry",
                  {"ts": NOW - 1000, "seq": 99, "interval_ms": 10, "series": {"accel_ms2": samples},
                   "metrics": {"temp_c": 12.5}})
    assert d.rejections == []
    acc = r.take(r.metric == "accel_ms2")
    assert list(acc.ts) == [NOW - 1000 + 10 * i for i in range(4)]
    np.testing.assert_allclose(acc.value, samples)
    assert list(r.take(r.metric == "temp_c").value) == [12.5]
    assert d.seen["bridge-1-s1"] == NOW - 1000 + 30


def test_series_sample_times_round_a_fractional_interval_like_the_contract():
    # 400 Hz: 2.5 ms apart, each time rounded half to even (numpy and Python round alike)
    d, r = decode("city/bridge/bridge-1-s1/telemetry",
                  {"ts": NOW - 1000, "interval_ms": 2.5, "series": {"accel_ms2": [0.0] * 7}})
    assert list(r.ts) == [NOW - 1000 + round(i * 2.5) for i in range(7)] == \
        [NOW - 1000 + t for t in (0, 2, 5, 8, 10, 12, 15)]
    assert d.seen["bridge-1-s1"] == NOW - 1000 + 15


def test_event_decodes():
    d, r = decode("city/gas_meter/gas-1/event", {"ts": NOW, "type": "magnet_tamper", "detail": {"n": 1}})
    assert len(r) == 0 and d.events[0].type == "magnet_tamper" and d.events[0].detail == {"n": 1}


BAD = [
    ("too_large", "city/noise/noise-1/telemetry", b"{" + b" " * MAX_PAYLOAD + b"}"),
    ("bad_topic", "city/noise/noise-1", {"ts": NOW, "metrics": {"laeq_db": 50}}),
    ("bad_topic", "town/noise/noise-1/telemetry", {"ts": NOW, "metrics": {"laeq_db": 50}}),
    ("unknown_kind", "city/sewer/noise-1/telemetry", {"ts": NOW, "metrics": {"laeq_db": 50}}),
    ("bad_device_id", "city/noise/-bad id/telemetry", {"ts": NOW, "metrics": {"laeq_db": 50}}),
    ("unregistered", "city/noise/noise-404/telemetry", {"ts": NOW, "metrics": {"laeq_db": 50}}),
    ("kind_mismatch", "city/fume/noise-1/telemetry", {"ts": NOW, "metrics": {"fume_mgm3": 1}}),
    ("bad_json", "city/noise/noise-1/telemetry", b"{not json"),
    ("bad_json", "city/noise/noise-1/telemetry", b"[1, 2]"),
    ("bad_shape", "city/noise/noise-1/telemetry", {"ts": NOW}),
    ("bad_shape", "city/noise/noise-1/telemetry", {"ts": NOW, "metrics": {}}),
    ("unknown_metric", "city/noise/noise-1/telemetry", {"ts": NOW, "metrics": {"fume_mgm3": 1}}),
    ("not_a_number", "city/noise/noise-1/telemetry", {"ts": NOW, "metrics": {"laeq_db": "61"}}),
    ("not_a_number", "city/noise/noise-1/telemetry", {"ts": NOW, "metrics": {"laeq_db": True}}),
    ("not_finite", "city/noise/noise-1/telemetry", b'{"ts": 1764403200000, "metrics": {"laeq_db": NaN}}'),
    ("not_finite", "city/noise/noise-1/telemetry", b'{"ts": 1764403200000, "metrics": {"laeq_db": 1e999}}'),
    ("out_of_range", "city/noise/noise-1/telemetry", {"ts": NOW, "metrics": {"laeq_db": 150}}),
    ("missing_ts", "city/noise/noise-1/telemetry", {"metrics": {"laeq_db": 50}}),
    ("bad_ts", "city/noise/noise-1/telemetry", {"ts": "yesterday", "metrics": {"laeq_db": 50}}),
    ("bad_ts", "city/noise/noise-1/telemetry", {"ts": "2025-11-29T16:00:00", "metrics": {"laeq_db": 50}}),
    ("ts_future", "city/noise/noise-1/telemetry", {"ts": NOW + 301_000, "metrics": {"laeq_db": 50}}),
    ("ts_past", "city/noise/noise-1/telemetry", {"ts": NOW - 31 * 86_400_000, "metrics": {"laeq_db": 50}}),
    ("series_length", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": [0.1, 0.2], "strain_ue": [1.0]}}),
    ("out_of_range", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": [0.1, 99.0]}}),
    ("not_a_number", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": [0.1, "x"]}}),
    # series messages take a typed fast path; whatever it refuses is judged by the generic one
    ("not_a_number", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": [0.1, True]}}),
    ("not_finite", "city/bridge/bridge-1-s1/telemetry",
     b'{"ts": %d, "interval_ms": 10, "series": {"accel_ms2": [0.1, 1e999]}}' % NOW),
    ("missing_ts", "city/bridge/bridge-1-s1/telemetry", {"interval_ms": 10, "series": {"accel_ms2": [0.1]}}),
    ("bad_shape", "city/bridge/bridge-1-s1/telemetry", {"ts": NOW, "series": {"accel_ms2": [0.1]}}),
    ("bad_shape", "city/bridge/bridge-1-s1/telemetry", {"ts": NOW, "interval_ms": 0, "series": {"accel_ms2": [0.1]}}),
    ("bad_shape", "city/bridge/bridge-1-s1/telemetry", {"ts": NOW, "interval_ms": 10, "series": [0.1]}),
    ("bad_shape", "city/bridge/bridge-1-s1/telemetry", {"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": []}}),
    ("unknown_metric", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW, "interval_ms": 10, "series": {"accel_z": [0.1]}}),
    ("out_of_range", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW, "interval_ms": 10, "series": {"accel_ms2": [0.1]}, "metrics": {"temp_c": 900}}),
    ("bad_ts", "city/bridge/bridge-1-s1/telemetry", {"ts": True, "interval_ms": 10, "series": {"accel_ms2": [0.1]}}),
    ("bad_status", "city/noise/noise-1/status", b"sleepy"),
    ("bad_event", "city/gas_meter/gas-1/event", {"ts": NOW, "type": "Valve Closed!"}),
]


@pytest.mark.parametrize("code,topic,payload", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_every_rejection_class_is_named(code, topic, payload):
    d, r = decode(topic, payload)
    assert len(r) == 0 and d.readings == 0
    assert len(d.rejections) == 1
    rej = d.rejections[0]
    assert rej.reason.startswith(code + ": "), rej.reason
    assert len(rej.reason) > len(code) + 10  # says what is wrong, not just a code
    assert rej.topic == topic and rej.received_at == NOW


def test_rejection_of_one_device_leaves_others_alone():
    b = ReadingsBuilder()
    dec = Decoder(DEVICES.get)
    dec.decode("city/noise/noise-404/telemetry", b'{"ts": 1, "metrics": {"laeq_db": 50}}', NOW, b)
    d = dec.decode("city/noise/noise-1/telemetry", json.dumps({"ts": NOW, "metrics": {"laeq_db": 50}}).encode(),
                   NOW, b)
    assert d.readings == 1 and len(b.build()) == 1


class _Refuses:
    def decode(self, payload):
        raise msgspec.ValidationError("refused (test)")


@pytest.mark.parametrize("code,topic,payload", [b for b in BAD if "series" in str(b[2])] + [
    ("", "city/bridge/bridge-1-s1/telemetry",
     {"ts": NOW - 1000, "interval_ms": 2.5, "series": {"accel_ms2": [0, 1, -2.5, 3e-3]}, "metrics": {"temp_c": 9}}),
])
def test_series_typed_and_generic_paths_agree(monkeypatch, code, topic, payload):
    typed = decode(topic, payload)
    monkeypatch.setattr(decode_module, "_series_json", _Refuses())  # every series takes the generic path
    generic = decode(topic, payload)
    assert [x.reason for x in typed[0].rejections] == [x.reason for x in generic[0].rejections]
    assert bool(typed[0].rejections) == bool(code)
    assert typed[0].seen == generic[0].seen
    for col in ("device_id", "metric", "ts", "value"):
        assert list(getattr(typed[1], col)) == list(getattr(generic[1], col))


FLAT_CASES = [
    {"ts": NOW, "metrics": {"laeq_db": 63, "lmax_db": 71.8}},
    {"ts": NOW, "seq": 9, "metrics": {"pm10_ugm3": 88}},
    {"ts": NOW, "fw": "1.2", "metrics": {"laeq_db": 50}},  # an extra key: the generic path
    {"ts": float(NOW), "metrics": {"laeq_db": 50}},
    {"ts": "2025-11-29T16:00:00.123+08:00", "metrics": {"laeq_db": 50}},
    {"ts": NOW, "metrics": {}},
    {"ts": NOW, "metrics": {"laeq_db": True}},
    {"ts": NOW, "metrics": {"laeq_db": "63"}},
    {"ts": NOW, "metrics": {"laeq_db": None}},
    {"ts": NOW, "metrics": {"laeq_db": 63, "volume_m3": 1}},
    {"ts": NOW, "metrics": {"laeq_db": 63, "lmax_db": 999}},
    {"ts": True, "metrics": {"laeq_db": 63}},
    {"ts": NOW + 3_600_000, "metrics": {"laeq_db": 63}},
    {"metrics": {"laeq_db": 63}},
    {"ts": NOW, "metrics": {"laeq_db": 63}, "readings": [{"ts": NOW, "metrics": {"laeq_db": 1}}]},
    {"ts": NOW, "metrics": {"laeq_db": 123456789012345678901234567890}},
    b'{"ts": %d, "metrics": {"laeq_db": 1e999}}' % NOW,
    b'{"ts": %d, "metrics": {"laeq_db": 50, "laeq_db": 60}}' % NOW,
]


@pytest.mark.parametrize("payload", FLAT_CASES,
                         ids=[(c.decode() if isinstance(c, bytes) else json.dumps(c))[:60] for c in FLAT_CASES])
def test_typed_fast_path_decodes_exactly_like_the_generic_path(payload, monkeypatch):
    """`{"ts", "metrics"}` messages take a typed msgspec decode; the result (readings, their
    order and types, rejections and their reasons) is the generic path's."""
    fast_d, fast_r = decode("city/noise/noise-1/telemetry", payload)

    class Refuse:
        def decode(self, raw):
            raise msgspec.DecodeError("forced onto the generic path")

    monkeypatch.setattr(decode_module, "_flat_json", Refuse())
    slow_d, slow_r = decode("city/noise/noise-1/telemetry", payload)
    assert [x.reason for x in fast_d.rejections] == [x.reason for x in slow_d.rejections]
    assert (fast_d.readings, fast_d.seen) == (slow_d.readings, slow_d.seen)
    assert list(fast_r.metric) == list(slow_r.metric) and list(fast_r.ts) == list(slow_r.ts)
    assert fast_r.value.dtype == slow_r.value.dtype and list(fast_r.value) == list(slow_r.value)
    assert list(fast_r.device_id) == list(slow_r.device_id) and list(fast_r.district) == list(slow_r.district)
