"""Scenarios through the real pipeline: simulators -> Mosquitto -> ingest -> rule engine.

Each case replays a past stretch of simulated time (ingest accepts readings up to 30 days old,
and the rules run on event time) at full speed into a running citywatch node, then checks that
every injected fault raised the rules its scenario names, on the device it hit, and that no
critical alert came from anywhere else.
"""

from __future__ import annotations

import time

import pytest

from citywatch.runner import Node
from citywatch.settings import load_settings
from devices.fleet import sample_fleet
from simulators.engine import Simulation
from simulators.publish import run as publish
from simulators.scenarios import SCENARIOS
from simulators.timeutil import DAY_MS, HOUR_MS, local_midnight
from tests.support.wait import wait_for

from .conftest import free_port
from .contract_check import Bad, check
from .helpers import registry_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _node(tmp_path, broker_url: str) -> Node:
    s = load_settings(env={}, timezone="Asia/Shanghai",
                      mqtt={"url": broker_url, "client_id": f"sim-pipeline-{tmp_path.name}"},
                      store={"url": f"duckdb:///{tmp_path}/readings.duckdb"},
                      state={"url": f"sqlite:///{tmp_path}/state.db"},
                      api={"listen": f"127.0.0.1:{free_port()}"},
                      ingest={"spool_dir": str(tmp_path / "spool")})
    return Node(s)


def _last(local_hour: float, minutes: int, now: int) -> int:
    """The latest local ``local_hour`` from which ``minutes`` of simulated time end in the past."""
    t = local_midnight(now) + int(local_hour * HOUR_MS)
    while t + minutes * 60_000 > now - 60_000:
        t -= DAY_MS
    return t


CASES = {
    "midday": (11.0, 50, ["bridge", "gas_meter", "fume", "toilet"],
               ["strain-overload@5m", "overloaded-truck@5m", "pier-tilt@5m", "gas-over-flow@5m",
                "meter-tamper@5m", "purifier-off@10m", "toilet-ventilation-failure@1m"]),
    "night": (22.0, 30, ["noise", "lighting"],
              ["night-construction@2m", "cabinet-door-open@5m", "lamp-failures@5m"]),
}

# the rules each scenario must raise through the pipeline (a subset of SCENARIOS[...].rules)
MUST = {
    "strain-overload": {"bridge.strain"}, "overloaded-truck": {"bridge.overload"}, "pier-tilt": {"bridge.tilt"},
    "gas-over-flow": {"gas.over_flow"}, "meter-tamper": {"gas.tamper"},
    "purifier-off": {"fume.purifier_off", "fume.concentration"},
    "toilet-ventilation-failure": {"toilet.nh3", "toilet.h2s"},
    "night-construction": {"noise.night_laeq", "noise.night_lmax"},
    "cabinet-door-open": {"lighting.door_open"}, "lamp-failures": {"lighting.lamp_fault"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_scenarios_raise_their_rules_through_the_pipeline(case, tmp_path, mosquitto):
    hour, minutes, kinds, scenarios = CASES[case]
    fleet = sample_fleet(0, seed=31, kinds=kinds, min_per_kind=4)
    node = _node(tmp_path, mosquitto.url)
    node.open()
    node.registry.upsert(fleet)
    node.start()
    try:
        now = int(time.time() * 1000)
        start = _last(hour, minutes, now)
        sim = Simulation(fleet, seed=3, start_ms=start, scenarios=scenarios)
        reg = registry_of(fleet)
        valid = 0
        for m in Simulation(fleet, seed=3, start_ms=start, scenarios=scenarios).messages(start + minutes * 60_000):
            try:
                valid += len(check(m.topic, m.payload, reg, now))
            except Bad as e:  # pragma: no cover - a simulator bug
                raise AssertionError(f"{m.topic}: {e}") from None
        publish(mosquitto.url, sim, duration_ms=minutes * 60_000, speed=None, client_id=f"sim-pipeline-pub-{case}")
        assert wait_for(lambda: node.store.count() >= valid, 120), (node.store.count(), valid)
        node.pipeline.flush()
        time.sleep(0.5)
        fired, _ = node.alerts.list_alerts(limit=1000)
        raised = {(a.rule, a.device_id) for a in fired}
        for inj in sim.injections:
            for rule in MUST[inj.name]:
                assert any((rule, dev) in raised for dev in inj.device_ids), \
                    (inj.name, rule, inj.device_ids, sorted(r for r in raised if r[1] in inj.device_ids))
        allowed = {r for s in scenarios for r in SCENARIOS[s.split("@")[0]].rules}
        stray = [(a.rule, a.device_id) for a in fired if a.severity == "critical" and a.rule not in allowed]
        assert not stray
    finally:
        node.stop()
