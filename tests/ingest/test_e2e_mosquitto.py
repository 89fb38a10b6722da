"""End to end on a real Mosquitto: simulators of all six kinds (plus every kind of bad message)
publish through the broker into a running citywatch node; afterwards the store holds exactly the
valid readings and the quarantine exactly the bad messages, each with its reason.

The expected outcome comes from an independent checker of the contract
(tests/simulators/contract_check.py), not from citywatch's own decoder.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.catalogue import KINDS
from devices.fleet import sample_fleet
from ingest.features import MIN_SAMPLES
from ingest.stores.base import Query
from simulators.engine import Simulation
from simulators.publish import run as publish
from tests.simulators.contract_check import Bad, check
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

# the simulator's names of the contract's rejection classes -> citywatch's reason codes
CODES = {
    "bad_topic": "bad_topic", "unknown_kind": "unknown_kind", "unregistered_device": "unregistered",
    "wrong_kind": "kind_mismatch", "not_json": "bad_json", "not_object": "bad_json",
    "unknown_metric": "unknown_metric", "non_finite": "not_finite", "out_of_range": "out_of_range",
    "missing_ts": "missing_ts", "unparseable_ts": "bad_ts", "future_ts": "ts_future", "past_ts": "ts_past",
    "series_lengths_differ": "series_length", "too_large": "too_large",
}


def make_node(tmp_path, broker_url: str, client_id: str) -> Node:
    s = load_settings(env={}, timezone="Asia/Shanghai",
                      mqtt={"url": broker_url, "client_id": client_id},
                      store={"url": f"duckdb:///{tmp_path}/readings.duckdb"},
                      state={"url": f"sqlite:///{tmp_path}/state.db"},
                      api={"listen": f"127.0.0.1:{free_port()}"},
                      ingest={"spool_dir": str(tmp_path / "spool")})
    return Node(s)


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own: other tests leave retained status messages on the shared one,
    which this test's node would quarantine as unregistered devices."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


def test_simulated_fleet_through_mosquitto(tmp_path, own_broker):
    mosquitto = own_broker
    # 200 gas meters: in hourly mode each reports at its own minute, so some fall in 5 minutes
    fleet = sample_fleet(0.0004, seed=5, min_per_kind=2)
    assert {d.kind for d in fleet} == set(KINDS)
    node = make_node(tmp_path, mosquitto.url, "e2e-fleet")
    node.open()
    node.registry.upsert(fleet)
    node.start()
    try:
        now = int(time.time() * 1000)
        # simulated time runs from 4 min ago to 1 min ahead (within the contract's 5-minute
        # tolerance), so that the "future ts" bad payload lies beyond it
        start, until = now - 4 * 60_000, now + 60_000
        sim = Simulation(fleet, seed=11, start_ms=start, scenarios=["bad-payloads"], gas_mode="hourly")
        messages = list(sim.messages(until))
        registry = {d.device_id: d.kind for d in fleet}
        expected: dict[tuple[str, str, int], float] = {}
        bad: Counter[str] = Counter()
        derived = 0
        context: set[tuple] = set()
        for m in messages:
            try:
                rows = check(m.topic, m.payload, registry, now)
                for dev, metric, ts, value in rows:
                    expected[(dev, metric, ts)] = value
                if sum(r[1] == "accel_ms2" for r in rows) >= MIN_SAMPLES:
                    derived += 3  # RMS, peak and frequency of the window (ingest/features.py)
                # a lighting report's sun elevation, a strain or deflection reading's design value
                # (ingest/context.py), one per device and time
                context |= {(dev, "sun", ts) for dev, _, ts, _ in rows if registry[dev] == "lighting"}
                context |= {(dev, metric, ts) for dev, metric, ts, _ in rows
                            if metric in ("strain_ue", "deflection_mm")}
            except Bad as b:
                bad[CODES[b.cls]] += 1
        assert len(bad) == len(set(CODES.values())) and sum(bad.values()) >= len(CODES)
        kinds_sent = {m.topic.split("/")[1] for m in messages}
        assert set(KINDS) <= kinds_sent

        sim2 = Simulation(fleet, seed=11, start_ms=start, scenarios=["bad-payloads"], gas_mode="hourly")
        stats = publish(mosquitto.url, sim2, duration_ms=until - start, speed=None, client_id="e2e-pub")
        assert stats.messages == len(messages)

        derived += len(context)
        assert wait_for(lambda: node.store.count() >= len(expected) + derived
                        and node.quarantine.count() >= sum(bad.values()), 60), (
            node.store.count(), len(expected), node.quarantine.count(), sum(bad.values()))
        time.sleep(0.5)  # nothing more arrives
        assert node.store.count() == len(expected) + derived
        assert Counter(node.quarantine.counts_by_code()) == bad
        for r in node.quarantine.recent(1000):
            assert r["reason"].startswith(r["code"] + ": ") and len(r["reason"]) > len(r["code"]) + 10

        # values: every series read back equals what was sent
        series: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for (dev, metric, ts), v in expected.items():
            series.setdefault((dev, metric), []).append((ts, v))
        missing = []
        for (dev, metric), points in series.items():
            got = node.store.query(Query(dev, metric, now - 86_400_000, until + 60_000, limit=10**6))
            if got != sorted(points):
                missing.append((dev, metric, len(got), len(points), sorted(set(points) - set(got))[:3],
                                sorted(set(got) - set(points))[:3]))
        assert not missing, (missing[:5], len(missing))

        # derived registry state: commissioned and last seen from traffic (written to the
        # registry at most once a second, after the readings: waited for, not slept on)
        sent = {dev for dev, _, _ in expected}
        assert wait_for(lambda: sent <= set(node.registry.last_seen_map()), 10), \
            sorted(sent - set(node.registry.last_seen_map()))[:5]
    finally:
        node.stop()
