"""Determinism, ordering and the public surface of Simulation."""

from __future__ import annotations

import pytest

from simulators import ScenarioError
from simulators.engine import Simulation
from simulators.errors import FleetError
from simulators.scenarios import SCENARIOS

from .conftest import START
from .helpers import HOUR, run

ALL = [n for n in SCENARIOS]


def test_same_seed_gives_byte_identical_stream(small_fleet):
    _, a = run(small_fleet, start=START, hours=0.25, seed=42, scenarios=ALL)
    _, b = run(small_fleet, start=START, hours=0.25, seed=42, scenarios=ALL)
    assert len(a) > 5000
    assert a == b  # topic, payload bytes, qos, retain and sim_ts, in the same order


def test_slicing_the_stream_does_not_change_it(small_fleet):
    _, whole = run(small_fleet, start=START, hours=0.1, seed=3)
    sim = Simulation(small_fleet, seed=3, start_ms=START)
    parts = []
    t = START
    while t < START + int(0.1 * HOUR):
        t = min(t + 7_321, START + int(0.1 * HOUR))
        parts.extend(sim.messages(t))
    assert parts == whole


def test_another_seed_gives_another_stream(small_fleet):
    _, a = run(small_fleet, start=START, hours=0.05, seed=1)
    _, b = run(small_fleet, start=START, hours=0.05, seed=2)
    assert [m.payload for m in a] != [m.payload for m in b]


def test_messages_come_in_time_order_within_the_asked_window(small_fleet):
    sim, msgs = run(small_fleet, start=START + 123, hours=0.1, scenarios=["device-offline"])
    ts = [m.sim_ts for m in msgs]
    assert ts == sorted(ts)
    assert ts[0] >= START + 123 and ts[-1] < START + 123 + int(0.1 * HOUR)
    assert sim.messages_out == len(msgs) and sim.readings_out > len(msgs)
    # accelerometer waveforms go at QoS 0, everything else at QoS 1; only status is retained
    for m in msgs:
        assert m.qos == (0 if b'"series"' in m.payload else 1)
        assert m.retain == m.topic.endswith("/status")


def test_scenarios_are_validated_up_front(small_fleet):
    with pytest.raises(ScenarioError, match="unknown scenario 'gas-leek'"):
        Simulation(small_fleet, seed=1, start_ms=START, scenarios=["gas-leek"])
    with pytest.raises(ScenarioError, match="bad value for 'devices'"):
        Simulation(small_fleet, seed=1, start_ms=START, scenarios=["gas-leak,devices=0"])
    with pytest.raises(ScenarioError, match="bad scenario time"):
        Simulation(small_fleet, seed=1, start_ms=START, scenarios=["gas-leak@soon"])
    noise_only = [d for d in small_fleet if d.kind == "noise"]
    with pytest.raises(ScenarioError, match="needs gas_meter devices"):
        Simulation(noise_only, seed=1, start_ms=START, scenarios=["gas-leak"])
    with pytest.raises(FleetError):
        Simulation([], seed=1, start_ms=START)


@pytest.mark.slow
def test_scenario_schedule_by_time_and_probability(small_fleet):
    no_bridges = [d for d in small_fleet if d.kind != "bridge"]
    sim = Simulation(no_bridges, seed=5, start_ms=START + HOUR,
                     scenarios=["night-construction@23:00,for=1h,devices=2", "lamp-failures,p=0.5",
                                "gas-leak@2h,rate=0.03"])
    list(sim.messages(START + 25 * HOUR))  # crosses into the second day: both are planned
    nc = [i for i in sim.injections if i.name == "night-construction"]
    assert len(nc) == 1 and len(nc[0].device_ids) == 2
    assert nc[0].start_ms == START + 23 * HOUR and nc[0].end_ms == START + 24 * HOUR
    lf = [i for i in sim.injections if i.name == "lamp-failures"]
    assert 2 <= len(lf) <= 12  # 6 cabinets x 2 days x p=0.5, at 20:00 each day
    assert all((i.start_ms - START) % (24 * HOUR) == 20 * HOUR for i in lf)
    leak = [i for i in sim.injections if i.name == "gas-leak"][0]
    assert leak.start_ms == START + 3 * HOUR


_DIGEST = """
import hashlib, sys
from devices.fleet import sample_fleet
from simulators.engine import Simulation
fleet = sample_fleet(0, seed=7, min_per_kind=3)
h = hashlib.sha256()
sim = Simulation(fleet, seed=99, start_ms={start}, scenarios=["gas-over-flow@1m", "bad-payloads@2m"])
for m in sim.messages({until}):
    h.update(m.topic.encode() + b"\\0" + m.payload + bytes([m.qos, m.retain]) + m.sim_ts.to_bytes(8, "big"))
print(h.hexdigest())
"""


def test_the_stream_is_identical_across_processes():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = _DIGEST.format(start=START, until=START + 5 * 60_000)
    root = str(Path(__file__).resolve().parents[2])
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root}).stdout
               for seed in ("1", "12345")}
    assert len(digests) == 1 and len(digests.pop().strip()) == 64
