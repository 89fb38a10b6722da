"""Partitions of the rule evaluation (alerts/partitions.py): a stable split of the devices; an
engine that restores and evaluates only its own; a pipeline that takes only their messages and
acknowledges the others in order."""

from __future__ import annotations

import json
import zlib
from collections import Counter

from alerts.engine import RuleEngine
from alerts.partitions import owner_of, partition_of, topic_filter
from alerts.store import AlertState
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.pipeline import Pipeline
from tests.alerts.helpers import PACK, M, at, batch, series

T0 = at("2026-12-01 10:00:00")


def test_a_device_s_partition_is_a_stable_hash_of_its_id():
    assert partition_of("gas-000001", 8) == zlib.crc32(b"gas-000001") % 8
    assert all(partition_of(d, 1) == 0 for d in ("a", "b"))
    counts = Counter(partition_of(f"gas-{i:06d}", 8) for i in range(20_000))
    assert sorted(counts) == list(range(8)) and all(2_000 < c < 3_000 for c in counts.values()), counts


def _overload(engine: RuleEngine, device: str, minute: int) -> None:
    engine.process(batch(series(device, "bridge", "gross_t", T0 + minute * M, M, [80.0])))


def test_partition_engines_restore_and_evaluate_only_their_devices(tmp_path):
    """Two partitions' engines share one state DB: each fires for its own devices, and after a
    restart each one restores only its own devices' streams."""
    devices = [f"bridge-{i:04d}" for i in range(8)]
    mine = [[d for d in devices if partition_of(d, 2) == p] for p in (0, 1)]
    assert mine[0] and mine[1]
    path = tmp_path / "s.db"

    def engine(p: int) -> RuleEngine:
        return RuleEngine(PACK, AlertState(connect(path)), owns=owner_of(p, 2))

    first = [engine(0), engine(1)]
    for p, e in enumerate(first):
        for d in mine[p]:
            _overload(e, d, 0)
    firing = {a.device_id for a in AlertState(connect(path)).list_alerts("firing", 100)[0]}
    assert firing == set(devices)
    again = [engine(0), engine(1)]
    for p, e in enumerate(again):
        restored = {st.device_id for rt in e._rts for st in rt.streams.values() if st.state == "firing"}
        assert restored == set(mine[p])
    # the other partition's resets stay for its engine: a manual resolve of each
    alerts = AlertState(connect(path))
    for a in alerts.list_alerts("firing", 100)[0]:
        alerts.resolve(a.id, by="duty", now_ms=T0 + 2 * M)
    _overload(again[0], mine[0][0], 3)  # partition 0's engine takes only its own resets
    left = {r[2] for r in AlertState(connect(path)).take_resets()}
    assert left == set(mine[1])


def test_a_partition_pipeline_takes_its_devices_and_acknowledges_the_rest_in_order(tmp_path):
    ids = [f"nz-{i:03d}" for i in range(12)]
    state = tmp_path / "s.db"
    Registry(connect(state)).upsert([Device(d, "noise", "江汉区", asset_id="site") for d in ids])
    owns = owner_of(1, 3)
    seen: list[str] = []

    class Sink:  # what the pipeline hands the rules: records the devices
        def process(self, b, events):
            seen.extend(str(d) for d in b.device_id)
            return []

        def checkpoint(self):
            return 0

    p = Pipeline(store=None, registry=Registry(connect(state)), quarantine=None, events=None, rules=Sink(),
                 accept=topic_filter(owns))
    acks: list[int] = []
    msgs = [(f"city/noise/{d}/telemetry", json.dumps({"ts": T0 + i, "metrics": {"laeq_db": 50.0}}).encode(),
             lambda i=i: acks.append(i)) for i, d in enumerate(ids * 2)]
    p.submit_many(msgs[:7])
    p.submit_many(msgs[7:])
    p.flush()
    assert acks == list(range(len(msgs)))  # every message acknowledged, in the order received
    assert sorted(set(seen)) == sorted(d for d in ids if owns(d)) and len(seen) == 2 * len(set(seen))
