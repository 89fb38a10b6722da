"""Maintenance windows: recurring silences (a bridge's monthly inspection night).

A window has matchers like a silence (any of rule, kind, district, device, severity), a first
start, a duration and a recurrence ``every``: ``daily``, ``weekly``, ``monthly`` or None (once).
Occurrences are computed on the wall clock of the window's zone (the configured zone when it was
made, stored with it), so "every day at 01:00" stays at 01:00 local time:

- occurrence *k* starts at the first start's local date plus *k* days (daily), *k* weeks
  (weekly) or *k* months (monthly), at the first start's local time of day;
- **monthly on a day a month lacks** (the 29th to 31st): that month's window is on its last day
  (a window first on 31 January is on 28 or 29 February, 31 March, 30 April, ...): the
  inspection still happens every month, and never slips into the next month;
- an occurrence covers ``[start, start + duration)``; the duration is at most the period
  (1 day, 7 days, 28 days), so occurrences never overlap;
- a window ended (``DELETE``) covers nothing from that moment on, and one that ended keeps its
  past: a replay of old readings is silenced exactly as the live run was.

An alert matching an active window is silenced exactly as by a silence: it is recorded, and its
notices carry ``silenced`` so dispatch does not send them (alerts/store.py ``apply``, on the
transition's event time).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from devices.times import rfc3339

EVERY = ("daily", "weekly", "monthly")
PERIOD_MS = {"daily": 86_400_000, "weekly": 7 * 86_400_000, "monthly": 28 * 86_400_000}  # the shortest
_AVERAGE_MS = {"daily": 86_400_000, "weekly": 7 * 86_400_000, "monthly": 2_629_746_000}


def _add_months(dt: datetime, months: int) -> datetime:
    """``dt`` ``months`` later on the wall clock, on the month's last day where it lacks dt's day."""
    y, m = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + y, m + 1
    return dt.replace(year=year, month=month, day=min(dt.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: str
    matchers: Mapping[str, str]
    first_start_ms: int
    duration_ms: int
    every: str | None
    reason: str
    created_by: str
    created_ms: int
    tz: str = "Asia/Shanghai"
    ended_ms: int | None = None  # ended early (DELETE): covers nothing from then on
    ended_by: str | None = None

    def occurrence(self, k: int) -> int:
        """Epoch ms of the k-th occurrence's start (k = 0: the first start)."""
        if k == 0 or self.every is None:
            return self.first_start_ms
        first = datetime.fromtimestamp(self.first_start_ms / 1000, ZoneInfo(self.tz)).replace(tzinfo=None)
        if self.every == "monthly":
            local = _add_months(first, k)
        else:
            local = first + timedelta(days=k * (7 if self.every == "weekly" else 1))
        return int(local.replace(tzinfo=ZoneInfo(self.tz)).timestamp() * 1000)

    def latest_start(self, at_ms: int) -> int | None:
        """The start of the latest occurrence at or before ``at_ms``; None before the first."""
        if at_ms < self.first_start_ms:
            return None
        if self.every is None:
            return self.first_start_ms
        k = max(0, (at_ms - self.first_start_ms) // _AVERAGE_MS[self.every])
        while k > 0 and self.occurrence(k) > at_ms:  # the estimate is at most a step or two off
            k -= 1
        while self.occurrence(k + 1) <= at_ms:
            k += 1
        return self.occurrence(k)

    def active(self, at_ms: int) -> bool:
        if self.ended_ms is not None and at_ms >= self.ended_ms:
            return False
        start = self.latest_start(at_ms)
        return start is not None and at_ms < start + self.duration_ms

    def next_start(self, at_ms: int) -> int | None:
        """The start of the first occurrence after ``at_ms`` (None: there is none)."""
        start = self.latest_start(at_ms)
        if start is None:
            nxt = self.first_start_ms
        elif self.every is None:
            return None
        else:
            nxt = self.occurrence(self._index_of(start) + 1)
        return None if self.ended_ms is not None and nxt >= self.ended_ms else nxt

    def _index_of(self, start: int) -> int:
        k = max(0, (start - self.first_start_ms) // _AVERAGE_MS[self.every or "daily"])
        while k > 0 and self.occurrence(k) > start:
            k -= 1
        while self.occurrence(k) < start:
            k += 1
        return k

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all(str(labels.get(k)) == v for k, v in self.matchers.items())

    def to_api(self, tz: ZoneInfo, now_ms: int) -> dict:
        return {
            "id": self.id, "matchers": dict(self.matchers), "start": rfc3339(self.first_start_ms, tz),
            "duration_s": self.duration_ms / 1000, "every": self.every, "zone": self.tz,
            "reason": self.reason, "created_by": self.created_by, "created_at": rfc3339(self.created_ms, tz),
            "ended_at": rfc3339(self.ended_ms, tz), "ended_by": self.ended_by,
            "active": self.active(now_ms), "next_start": rfc3339(self.next_start(now_ms), tz),
        }
