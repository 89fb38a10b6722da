"""At-least-once from broker to store under faults (issue 3, "Show"), with real processes only:
Mosquitto with persistence, influxd, and ``citywatch serve`` as a subprocess with a fixed client
id (a persistent MQTT 5 session), publishing single-reading QoS 1 JSON messages from here.

(a) SIGKILL the consumer three times during a 100,000-message stream: every reading stored once.
(b) influxd stopped for 30 s mid-stream: nothing lost, the spool fills and drains, RSS bounded.
(c) Mosquitto restarted mid-stream: the consumer reconnects by itself, nothing QoS 1 is lost.
(d) every message delivered twice (and once more later): stored once, in both stores.
(e) SIGTERM mid-stream twice: clean exits, every reading stored once.
(f) influxd down with a small spool: it stops at its limit, acknowledgements are held, the
    consumer is SIGKILLed there and restarted; all arrives once influxd is back.

Each test prints one ``[faults]`` line of figures (``pytest -s``).
"""

from __future__ import annotations

import sqlite3
import time

import duckdb
import httpx
import pytest

from tests.faults.harness import (
    KIND,
    METRIC,
    Background,
    Publisher,
    RssSampler,
    Serve,
    device_ids,
    done,
    register_devices,
    stream,
    subscribed,
    timings_line,
)
from tests.support.influxd import Influxd
from tests.support.mosquitto import Mosquitto

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(300)]

DEVICES = 300


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def influxd(tmp_path):
    server = Influxd(tmp_path / "influxd").start()
    yield server
    server.stop()


@pytest.fixture
def cleanup():
    """Stops whatever the test started (consumer, publisher) even when it fails."""
    things: list = []
    yield things
    for t in reversed(things):
        if isinstance(t, Serve):
            t.kill()
        else:
            t.close()


def stored(m: dict[str, float]) -> int:
    """Readings newly stored by this consumer process (duplicates not counted)."""
    return int(m.get("citywatch_ingest_readings_stored_total", 0))


def duckdb_counts(path) -> tuple[int, int]:
    """(rows, distinct (device, metric, ts)) in a DuckDB store no process holds open."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT (device_id, metric, ts)) FROM readings"
                           ).fetchone()
    finally:
        con.close()


def influx_count(server: Influxd) -> int:
    """Points of the stream's metric in InfluxDB (a rewritten point counts once)."""
    q = f'SELECT count("{METRIC}") FROM "{KIND}"'
    r = httpx.get(f"{server.http}/query", params={"db": server.database, "q": q}, timeout=30)
    r.raise_for_status()
    series = r.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def node(tmp_path, broker, store_url: str, n: int, **serve_kw) -> tuple[Serve, list]:
    """A node (not started) on ``store_url`` with DEVICES registered, and a stream of ``n``
    messages of theirs."""
    serve = Serve(tmp_path / "node", broker.port, store_url, **serve_kw)
    ids = device_ids(DEVICES)
    register_devices(serve.state_db, ids)
    return serve, stream(ids, n, now_ms() - 3_600_000)


def publisher(serve: Serve, broker, cleanup) -> Publisher:
    """A publisher (closed by ``cleanup``), returned once the started node has subscribed."""
    pub = Publisher(broker.port)
    cleanup.append(pub)
    subscribed(serve, pub)
    return pub


def test_a_sigkill_consumer_three_times(tmp_path, broker, cleanup):
    n = 100_000
    db = tmp_path / "node" / "readings.duckdb"
    serve, messages = node(tmp_path, broker, f"duckdb:///{db}", n)
    t0 = time.monotonic()
    cleanup.append(serve.start())
    pub = publisher(serve, broker, cleanup)
    publishing = Background(pub.publish, messages, deadline_s=240)

    stored_before = 0  # readings in the store when the current process started
    at_kill: list[int] = []
    for target in (20_000, 45_000, 70_000):
        serve.wait_metrics(lambda m, base=stored_before, t=target: base + stored(m) >= t,
                           120, f"{target} readings stored before a kill")
        serve.kill()
        rows, distinct = duckdb_counts(db)
        assert rows == distinct, f"a reading stored twice after kill {len(at_kill) + 1}"
        assert rows >= target  # what was counted as stored was committed
        at_kill.append(rows)
        stored_before = rows
        serve.start()

    serve.wait_metrics(lambda m: stored_before + stored(m) >= n,
                       180, f"all {n} readings stored")
    report = publishing.result(60)
    totals = serve.stop()
    elapsed = time.monotonic() - t0
    rows, distinct = duckdb_counts(db)
    assert (rows, distinct) == (n, n)
    assert stored_before + totals["stored"] == n
    print(timings_line("a sigkill x3", messages=n, stored_at_kills=at_kill,
                       publish_s=round(report.seconds, 1),
                       republished=report.republished, total_s=round(elapsed, 1),
                       last_process=totals))


def test_b_influxd_down_30s_spools_and_drains(tmp_path, broker, influxd, cleanup):
    n, rate, outage_s = 45_000, 1_000.0, 30.0
    serve, messages = node(tmp_path, broker, influxd.url, n)
    cleanup.append(serve.start())
    rss = RssSampler(serve.proc.pid)
    pub = publisher(serve, broker, cleanup)
    t0 = time.monotonic()
    publishing = Background(pub.publish, messages, rate=rate, deadline_s=120)

    serve.wait_metrics(lambda m: done(m) >= 5_000, 60, "5,000 readings stored before the outage")
    influxd.stop()
    down_at = time.monotonic() - t0
    # while influxd is down, readings go to the spool, and they wait there (not drained)
    mid = serve.wait_metrics(lambda m: m.get("citywatch_ingest_readings_spooled_total", 0) > 0
                             and m.get("citywatch_ingest_spool_bytes", 0) > 0, outage_s,
                             "readings waiting in the spool")
    assert mid.get("citywatch_ingest_readings_drained_total", 0) == 0, "drained while influxd is down"
    time.sleep(max(t0 + down_at + outage_s - time.monotonic(), 0))  # the outage lasts outage_s
    influxd.start()
    up_at = time.monotonic() - t0

    report = publishing.result(120)
    m = serve.wait_metrics(
        lambda m: done(m) >= n and m["citywatch_ingest_readings_drained_total"]
        == m["citywatch_ingest_readings_spooled_total"], 120, "every reading durable and the spool drained")
    drained_at = time.monotonic() - t0
    peak = rss.stop()
    totals = serve.stop()
    assert influx_count(influxd) == n
    spooled = m["citywatch_ingest_readings_spooled_total"]
    assert spooled > 0 and m["citywatch_ingest_readings_drained_total"] == spooled
    assert m["citywatch_ingest_spool_bytes"] == 0
    assert not list((tmp_path / "node" / "spool").glob("*.seg"))
    assert peak < 500 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MB"
    print(timings_line("b influxd down", messages=n, rate=rate, down_at_s=round(down_at, 1),
                       up_at_s=round(up_at, 1), drained_at_s=round(drained_at, 1), spooled=int(spooled),
                       peak_rss_mb=round(peak / 1024**2), rss_samples=rss.samples,
                       republished=report.republished, totals=totals))


@pytest.mark.parametrize(("client", "protocol"), [("wire", 5), ("wire", 4), ("paho", 5)])
def test_c_broker_restart_mid_stream(tmp_path, broker, client, protocol, cleanup):
    n, rate = 30_000, 2_500.0
    db = tmp_path / "node" / "readings.duckdb"
    serve, messages = node(tmp_path, broker, f"duckdb:///{db}", n,
                           mqtt={"client": client, "protocol": protocol})
    cleanup.append(serve.start())
    pub = publisher(serve, broker, cleanup)
    t0 = time.monotonic()
    publishing = Background(pub.publish, messages, rate=rate, deadline_s=120)

    serve.wait_metrics(lambda m: done(m) >= 10_000, 60, "10,000 readings stored before the restart")
    broker.restart()
    restart_at = time.monotonic() - t0
    report = publishing.result(120)
    serve.wait_metrics(lambda m: m.get("citywatch_ingest_readings_stored_total", 0) >= n, 120,
                       f"all {n} readings stored after the broker restart")
    caught_up = time.monotonic() - t0
    health = httpx.get(f"{serve.base}/api/v1/health", timeout=5).json()
    totals = serve.stop()
    assert duckdb_counts(db) == (n, n)
    log = serve.log.read_text(errors="replace")
    assert log.count("connected to 127.0.0.1") >= 2, "the consumer did not reconnect by itself"
    assert "session present: True" in log, "the broker did not keep the consumer's session"
    print(timings_line(f"c broker restart {client} MQTT {protocol}", messages=n, rate=rate,
                       restart_at_s=round(restart_at, 1),
                       caught_up_s=round(caught_up, 1), republished=report.republished,
                       health=health.get("status"), totals=totals))


@pytest.mark.parametrize("store", ["duckdb", "influxdb"])
def test_d_every_message_twice_is_stored_once(tmp_path, broker, store, cleanup, request):
    n = 10_000
    if store == "duckdb":
        url = f"duckdb:///{tmp_path / 'node' / 'readings.duckdb'}"
    else:
        server = request.getfixturevalue("influxd")
        url = server.url
    serve, messages = node(tmp_path, broker, url, n)
    cleanup.append(serve.start())
    pub = publisher(serve, broker, cleanup)
    t0 = time.monotonic()
    # Each message twice in a row (the copies land in the same batch), then the whole stream
    # once more (the copies meet readings already in the store).
    r1 = pub.publish([m for m in messages for _ in (0, 1)], deadline_s=120)
    serve.wait_metrics(lambda m: done(m) >= 2 * n, 120, "both copies handled")
    r2 = pub.publish(messages, deadline_s=120)
    m = serve.wait_metrics(lambda m: done(m) >= 3 * n, 120, "the third copies handled")
    elapsed = time.monotonic() - t0
    totals = serve.stop()
    if store == "duckdb":
        assert duckdb_counts(tmp_path / "node" / "readings.duckdb") == (n, n)
    else:
        assert influx_count(server) == n
    republished = r1.republished + r2.republished
    assert m["citywatch_ingest_readings_stored_total"] == n
    assert m["citywatch_ingest_readings_duplicate_total"] >= 2 * n  # more if the publisher repeated any
    assert totals["stored"] == n and totals["received"] == 3 * n + republished
    print(timings_line(f"d duplicates {store}", messages=3 * n, total_s=round(elapsed, 1),
                       republished=republished, totals=totals))


@pytest.mark.parametrize("client", ["wire", "paho"])
def test_e_sigterm_mid_stream_drains_cleanly(tmp_path, broker, client, cleanup):
    """Ctrl-C (SIGTERM) while the stream flows: the process drains, exits 0 with no error
    logged, and after a restart every reading is stored exactly once."""
    n = 30_000
    db = tmp_path / "node" / "readings.duckdb"
    serve, messages = node(tmp_path, broker, f"duckdb:///{db}", n, mqtt={"client": client})
    cleanup.append(serve.start())
    pub = publisher(serve, broker, cleanup)
    publishing = Background(pub.publish, messages, deadline_s=120)
    stored_before = 0
    per_process = []
    for target in (8_000, 18_000):
        serve.wait_metrics(lambda m, base=stored_before, t=target: base + stored(m) >= t,
                           60, f"{target} readings stored before SIGTERM")
        totals = serve.stop()
        per_process.append(totals)
        rows, distinct = duckdb_counts(db)
        assert rows == distinct == stored_before + totals["stored"]
        stored_before = rows
        serve.start()
    serve.wait_metrics(lambda m: stored_before + stored(m) >= n,
                       120, f"all {n} readings stored")
    report = publishing.result(60)
    per_process.append(serve.stop())
    assert duckdb_counts(db) == (n, n)
    log = serve.log.read_text(errors="replace")
    assert "Traceback" not in log and "flush failed" not in log, serve.tail(6000)
    # Readings a restarted process found already stored: stored by the previous process but not
    # acknowledged before it disconnected (at-least-once allows it; a clean drain has none).
    redelivered = [t["duplicates"] for t in per_process[1:]]
    print(timings_line(f"e sigterm x2 {client}", messages=n, republished=report.republished,
                       redelivered_after_clean_stop=redelivered))
    # Node.stop drains the pipeline before the consumer disconnects, and both consumers half-close
    # after their DISCONNECT (ingest.mqtt.close_gracefully): no PUBACK is lost to a reset
    assert redelivered == [0, 0]


def test_f_spool_full_holds_acks_and_survives_sigkill(tmp_path, broker, influxd, cleanup):
    """influxd down for the whole stream with a 1 MiB spool: the spool stops at its limit and
    the consumer holds acknowledgements instead of dropping; SIGKILL it there and restart it:
    once influxd is back, the spool left on disk and the held messages all reach the store."""
    n, limit = 15_000, 1024 * 1024
    spool_dir = tmp_path / "node" / "spool"
    serve, messages = node(tmp_path, broker, influxd.url, n, ingest={"spool_max_bytes": limit})
    cleanup.append(serve.start())
    pub = publisher(serve, broker, cleanup)
    t0 = time.monotonic()
    influxd.stop()
    report = pub.publish(messages, deadline_s=120)  # the broker holds what the consumer does not ack

    deadline = time.monotonic() + 60
    while "spool full: holding acknowledgements" not in serve.tail(20_000):
        assert time.monotonic() < deadline, f"the spool never filled:\n{serve.tail()}"
        time.sleep(0.2)
    m = serve.metrics()
    spooled = int(m["citywatch_ingest_readings_spooled_total"])
    on_disk = sum(p.stat().st_size for p in spool_dir.glob("*.seg"))
    assert 0 < spooled < n, "the spool took everything: it did not hold at its limit"
    assert on_disk < 2 * limit, f"spool holds {on_disk} bytes, limit {limit}"
    serve.kill()
    serve.start()  # influxd still down: the spool on disk is kept, still full
    # the new process has found the spool and tried to drain it into the absent store
    serve.wait_metrics(lambda m: m.get("citywatch_ingest_spool_bytes", 0) > 0, 30, "the spool found at restart")
    assert sum(p.stat().st_size for p in spool_dir.glob("*.seg")) >= on_disk * 0.9
    influxd.start()
    deadline = time.monotonic() + 120
    while influx_count(influxd) < n or list(spool_dir.glob("*.seg")):
        assert time.monotonic() < deadline, (f"{influx_count(influxd)} of {n} readings stored, "
                                             f"{len(list(spool_dir.glob('*.seg')))} segments waiting")
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    totals = serve.stop()
    assert influx_count(influxd) == n
    print(timings_line("f spool full + sigkill", messages=n, spooled_before_kill=spooled,
                       spool_bytes_at_kill=on_disk, republished=report.republished, total_s=round(elapsed, 1),
                       last_process=totals))


def test_g_state_db_refusing_writes_is_retried_not_dropped(tmp_path, broker, cleanup):
    """The state DB refuses quarantine entries for a while (a trigger aborts the inserts, as a
    full disk or a damaged file would): those batches are retried, not dropped. Once it accepts
    again, without restarting the consumer, every bad message has exactly one quarantine entry
    and every good reading is stored once."""
    n, every = 6_000, 10  # one message in ten is out of range (quarantined)
    db = tmp_path / "node" / "readings.duckdb"
    serve, messages = node(tmp_path, broker, f"duckdb:///{db}", n)
    bad = 0
    for i in range(0, n, every):
        topic, payload = messages[i]
        messages[i] = (topic, payload.replace(b'"laeq_db": ', b'"laeq_db": 900'))  # above 140 dB
        bad += 1
    cleanup.append(serve.start())
    pub = publisher(serve, broker, cleanup)
    con = sqlite3.connect(serve.state_db, timeout=30)
    con.execute("CREATE TRIGGER fault_refuse BEFORE INSERT ON quarantine "
                "BEGIN SELECT RAISE(ABORT, 'fault test: the state DB refuses writes'); END")
    con.commit()
    pub.publish(messages[: n // 2], deadline_s=60)
    deadline = time.monotonic() + 30
    while "fault test: the state DB refuses writes" not in serve.tail(50_000):
        assert time.monotonic() < deadline, f"no write was refused:\n{serve.tail()}"
        time.sleep(0.2)
    time.sleep(1.0)
    con.execute("DROP TRIGGER fault_refuse")
    con.commit()
    pub.publish(messages[n // 2:], deadline_s=60)
    good = n - bad
    serve.wait_metrics(lambda m: stored(m) >= good, 60, f"all {good} good readings stored")
    deadline = time.monotonic() + 30
    query = "SELECT count(*) FROM quarantine WHERE topic NOT LIKE '%fault-probe%'"
    while con.execute(query).fetchone()[0] < bad:
        assert time.monotonic() < deadline, (f"{con.execute(query).fetchone()[0]} of {bad} quarantine "
                                             f"entries after the state DB recovered:\n{serve.tail()}")
        time.sleep(0.2)
    totals = serve.stop()
    assert con.execute(query).fetchone()[0] == bad
    con.close()
    assert duckdb_counts(db) == (good, good)
    print(timings_line("g state DB refusing", messages=n, quarantined=bad, totals=totals))
