from __future__ import annotations

import threading

import pytest

from devices import db
from devices.catalogue import CATALOGUE
from devices.db import connect
from devices.errors import InvalidDevice, RegistryError
from devices.model import Device, RolloutTarget
from devices.registry import Registry, online


def dev(i: int, kind: str = "noise", district: str = "江汉区", **kw) -> Device:
    return Device(f"{kind}-{i:04d}", kind, district, **kw)


def test_upsert_get_roundtrip(registry):
    d = Device("bridge-0001-s1", "bridge", "武昌区", 30.549412, 114.287913, "BR-0001", "武汉长江大桥",
               "市桥梁管理处", "installed", "2026-03-02", {"sensor": "strain", "design_strain_ue": 450, "名": "应变"})
    assert registry.upsert([d]) == 1
    assert registry.get("bridge-0001-s1") == d
    assert registry.get("nope") is None


def test_upsert_updates_and_keeps_derived_fields(registry):
    registry.upsert([dev(1)])
    registry.mark_seen({"noise-0001": 1_000})
    registry.upsert([dev(1, district="武昌区", status="retired", commissioned_at=5, last_seen=9)])
    got = registry.get("noise-0001")
    assert got.district == "武昌区" and got.status == "retired"
    assert (got.commissioned_at, got.last_seen) == (1_000, 1_000)


def test_upsert_is_all_or_nothing(registry):
    with pytest.raises(InvalidDevice, match="unknown kind 'bridg'"):
        registry.upsert([dev(1), Device("x-1", "bridg", "江汉区")])
    assert registry.count() == 0
    v = registry.version()
    with pytest.raises(InvalidDevice, match="lat"):
        registry.upsert([dev(2, lat=91.0, lon=114.0)])
    assert registry.version() == v


def test_upsert_inside_caller_transaction_uses_savepoint(registry):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.write_transaction(registry.conn):
        registry.upsert([dev(1)])
        assert registry.count() == 1  # inside the caller's transaction
        raise Abort
    assert registry.count() == 0


def test_list_pagination_and_filters(registry):
    registry.upsert([dev(i) for i in range(1, 26)] + [dev(i, "toilet", "武昌区") for i in range(1, 6)])
    registry.upsert([dev(3, status="retired")])
    pages, after = [], None
    while True:
        page = registry.list(kind="noise", limit=10, after=after)
        if not page:
            break
        pages.append([d.device_id for d in page])
        after = page[-1].device_id
    assert [len(p) for p in pages] == [10, 10, 5]
    flat = [x for p in pages for x in p]
    assert flat == sorted(flat) == [f"noise-{i:04d}" for i in range(1, 26)]
    assert [d.device_id for d in registry.list(district="武昌区")] == [f"toilet-{i:04d}" for i in range(1, 6)]
    assert [d.device_id for d in registry.list(status="retired")] == ["noise-0003"]
    assert registry.count() == 30
    assert registry.count(kind="noise") == 25
    assert registry.count(kind="noise", status="installed") == 24
    assert registry.count(district="武昌区", kind="noise") == 0
    assert len(list(registry.iter_devices(page=7))) == 30
    with pytest.raises(ValueError):
        registry.list(limit=0)


def test_snapshot_and_version(registry):
    v0 = registry.version()
    registry.upsert([dev(1, asset_id="CS-1"), dev(2, status="planned"), dev(3, status="retired")])
    v1 = registry.version()
    assert v1 != v0
    assert registry.snapshot() == {"noise-0001": ("noise", "江汉区", "CS-1"), "noise-0002": ("noise", "江汉区", "")}
    registry.mark_seen({"noise-0001": 5})
    assert registry.version() == v1  # traffic does not invalidate the snapshot
    registry.upsert([dev(3)])
    assert registry.version() != v1
    assert "noise-0003" in registry.snapshot()


def test_version_seen_by_another_connection(registry, state_target):
    other = Registry(connect(state_target))
    v = other.version()
    registry.upsert([dev(1)])
    assert other.version() != v
    assert other.get("noise-0001") is not None
    other.close()


def test_mark_seen_semantics(registry):
    registry.upsert([dev(1), dev(2)])
    registry.mark_seen({"noise-0001": 2_000, "unknown-9": 1})
    d = registry.get("noise-0001")
    assert (d.commissioned_at, d.last_seen) == (2_000, 2_000)
    registry.mark_seen({"noise-0001": 5_000})
    d = registry.get("noise-0001")
    assert (d.commissioned_at, d.last_seen) == (2_000, 5_000)
    registry.mark_seen({"noise-0001": 1_000})  # a late, older batch: commissioned earlier, last_seen kept
    d = registry.get("noise-0001")
    assert (d.commissioned_at, d.last_seen) == (1_000, 5_000)
    d2 = registry.get("noise-0002")
    assert (d2.commissioned_at, d2.last_seen) == (None, None)
    registry.mark_seen({})


def test_mark_seen_many_devices_is_cheap(registry):
    import time
    n = 10_000
    registry.upsert([dev(i, "gas_meter") for i in range(n)])
    seen = {f"gas_meter-{i:04d}": 1_000 + i for i in range(n)}
    t = time.perf_counter()
    registry.mark_seen(seen)
    first = time.perf_counter() - t
    t = time.perf_counter()
    registry.mark_seen(seen)  # nothing changes: no row is rewritten
    again = time.perf_counter() - t
    assert registry.get("gas_meter-0042").last_seen == 1_042
    assert first < 2.0 and again < 2.0, (first, again)


def test_online():
    bridge = Device("b-1", "bridge", "江汉区", last_seen=1_000_000)
    assert online(bridge, 1_000_000 + 300_000)
    assert not online(bridge, 1_000_000 + 300_001)
    assert not online(Device("b-2", "bridge", "江汉区"), 0)
    gas = Device("g-1", "gas_meter", "江汉区", last_seen=0)
    assert online(gas, int(CATALOGUE["gas_meter"].offline_after_s * 1000))
    assert Registry.online(gas, 3 * 86_400_000 + 1) is False


def test_attrs_and_attrs_snapshot(registry):
    registry.upsert([
        dev(1, "bridge", attrs={"sensor": "strain", "design_strain_ue": 450}),
        dev(2, "bridge", attrs={"sensor": "tilt", "baseline_tilt_deg": 0.01}),
        dev(3, "bridge", status="retired", attrs={"sensor": "wim"}),
        dev(4, "toilet", attrs={"class": "I"}),
    ])
    assert registry.attrs("bridge-0001") == {"sensor": "strain", "design_strain_ue": 450}
    assert registry.attrs("nope") == {}
    snap = registry.attrs_snapshot("bridge")
    assert snap == {"bridge-0001": {"design_strain_ue": 450, "sensor": "strain"},
                    "bridge-0002": {"baseline_tilt_deg": 0.01, "sensor": "tilt"}}
    assert registry.attrs_snapshot("toilet") == {"toilet-0004": {"class": "I"}}


def test_rollout_targets(registry):
    t1 = RolloutTarget("smart-gas-meters-2021", "gas_meter", "江汉区", 100, "2021-03-01", "2023-12-31")
    t2 = RolloutTarget("smart-gas-meters-2021", "gas_meter", "武昌区", 200, "2021-03-01", "2023-12-31")
    assert registry.upsert_rollout([t2, t1]) == 2
    registry.upsert_rollout([RolloutTarget(t1.programme, t1.kind, t1.district, 150, t1.start, "2024-06-30")])
    got = registry.rollout_targets()
    assert [t.district for t in got] == sorted(t.district for t in got)  # programme, kind, district
    assert {t.district: t.target for t in got} == {"江汉区": 150, "武昌区": 200}
    assert registry.rollout_targets("other") == []
    with pytest.raises(InvalidDevice, match="deadline"):
        registry.upsert_rollout([RolloutTarget("p", "gas_meter", "江汉区", 1, "2024-01-01", "2023-01-01")])
    with pytest.raises(InvalidDevice, match="target"):
        registry.upsert_rollout([RolloutTarget("p", "gas_meter", "江汉区", -1, "2021-01-01", "2023-01-01")])


def test_concurrent_writers_share_one_registry(registry):
    registry.upsert([dev(i) for i in range(200)])
    errors = []

    def work(k):
        try:
            for j in range(20):
                registry.mark_seen({f"noise-{i:04d}": k * 1000 + j for i in range(200)})
                registry.upsert([dev(k)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert registry.get("noise-0000").last_seen == 3019


def test_snapshots_are_handed_out_until_the_version_moves(registry):
    registry.upsert([dev(1, "bridge", attrs={"sensor": "strain"})])
    snap, attrs = registry.snapshot(), registry.attrs_snapshot("bridge")
    registry.mark_seen({"bridge-0001": 10})
    assert registry.snapshot() is snap and registry.attrs_snapshot("bridge") is attrs
    registry.upsert([dev(1, "bridge", attrs={"sensor": "tilt"})])
    assert registry.attrs_snapshot("bridge") is not attrs
    assert registry.attrs_snapshot("bridge") == {"bridge-0001": {"sensor": "tilt"}}
    assert registry.snapshot() is not snap


def test_read_only_connection(registry, state_target, tmp_path):
    registry.upsert([dev(1)])
    ro = Registry(connect(state_target, readonly=True))
    assert ro.count() == 1 and "noise-0001" in ro.snapshot()
    ro.close()
    with pytest.raises(RegistryError, match="cannot create the registry tables"):
        Registry(connect(tmp_path / "fresh.db", readonly=True))


def test_locked_database_is_a_registry_error(sqlite_registry, tmp_path):
    # SQLite's file lock (PostgreSQL's writers queue on the writer lock instead: tests/devices/test_db.py)
    registry = sqlite_registry
    other = connect(tmp_path / "state.db")
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    registry.conn.execute("PRAGMA busy_timeout=50")
    try:
        with pytest.raises(RegistryError, match="state database: database is locked"):
            registry.upsert([dev(1)])
        assert not registry.conn.in_transaction
    finally:
        other.execute("ROLLBACK")
        other.close()
    registry.upsert([dev(1)])
    assert registry.count() == 1


def test_last_seen_map(registry):
    registry.upsert([dev(1), dev(2), dev(3, status="retired")])
    registry.mark_seen({"noise-0001": 7, "noise-0003": 9})
    assert registry.last_seen_map() == {"noise-0001": 7}


def test_missing_index_of_an_older_schema_is_created(sqlite_registry, tmp_path):
    # a SQLite file of a release before migrations (no schema_versions) that lacks a newer index
    registry = sqlite_registry
    registry.upsert([dev(1)])
    registry.conn.execute("DROP INDEX devices_commissioned")
    registry.conn.execute("DROP TABLE schema_versions")
    again = Registry(connect(tmp_path / "state.db"))
    names = {r[0] for r in again.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "devices_commissioned" in names and again.count() == 1
    again.close()


def test_a_database_of_a_newer_release_is_refused_naming_it(registry, state_target):
    with db.write_transaction(registry.conn):
        registry.conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'registry'")
    with pytest.raises(RegistryError, match="registry tables are at version 99, newer than this release"):
        Registry.open(state_target)
