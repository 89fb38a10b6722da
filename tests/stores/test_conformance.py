"""The store contract (ingest/stores/base.py), run unchanged against DuckDB and InfluxDB."""

from __future__ import annotations

import numpy as np

from ingest.model import Reading, Readings, ReadingsBuilder
from ingest.stores.base import Query, Store

T0 = 1_779_999_960_000  # 2026-05-28, ms; a multiple of 60 s
EVER = (0, 2**53)


def noise(device: str, ts: int, laeq: float, lmax: float, district: str = "江汉区") -> list[Reading]:
    """The readings of one single-reading noise message (two metrics, one timestamp)."""
    return [Reading(device, "noise", "laeq_db", ts, laeq, district, ""),
            Reading(device, "noise", "lmax_db", ts, lmax, district, "")]


def waveform(device: str, start: int, n: int, period_ms: int = 10) -> Readings:
    b = ReadingsBuilder()
    b.add_series(device, "bridge", "accel_ms2", start + np.arange(n, dtype=np.int64) * period_ms,
                 np.sin(np.arange(n) / 7.0), "汉阳区", "长江大桥-桥墩3")
    return b.build()


def points(store: Store, device: str, metric: str, start: int = EVER[0], end: int = EVER[1],
           step_ms: int | None = None, limit: int = 100_000) -> list[tuple[int, float]]:
    return store.query(Query(device, metric, start, end, step_ms, limit))


def test_write_then_query_raw(store: Store) -> None:
    rows = noise("n-1", T0, 55.5, 71.25) + noise("n-1", T0 + 60_000, 56.0, 70.0) + noise("n-2", T0, 40.0, 50.0)
    assert store.write(Readings.from_rows(rows)) == 6
    assert store.count() == 6
    assert points(store, "n-1", "laeq_db") == [(T0, 55.5), (T0 + 60_000, 56.0)]
    assert points(store, "n-1", "lmax_db") == [(T0, 71.25), (T0 + 60_000, 70.0)]
    assert points(store, "n-2", "laeq_db") == [(T0, 40.0)]


def test_values_round_trip_exactly(store: Store) -> None:
    values = [0.1, -273.15, 1e-9, 123456789.123456, 2.0 / 3.0, 0.0]
    rows = [Reading("g-1", "gas_meter", "flow_m3h", T0 + i, v, "武昌区", "") for i, v in enumerate(values)]
    store.write(Readings.from_rows(rows))
    assert [v for _, v in points(store, "g-1", "flow_m3h")] == values


def test_duplicate_write_is_stored_once(store: Store) -> None:
    batch = Readings.from_rows(noise("n-1", T0, 55.0, 70.0) + noise("n-1", T0 + 1000, 56.0, 71.0))
    assert store.write(batch) == 4
    assert store.write(batch) == 0
    assert store.count() == 4
    # a redelivered message inside a batch of new ones
    mixed = Readings.from_rows(noise("n-1", T0 + 1000, 56.0, 71.0) + noise("n-1", T0 + 2000, 57.0, 72.0))
    assert store.write(mixed) == 2
    # the same message twice in one batch
    twice = Readings.from_rows(noise("n-1", T0 + 3000, 58.0, 73.0) * 2)
    assert store.write(twice) == 2
    assert store.count() == 8
    assert points(store, "n-1", "laeq_db") == [(T0, 55.0), (T0 + 1000, 56.0), (T0 + 2000, 57.0),
                                               (T0 + 3000, 58.0)]


def test_duplicate_waveform_is_stored_once(store: Store) -> None:
    w = waveform("b-1", T0, 100)
    assert store.write(w) == 100
    assert store.write(w) == 0
    assert store.write(Readings.concat([waveform("b-1", T0 + 2000, 100)] * 2)) == 100
    assert store.write(waveform("b-1", T0 + 1500, 100)) == 50  # overlaps the next window by half
    assert store.count() == 250
    assert [t for t, _ in points(store, "b-1", "accel_ms2")] == (
        list(range(T0, T0 + 1000, 10)) + list(range(T0 + 1500, T0 + 3000, 10)))


def test_query_with_step_means(store: Store) -> None:
    rows = [Reading("l-1", "lighting", "power_w", T0 + i * 20_000, float(v), "江岸区", "灯杆-7")
            for i, v in enumerate([10, 20, 30, 40, 50, 60, 70])]  # every 20 s for 140 s
    store.write(Readings.from_rows(rows))
    # steps aligned to the epoch (T0 is a multiple of 60 s); each point at its step's start
    assert points(store, "l-1", "power_w", step_ms=60_000) == [
        (T0, 20.0), (T0 + 60_000, 50.0), (T0 + 120_000, 70.0)]
    assert points(store, "l-1", "power_w", T0 + 20_000, T0 + 100_000, step_ms=60_000) == [
        (T0, 25.0), (T0 + 60_000, 45.0)]
    assert points(store, "l-1", "power_w", step_ms=60_000, limit=2) == [(T0, 20.0), (T0 + 60_000, 50.0)]


def test_newest_first_keeps_the_latest_points(store: Store) -> None:
    """``readings?limit=N`` (order=desc, the default) shows the latest N, raw and stepped."""
    store.write(Readings.from_rows([Reading("t-1", "toilet", "nh3_mgm3", T0 + i * 20_000, float(i), "洪山区", "")
                                    for i in range(10)]))
    latest = store.query(Query("t-1", "nh3_mgm3", *EVER, None, 3, newest_first=True))
    assert latest == [(T0 + 180_000, 9.0), (T0 + 160_000, 8.0), (T0 + 140_000, 7.0)]
    stepped = store.query(Query("t-1", "nh3_mgm3", *EVER, 60_000, 2, newest_first=True))
    assert stepped == [(T0 + 180_000, 9.0), (T0 + 120_000, 7.0)]  # means of 9 and of 6, 7, 8


def test_time_range_start_inclusive_end_exclusive(store: Store) -> None:
    store.write(Readings.from_rows([Reading("t-1", "toilet", "nh3_mgm3", T0 + i * 1000, float(i), "洪山区", "")
                                    for i in range(10)]))
    assert [t for t, _ in points(store, "t-1", "nh3_mgm3", T0 + 2000, T0 + 5000)] == [
        T0 + 2000, T0 + 3000, T0 + 4000]
    assert points(store, "t-1", "nh3_mgm3", T0 + 2001, T0 + 3000) == []
    assert points(store, "t-1", "nh3_mgm3", T0 + 9000, T0 + 9001) == [(T0 + 9000, 9.0)]
    assert points(store, "t-1", "nh3_mgm3", limit=3) == [(T0, 0.0), (T0 + 1000, 1.0), (T0 + 2000, 2.0)]


def test_chinese_tag_values(store: Store) -> None:
    rows = [Reading("f-1", "fume", "fume_mgm3", T0, 1.5, "江汉区", "餐馆-老通城, 一楼=后厨"),
            Reading("f-2", "fume", "fume_mgm3", T0, 0.5, "东西湖区", "")]
    assert store.write(Readings.from_rows(rows)) == 2
    assert points(store, "f-1", "fume_mgm3") == [(T0, 1.5)]
    assert points(store, "f-2", "fume_mgm3") == [(T0, 0.5)]
    assert store.write(Readings.from_rows(rows)) == 0


def test_empty_results(store: Store) -> None:
    assert store.count() == 0
    assert points(store, "nobody", "laeq_db") == []
    assert store.write(Readings.empty()) == 0
    store.write(Readings.from_rows(noise("n-1", T0, 50.0, 60.0)))
    assert points(store, "nobody", "laeq_db") == []
    assert points(store, "n-1", "no_such_metric") == []
    assert points(store, "n-1", "laeq_db", T0 + 1, T0 + 10_000) == []
    assert points(store, "n-1", "laeq_db", T0 + 10, T0) == []  # end before start
    assert points(store, "n-1", "laeq_db", step_ms=1000, start=0, end=T0) == []


def test_several_kinds(store: Store) -> None:
    rows = (noise("n-1", T0, 50.0, 60.0)
            + [Reading("g-1", "gas_meter", "temp_c", T0, 12.0, "青山区", "表-1"),
               Reading("t-1", "toilet", "temp_c", T0, 25.0, "青山区", ""),
               Reading("l-1", "lighting", "lamp_on", T0, 1.0, "江汉区", "")])
    assert store.write(Readings.concat([Readings.from_rows(rows), waveform("b-1", T0, 50)])) == 55
    assert store.count() == 55
    assert points(store, "g-1", "temp_c") == [(T0, 12.0)]
    assert points(store, "t-1", "temp_c") == [(T0, 25.0)]
    assert points(store, "l-1", "lamp_on") == [(T0, 1.0)]
    assert len(points(store, "b-1", "accel_ms2")) == 50


def test_series_of_10000_samples(store: Store) -> None:
    w = waveform("b-9", T0, 10_000)
    assert store.write(w) == 10_000
    got = points(store, "b-9", "accel_ms2")
    assert [t for t, _ in got] == w.ts.tolist()
    assert np.allclose([v for _, v in got], w.value, rtol=0, atol=0)
    means = points(store, "b-9", "accel_ms2", step_ms=1000)  # 100 samples per step
    assert len(means) == 100
    assert np.allclose([v for _, v in means], w.value.reshape(100, 100).mean(axis=1))
    assert store.write(w) == 0
    assert store.count() == 10_000


def test_hostile_device_id_cannot_change_a_query(store: Store) -> None:
    hostile = "x' OR '1'='1"
    store.write(Readings.from_rows(noise("n-1", T0, 50.0, 60.0)))
    assert points(store, hostile, "laeq_db") == []
    assert points(store, 'n-1" OR 1=1 --', "laeq_db") == []
    assert points(store, "n-1", 'laeq_db" FROM /.*/ --') == []
    assert points(store, "n-1\\", "laeq_db", step_ms=1000) == []
    # stored under that id, it is found as itself and nothing else
    store.write(Readings.from_rows([Reading(hostile, "noise", "laeq_db", T0 + 5, 99.0, "江汉区", "")]))
    assert points(store, hostile, "laeq_db") == [(T0 + 5, 99.0)]
    assert points(store, "n-1", "laeq_db") == [(T0, 50.0)]


def test_ping_and_url(store: Store) -> None:
    assert store.ping()
    assert store.url.split(":", 1)[0] in ("duckdb", "influxdb")


def test_random_redeliveries_match_a_model(store: Store) -> None:
    """Batches mixing new messages, redelivered ones and re-sent overlapping windows, in
    random order: every write returns exactly the new readings, and what is stored is the
    first value written for every (device, metric, ts)."""
    rng = np.random.default_rng(7)
    model: dict[tuple[str, str, int], float] = {}
    sent: list[Readings] = []  # every message so far, for redelivery
    for round_ in range(12):
        messages: list[Readings] = []
        for _ in range(int(rng.integers(1, 6))):
            device = f"b-{int(rng.integers(0, 3))}"
            start = T0 + int(rng.integers(0, 40)) * 50  # windows land on one another
            n = int(rng.integers(1, 30))
            b = ReadingsBuilder()
            b.add_series(device, "bridge", ["accel_ms2", "strain_ue"][int(rng.integers(0, 2))],
                         start + np.arange(n) * 10, round_ + np.arange(n) / 100)
            messages.append(b.build())
        for _ in range(int(rng.integers(0, 6))):
            device = f"n-{int(rng.integers(0, 4))}"
            ts = T0 + int(rng.integers(0, 20)) * 1000
            messages.append(Readings.from_rows(noise(device, ts, float(round_), float(-round_))))
        for _ in range(int(rng.integers(0, 4))):
            if sent:
                messages.append(sent[int(rng.integers(0, len(sent)))])
        if messages and rng.random() < 0.5:
            messages.append(messages[0])  # redelivered into the same batch
        order = rng.permutation(len(messages))
        batch = Readings.concat([messages[i] for i in order])
        expected_new = 0
        for r in batch:
            key = (r.device_id, r.metric, r.ts)
            if key not in model:
                model[key] = r.value
                expected_new += 1
        assert store.write(batch) == expected_new, f"round {round_}"
        sent.extend(messages)
    assert store.count() == len(model)
    for device, metric in {(d, m) for d, m, _ in model}:
        assert points(store, device, metric) == sorted((t, v) for (d, m, t), v in model.items()
                                                       if (d, m) == (device, metric))


def test_write_says_the_kinds_of_the_duplicates_it_dropped(store: Store) -> None:
    """For the per-kind counters: ``write`` returns the new count with ``duplicates_by_kind``."""
    first = Readings.from_rows(noise("n-1", T0, 55.0, 70.0))
    assert store.write(first).duplicates_by_kind == {}
    w = waveform("b-1", T0, 50)
    assert store.write(w).duplicates_by_kind == {}
    again = Readings.concat([first, w, Readings.from_rows(noise("n-2", T0, 50.0, 60.0))])
    written = store.write(again)
    assert written == 2 and written.duplicates_by_kind == {"noise": 2, "bridge": 50}
    twice = Readings.from_rows(noise("n-3", T0, 50.0, 60.0) * 2)
    written = store.write(twice)
    assert written == 2 and written.duplicates_by_kind == {"noise": 2}


def test_latest_values_of_a_metric(store: Store) -> None:
    rows = [Reading("g-1", "gas_meter", "rsrp_dbm", T0, -100.0, "江汉区", "表-1"),
            Reading("g-1", "gas_meter", "battery_v", T0, 3.6, "江汉区", "表-1"),
            Reading("g-2", "gas_meter", "rsrp_dbm", T0 + 5, -121.5, "武昌区", ""),
            Reading("n-1", "noise", "rsrp_dbm", T0 + 7, -90.0, "江汉区", "")]  # another kind, same metric
    store.write(Readings.from_rows(rows))
    store.write(Readings.from_rows([Reading("g-1", "gas_meter", "rsrp_dbm", T0 + 3_600_000, -118.0, "江汉区", "表-1")]))
    # a late reading, older than the newest: not the latest
    store.write(Readings.from_rows([Reading("g-2", "gas_meter", "rsrp_dbm", T0 - 3_600_000, -80.0, "武昌区", "")]))
    assert store.latest_values("rsrp_dbm") == {"g-1": (T0 + 3_600_000, -118.0), "g-2": (T0 + 5, -121.5),
                                               "n-1": (T0 + 7, -90.0)}
    assert store.latest_values("battery_v") == {"g-1": (T0, 3.6)}
    assert store.latest_values("no_such_metric") == {}
