"""A restart in the middle of a pending ``for`` window and of a firing alert gives the alerts of
an uninterrupted run: no duplicate alert, no lost pending duration.

Through nodes on Mosquitto: lighting cabinets and toilets publish half an hour that ended ten
minutes ago, at full speed. The stream is cut just after the first report of an open cabinet
door (``lighting.door_open`` pending, its minute not over) while failed lamps already fire
(``lighting.lamp_fault``); the node stops, a new node opens the same state DB and store, and the
rest of the stream follows. A second case does the same with simulated days through the ingest
path: a gas leak cut 12 h into the 24 h window of ``gas.micro_flow``.
"""

from __future__ import annotations

import json
import time

import pytest

from devices.fleet import sample_fleet
from simulators.engine import Simulation
from simulators.message import Message
from simulators.mqtt import Publisher
from simulators.timeutil import parse_time_ms

from .helpers import H, Ingest, M, all_alerts, make_node, settle, signature

SCENARIOS = ["lamp-failures@2m", "cabinet-door-open@10m", "toilet-ventilation-failure@1m"]


def _publish(broker_url: str, msgs, client_id: str) -> None:
    pub = Publisher(broker_url, client_id=client_id)
    try:
        for m in msgs:
            pub.publish(m.topic, m.payload, m.qos, m.retain)
    finally:
        pub.close()


def _state(node) -> tuple[list, list]:
    return signature(all_alerts(node.alerts)), signature(node.alerts.list_alerts("pending", 1000)[0])


def _run(root, broker_url: str, client_id: str, fleet, msgs, readings: int) -> tuple[list, list]:
    """Start a node on ``root`` (state DB and store kept from a previous node there), publish
    ``msgs``, stop it once they are stored (draining), return its (fired, pending) signatures."""
    node = make_node(root, broker_url, client_id)
    node.open()
    node.registry.upsert(fleet)
    node.start()
    try:
        _publish(broker_url, msgs, client_id + "-pub")
        settle(node, readings)
    finally:
        node.stop()
    return _state(node)


@pytest.mark.integration
def test_node_restart_mid_pending_and_mid_firing(tmp_path, mosquitto):
    fleet = sample_fleet(0, seed=31, kinds=["toilet", "lighting"], min_per_kind=3)
    start = int(time.time() * 1000) - 40 * M
    sim = Simulation(fleet, seed=4, start_ms=start, scenarios=SCENARIOS)
    msgs, cum = [], []
    for m in sim.messages(start + 30 * M):
        msgs.append(m)
        cum.append(sim.readings_out)
    door = next(i for i in sim.injections if i.name == "cabinet-door-open")
    first_open = next(k for k, m in enumerate(msgs) if f"/{door.device_ids[0]}/telemetry" in m.topic
                      and json.loads(m.payload)["metrics"].get("door_open") == 1)
    cut = first_open + 1

    expected = _run(tmp_path / "whole", mosquitto.url, "pipeline-restart-whole", fleet, msgs, cum[-1])
    fired, _ = expected
    assert {"lighting.door_open", "lighting.lamp_fault"} <= {s[0] for s in fired}, fired

    at_cut_fired, at_cut_pending = _run(tmp_path / "restart", mosquitto.url, "pipeline-restart-1", fleet,
                                        msgs[:cut], cum[cut - 1])
    # the cut is where it should be: the door's minute is pending, the lamps' alert fires
    assert ("lighting.door_open", door.device_ids[0]) in {s[:2] for s in at_cut_pending}, at_cut_pending
    assert any(s[0] == "lighting.lamp_fault" and s[3] == "firing" for s in at_cut_fired), at_cut_fired

    after = _run(tmp_path / "restart", mosquitto.url, "pipeline-restart-2", fleet, msgs[cut:],
                 cum[-1] - cum[cut - 1])
    assert after == expected


@pytest.mark.integration
def test_a_rule_switched_off_resolves_its_open_alerts_at_the_next_start(tmp_path, mosquitto):
    fleet = sample_fleet(0, seed=31, kinds=["lighting"], min_per_kind=2)
    now = int(time.time() * 1000)
    msgs = [Message(f"city/lighting/{d.device_id}/telemetry",
                    b'{"ts":%d,"metrics":{"leakage_ma":45.0,"lamps_failed":2}}' % now, 1, False, now)
            for d in fleet[:2]]
    node = make_node(tmp_path, mosquitto.url, "switch-off")
    node.open()
    node.registry.upsert(fleet)
    node.start()
    try:
        _publish(mosquitto.url, msgs, "switch-off-pub")
        settle(node, 4)
    finally:
        node.stop()
    before = {(a.rule, a.device_id): a for a in all_alerts(node.alerts)}
    assert {a.state for a in before.values()} == {"firing"} and len(before) == 4, before

    off = tmp_path / "off.yaml"
    off.write_text("version: 1\nrules:\n  - id: lighting.leakage\n    enabled: false\n", encoding="utf-8")
    node = make_node(tmp_path, mosquitto.url, "switch-off", rule_files=[off])
    node.open()
    node.start()
    node.stop()
    after = {(a.rule, a.device_id): a for a in all_alerts(node.alerts)}
    for (rule, dev), a in after.items():
        assert a.id == before[(rule, dev)].id
        if rule == "lighting.leakage":
            assert a.state == "resolved" and a.ended_ms >= now
            assert node.alerts.get(a.id).history[-1].change == "resolved"
        else:
            assert a.state == "firing"  # lighting.lamp_fault: still loaded, untouched


def test_ingest_restart_mid_day_long_window(tmp_path):
    """Simulated days through Pipeline.submit: gas.micro_flow's 24 h window (and the 4 h of
    gas.continuous_flow, firing by then) survive a restart 12 h in."""
    day0 = parse_time_ms("2026-11-20T00:00:00+08:00")
    fleet = sample_fleet(0, seed=31, kinds=["gas_meter"], min_per_kind=4)
    scenarios = ["gas-leak@30m", "meter-tamper@3h"]

    def sim():
        return Simulation(fleet, seed=6, start_ms=day0, scenarios=scenarios, gas_mode="hourly")

    whole = Ingest(tmp_path / "whole", fleet)
    whole.run(sim(), day0 + 27 * H)
    expected = signature(whole.fired()), signature(whole.alerts.list_alerts("pending", 1000)[0])
    whole.close()
    assert {"gas.micro_flow", "gas.continuous_flow", "gas.tamper"} <= {s[0] for s in expected[0]}

    s = sim()
    first = Ingest(tmp_path / "restart", fleet)
    first.run(s, day0 + 12 * H)
    assert "gas.micro_flow" in {a.rule for a in first.alerts.list_alerts("pending", 1000)[0]}
    assert "gas.continuous_flow" in {a.rule for a in first.alerts.open_alerts()}
    first.close()
    second = Ingest(tmp_path / "restart", fleet)
    second.run(s, day0 + 27 * H)
    assert (signature(second.fired()), signature(second.alerts.list_alerts("pending", 1000)[0])) == expected
    second.close()
