from alerts.presence import offline_after_ms, online
from alerts.rules import RulePack
from devices.catalogue import KINDS


def test_online_per_kind():
    now = 1_800_000_000_000
    assert online("noise", now - 9 * 60_000, now) and not online("noise", now - 10 * 60_000, now)
    assert online("gas_meter", now - 2 * 86_400_000, now)
    assert not online("bridge", None, now)


def test_offline_rules_match_presence():
    pack = RulePack.load()
    for kind in KINDS:
        [rule] = [r for r in pack.rules if r.kind == kind and r.type == "absence"]
        assert rule.params.absent_ms == offline_after_ms(kind)
