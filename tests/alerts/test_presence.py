"""One presence boundary: a device is offline once silent longer than ``offline_after_s`` of it
(devices.registry, shown by the API), and the kinds' offline rules use the same durations, so a
device shown offline is one that has (or is about to have) an ``*.offline`` alert."""

from alerts.rules import RulePack
from devices.catalogue import KINDS
from devices.registry import offline_after_s


def test_offline_rules_match_presence():
    pack = RulePack.load()
    for kind in KINDS:
        [rule] = [r for r in pack.rules if r.kind == kind and r.type == "absence"]
        assert rule.params.absent_ms == offline_after_s(kind) * 1000
