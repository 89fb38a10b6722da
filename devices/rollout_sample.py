"""A sample rollout programme over a fleet's gas meters: the demo's (``citywatch up``), the tests'
and the benchmark's, drawn by a seeded generator.

:func:`sample_programme` turns the gas meters of a fleet into a programme that has something to
say: one target per district (its meters), some districts ahead of their deadline and some
behind, meters still planned, installed meters never heard from, commissioned meters gone silent.
Installation and commissioning dates are spread over the weeks before ``now_ms``, so that the
weekly series and the forecast are meaningful; the commissioning and last-reading times are
returned for :meth:`Registry.mark_seen` (what traffic would have recorded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np

from devices.fleet import GAS_PROGRAMME
from devices.model import Device, RolloutTarget
from devices.registry import Registry
from devices.rollout import local_date, midnight_ms

__all__ = ["SampleProgramme", "sample_programme"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class SampleProgramme:
    targets: list[RolloutTarget]
    devices: list[Device]  # the meters, with status and installed_at set
    first_seen: dict[str, int]  # device_id -> commissioning time (ms), the commissioned ones
    last_seen: dict[str, int]  # device_id -> newest reading (ms)
    quiet: frozenset[str]  # planned, never heard or silent: a simulator must not publish for them

    def load(self, registry: Registry) -> None:
        """Upsert the targets and meters and record their traffic times in ``registry``."""
        registry.upsert_rollout(self.targets)
        registry.upsert(self.devices)
        registry.mark_seen(self.first_seen)
        registry.mark_seen(self.last_seen)


def _rng(seed: int, district: str) -> np.random.Generator:
    key = f"citywatch-rollout:{seed}:{district}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:16], "big"))


def sample_programme(fleet: Sequence[Device], now_ms: int, *, seed: int = 2021, weeks: int = 16,
                     weeks_left: int = 8, tz: str = "Asia/Shanghai",
                     programme: str = GAS_PROGRAMME) -> SampleProgramme:
    """A programme over the gas meters of ``fleet``: started ``weeks`` weeks before today, due
    ``weeks_left`` weeks after it. Per district (seeded by ``seed`` and the district's name) a
    share of the target is commissioned (0.35-0.97: some districts ahead, some behind), a few
    percent of the installed meters are never heard from and a few gone silent, the rest planned."""
    zone = ZoneInfo(tz)
    today = local_date(now_ms, zone)
    start, deadline = today - timedelta(weeks=weeks), today + timedelta(weeks=weeks_left)
    start_ms = midnight_ms(start, zone)
    by_district: dict[str, list[Device]] = {}
    for d in fleet:
        if d.kind == "gas_meter" and d.status != "retired":
            by_district.setdefault(d.district, []).append(d)
    targets, devices, first, last, quiet = [], [], {}, {}, set()
    for district in sorted(by_district):
        meters = sorted(by_district[district], key=lambda d: d.device_id)
        n = len(meters)
        targets.append(RolloutTarget(programme, "gas_meter", district, n, start.isoformat(), deadline.isoformat()))
        rng = _rng(seed, district)
        share = rng.uniform(0.35, 0.97)
        installed = rng.random(n) < min(1.0, share + 0.05)
        # installation times: spread over the programme so far, densest where the district is fast
        span_ms = now_ms - start_ms - _DAY_MS
        t_inst = start_ms + (rng.beta(1.2, 1.0, n) * span_ms).astype(np.int64)
        delay = (rng.exponential(0.6, n) * _DAY_MS).astype(np.int64) + 3_600_000
        t_comm = t_inst + delay
        fate = rng.random(n)  # < 0.04 never heard, < 0.08 silent
        since_last = (rng.uniform(0.02, 0.9, n) * 3_600_000).astype(np.int64)
        silent_for = (rng.uniform(3, 12, n) * _DAY_MS).astype(np.int64)
        for j, m in enumerate(meters):
            if not installed[j]:
                devices.append(replace(m, status="planned", installed_at=None))
                quiet.add(m.device_id)
                continue
            day = local_date(int(t_inst[j]), zone).isoformat()
            devices.append(replace(m, status="installed", installed_at=day))
            heard = t_comm[j] < now_ms and fate[j] >= 0.04
            if not heard:
                quiet.add(m.device_id)
                continue
            first[m.device_id] = int(t_comm[j])
            if fate[j] < 0.08 and now_ms - silent_for[j] > t_comm[j]:
                last[m.device_id] = int(now_ms - silent_for[j])
                quiet.add(m.device_id)
            else:
                last[m.device_id] = int(max(t_comm[j], now_ms - since_last[j]))
    return SampleProgramme(targets, devices, first, last, frozenset(quiet))
