"""Retention policies and downsampling CQs set up by the InfluxDB store, against a real influxd
1.6: created, left alone on a second start, altered when a duration changes, refused politely
when the user is no admin; the CQ's query checked against numpy over 100 Hz bridge data."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from citywatch.settings import ConfigError, load_settings
from ingest.model import Reading, Readings, ReadingsBuilder
from ingest.stores.base import Query, StoreError, open_store
from ingest.stores.influx_retention import AGG_1M, AGG_1S, DOWNSAMPLINGS, LateReadings, Retention
from ingest.stores.influxdb import InfluxDBStore
from tests.support.influxd import Influxd

pytestmark = pytest.mark.integration
_n = itertools.count(1)
DAY_H = 24
FULL = Retention("30d", True, "3650d")


@pytest.fixture
def url(influxd) -> str:
    return f"influxdb://127.0.0.1:{influxd.port}/rp{next(_n)}"


def influxql(http: str, db: str, q: str, auth=None) -> list[dict]:
    r = httpx.post(f"{http}/query", data={"db": db, "q": q, "epoch": "ms"}, auth=auth)
    r.raise_for_status()
    return r.json()["results"]


def rows(http: str, db: str, q: str) -> list[dict]:
    """The rows of every series of ``q``, each a dict with the series' tags."""
    out = []
    for series in influxql(http, db, q)[0].get("series", []):
        tags = series.get("tags", {})
        out += [{**tags, **dict(zip(series["columns"], v, strict=True))} for v in series.get("values", [])]
    return out


def policies(http: str, db: str) -> dict[str, tuple[str, str, bool]]:
    """name -> (duration, shard duration, default), as SHOW RETENTION POLICIES says."""
    return {r["name"]: (r["duration"], r["shardGroupDuration"], r["default"])
            for r in rows(http, db, f'SHOW RETENTION POLICIES ON "{db}"')}


def cqs(http: str, db: str) -> dict[str, str]:
    return {r["name"]: r["query"] for r in rows(http, "", "SHOW CONTINUOUS QUERIES")
            if r["query"].split(" ON ", 1)[1].startswith(f"{db} ")}


def open_with(url: str, retention: Retention) -> list[str]:
    """Open the store (as ``citywatch serve`` does, from the settings) and return what it logged."""
    handler = _Records()
    logger = logging.getLogger("ingest.stores.influxdb")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        open_store(url, retention=retention).close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    return handler.messages


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")


def test_policies_and_queries_exist_after_start_and_a_second_start_changes_nothing(url, influxd) -> None:
    db = url.rsplit("/", 1)[1]
    first = open_with(url, FULL)
    assert policies(influxd.http, db) == {
        "autogen": ("720h0m0s", "24h0m0s", True),  # the write RP: 30 days, shards of a day
        AGG_1S: ("87600h0m0s", "168h0m0s", False), AGG_1M: ("87600h0m0s", "168h0m0s", False)}
    made = cqs(influxd.http, db)
    assert sorted(n.rsplit("_", 1)[0] for n in made) == ["citywatch_1m_fast", "citywatch_1s"]
    one_s = next(q for n, q in made.items() if n.startswith("citywatch_1s_"))
    assert f"RESAMPLE EVERY 1m FOR 2m BEGIN SELECT mean(*), min(*), max(*) INTO {db}.{AGG_1S}.:MEASUREMENT " \
           f"FROM {db}.autogen./^(bridge)$/ GROUP BY time(1s), * END" in one_s
    assert len([m for m in first if m.startswith("INFO")]) == 5  # 1 ALTER, 2 CREATE RP, 2 CREATE CQ

    assert open_with(url, FULL) == []  # nothing to do, nothing logged
    assert cqs(influxd.http, db) == made


def test_changed_durations_are_altered_and_the_queries_kept(url, influxd) -> None:
    db = url.rsplit("/", 1)[1]
    open_with(url, FULL)
    made = cqs(influxd.http, db)
    logged = open_with(url, Retention("7d", True, "inf"))
    assert policies(influxd.http, db) == {
        "autogen": ("168h0m0s", "24h0m0s", True),
        AGG_1S: ("0s", "168h0m0s", False), AGG_1M: ("0s", "168h0m0s", False)}
    assert [m.split(": ", 1)[1].split(" ON ")[0] for m in logged] == [
        'ALTER RETENTION POLICY "autogen"', f'ALTER RETENTION POLICY "{AGG_1S}"', f'ALTER RETENTION POLICY "{AGG_1M}"']
    assert cqs(influxd.http, db) == made

    open_with(url, Retention("7d", False))  # downsampling off: its CQs go, its RPs and their data stay
    assert cqs(influxd.http, db) == {}
    assert set(policies(influxd.http, db)) == {"autogen", AGG_1S, AGG_1M}


def test_the_url_rp_is_the_raw_one_and_created_when_missing(url, influxd) -> None:
    db = url.rsplit("/", 1)[1]
    open_with(url + "?rp=raw", FULL)
    assert policies(influxd.http, db)["raw"] == ("720h0m0s", "24h0m0s", False)
    assert policies(influxd.http, db)["autogen"] == ("0s", "168h0m0s", True)  # untouched
    assert all(f"FROM {db}.raw./^(" in q for q in cqs(influxd.http, db).values())


def test_a_changed_query_is_replaced(url, influxd) -> None:
    """Writing into another RP changes the CQs' statements: dropped and created anew (InfluxQL has
    no ALTER CONTINUOUS QUERY); a CQ's name carries its statement's hash."""
    db = url.rsplit("/", 1)[1]
    open_with(url, FULL)
    before = cqs(influxd.http, db)
    logged = open_with(url + "?rp=raw", FULL)
    after = cqs(influxd.http, db)
    assert not set(before) & set(after) and len(after) == 2
    assert sorted(m.split(": ", 1)[1].split(" QUERY ")[0] for m in logged if "QUERY" in m) == [
        "CREATE CONTINUOUS", "CREATE CONTINUOUS", "DROP CONTINUOUS", "DROP CONTINUOUS"]


def test_retention_is_checked() -> None:
    with pytest.raises(ValueError, match="raw_retention: '30m'.*at least 1h"):
        Retention("30m")
    assert Retention("1h", True).managed
    with pytest.raises(ValueError, match="aggregate_retention: bad duration"):
        Retention("30d", True, "ten years")
    assert not Retention().managed


@pytest.mark.parametrize("store, key", [
    ("raw_retention = '30d'", "store.raw_retention: retention and downsampling are InfluxDB's"),
    ("downsample = true", "store.downsample: retention and downsampling are InfluxDB's"),
    ("url = 'influxdb://h/cw'\nraw_retention = 'a month'", "store.raw_retention: bad duration 'a month'"),
    ("url = 'influxdb://h/cw'\naggregate_retention = '10m'", "store.aggregate_retention: '10m': a retention is"),
])
def test_bad_store_keys_are_named(tmp_path, store: str, key: str) -> None:
    (tmp_path / "c.toml").write_text(f"[store]\n{store}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(tmp_path / "c.toml", env={})
    assert key in str(e.value), str(e.value)


def test_store_keys_reach_the_store(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no citywatch.toml of the working directory
    env = {"CITYWATCH_STORE_URL": "influxdb://h/cw", "CITYWATCH_STORE_RAW_RETENTION": "30d",
           "CITYWATCH_STORE_DOWNSAMPLE": "true"}
    assert load_settings(None, env=env).store.options() == {"retention": FULL}
    assert load_settings(None, env={"CITYWATCH_STORE_URL": "influxdb://h/cw"}).store.options() == {}


def test_a_node_sets_them_up_from_its_settings(tmp_path, url, influxd) -> None:
    """The wiring: ``citywatch serve``'s Node opens the store with the [store] keys."""
    from citywatch.runner import Node

    s = load_settings(env={}, store={"url": url, "raw_retention": "14d", "downsample": True},
                      state={"url": f"sqlite:///{tmp_path}/state.db"}, ingest={"spool_dir": str(tmp_path / "spool")})
    node = Node(s)
    node.open()
    node.stop()
    db = url.rsplit("/", 1)[1]
    assert policies(influxd.http, db)["autogen"][0] == "336h0m0s" and len(cqs(influxd.http, db)) == 2


def test_a_user_who_may_not_create_policies_gets_a_warning_and_writes(tmp_path) -> None:
    with Influxd(tmp_path, auth=True) as server:
        server.create_admin("admin", "pw")
        for q in ("CREATE DATABASE cw", "CREATE USER writer WITH PASSWORD 'pw'", "GRANT ALL ON cw TO writer"):
            influxql(server.http, "", q, auth=("admin", "pw"))
        url = f"influxdb://writer:pw@127.0.0.1:{server.port}/cw"
        warnings = [m for m in open_with(url, FULL) if m.startswith("WARNING")]
        assert len(warnings) == 1
        assert "refused to set up retention" in warnings[0] and "requires admin privilege" in warnings[0]
        assert 'not run: ALTER RETENTION POLICY "autogen" ON "cw" DURATION 30d SHARD DURATION 1d; ' \
               'CREATE RETENTION POLICY "citywatch_1s"' in warnings[0]  # what an admin may run instead
        with open_store(url, retention=FULL) as store:
            assert store.write(Readings.from_rows([Reading("b-1", "bridge", "strain_ue", 1_779_999_960_000, 1.0)])) == 1
        assert open_with(f"influxdb://admin:pw@127.0.0.1:{server.port}/cw", FULL)[0].startswith("INFO")  # an admin may


def test_token_auth_sends_the_token_header() -> None:
    """``auth=token``: ``Authorization: Token ...`` (2.x/3.x, 1.8+), no Basic; influxd 1.6 has no
    such scheme, so the header is checked on a loopback HTTP server that records it."""
    seen: list[str | None] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization"))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"results":[{"statement_id":0}]}\n')

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        InfluxDBStore(f"influxdb://:s3cr%2Ft@127.0.0.1:{server.server_port}/cw?auth=token").close()
        InfluxDBStore(f"influxdb://u:pw@127.0.0.1:{server.server_port}/cw").close()
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["Token s3cr/t", "Basic dTpwdw=="]
    with pytest.raises(ValueError, match="auth=token .* needs the token as the password"):
        InfluxDBStore("influxdb://127.0.0.1:1/cw?auth=token")


def test_token_auth_is_refused_by_influxd_1_6(tmp_path) -> None:
    """What the docs say: 1.6 knows Basic only; the refusal names the credentials."""
    with Influxd(tmp_path, auth=True) as server:
        server.create_admin("admin", "pw")
        with InfluxDBStore(f"influxdb://:admin%3Apw@127.0.0.1:{server.port}/cw?auth=token") as store:
            with pytest.raises(StoreError, match="refused the credentials"):
                store.write(Readings.from_rows([Reading("n-1", "noise", "laeq_db", 1_779_999_960_000, 50.0)]))


def bridge_batches(t0: int, seconds: int, devices: int, rng: np.random.Generator) -> list[Readings]:
    """100 Hz acceleration and 20 Hz strain of ``devices`` bridge sensors, one batch per 100 ms
    of data, as the pipeline hands them to the store."""
    out = []
    for start in range(t0, t0 + seconds * 1000, 100):
        b = ReadingsBuilder()
        for d in range(devices):
            b.add_window(f"b-{d}", "bridge", "accel_ms2", start, 10.0, rng.normal(0, 0.05, 10), "江汉区", "br-1")
            b.add_window(f"b-{d}", "bridge", "strain_ue", start, 50.0, rng.normal(80, 20, 2), "江汉区", "br-1")
        out.append(b.build())
    return out


def expected(batches: list[Readings], interval_ms: int) -> dict[tuple[str, str, int], tuple[float, float, float]]:
    """(device, metric, interval start) -> (mean, min, max), by numpy."""
    b = Readings.concat(batches)
    out = {}
    keys = np.char.add(np.char.add(b.device_id.astype(str), "|"), b.metric.astype(str))
    bucket = (b.ts.astype(np.int64) // interval_ms) * interval_ms
    for key in np.unique(keys):
        for t in np.unique(bucket[keys == key]):
            v = np.asarray(b.value, np.float64)[(keys == key) & (bucket == t)]
            device, metric = key.split("|")
            out[(device, metric, int(t))] = (v.mean(), v.min(), v.max())
    return out


def aggregates(http: str, db: str, rp: str) -> dict[tuple[str, str, int], tuple[float, float, float]]:
    out = {}
    for r in rows(http, db, f'SELECT * FROM "{rp}"."bridge"'):
        for metric in ("accel_ms2", "strain_ue"):
            if r.get(f"mean_{metric}") is not None:
                out[(r["device_id"], metric, r["time"])] = (r[f"mean_{metric}"], r[f"min_{metric}"], r[f"max_{metric}"])
    return out


def test_the_downsampling_queries_give_numpys_means_minima_and_maxima(url, influxd) -> None:
    """3 bridge sensors, 100 Hz + 20 Hz for 4 s, written through the store; the CQs' own
    SELECT ... INTO run over that past interval (influxd runs CQs on its own schedule)."""
    db = url.rsplit("/", 1)[1]
    t0 = (time.time_ns() // 1_000_000 // 60_000 - 10) * 60_000 + 58_000  # spans a minute boundary
    batches = bridge_batches(t0, 4, 3, np.random.default_rng(19))
    with open_store(url, retention=FULL) as store:
        for b in batches:
            store.write(b)
        store.write(Readings.from_rows([Reading("g-1", "gas_meter", "flow_m3h", t0 + 500, 0.7),
                                        Reading("g-1", "gas_meter", "flow_m3h", t0 + 2500, 0.3)]))
        store.backfill_aggregates(t0 - 60_000, t0 + 120_000)
    assert len(DOWNSAMPLINGS) == 2
    for rp, interval in ((AGG_1S, 1000), (AGG_1M, 60_000)):
        got, want = aggregates(influxd.http, db, rp), expected(batches, interval)
        assert got.keys() == want.keys() and len(want) == (3 * 2 * (4 if interval == 1000 else 2))
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-12, err_msg=str(k))
    gas = rows(influxd.http, db, f'SELECT * FROM "{AGG_1M}"."gas_meter"')  # the slow kinds: copied as they are
    assert [(r["time"], r["device_id"], r["flow_m3h"]) for r in gas] == [
        (t0 + 500, "g-1", 0.7), (t0 + 2500, "g-1", 0.3)]
    assert rows(influxd.http, db, f'SELECT * FROM "{AGG_1S}"."gas_meter"') == []
    assert {r["district"] for r in rows(influxd.http, db, f'SELECT * FROM "{AGG_1S}"."bridge"')} == {"江汉区"}


def test_influxd_runs_the_1s_query_on_its_own_schedule(url, influxd) -> None:
    """The CQ as created, run by influxd itself. influxd 1.6 runs a CQ that never ran at its
    next check (every second, ``[continuous_queries] run-interval``) over its window (the last
    2 min), then every minute: the data is written first, so that first run has it."""
    db = url.rsplit("/", 1)[1]
    t0 = (time.time_ns() // 1_000_000 // 1000 - 20) * 1000
    batches = bridge_batches(t0, 3, 2, np.random.default_rng(7))
    with open_store(url) as store:  # no retention yet: no CQ
        for b in batches:
            store.write(b)
    open_store(url, retention=FULL).close()
    want = expected(batches, 1000)
    deadline = time.monotonic() + 75  # a missed first run: the next one within a minute
    while len(got := aggregates(influxd.http, db, AGG_1S)) < len(want) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got.keys() == want.keys()
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-12, err_msg=str(k))


def test_readings_too_late_for_the_queries_are_aggregated_when_written(url, influxd) -> None:
    """20 min late (a spool replayed after an outage): no CQ run would reach them (the 1 s CQ
    looks 2 min back, the 1 min one 10 min); the store runs the queries for them, for
    their devices and intervals, as the writes move past them, the rest when it closes."""
    db = url.rsplit("/", 1)[1]
    now = time.time_ns() // 1_000_000
    t0 = (now // 60_000 - 20) * 60_000 + 59_000
    batches = bridge_batches(t0, 2, 2, np.random.default_rng(3))
    with InfluxDBStore(url, retention=FULL, clock=lambda: now) as store:
        for b in batches:
            store.write(b)
        day_late = Reading("g-1", "gas_meter", "flow_m3h", now - 30 * 3_600_000, 0.5)  # a daily packet's
        store.write(Readings.from_rows([day_late, Reading("g-1", "gas_meter", "flow_m3h", now - 1000, 0.4)]))
    for rp, interval in ((AGG_1S, 1000), (AGG_1M, 60_000)):
        got, want = aggregates(influxd.http, db, rp), expected(batches, interval)
        assert got.keys() == want.keys()
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-12, err_msg=str(k))
    gas = rows(influxd.http, db, f'SELECT * FROM "{AGG_1M}"."gas_meter"')
    assert [(r["time"], r["flow_m3h"]) for r in gas] == [(day_late.ts, 0.5), (now - 1000, 0.4)]


def test_late_intervals_wait_until_the_writes_moved_past_them() -> None:
    now = 1_800_000_000_000
    kind = np.array(["bridge", "bridge", "gas_meter"], dtype=object)
    device = np.array(["b-1", "b-2", "g-1"], dtype=object)
    late = LateReadings(max_wait_ms=10_000)
    late.add(kind, device, np.array([now - 59_000, now, now - 25 * 3_600_000]), now)
    assert not late  # all within reach of the CQs' next runs
    late.add(kind, device, np.array([now - 61_000, now - 7_200_000, now]), now)

    def spans(statements: list[str]) -> list[tuple[str, str]]:
        return [(s.split("INTO ")[1].split(".:")[0], s.split("WHERE ")[1].split(" GROUP")[0]) for s in statements]

    def where(lo: int, hi: int, device: str) -> str:
        return f"time >= {now - lo}ms AND time < {now - hi}ms AND (\"device_id\" = '{device}')"

    # b-1 is late for the 1 s CQ only, b-2 (two hours back) for both bridge CQs; only b-2's second
    # is complete (a later late reading came); the rest waits...
    assert spans(late.due("cw", "autogen", now)) == [('"cw"."citywatch_1s"', where(7_200_000, 7_199_000, "b-2"))]
    assert late.due("cw", "autogen", now + 9_999) == []
    # ...until it waited max_wait_ms
    assert spans(late.due("cw", "autogen", now + 10_000)) == [
        ('"cw"."citywatch_1s"', where(61_000, 60_000, "b-1")),
        ('"cw"."citywatch_1m"', where(7_200_000, 7_140_000, "b-2"))]
    assert not late

    many = np.array([f"b-{i}" for i in range(250)], dtype=object)  # 250 devices, 5 min late, 3 min long
    late.add(np.full(250, "bridge", dtype=object), many, now - 300_000 + np.arange(250) * 720, now)
    statements = late.due("cw", "autogen", now, everything=True)
    one_s = [s for s in statements if '"citywatch_1s"' in s]
    # 2 runs of at most 2 min (devices 0-166, 167-249), each in queries of at most 100 devices
    assert [s.count('"device_id" =') for s in one_s] == [100, 67, 83]
    assert [s for s in statements if '"citywatch_1m"' in s] == []  # 5 min late: the 1 min CQ still reaches them


def test_a_failed_late_aggregation_is_a_warning_not_a_failed_write(url, influxd, caplog) -> None:
    db = url.rsplit("/", 1)[1]
    now = time.time_ns() // 1_000_000
    with InfluxDBStore(url, retention=FULL, clock=lambda: now) as store:
        influxql(influxd.http, db, f'DROP RETENTION POLICY "{AGG_1S}" ON "{db}"')
        with caplog.at_level(logging.WARNING, "ingest.stores.influxdb"):
            assert store.write(Readings.from_rows([Reading("b-1", "bridge", "strain_ue", now - 600_000, 5.0)])) == 1
    assert "late readings" in caplog.text and "not aggregated" in caplog.text and "backfill_aggregates" in caplog.text


def test_alert_changes_are_kept_as_long_as_the_aggregates(url, influxd) -> None:
    """``write_lines`` (the alert history, rollout snapshots) goes into ``citywatch_1m`` too."""
    db = url.rsplit("/", 1)[1]
    now = time.time_ns() // 1_000_000
    with open_store(url, retention=FULL) as store:
        store.write_lines([f'alerts,rule=gas.tamper state="firing",severity="critical" {now}'])
    for rp in ("autogen", AGG_1M):
        assert [(r["time"], r["state"]) for r in rows(influxd.http, db, f'SELECT * FROM "{rp}"."alerts"')] == [
            (now, "firing")]


def test_a_node_downsamples_what_it_ingests(tmp_path, mosquitto, influxd, url) -> None:
    """End to end: 100 Hz acceleration windows of two bridge sensors, 20 min old, published to
    Mosquitto and ingested by a Node; by its stop, the store has aggregated them itself."""
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from citywatch.runner import Node
    from devices.model import Device
    from tests.support.process import free_port
    from tests.support.wait import wait_for

    db = url.rsplit("/", 1)[1]
    s = load_settings(env={}, mqtt={"url": mosquitto.url, "client_id": f"cw-rp-{db}"},
                      store={"url": url, "raw_retention": "30d", "downsample": True},
                      state={"url": f"sqlite:///{tmp_path}/state.db"}, api={"listen": f"127.0.0.1:{free_port()}"},
                      ingest={"spool_dir": str(tmp_path / "spool")})
    node = Node(s)
    node.open()
    node.registry.upsert([Device(f"b-e2e-{i}", "bridge", "武昌区") for i in range(2)])
    node.start()
    rng = np.random.default_rng(5)
    t0 = (time.time_ns() // 1_000_000 // 1000 - 1200) * 1000
    sent = ReadingsBuilder()
    try:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rp-pub-{db}", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        for w in range(30):  # 3 s of 100 Hz windows of 10 samples each, per device
            for i in range(2):
                values = np.round(rng.normal(0, 0.05, 10), 6)
                sent.add_window(f"b-e2e-{i}", "bridge", "accel_ms2", t0 + w * 100, 10.0, values)
                pub.publish(f"city/bridge/b-e2e-{i}/telemetry", json.dumps(
                    {"ts": t0 + w * 100, "seq": w, "interval_ms": 10, "series": {"accel_ms2": values.tolist()}}),
                    qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        def stored() -> int:
            return sum(len(node.store.query(Query(f"b-e2e-{i}", "accel_ms2", t0, t0 + 3000))) for i in range(2))

        assert wait_for(lambda: stored() == 600, 30, 0.2), stored()
    finally:
        node.stop()
    want = expected([sent.build()], 1000)
    got = {k: v for k, v in aggregates(influxd.http, db, AGG_1S).items() if k[1] == "accel_ms2"}
    assert got.keys() == want.keys() and len(want) == 2 * 3
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-12, err_msg=str(k))
