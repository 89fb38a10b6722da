"""InfluxDB-specific behaviour against a real influxd: URLs, line protocol, errors, outages."""

from __future__ import annotations

import itertools
import time

import httpx
import numpy as np
import pytest

from ingest.model import Reading, Readings, ReadingsBuilder
from ingest.stores.base import Query, StoreError, StoreRejected, StoreUnavailable, open_store
from ingest.stores.influxdb import InfluxDBStore, encode_lines, parse_url, quote_ident, quote_str
from tests.support.influxd import Influxd, free_port

T0 = 1_779_999_960_000
_n = itertools.count(1)

pytestmark = pytest.mark.integration


@pytest.fixture
def url(influxd) -> str:
    return f"influxdb://127.0.0.1:{influxd.port}/i{next(_n)}"


def influxql(influxd: Influxd, db: str, q: str) -> list[dict]:
    r = httpx.post(f"{influxd.http}/query", data={"db": db, "q": q, "epoch": "ms"})
    r.raise_for_status()
    return r.json()["results"]


def test_parse_url() -> None:
    cfg = parse_url("influxdb://cw%40ops:p%3Ass@db.example:8087/citywatch?rp=raw_30d&precision=ms&tls=1&timeout=2.5")
    assert cfg == {"base": "https://db.example:8087", "database": "citywatch", "rp": "raw_30d", "timeout": 2.5,
                   "user": "cw@ops", "password": "p:ss", "token": False}
    assert parse_url("influxdb://127.0.0.1/cw")["base"] == "http://127.0.0.1:8086"
    assert parse_url("influxdb://:t0k@127.0.0.1/cw?auth=token")["token"] is True


@pytest.mark.parametrize("bad, why", [
    ("influxdb://127.0.0.1:8086", "database"),
    ("influxdb://127.0.0.1:8086/a/b", "database"),
    ("influxdb://127.0.0.1:8086/cw?precision=s", "precision"),
    ("influxdb://127.0.0.1:8086/cw?retention=1", "unknown option"),
    ("influxdb://127.0.0.1:8086/cw?timeout=soon", "timeout"),
    ("influx://127.0.0.1:8086/cw", "influxdb://"),
    ("influxdb://u:secret@127.0.0.1:8086/cw?auth=jwt", r"auth='jwt' in 'influxdb://u:\*\*\*@.*expected auth=basic"),
    ("influxdb://127.0.0.1:8086/cw?auth=token", "needs the token as the password"),
])
def test_parse_url_rejects(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_url(bad)


def test_url_attribute_hides_the_password() -> None:
    store = InfluxDBStore("influxdb://cw:s3cret-token@127.0.0.1:1/cw?timeout=0.2")
    assert store.url == "influxdb://cw:***@127.0.0.1:1/cw?timeout=0.2"
    store.close()


def test_quoting() -> None:
    assert quote_str("x' OR '1'='1") == r"'x\' OR \'1\'=\'1'"
    assert quote_str("a\\") == r"'a\\'"
    assert quote_ident('a"b') == r'"a\"b"'


def test_line_protocol_shape_and_escaping() -> None:
    b = ReadingsBuilder()
    b.add("n-1", "noise", "laeq_db", T0, 55.0, "江汉区", "")
    b.add("n-1", "noise", "lmax_db", T0, 70.5, "江汉区", "")
    b.add("n-1", "noise", "laeq_db", T0 + 1000, 56.0, "江汉区", "")
    b.add("f-1", "fume", "fume_mgm3", T0, 1.0, "东西 湖区", "a,b=c")
    assert encode_lines(b.build()) == [
        f"noise,device_id=n-1,district=江汉区 laeq_db=55.0,lmax_db=70.5 {T0}",
        f"noise,device_id=n-1,district=江汉区 laeq_db=56.0 {T0 + 1000}",
        f"fume,asset_id=a\\,b\\=c,device_id=f-1,district=东西\\ 湖区 fume_mgm3=1.0 {T0}",
    ]


@pytest.mark.parametrize("value", ["ends\\", "a\\,b", "two\nlines"])
def test_unrepresentable_tag_values_are_refused(value: str) -> None:
    with pytest.raises(StoreRejected, match="line"):
        encode_lines(Readings.from_rows([("n-1", "noise", "laeq_db", T0, 1.0, value, "")]))


def test_special_characters_round_trip(url: str, influxd: Influxd) -> None:
    odd = ["江汉区 一号, 楼=A", "back\\slash", "quote'\"s", "tab\there"]
    rows = [Reading(f"d-{i}", "toilet", "nh3_mgm3", T0, float(i), v, v) for i, v in enumerate(odd)]
    with open_store(url) as store:
        assert store.write(Readings.from_rows(rows)) == 4
        db = url.rsplit("/", 1)[1]
        res = influxql(influxd, db, 'SHOW TAG VALUES FROM "toilet" WITH KEY = "district"')
        assert sorted(v for _, v in res[0]["series"][0]["values"]) == sorted(odd)
        for i, v in enumerate(odd):  # and each is found by an exactly quoted literal
            q = f'SELECT "nh3_mgm3" FROM "toilet" WHERE "district" = {quote_str(v)}'
            assert influxql(influxd, db, q)[0]["series"][0]["values"] == [[T0, float(i)]]


def test_many_bodies_and_a_new_client_without_the_kind_cache(url: str) -> None:
    b = ReadingsBuilder()
    b.add_series("b-1", "bridge", "strain_ue", T0 + np.arange(12_345) * 10, np.arange(12_345, dtype=float))
    with open_store(url) as store:
        assert store.write(b.build()) == 12_345  # three gzip bodies of <= 5,000 lines
    with open_store(url) as fresh:  # knows no kinds: asks every measurement
        pts = fresh.query(Query("b-1", "strain_ue", T0, T0 + 10**9))
        assert len(pts) == 12_345 and pts[-1] == (T0 + 123_440, 12_344.0)
        assert fresh.query(Query("b-1", "strain_ue", T0, T0 + 10**9, step_ms=60_000))[0] == (T0, 2999.5)
        assert fresh.count() == 12_345


def test_retention_policy_option(url: str, influxd: Influxd) -> None:
    db = url.rsplit("/", 1)[1]
    with open_store(url):  # creates the database
        pass
    influxql(influxd, db, f'CREATE RETENTION POLICY "short" ON "{db}" DURATION 1h REPLICATION 1')
    with open_store(url + "?rp=short") as store:
        now = time.time_ns() // 1_000_000
        old = now - 2 * 3600_000  # beyond the policy: InfluxDB drops it, which is not an error
        assert store.write(Readings.from_rows([Reading("n-1", "noise", "laeq_db", now, 50.0),
                                               Reading("n-1", "noise", "laeq_db", old, 40.0)])) == 1
        assert store.query(Query("n-1", "laeq_db", old, now + 1)) == [(now, 50.0)]
    assert "series" not in influxql(influxd, db, 'SELECT * FROM "autogen"."noise"')[0]


def test_bad_data_is_a_store_error_not_unavailable(url: str, influxd: Influxd) -> None:
    with open_store(url) as store:
        db = url.rsplit("/", 1)[1]
        # laeq_db stored as an integer field first: a float for it is a type conflict (400)
        httpx.post(f"{influxd.http}/write", params={"db": db, "precision": "ms"},
                   content=f"noise,device_id=n-0 laeq_db=1i {T0}").raise_for_status()
        with pytest.raises(StoreRejected, match="400") as info:
            store.write(Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0 + 1, 50.0)]))
        assert not isinstance(info.value, StoreUnavailable)
        assert "conflict" in str(info.value)


def test_server_down_then_up(tmp_path) -> None:
    server = Influxd(tmp_path)
    store = InfluxDBStore(server.url)  # opening while it is down succeeds
    rows = Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0, 50.0, "江汉区")])
    try:
        assert not store.ping()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            store.write(rows)
        server.start()
        assert store.ping()
        assert store.write(rows) == 1  # the database is created before the first write
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.write(rows)
        with pytest.raises(StoreUnavailable):
            store.query(Query("n-1", "laeq_db", T0, T0 + 1))
        server.start()  # same ports, same data
        assert store.write(rows) == 0
        assert store.query(Query("n-1", "laeq_db", T0, T0 + 1)) == [(T0, 50.0)]
    finally:
        store.close()
        server.stop()


def test_timeout_is_unavailable() -> None:
    import socket

    port = free_port()
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", port))
        silent.listen()
        store = InfluxDBStore(f"influxdb://127.0.0.1:{port}/cw?timeout=0.3")
        with pytest.raises(StoreUnavailable, match="timed out"):
            store.write(Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0, 50.0)]))
        store.close()


def test_redelivery_recognised_by_a_new_store_object(url: str) -> None:
    """The newest-ts marks are loaded from InfluxDB: a restarted consumer still counts a
    redelivered message as no new reading, and a late one as new."""
    first = Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0 + t, 50.0, "江汉区") for t in (0, 3000)])
    with open_store(url) as store:
        assert store.write(first) == 2
    with open_store(url) as restarted:
        assert restarted.write(first) == 0
        late = Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0 + 2000, 51.0, "江汉区"),
                                   Reading("n-1", "noise", "laeq_db", T0 + 3000, 52.0, "江汉区")])
        assert restarted.write(late) == 1
        assert restarted.query(Query("n-1", "laeq_db", T0, T0 + 10_000)) == [
            (T0, 50.0), (T0 + 2000, 51.0), (T0 + 3000, 50.0)]
        assert restarted.count() == 3


def test_credentials(tmp_path) -> None:
    with Influxd(tmp_path, auth=True) as server:
        server.create_admin("cw", "p@ss:wörd")
        with InfluxDBStore(f"influxdb://cw:wrong@127.0.0.1:{server.port}/cw") as bad:
            with pytest.raises(StoreError, match="credentials") as info:
                bad.write(Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0, 50.0)]))
            assert not isinstance(info.value, (StoreUnavailable, StoreRejected))  # configuration
        with InfluxDBStore(f"influxdb://cw:p%40ss%3Aw%C3%B6rd@127.0.0.1:{server.port}/cw") as good:
            assert good.write(Readings.from_rows([Reading("n-1", "noise", "laeq_db", T0, 50.0)])) == 1
            assert good.query(Query("n-1", "laeq_db", T0, T0 + 1)) == [(T0, 50.0)]


def test_running_influxd_helper(tmp_path) -> None:
    from tests.support.influxd import running_influxd

    with running_influxd(tmp_path, "helper") as url:
        assert url.endswith("/helper")
        with open_store(url) as store:
            assert store.ping()
    assert not InfluxDBStore(url).ping()
