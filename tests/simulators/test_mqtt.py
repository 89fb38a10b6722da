"""Publishing, recording and replaying through a real Mosquitto on a loopback port."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from simulators.cli import app
from simulators.engine import Simulation
from simulators.errors import BrokerError, RecordingError
from simulators.publish import run
from simulators.record import read, record, replay, shift_ts

from .conftest import START, free_port

pytestmark = pytest.mark.integration


class Collector:
    """A QoS 1 subscriber that keeps (topic, payload) in arrival order; messages the broker had
    retained from earlier tests (flagged retain on subscription) are left out."""

    def __init__(self, url: str, topic: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.got: list[tuple[str, bytes]] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, clean_session=True)
        self.c.on_message = lambda c, u, m: None if m.retain else self.got.append((m.topic, m.payload))
        ready = threading.Event()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect(host, int(port))
        self.c.loop_start()
        self.c.subscribe(topic, qos=1)
        assert ready.wait(5)

    def wait_for(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _fleet(small_fleet):
    return [d for d in small_fleet if d.kind in ("noise", "toilet", "lighting", "fume")]


def test_run_publishes_the_stream_in_order(mosquitto, small_fleet):
    fleet = _fleet(small_fleet)
    expected = [(m.topic, m.payload) for m in
                Simulation(fleet, seed=9, start_ms=START, scenarios=["device-offline"]).messages(START + 1_800_000)]
    sub = Collector(mosquitto.url, "city/#")
    try:
        sim = Simulation(fleet, seed=9, start_ms=START, scenarios=["device-offline"])
        stats = run(mosquitto.url, sim, duration_ms=1_800_000, speed=None)
        sub.wait_for(len(expected))
    finally:
        sub.close()
    assert stats.messages == len(expected) and stats.readings > stats.messages and stats.sim_ms == 1_800_000
    assert sub.got == expected


def test_run_paces_on_the_simulated_clock(mosquitto, small_fleet):
    fleet = [d for d in small_fleet if d.kind == "noise"]
    sim = Simulation(fleet, seed=1, start_ms=START, birth=False)
    t0 = time.monotonic()
    stats = run(mosquitto.url, sim, duration_ms=120_000, speed=200.0)  # 2 simulated minutes in 0.6 s
    took = time.monotonic() - t0
    assert 0.45 < took < 2.0 and stats.messages == 12
    stop = threading.Event()
    stop.set()
    assert run(mosquitto.url, sim, duration_ms=3_600_000, speed=1.0, stop=stop).messages <= 1


def test_a_second_run_goes_on_from_where_the_first_stopped(mosquitto, small_fleet):
    """``citywatch up``: a backfill at full speed, then live. The live run covers the simulated
    time after the backfill's end, paced from there (not from the end of the minute the
    simulation had already generated, which would publish that much ahead of the wall clock)."""
    fleet = [d for d in small_fleet if d.kind == "noise"]
    all_ts = [m.sim_ts for m in Simulation(fleet, seed=1, start_ms=START, birth=False).messages(START + 300_000)]
    sim = Simulation(fleet, seed=1, start_ms=START, birth=False)
    first = run(mosquitto.url, sim, duration_ms=90_000, speed=None)
    assert sim.reached == START + 90_000 < sim.now
    t0 = time.monotonic()
    second = run(mosquitto.url, sim, duration_ms=60_000, speed=100.0)  # 0.6 s
    took = time.monotonic() - t0
    assert first.messages == sum(t < START + 90_000 for t in all_ts)
    assert second.messages == sum(START + 90_000 <= t < START + 150_000 for t in all_ts)
    assert 0.4 < took < 2.0


def test_unreachable_broker_is_a_clear_error(small_fleet):
    sim = Simulation(_fleet(small_fleet), seed=1, start_ms=START)
    with pytest.raises(BrokerError, match="cannot connect to the MQTT broker at mqtt://127.0.0.1:"):
        run(f"mqtt://127.0.0.1:{free_port()}", sim, duration_ms=1000, speed=None)
    with pytest.raises(BrokerError, match="bad broker URL"):
        run("http://127.0.0.1:1883", sim, duration_ms=1000, speed=None)


def test_record_then_replay_reproduces_messages_and_order(mosquitto, small_fleet, tmp_path):
    fleet = _fleet(small_fleet)
    # telemetry only: the session's broker holds retained status messages of other tests
    msgs = [m for m in Simulation(fleet, seed=4, start_ms=START).messages(START + 1_200_000)
            if m.topic.endswith("/telemetry")]
    path = tmp_path / "traffic.cwrec"
    stop = threading.Event()
    result = {}
    rec = threading.Thread(target=lambda: result.setdefault(
        "n", record(mosquitto.url, path, topics=["city/+/+/telemetry"], count=len(msgs), stop=stop)))
    rec.start()
    time.sleep(0.5)  # let the recorder subscribe
    run(mosquitto.url, Simulation(fleet, seed=4, start_ms=START), duration_ms=1_200_000, speed=None)
    rec.join(20)
    assert result["n"] == len(msgs)
    recorded = list(read(path))
    assert [(r.topic, r.payload, r.qos) for r in recorded] == [(m.topic, m.payload, m.qos) for m in msgs]
    assert [r.received_ms for r in recorded] == sorted(r.received_ms for r in recorded)

    sub = Collector(mosquitto.url, "city/+/+/telemetry")
    try:
        n = replay(mosquitto.url, path, speed=None)
        sub.wait_for(n)
    finally:
        sub.close()
    assert n == len(msgs) and sub.got == [(m.topic, m.payload) for m in msgs]


def test_replay_keeps_the_recorded_timing_scaled_by_speed(mosquitto, tmp_path):
    from simulators.record import Writer
    path = tmp_path / "timed.cwrec"
    w = Writer(path)
    for i in range(5):
        w.write(1_000_000 + i * 250, f"city/noise/n{i}/telemetry", b'{"ts":1000000}', 1, False)
    w.close()
    t0 = time.monotonic()
    assert replay(mosquitto.url, path, speed=2.0) == 5
    assert 0.4 < time.monotonic() - t0 < 1.5  # 1 s of traffic at 2x


def test_shift_to_now_moves_every_timestamp_and_nothing_else():
    p = b'{"seq":3,"readings":[{"ts":1000,"metrics":{"volume_m3":1.500}},{"ts": 2000,"metrics":{"x":1}}]}'
    assert shift_ts(p, 500) == \
        b'{"seq":3,"readings":[{"ts":1500,"metrics":{"volume_m3":1.500}},{"ts": 2500,"metrics":{"x":1}}]}'
    assert shift_ts(b'{"ts":"2026-11-29T16:00:00.123+08:00","metrics":{}}', 3_600_000) == \
        b'{"ts":"2026-11-29T17:00:00.123+08:00","metrics":{}}'
    assert shift_ts(b"online", 5) == b"online" and shift_ts(b"\xffnot json", 5) == b"\xffnot json"


def test_a_broken_recording_is_named(tmp_path):
    bad = tmp_path / "x.cwrec"
    bad.write_bytes(b"hello")
    with pytest.raises(RecordingError, match="not a citywatch recording"):
        list(read(bad))
    with pytest.raises(RecordingError, match="no recording"):
        list(read(tmp_path / "missing.cwrec"))


def test_cli_simulate_record_replay(mosquitto, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "--kinds", "noise,toilet", "--devices", "2", "--duration", "10m",
                              "--speed", "max", "--seed", "5", "--start", "2026-11-29T08:00+08:00",
                              "--scenario", "dust-storm@1m", "--broker", mosquitto.url])
    assert res.exit_code == 0, res.output
    assert "published 44 messages" in res.output  # 4 devices x 10 minutes + 4 births
    res = runner.invoke(app, ["simulate", "--kinds", "noise", "--speed", "fast", "--broker", mosquitto.url])
    assert res.exit_code == 2 and "--speed must be a number > 0 or 'max'" in res.output
    res = runner.invoke(app, ["simulate", "--scenario", "nope", "--broker", mosquitto.url])
    assert res.exit_code == 2 and "unknown scenario 'nope'" in res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "none.cwrec"), "--broker", mosquitto.url])
    assert res.exit_code == 2 and "no recording" in res.output


def test_cli_record_writes_what_the_broker_carries(mosquitto, small_fleet, tmp_path):
    out = tmp_path / "cli.cwrec"
    fleet = [d for d in small_fleet if d.kind == "toilet"]
    msgs = list(Simulation(fleet, seed=2, start_ms=START, birth=False).messages(START + 300_000))
    result = {}

    def rec():
        result["res"] = CliRunner().invoke(app, ["record", "--out", str(out), "--broker", mosquitto.url,
                                                 "--topic", "city/toilet/+/telemetry", "--count", str(len(msgs)),
                                                 "--duration", "30s"])

    t = threading.Thread(target=rec)
    t.start()
    time.sleep(0.5)
    run(mosquitto.url, Simulation(fleet, seed=2, start_ms=START, birth=False), duration_ms=300_000, speed=None)
    t.join(30)
    assert result["res"].exit_code == 0, result["res"].output
    assert f"recorded {len(msgs)} messages" in result["res"].output
    assert [(r.topic, r.payload) for r in read(out)] == [(m.topic, m.payload) for m in msgs]
