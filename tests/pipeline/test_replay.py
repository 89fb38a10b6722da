"""Replay equals live: a stream evaluated at real pace and its recording replayed 100x faster into
a fresh node raise the same alerts (ids aside).

A bridge (its eight sensors) and three lighting cabinets publish one simulated minute at speed 1.0
through Mosquitto into node A, with faults whose rules have short or no ``for`` (an overloaded
truck, a strain overload, a cabinet door open, failed lamps); ``simulators.record.record``
records the broker's traffic meanwhile. The recording is replayed with ``speed=100`` into node B
(new state DB, new store, new client id). Rules run on event time, so the batching, which differs
completely between the two runs, must not matter.

The test has its own broker (no retained messages of other tests), and the simulated span starts
at a fixed second of the minute, so the devices' report times within it (their phases lie on
the minute grid) and with them the alerts are the same in every run: one right answer.
"""

from __future__ import annotations

import threading
import time

import pytest

from devices.fleet import sample_fleet
from simulators.engine import Simulation
from simulators.publish import run as publish
from simulators.record import read, record, replay
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for

from .helpers import S, all_alerts, make_node, signature

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a minute at real pace

SCENARIOS = ["cabinet-door-open@0s", "lamp-failures@5s", "overloaded-truck@20s", "strain-overload@5s"]
SPAN_MS = 65 * S
# Cabinets report once a minute at a phase of their own on the minute grid: the cabinet whose
# door opens (light-donghugaoxin-0001) at 51.726 s past each minute. The span starts 50 s past
# a minute, so it holds two reports of the open door a minute apart (at +1.7 s and +61.7 s): the
# door rule (``for: 1m``) fires. Starting at another second would leave one report (pending).
START_SECOND_MS = 50 * S
FIRED = {"lighting.lamp_fault", "bridge.overload", "bridge.strain", "lighting.door_open"}


def data_messages(node) -> int:
    """Telemetry and event messages the node has taken into a batch (retained statuses aside)."""
    return int(sum(s.value for f in node.ingest_metrics.messages.collect() for s in f.samples
                   if s.name.endswith("_total") and s.labels["channel"] != "status"))


def taken(node, messages: int, timeout_s: float = 60.0) -> None:
    """Wait until ``node`` has taken every telemetry and event message of the stream, so that
    ``Node.stop`` then evaluates and stores them all. Waiting for a count of readings let a node
    stop with its last message on the way: the readings it derives (stored, received) made up
    the stream's count first (3 or 4 readings short in 2 of 20 runs)."""
    assert wait_for(lambda: data_messages(node) >= messages, timeout_s), (data_messages(node), messages)


def span_start(now_ms: int) -> int:
    """The latest instant at least 5 s before ``now_ms`` that is START_SECOND_MS past a minute
    (5 to 65 s ago: recent enough for the decoder's window and every offline limit)."""
    t = now_ms - 5 * S
    return t - (t - START_SECOND_MS) % 60_000


def _fleet():
    return (sample_fleet(0, seed=31, kinds=["bridge"], min_per_kind=1)
            + sample_fleet(0, seed=31, kinds=["lighting"], min_per_kind=3))


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def test_replay_at_100x_raises_the_alerts_of_the_live_run(tmp_path, broker):
    fleet = _fleet()
    start = span_start(int(time.time() * 1000))
    dry = Simulation(fleet, seed=9, start_ms=start, scenarios=SCENARIOS)
    data = sum(1 for m in dry.messages(start + SPAN_MS) if not m.topic.endswith("/status"))

    node_a = make_node(tmp_path / "a", broker.url, "pipeline-replay-a")
    node_a.open()
    node_a.registry.upsert(fleet)
    node_a.start()
    path = tmp_path / "live.cwrec"
    stop, subscribed = threading.Event(), threading.Event()
    # the recorder ends by itself once it has written the whole stream (its own broker: nothing else)
    recorder = threading.Thread(target=record, args=(broker.url, path),
                                kwargs={"stop": stop, "count": dry.messages_out, "subscribed": subscribed,
                                        "client_id": "pipeline-replay-rec"})
    try:
        recorder.start()
        assert subscribed.wait(10), "the recorder's subscription was not acknowledged"
        t0 = time.monotonic()
        sim = Simulation(fleet, seed=9, start_ms=start, scenarios=SCENARIOS)
        stats = publish(broker.url, sim, duration_ms=SPAN_MS, speed=1.0, client_id="pipeline-replay-pub")
        live_s = time.monotonic() - t0
        assert stats.messages == dry.messages_out
        taken(node_a, data)
        recorder.join(30)
        assert not recorder.is_alive(), "the recorder did not receive the whole stream"
    finally:
        stop.set()
        recorder.join(10)
        node_a.stop()
    live = all_alerts(node_a.alerts)
    live_pending = node_a.alerts.list_alerts("pending", 1000)[0]
    recorded = list(read(path))
    assert len(recorded) == dry.messages_out and not any(r.retain for r in recorded)
    assert {a.rule for a in live} == FIRED, signature(live)
    assert all(a.fired_ms is not None for a in live), signature(live)
    assert live_pending == [], signature(live_pending)

    node_b = make_node(tmp_path / "b", broker.url, "pipeline-replay-b")
    node_b.open()
    node_b.registry.upsert(fleet)
    node_b.start()
    try:
        t0 = time.monotonic()
        replay(broker.url, path, speed=100, client_id="pipeline-replay-replayer")
        replay_s = time.monotonic() - t0
        taken(node_b, data)
    finally:
        node_b.stop()
    replayed = all_alerts(node_b.alerts)
    replayed_pending = node_b.alerts.list_alerts("pending", 1000)[0]
    totals_a, totals_b = node_a.totals(), node_b.totals()
    print(f"live {live_s:.1f} s, replay at 100x {replay_s:.2f} s, {len(recorded)} messages; "
          f"totals live {totals_a}, replayed {totals_b}")
    assert replay_s < live_s / 20, (replay_s, live_s)
    assert signature(replayed) == signature(live)
    assert signature(replayed_pending) == signature(live_pending)
    assert data_messages(node_a) == data_messages(node_b) == data
    # the same readings (the stream's and those derived from them), each stored once
    assert totals_a == totals_b and totals_a["stored"] > dry.readings_out, (totals_a, totals_b)
