"""The rollout report's figures and exception lists, against plain-Python computations over the
same CSV rows (tests/devices/rollout_programme.py) and hand-made series of known pace."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from devices.model import Device, RolloutTarget
from devices.rollout import EXCEPTIONS, RolloutOptions, RolloutReport

from .rollout_programme import DAY, P, approx_doc, expected_document, generate, load, local_day, ms, read

NOW = ms("2026-11-29T12:00")  # a Sunday; its week starts Monday 2026-11-23


@pytest.mark.parametrize("now", [NOW, ms("2026-11-30T00:00"), ms("2026-12-02T23:59")])
def test_every_figure_matches_an_independent_computation(registry, tmp_path, now):
    paths = generate(tmp_path, now)
    load(registry, paths)
    doc = RolloutReport(registry, now, programme=P).to_dict()
    assert doc["as_of"] == local_day(now).isoformat() and doc["source"] == "live" and doc["tz"] == "Asia/Shanghai"
    assert doc["generated_at"].endswith("+08:00")
    [got] = doc["programmes"]
    want = expected_document(paths, now)
    assert got == approx_doc(want)
    # what the generator promised: something of every kind to report
    figs = got["districts"]
    assert {f["on_track"] for f in figs} >= {False}
    assert got["totals"]["weekly"][-1]["commissioned_cumulative"] == got["totals"]["commissioned"]


def test_all_programmes_when_none_named(registry, tmp_path):
    load(registry, generate(tmp_path, NOW))
    doc = RolloutReport(registry, NOW).to_dict()
    assert [p["programme"] for p in doc["programmes"]] == ["other-programme", P]
    other = doc["programmes"][0]
    assert other["kind"] == "noise" and other["totals"]["commissioned"] == 0 and other["totals"]["on_track"] is False
    with pytest.raises(LookupError, match="no rollout programme 'nope'"):
        RolloutReport(registry, NOW, programme="nope")


def _district(registry, per_week: list[int], *, target: int, deadline: str, start: str = "2026-09-28",
              district: str = "江汉区", now: int = NOW) -> dict:
    """A district whose meters were commissioned ``per_week[i]`` in the i-th week from ``start``
    (Wednesdays, noon), the report's figures for it."""
    registry.upsert_rollout([RolloutTarget(P, "gas_meter", district, target, start, deadline)])
    devices, seen = [], {}
    monday = date.fromisoformat(start)
    for i, n in enumerate(per_week):
        day = monday + timedelta(weeks=i, days=2)
        for k in range(n):
            did = f"m-{district.encode().hex()[:6]}-{i:02d}-{k:03d}"
            devices.append(Device(did, "gas_meter", district, installed_at=day.isoformat()))
            seen[did] = ms(day.isoformat() + "T12:00")
    registry.upsert(devices)
    registry.mark_seen(seen)
    [mine] = [f for f in RolloutReport(registry, now, programme=P).to_dict()["programmes"][0]["districts"]
              if f["district"] == district]
    return mine


def test_forecast_range_on_a_constant_pace(registry):
    # 9 full weeks of 10 a week (28 Sep .. 29 Nov: the 9th is the current week, not full)
    f = _district(registry, [10] * 9, target=200, deadline="2026-12-31")
    assert [w["commissioned"] for w in f["weekly"]] == [10] * 9
    assert f["commissioned"] == 90 and f["pace_per_week"] == 10.0 and f["pace_p10"] == f["pace_p90"] == 10.0
    # 110 to go at 10 a week: 77 days after 29 Nov
    assert f["forecast"] == f["forecast_early"] == f["forecast_late"] == "2027-02-14"
    assert f["on_track"] is False
    assert f["needed_per_week"] == pytest.approx(110 / (33 / 7))  # 29 Nov .. 31 Dec: 33 days


def test_forecast_range_on_a_rising_pace(registry):
    f = _district(registry, [1, 2, 3, 4, 5, 6, 7, 8, 50], target=100, deadline="2027-01-31")
    # recent full weeks: the 8 before the current one: 1..8; p10 = 1.7, p90 = 7.3 (numpy's linear)
    assert f["pace_per_week"] == 4.5
    assert f["pace_p10"] == pytest.approx(1.7) and f["pace_p90"] == pytest.approx(7.3)
    remaining = 100 - 86
    assert f["forecast"] == (date(2026, 11, 29) + timedelta(days=-(-remaining * 7 // 4.5))).isoformat()
    assert f["forecast_early"] == "2026-12-13"  # ceil(14 / 7.3 * 7) = 14 days
    assert f["forecast_late"] == "2027-01-26"  # ceil(14 / 1.7 * 7) = 58 days
    assert f["on_track"] is True


def test_pace_limited_to_the_weeks_since_the_start_and_zero_pace(registry):
    # the programme started in the previous week: one full week to take the pace from
    f = _district(registry, [4, 3], target=50, deadline="2027-06-30", start="2026-11-16")
    assert f["pace_per_week"] == 4.0 and f["pace_p10"] == f["pace_p90"] == 4.0
    g = _district(registry, [0] * 9, target=5, deadline="2027-06-30", district="武昌区")
    assert g["pace_per_week"] == 0.0 and g["forecast"] is None and g["forecast_late"] is None
    assert g["on_track"] is False  # at a pace of 0 it never ends


def test_deadline_met_missed_and_passed(registry):
    met = _district(registry, [10, 10, 10], target=25, deadline="2026-10-31")
    assert met["completed_on"] == "2026-10-14" and met["on_track"] is True and met["forecast"] is None
    assert met["needed_per_week"] is None
    late = _district(registry, [10, 10, 10], target=25, deadline="2026-10-10", district="武昌区")
    assert late["completed_on"] == "2026-10-14" and late["on_track"] is False
    passed = _district(registry, [10, 10, 10], target=99, deadline="2026-11-01", district="硚口区")
    assert passed["completed_on"] is None and passed["on_track"] is False and passed["needed_per_week"] is None
    new = _district(registry, [], target=10, deadline="2027-03-01", district="汉阳区", start="2026-11-25")
    assert new["on_track"] is None and new["pace_per_week"] == 0.0  # started this week: no full week yet
    assert len(new["weekly"]) == 9 and not any(w["commissioned"] for w in new["weekly"])  # the programme's weeks


def test_a_programme_not_started_yet(registry):
    registry.upsert_rollout([RolloutTarget(P, "gas_meter", "江汉区", 10, "2027-01-04", "2027-06-30")])
    f = RolloutReport(registry, NOW, programme=P).to_dict()["programmes"][0]["totals"]
    assert f["weekly"] == [] and f["on_track"] is None and f["forecast"] is None
    assert f["needed_per_week"] == pytest.approx(10 / (214 / 7))


def test_week_boundary_is_monday_midnight_in_shanghai(registry):
    registry.upsert_rollout([RolloutTarget(P, "gas_meter", "江汉区", 10, "2026-11-09", "2026-12-31")])
    registry.upsert([Device(f"w-{i}", "gas_meter", "江汉区", installed_at=d) for i, d in
                     enumerate(["2026-11-22", "2026-11-23", "2026-11-22", "2026-11-23"])])
    registry.mark_seen({"w-0": ms("2026-11-22T23:59"), "w-1": ms("2026-11-23T00:00"),
                        "w-2": ms("2026-11-22T23:59:59.999"), "w-3": ms("2026-11-23T00:00:00.001")})
    weekly = RolloutReport(registry, NOW, programme=P).to_dict()["programmes"][0]["totals"]["weekly"]
    assert [(w["week_start"], w["commissioned"], w["installed"], w["commissioned_cumulative"]) for w in weekly] == [
        ("2026-11-09", 0, 0, 0), ("2026-11-16", 2, 2, 2), ("2026-11-23", 2, 2, 4)]
    # Sunday 23:59 Shanghai is Sunday 15:59 UTC: a UTC week would put all four in one week
    assert ms("2026-11-23T00:00") == datetime(2026, 11, 22, 16, tzinfo=UTC).timestamp() * 1000


def test_another_time_zone(registry):
    registry.upsert_rollout([RolloutTarget(P, "gas_meter", "江汉区", 10, "2026-11-16", "2026-12-31")])
    registry.upsert([Device("w-0", "gas_meter", "江汉区")])
    registry.mark_seen({"w-0": ms("2026-11-23T07:00")})  # Monday 07:00 Shanghai = Sunday 23:00 UTC
    doc = RolloutReport(registry, NOW, programme=P, options=RolloutOptions(tz="UTC")).to_dict()
    assert [w["commissioned"] for w in doc["programmes"][0]["totals"]["weekly"]] == [1, 0]
    assert doc["generated_at"].endswith("+00:00")


def expected_lists(paths, now_ms: int, latest: dict[str, dict[str, tuple[int, float]]]) -> dict[str, set]:
    traffic = {r["device_id"]: r for r in read(paths["traffic"])}
    targets = {(t["kind"], t["district"]): t for t in read(paths["rollout"]) if t["programme"] == P}
    today = local_day(now_ms)
    out = {name: set() for name in EXCEPTIONS}
    for d in read(paths["devices"]):
        t = targets.get((d["kind"], d["district"]))
        if t is None or d["status"] == "retired":
            continue
        tr = traffic.get(d["device_id"])
        c, last = (int(tr["commissioned_at"]), int(tr["last_seen"])) if tr else (None, None)
        did = d["device_id"]
        if d["status"] == "installed" and last is None and \
                date.fromisoformat(d["installed_at"]) <= local_day(now_ms - 3 * DAY):
            out["never_heard"].add(did)
        if c is not None and last < now_ms - 2 * DAY:
            out["silent"].add(did)
        if d["status"] == "planned" and t["deadline"] < today.isoformat():
            out["overdue_planned"].add(did)
        new = c is not None and local_day(c) >= date.fromisoformat(t["start"])
        rsrp = latest["rsrp_dbm"].get(did)
        if new and rsrp is not None and rsrp[1] < -115:
            out["weak_signal"].add(did)
        batt = latest["battery_v"].get(did)
        limit = 4.8 if "4.8" in d["attrs"] else 3.3
        if new and batt is not None and batt[1] < limit:
            out["low_battery"].add(did)
    return out


def test_exception_lists(registry, tmp_path):
    paths = generate(tmp_path, NOW)
    load(registry, paths)
    ids = [r["device_id"] for r in read(paths["devices"])]
    latest = {"rsrp_dbm": {d: (NOW - i, -130.0 + (i % 40)) for i, d in enumerate(ids)},
              "battery_v": {d: (NOW - i, 3.0 + (i % 30) / 10) for i, d in enumerate(ids)}}
    report = RolloutReport(registry, NOW, programme=P, latest=latest.__getitem__)
    want = expected_lists(paths, NOW, latest)
    doc = report.to_dict()
    for name in EXCEPTIONS:
        rows = report.exception_rows(name)
        assert {r["device_id"] for r in rows} == want[name], name
        assert len(rows) == len(want[name]) == doc["exceptions"][name]["count"] > 0, name
        assert [(r["district"], r["device_id"]) for r in rows] == sorted((r["district"], r["device_id"]) for r in rows)
        assert set(rows[0]) == {"device_id", "district", "asset_id", "asset_name", "responsible_unit", "reason",
                                "since"}
    weak = report.exception_rows("weak_signal")[0]
    assert weak["reason"] == f"RSRP {latest['rsrp_dbm'][weak['device_id']][1]:g} dBm"
    assert weak["responsible_unit"] == "武汉市燃气集团" and weak["asset_name"].startswith("资产")
    never = report.exception_rows("never_heard")[0]
    assert never["since"] <= "2026-11-26" and "no reading" in never["reason"]


def test_lists_needing_readings_without_a_store(registry, tmp_path):
    load(registry, generate(tmp_path, NOW))
    report = RolloutReport(registry, NOW, programme=P)
    assert set(report.to_dict()["exceptions"]) == {"never_heard", "silent", "overdue_planned"}
    with pytest.raises(LookupError, match="weak_signal"):
        report.exception_rows("weak_signal")
    with pytest.raises(KeyError, match="unknown exception list 'bogus'"):
        report.exception_rows("bogus")


def test_never_heard_days_is_configurable(registry):
    registry.upsert_rollout([RolloutTarget(P, "gas_meter", "江汉区", 10, "2026-11-01", "2026-12-31")])
    registry.upsert([Device(f"n-{k}", "gas_meter", "江汉区", installed_at=(date(2026, 11, 29) - timedelta(days=k))
                            .isoformat()) for k in range(8)])

    def names(days):
        r = RolloutReport(registry, NOW, programme=P, options=RolloutOptions(never_heard_days=days))
        return sorted(x["device_id"] for x in r.exception_rows("never_heard"))

    assert names(3) == ["n-3", "n-4", "n-5", "n-6", "n-7"]
    assert names(6.5) == ["n-6", "n-7"]  # n-6: midnight of 23 Nov + 6.5 days is now: included
    assert names(6.6) == ["n-7"]
    with pytest.raises(ValueError, match="pace_weeks"):
        RolloutOptions(pace_weeks=0)


def test_sample_programme_has_something_to_say(registry):
    from devices.fleet import sample_fleet
    from devices.rollout_sample import sample_programme

    fleet = sample_fleet(0.0005, seed=2021, min_per_kind=3)
    a, b = sample_programme(fleet, NOW, seed=2021), sample_programme(fleet, NOW, seed=2021)
    assert a == b  # seeded
    assert sample_programme(fleet, NOW, seed=1).first_seen != a.first_seen
    gas = [d for d in fleet if d.kind == "gas_meter"]
    assert sum(t.target for t in a.targets) == len(gas) == len(a.devices)
    assert all(ts <= NOW for ts in a.first_seen.values())
    assert all(a.last_seen[d] >= ts for d, ts in a.first_seen.items())
    planned = {d.device_id for d in a.devices if d.status == "planned"}
    assert planned and planned <= a.quiet and not planned & set(a.first_seen)
    registry.upsert(fleet)
    a.load(registry)
    doc = RolloutReport(registry, NOW).to_dict()
    [p] = doc["programmes"]
    assert {d["on_track"] for d in p["districts"]} >= {True, False}
    assert doc["exceptions"]["never_heard"]["count"] > 0 and doc["exceptions"]["silent"]["count"] > 0
    assert len(p["totals"]["weekly"]) == 17 and p["totals"]["pace_per_week"] > 0
    # the meters the simulators may publish for are the heard, not silent ones
    loud = {d.device_id for d in a.devices} - a.quiet
    assert loud and all(a.last_seen[d] >= NOW - 3600_000 for d in loud)


@pytest.mark.parametrize("distinct_attrs", [3, 70])
def test_device_scan_columns(registry, distinct_attrs):
    """The scan's columns on each engine (its SQL differs: julianday/date arithmetic, and an attrs
    number read by a CASE over few distinct texts or from each row's JSON), against the devices."""
    from devices.rollout_scan import DeviceScan

    devices = [Device(f"gas-{i:03d}", "gas_meter", "江汉区" if i % 2 else "武昌区",
                      status=("planned", "installed", "installed", "retired")[i % 4],
                      installed_at=None if i % 5 == 0 else (date(2025, 1, 1) + timedelta(days=i)).isoformat(),
                      attrs={"battery_warn_v": 3.0 + (i % distinct_attrs) / 100} if i % 7 else {"model": f"m{i}"})
               for i in range(80)]
    registry.upsert(devices)
    registry.mark_seen({"gas-001": 1_000, "gas-002": 2_000})
    keys = [("gas_meter", "江汉区")]
    sc = DeviceScan(registry.conn, keys, with_ids=True, attr="battery_warn_v")
    live = [d for d in devices if d.status != "retired"]
    assert sorted(sc.ids) == [d.device_id for d in live]
    by_id = {d.device_id: d for d in live}
    for i, dev_id in enumerate(sc.ids):
        d = by_id[dev_id]
        assert sc.key[i] == (0 if d.district == "江汉区" else -1)
        assert (sc.planned[i], sc.installed[i]) == (d.status == "planned", d.status == "installed")
        assert sc.installed_day[i] == (date.fromisoformat(d.installed_at).toordinal() if d.installed_at else -1)
        want = d.attrs.get("battery_warn_v")
        assert (sc.attr[i] == pytest.approx(want)) if want is not None else np.isnan(sc.attr[i])
    seen = {dev_id: int(sc.last_seen[i]) for i, dev_id in enumerate(sc.ids) if sc.has_last_seen[i]}
    assert seen == {"gas-001": 1_000, "gas-002": 2_000}
