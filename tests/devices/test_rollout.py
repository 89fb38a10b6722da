from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from devices.model import Device, RolloutTarget
from devices.rollout import rollout_report

SH = ZoneInfo("Asia/Shanghai")
P = "smart-gas-meters-2021"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=SH).timestamp() * 1000)


NOW = ms("2026-11-29T12:00:00")  # a Sunday; its week starts Monday 2026-11-23


def gas(i: int, district: str = "江汉区", status: str = "installed") -> Device:
    return Device(f"gas-{i:03d}", "gas_meter", district, status=status)


def setup(registry):
    registry.upsert_rollout([
        RolloutTarget(P, "gas_meter", "江汉区", 10, "2026-10-01", "2026-12-31"),
        RolloutTarget(P, "gas_meter", "武昌区", 2, "2026-10-01", "2026-12-31"),
        RolloutTarget(P, "gas_meter", "硚口区", 5, "2026-10-01", "2026-12-31"),
    ])
    registry.upsert([gas(i) for i in range(1, 10)] + [gas(10, status="planned"), gas(11, status="retired")]
                    + [gas(20, "武昌区"), gas(21, "武昌区"), gas(22, "武昌区")])
    seen = {
        "gas-001": ms("2026-10-05T09:00:00"),  # long before the weeks shown
        "gas-002": ms("2026-11-10T09:00:00"),
        "gas-003": ms("2026-11-17T09:00:00"),
        "gas-004": ms("2026-11-23T00:30:00"),  # Monday, just after local midnight: this week
        "gas-005": ms("2026-11-28T20:00:00"),
        "gas-006": ms("2026-11-29T11:00:00"),
        "gas-011": ms("2026-11-29T11:00:00"),  # retired: never counted
        "gas-020": ms("2026-10-10T08:00:00"),
        "gas-021": ms("2026-10-20T08:00:00"),
        "gas-022": ms("2026-11-01T08:00:00"),
    }
    registry.mark_seen(seen)
    # later traffic: last_seen moves, commissioned_at stays
    registry.mark_seen({"gas-001": ms("2026-11-28T10:00:00"), "gas-002": ms("2026-11-20T10:00:00")})


def test_counts_weeks_pace_and_forecast(registry):
    setup(registry)
    report = {r.district: r for r in rollout_report(registry, NOW, history_weeks=3, pace_days=28)}
    assert list(report) == [t.district for t in registry.rollout_targets()]
    jh = report["江汉区"]
    assert (jh.target, jh.planned, jh.installed, jh.commissioned, jh.reporting) == (10, 1, 9, 6, 3)
    assert [(w.week_start, w.commissioned, w.cumulative) for w in jh.weekly] == [
        ("2026-11-09", 1, 2), ("2026-11-16", 1, 3), ("2026-11-23", 3, 6)]
    # 5 commissioned in the last 28 days: 1.25 a week; 4 to go -> 3.2 weeks -> 2026-12-21
    assert jh.pace_per_week == 5 / 4
    assert jh.forecast == "2026-12-21" and jh.completed_on is None and jh.on_track is True

    wc = report["武昌区"]
    assert wc.commissioned == 3 and wc.forecast is None
    assert wc.completed_on == "2026-10-20" and wc.on_track is True  # the 2nd commissioning

    qk = report["硚口区"]  # no devices at all
    assert (qk.commissioned, qk.pace_per_week, qk.forecast, qk.completed_on, qk.on_track) == (0, 0.0, None, None, None)
    assert [w.cumulative for w in qk.weekly] == [0, 0, 0]


def test_programme_filter_and_empty(registry):
    assert rollout_report(registry, NOW) == []
    setup(registry)
    assert rollout_report(registry, NOW, programme="other") == []
    assert len(rollout_report(registry, NOW, programme=P)) == 3
