"""``citywatch up``'s fault schedule (simulators/schedule.py): deterministic, each kind in turn, and
each of its scenarios, run through the real ingest path and rule engine on event time
(helpers.Ingest, absence ticks at every flush), raises its alert on the device it hit, and the
alert resolves once the fault is over."""

from __future__ import annotations

import pytest

from devices.catalogue import KINDS
from devices.fleet import sample_fleet
from simulators.engine import Simulation
from simulators.schedule import DEMO, choose, rotation
from simulators.timeutil import parse_time_ms

from .helpers import H, Ingest, M

DAY0 = parse_time_ms("2026-11-20T00:00:00+08:00")


def test_rotation_takes_each_kind_in_turn_every_interval():
    got = list(rotation(KINDS, first_ms=DAY0, every_ms=3 * M, seed=0, until_ms=DAY0 + 13 * 3 * M))
    assert [at for at, _ in got] == [DAY0 + i * 3 * M for i in range(13)]
    kinds = [next(k for k, cs in DEMO.items() if spec in {c.spec for c in cs}) for _, spec in got]
    assert kinds == (list(KINDS) * 3)[:13]
    # the seed picks where the turn starts; a fleet without some kinds skips them
    assert next(rotation(KINDS, first_ms=DAY0, every_ms=M, seed=2))[1] == choose(KINDS[2], DAY0)
    few = list(rotation(["lighting", "bridge"], first_ms=DAY0, every_ms=M, until_ms=DAY0 + 3 * M))
    assert [s.split(",")[0] for _, s in few] == ["strain-overload", "cabinet-door-open", "strain-overload"]


def test_choice_follows_local_time():
    assert choose("fume", DAY0 + 12 * H).startswith("purifier-off")  # the lunch peak: fans run
    assert choose("fume", DAY0 + 3 * H).startswith("device-offline")  # closed: the purifier is moot
    assert choose("fume", DAY0 + 13 * H + 20 * M).startswith("device-offline")  # would outlast lunch
    assert choose("noise", DAY0 + 23 * H) == "night-construction,for=10m"
    assert choose("noise", DAY0 + 5 * H + 55 * M).endswith("extra_db=12")  # would end after 06:00
    assert choose("noise", DAY0 + 10 * H).endswith("extra_db=12")


def _sim(fleet, seed: int, start: int, schedule) -> Simulation:
    return Simulation(fleet, seed=seed, start_ms=start, gas_mode="hourly", schedule=schedule)


def test_same_seed_same_faults_on_the_same_devices():
    fleet = sample_fleet(0.0005, seed=2021, min_per_kind=3, kinds=[k for k in KINDS if k != "bridge"])
    start = DAY0 + 9 * H

    def injections(seed: int):
        sim = _sim(fleet, seed, start, rotation([d.kind for d in fleet], first_ms=start + M, every_ms=3 * M, seed=seed))
        for _ in sim.messages(start + 40 * M):
            pass
        return [(i.name, i.device_ids, i.start_ms, i.end_ms) for i in sim.injections]

    a = injections(5)
    assert a == injections(5)
    assert len(a) == 13 and a != injections(6)
    assert [n for n, *_ in a[:5]] == ["gas-over-flow", "device-offline", "night-construction",
                                      "toilet-ventilation-failure", "cabinet-door-open"]


# kind, local start -> the rules its fault raises (an independent reading of the rule pack and the
# scenario's physics: the alert each must produce)
CASES = {
    ("bridge", 10 * H): {"bridge.strain"},
    ("gas_meter", 10 * H + 7 * M): {"gas.over_flow"},
    ("fume", 12 * H): {"fume.purifier_off"},
    ("fume", 3 * H): {"fume.offline"},
    ("noise", 23 * H): {"noise.night_laeq", "noise.night_lmax"},
    ("noise", 10 * H): {"noise.day_laeq"},
    ("noise", 21 * H + 52 * M): {"noise.day_laeq"},  # resolved when its window ends at 22:00
    ("toilet", 10 * H): {"toilet.nh3", "toilet.h2s"},
    ("lighting", 10 * H): {"lighting.door_open"},
}


@pytest.mark.parametrize(("kind", "tod"), list(CASES), ids=[f"{k}@{t // H}h{t % H // M:02d}" for k, t in CASES])
def test_each_demo_fault_fires_its_alert_and_resolves(kind, tod, tmp_path):
    fleet = sample_fleet(0.0005, seed=2021, min_per_kind=3, kinds=[kind])
    ing = Ingest(tmp_path, fleet)
    start = DAY0 + tod - 10 * M  # every device has reported before the fault
    fault_at = start + 10 * M
    sim = _sim(fleet, 7, start, rotation([kind], first_ms=fault_at, every_ms=24 * H, until_ms=fault_at + 1))
    span = 25 * M if kind == "bridge" else 50 * M if kind == "toilet" else 40 * M
    ing.run(sim, fault_at + span, tick=True)
    (inj,) = sim.injections
    assert inj.start_ms >= fault_at
    hit = set(inj.device_ids)
    alerts = [a for a in ing.fired() if a.device_id in hit]
    assert {a.rule for a in alerts} >= CASES[kind, tod], [(a.rule, a.device_id) for a in alerts]
    for a in alerts:
        assert inj.start_ms <= a.fired_ms, a
        assert a.state == "resolved", (a.rule, a.state, inj)
        assert a.ended_ms >= inj.start_ms
    others = [(a.rule, a.device_id) for a in ing.fired() if a.device_id not in hit]
    assert not others
    if (kind, tod) == ("noise", 21 * H + 52 * M):  # the fault outlasts the day window (22:00)
        (day,) = [a for a in alerts if a.rule == "noise.day_laeq"]
        assert DAY0 + 22 * H <= day.ended_ms <= DAY0 + 22 * H + M < inj.end_ms  # its first reading after
    if kind == "bridge":  # strain ramps through the rule's levels: the alert escalates
        (strain,) = [a for a in alerts if a.rule == "bridge.strain"]
        changes = [(h.change, h.severity) for h in ing.alerts.get(strain.id).history]
        assert ("escalated", "critical") in changes, changes
    ing.close()
