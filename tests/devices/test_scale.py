"""The registry at a quarter of the Wuhan scale (134,019 devices; the full city, 536,083, takes
about four times as long). Marked slow.

Bounds are generous (a shared, loaded CI machine); the figures are printed (``-s``). On SQLite
only: the same registry code on PostgreSQL is measured at full scale by bench/rollout/run.py
(docs/PERFORMANCE.md, "Rollout report")."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from devices.csvio import export_devices, import_devices
from devices.fleet import sample_fleet
from devices.registry import Registry

pytestmark = pytest.mark.slow


def timed(label: str, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t
    print(f"{label}: {dt:.3f} s")
    return out, dt


def test_full_city(tmp_path):
    fleet, _ = timed("sample_fleet(0.25)", sample_fleet, 0.25)
    assert len(fleet) == 134_019
    reg = Registry.open(tmp_path / "state.db")
    _, dt = timed("upsert", reg.upsert, fleet)
    assert dt < 120
    snap, dt = timed("snapshot", reg.snapshot)
    assert len(snap) == len(fleet) and dt < 20
    _, dt = timed("attrs_snapshot(gas_meter)", reg.attrs_snapshot, "gas_meter")
    assert dt < 20

    hot = [d.device_id for d in fleet if d.kind in ("bridge", "noise", "toilet", "lighting")]
    hot += [d.device_id for d in fleet if d.kind == "fume"][: 10_000 - len(hot)]
    cold = random.Random(1).sample([d.device_id for d in fleet], 10_000)
    for label, ids in (("mark_seen 10k frequent reporters", hot), ("mark_seen 10k random", cold)):
        for rep in range(2):
            _, dt = timed(label, reg.mark_seen, {i: 1_800_000_000_000 + rep for i in ids})
            assert dt < 5

    path = tmp_path / "devices.csv"
    n, _ = timed("export_devices", export_devices, reg, path)
    other = Registry.open(tmp_path / "other.db")
    m, _ = timed("import_devices", import_devices, other, path)
    assert n == m == len(fleet)
    seen = reg.get(hot[0])
    assert seen.last_seen is not None
    assert other.get(hot[0]) == dataclasses.replace(seen, commissioned_at=None, last_seen=None)
    assert other.get("gas-jianghan-000123") == reg.get("gas-jianghan-000123")
