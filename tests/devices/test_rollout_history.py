"""Daily rollout snapshots: kept once per local day in the state DB, read back by --as-of, and
written as the ``rollout`` measurement into a real influxd."""

from __future__ import annotations

import pytest

from devices.registry import Registry
from devices.rollout import RolloutOptions, RolloutReport
from devices.rollout_history import SnapshotWriter, encode_points, read_snapshot, snapshot_days, store_snapshot
from ingest.stores.influxdb import InfluxDBStore

from .rollout_programme import DAY, P, generate, load, local_day, ms

NOW = ms("2026-11-29T12:00")


def test_snapshot_round_trip_and_missing_dates(registry, tmp_path):
    load(registry, generate(tmp_path, NOW))
    doc = RolloutReport(registry, NOW).to_dict()
    assert store_snapshot(registry.conn, doc) is True
    assert store_snapshot(registry.conn, RolloutReport(registry, NOW + 3600_000).to_dict()) is False  # same day
    back = read_snapshot(registry.conn, "2026-11-29")
    assert back == {**doc, "source": "snapshot"}
    assert [p["programme"] for p in read_snapshot(registry.conn, "2026-11-29", P)["programmes"]] == [P]
    with pytest.raises(LookupError, match=r"no rollout snapshot of 2026-11-28 \(snapshots from 2026-11-29 to "
                                          r"2026-11-29, 1 days\)"):
        read_snapshot(registry.conn, "2026-11-28")
    with pytest.raises(LookupError, match="has no programme 'x'"):
        read_snapshot(registry.conn, "2026-11-29", "x")
    with pytest.raises(ValueError, match="expected a date YYYY-MM-DD, got '29/11/2026'"):
        read_snapshot(registry.conn, "29/11/2026")


def test_writer_keeps_one_snapshot_per_local_day(registry, tmp_path):
    w = SnapshotWriter(registry, options=RolloutOptions())
    assert w.tick(NOW) is None and snapshot_days(registry.conn) == []  # no programme yet
    load(registry, generate(tmp_path, NOW))
    assert w.tick(NOW) == "2026-11-29"  # at start
    assert w.tick(NOW + 3600_000) is None  # the same day
    assert w.tick(ms("2026-11-29T23:59:59")) is None
    assert w.tick(ms("2026-11-30T00:00:01")) == "2026-11-30"  # the first tick of the next local day
    # a restart the same day writes nothing new
    assert SnapshotWriter(registry, options=RolloutOptions()).tick(ms("2026-11-30T08:00")) is None
    assert snapshot_days(registry.conn) == ["2026-11-29", "2026-11-30"]
    first = read_snapshot(registry.conn, "2026-11-29")
    assert first["generated_at"] == "2026-11-29T12:00:00+08:00" and first["as_of"] == "2026-11-29"
    assert first == {**RolloutReport(registry, NOW).to_dict(), "source": "snapshot"}


def test_points_in_influxd(registry, tmp_path, influxd):
    load(registry, generate(tmp_path, NOW))
    store = InfluxDBStore(f"influxdb://127.0.0.1:{influxd.port}/rollout_snap")
    try:
        w = SnapshotWriter(registry, options=RolloutOptions(), latest=store.latest_values,
                           write_lines=store.write_lines)
        w.tick(NOW)
        w.tick(NOW + DAY)
        doc = read_snapshot(registry.conn, "2026-11-29")
        rows = {}
        for _, series in store._select(['SELECT * FROM "rollout" GROUP BY "programme", "district"']):
            cols = series["columns"]
            for values in series["values"]:
                rows.setdefault((series["tags"]["programme"], series["tags"]["district"]), []).append(
                    dict(zip(cols, values, strict=True)))
        want = {}
        for p in doc["programmes"]:
            for district, figs in [("_all", p["totals"])] + [(d["district"], d) for d in p["districts"]]:
                want[(p["programme"], district)] = figs
        assert set(rows) == set(want)
        for key, figs in want.items():
            day1, day2 = rows[key]  # one point per local day, at its local midnight
            assert (day1["time"], day2["time"]) == (ms("2026-11-29T00:00"), ms("2026-11-30T00:00"))
            for f in ("target", "planned", "installed", "commissioned", "reporting"):
                assert day1[f] == figs[f] and isinstance(day1[f], int), (key, f)
            assert day1["pace_per_week"] == pytest.approx(figs["pace_per_week"])
            assert day1["commissioned_share"] == pytest.approx(figs["commissioned_share"])
        types = {s["name"]: dict(s["values"]) for _, s in store._select(['SHOW FIELD KEYS FROM "rollout"'])}
        assert types["rollout"]["target"] == "integer" and types["rollout"]["pace_per_week"] == "float"
        assert store.count() == 0  # the snapshots are not readings
    finally:
        store.close()


def test_points_are_retried_while_the_store_refuses(registry, tmp_path):
    load(registry, generate(tmp_path, NOW))
    calls = []

    def flaky(lines):
        calls.append(len(lines))
        if len(calls) == 1:
            raise OSError("store down")

    w = SnapshotWriter(registry, options=RolloutOptions(), write_lines=flaky)
    assert w.tick(NOW) == "2026-11-29"
    w.tick(NOW + 60_000)
    w.tick(NOW + 120_000)
    assert calls == [len(encode_points(read_snapshot(registry.conn, "2026-11-29"), "Asia/Shanghai"))] * 2


def test_a_node_on_influxdb_keeps_the_days_snapshot_at_start(influxd, mosquitto, tmp_path):
    """citywatch.runner wires the writer: at start the state DB row and the ``rollout`` points."""
    import time

    import httpx

    from citywatch.runner import Node
    from citywatch.settings import load_settings
    from tests.support.mosquitto import free_port
    from tests.support.wait import wait_for

    now = int(time.time() * 1000)
    reg = Registry.open(tmp_path / "state.db")
    load(reg, generate(tmp_path, now))
    reg.close()
    db = "noderollout"
    s = load_settings(env={}, mqtt={"url": mosquitto.url, "client_id": "rollout-node"},
                      store={"url": f"influxdb://127.0.0.1:{influxd.port}/{db}"},
                      state={"url": f"sqlite:///{tmp_path}/state.db"}, api={"listen": f"127.0.0.1:{free_port()}"},
                      ingest={"spool_dir": str(tmp_path / "spool")})
    node = Node(s)
    node.start()
    try:
        def points():
            r = httpx.get(f"{influxd.http}/query", params={"db": db, "epoch": "ms",
                                                           "q": 'SELECT * FROM "rollout" GROUP BY *'})
            return r.json()["results"][0].get("series", [])

        assert wait_for(lambda: len(points()) == 2 + 5 + 1, 20), points()  # 2 programme totals, 5 + 1 districts
        reg = Registry.open(tmp_path / "state.db")
        day = local_day(now).isoformat()
        assert snapshot_days(reg.conn) == [day]
        doc = read_snapshot(reg.conn, day)
        reg.close()
        jh = next(x for x in points() if x["tags"] == {"programme": P, "district": "江汉区"})
        row = dict(zip(jh["columns"], jh["values"][0], strict=True))
        [want] = [d for p in doc["programmes"] for d in p["districts"]
                  if p["programme"] == P and d["district"] == "江汉区"]
        assert row["commissioned"] == want["commissioned"] and row["time"] == ms(day + "T00:00")
        assert "weak_signal" in doc["exceptions"]  # the node's store answered latest_values
    finally:
        node.stop()
