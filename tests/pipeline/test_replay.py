"""Replay equals live: a stream evaluated at real pace and its recording replayed 100x faster into
a fresh node raise the same alerts (ids aside).

A bridge (its eight sensors) and three lighting cabinets publish one simulated minute at speed 1.0
through Mosquitto into node A, with faults whose rules have short or no ``for`` (an overloaded
truck, a strain overload, a cabinet door open, failed lamps); ``simulators.record.record``
records the broker's traffic meanwhile. The recording is replayed with ``speed=100`` into node B
(new state DB, new store, new client id). Rules run on event time, so the batching, which differs
completely between the two runs, must not matter.
"""

from __future__ import annotations

import threading
import time

import pytest

from devices.fleet import sample_fleet
from simulators.engine import Simulation
from simulators.publish import run as publish
from simulators.record import read, record, replay

from .helpers import S, all_alerts, make_node, settle, signature

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a minute at real pace

SCENARIOS = ["cabinet-door-open@0s", "lamp-failures@5s", "overloaded-truck@20s", "strain-overload@5s"]
RULES = {"lighting.lamp_fault", "bridge.overload", "bridge.strain"}  # fired
# Cabinets report once a minute, so the 65 s span holds one report of the open door (pending)
# or, when the span starts just before a cabinet's report, two a minute apart (fired): which one
# depends on the wall-clock second the test starts at. Either way the replay must agree.
PENDING = {"lighting.door_open"}


def _fleet():
    return (sample_fleet(0, seed=31, kinds=["bridge"], min_per_kind=1)
            + sample_fleet(0, seed=31, kinds=["lighting"], min_per_kind=3))


def test_replay_at_100x_raises_the_alerts_of_the_live_run(tmp_path, mosquitto):
    fleet = _fleet()
    span = 65 * S
    start = int(time.time() * 1000) - 5 * S
    dry = Simulation(fleet, seed=9, start_ms=start, scenarios=SCENARIOS)
    for _ in dry.messages(start + span):
        pass

    node_a = make_node(tmp_path / "a", mosquitto.url, "pipeline-replay-a")
    node_a.open()
    node_a.registry.upsert(fleet)
    node_a.start()
    path = tmp_path / "live.cwrec"
    stop = threading.Event()
    recorder = threading.Thread(target=record, args=(mosquitto.url, path),
                                kwargs={"stop": stop, "client_id": "pipeline-replay-rec"})
    try:
        recorder.start()
        time.sleep(2.0)  # the recorder has subscribed (record() offers no hook for it)
        t0 = time.monotonic()
        sim = Simulation(fleet, seed=9, start_ms=start, scenarios=SCENARIOS)
        stats = publish(mosquitto.url, sim, duration_ms=span, speed=1.0, client_id="pipeline-replay-pub")
        live_s = time.monotonic() - t0
        assert stats.messages == dry.messages_out
        settle(node_a, dry.readings_out)
        time.sleep(0.5)  # the recorder has received it all too
    finally:
        stop.set()
        recorder.join(10)
        node_a.stop()
    live = all_alerts(node_a.alerts)
    live_pending = node_a.alerts.list_alerts("pending", 1000)[0]
    # retained statuses of earlier tests on the session broker come first, flagged retained
    recorded = [r for r in read(path) if not r.retain]
    assert len(recorded) == dry.messages_out
    assert RULES <= {a.rule for a in live}, signature(live)
    assert PENDING <= {a.rule for a in live_pending} | {a.rule for a in live}, signature(live_pending)

    node_b = make_node(tmp_path / "b", mosquitto.url, "pipeline-replay-b")
    node_b.open()
    node_b.registry.upsert(fleet)
    node_b.start()
    try:
        t0 = time.monotonic()
        replay(mosquitto.url, path, speed=100, client_id="pipeline-replay-replayer")
        replay_s = time.monotonic() - t0
        settle(node_b, dry.readings_out)
    finally:
        node_b.stop()
    replayed = all_alerts(node_b.alerts)
    replayed_pending = node_b.alerts.list_alerts("pending", 1000)[0]
    print(f"live {live_s:.1f} s, replay at 100x {replay_s:.2f} s, {len(recorded)} messages")
    assert replay_s < live_s / 20, (replay_s, live_s)
    assert signature(replayed) == signature(live)
    assert signature(replayed_pending) == signature(live_pending)
    assert node_b.totals()["received"] == node_a.totals()["received"]
