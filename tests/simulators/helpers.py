"""Helpers of the simulator tests: run a simulation, decode its readings with the strict checker."""

from __future__ import annotations

import json
from collections import defaultdict

from simulators.engine import Simulation
from simulators.message import Message

from .contract_check import check

HOUR = 3_600_000
DAY = 24 * HOUR


def run(fleet, *, start, hours, seed=1, scenarios=(), **kw) -> tuple[Simulation, list[Message]]:
    sim = Simulation(fleet, seed=seed, start_ms=start, scenarios=list(scenarios), **kw)
    return sim, list(sim.messages(start + int(hours * HOUR)))


def registry_of(fleet) -> dict[str, str]:
    return {d.device_id: d.kind for d in fleet}


def series_by(fleet, msgs) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(device_id, metric) -> [(ts, value)] sorted by ts, every message checked strictly."""
    reg = registry_of(fleet)
    out: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for m in msgs:
        for dev, metric, ts, v in check(m.topic, m.payload, reg, m.sim_ts):
            out[(dev, metric)].append((ts, v))
    for pts in out.values():
        pts.sort()
    return out


def events(msgs, device_id=None) -> list[tuple[int, str, dict]]:
    out = []
    for m in msgs:
        if m.topic.endswith("/event") and (device_id is None or m.topic.split("/")[2] == device_id):
            o = json.loads(m.payload)
            out.append((o["ts"], o["type"], o.get("detail", {})))
    return out


def longest_run(points, pred) -> int:
    """Longest span (ms, first to last) of consecutive points satisfying ``pred``; a single
    point counts as 0 ms, no point as -1."""
    best, start = -1, None
    for ts, v in points:
        if pred(v):
            if start is None:
                start = ts
            best = max(best, ts - start)
        else:
            start = None
    return best
