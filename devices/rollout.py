"""Rollout report (registry.md "rollout.csv"): progress of a programme per district.

For each rollout target (programme, kind, district) the report counts the registry's devices of
that kind in that district, retired ones excluded:

- ``planned``: status ``planned``; ``installed``: status ``installed``;
- ``commissioned``: has had a valid reading (``commissioned_at`` set);
- ``reporting``: a valid reading in the last 48 hours (``last_seen`` within 48 h of ``now``);
- ``weekly``: commissioned devices per local week (Monday to Sunday, in ``tz``) for the last
  ``history_weeks`` weeks, with the running total;
- ``pace_per_week``: devices commissioned per week over the last ``pace_days`` days (or since
  the programme's start if that is more recent), and ``forecast``: the date the target is
  reached at that pace (None when there is no pace); ``completed_on`` instead once the target
  is met: the local date of the target-th commissioning.

Time is passed in (``now_ms``); the report only reads the database.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from devices.registry import Registry

__all__ = ["WeekProgress", "RolloutStatus", "rollout_report", "REPORTING_WINDOW_MS"]

REPORTING_WINDOW_MS = 48 * 3600 * 1000
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_MONDAY_SHIFT_MS = 3 * _DAY_MS  # 1970-01-01 was a Thursday: shifted, weeks start on Mondays


@dataclass(frozen=True, slots=True)
class WeekProgress:
    week_start: str  # ISO date of the local Monday
    commissioned: int  # commissioned during that week
    cumulative: int  # commissioned by the end of that week (or by now, for the current week)


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    programme: str
    kind: str
    district: str
    target: int
    start: str
    deadline: str
    planned: int
    installed: int
    commissioned: int
    reporting: int
    weekly: tuple[WeekProgress, ...]
    pace_per_week: float
    forecast: str | None  # ISO date the target is reached at the recent pace; None if no pace or done
    completed_on: str | None  # ISO local date the target was reached, None while it is not

    @property
    def on_track(self) -> bool | None:
        """Whether the target is (or at the recent pace will be) met by the deadline; None
        when it is not met and there is no pace to forecast from."""
        if self.completed_on is not None:
            return self.completed_on <= self.deadline
        return None if self.forecast is None else self.forecast <= self.deadline


def _local_offset_ms(tz: ZoneInfo, now_ms: int) -> int:
    off = datetime.fromtimestamp(now_ms / 1000, tz).utcoffset() or timedelta(0)
    return int(off.total_seconds() * 1000)


def _local_date(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).date().isoformat()


def _start_ms(day: str, tz: ZoneInfo) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)


def rollout_report(registry: Registry, now_ms: int, *, programme: str | None = None,
                   tz: str = "Asia/Shanghai", history_weeks: int = 12,
                   pace_days: int = 28) -> list[RolloutStatus]:
    """Progress of every rollout target (of ``programme`` if given) as of ``now_ms``, in the
    order of :meth:`Registry.rollout_targets`. Weeks and dates are local to ``tz`` (the
    week boundaries use its offset at ``now_ms``)."""
    if history_weeks < 1 or pace_days < 1:
        raise ValueError("history_weeks and pace_days must be >= 1")
    zone = ZoneInfo(tz)
    targets = registry.rollout_targets(programme)
    if not targets:
        return []
    off = _local_offset_ms(zone, now_ms)
    week_now = (now_ms + off + _MONDAY_SHIFT_MS) // _WEEK_MS
    first_week = week_now - history_weeks + 1
    window_ms = first_week * _WEEK_MS - off - _MONDAY_SHIFT_MS  # start of the oldest week shown
    conn = registry.conn

    counts: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    weeks: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for kind in sorted({t.kind for t in targets}):
        for district, planned, installed, commissioned, reporting, before in conn.execute(
            """SELECT district,
                      sum(status = 'planned'), sum(status = 'installed'),
                      sum(commissioned_at IS NOT NULL),
                      sum(coalesce(last_seen >= ?, 0)),
                      sum(coalesce(commissioned_at < ?, 0))
                 FROM devices WHERE kind = ? AND status != 'retired' GROUP BY district""",
            (now_ms - REPORTING_WINDOW_MS, window_ms, kind),
        ):
            counts[(kind, district)] = (planned, installed, commissioned, reporting, before)
        for district, week, n in conn.execute(
            """SELECT district, (commissioned_at + ?) / ?, count(*)
                 FROM devices WHERE kind = ? AND status != 'retired'
                  AND commissioned_at >= ? AND commissioned_at <= ?
                GROUP BY 1, 2""",
            (off + _MONDAY_SHIFT_MS, _WEEK_MS, kind, window_ms, now_ms),
        ):
            weeks[(kind, district)][week] = n

    out = []
    for t in targets:
        planned, installed, commissioned, reporting, before = counts.get((t.kind, t.district), (0, 0, 0, 0, 0))
        running = before
        weekly = []
        for w in range(first_week, week_now + 1):
            n = weeks[(t.kind, t.district)].get(w, 0)
            running += n
            start_ms = w * _WEEK_MS - off - _MONDAY_SHIFT_MS
            weekly.append(WeekProgress(_local_date(start_ms, zone), n, running))
        since = max(now_ms - pace_days * _DAY_MS, _start_ms(t.start, zone))
        pace = 0.0
        if now_ms > since:
            recent = conn.execute(
                """SELECT count(*) FROM devices WHERE kind = ? AND district = ? AND status != 'retired'
                      AND commissioned_at > ? AND commissioned_at <= ?""",
                (t.kind, t.district, since, now_ms),
            ).fetchone()[0]
            pace = recent / ((now_ms - since) / _WEEK_MS)
        completed_on = forecast = None
        if t.target > 0 and commissioned >= t.target:
            nth = conn.execute(
                """SELECT commissioned_at FROM devices WHERE kind = ? AND district = ?
                      AND status != 'retired' AND commissioned_at IS NOT NULL
                    ORDER BY commissioned_at LIMIT 1 OFFSET ?""",
                (t.kind, t.district, t.target - 1),
            ).fetchone()[0]
            completed_on = _local_date(nth, zone)
        elif t.target == 0:
            completed_on = t.start
        elif pace > 0:
            eta = now_ms + math.ceil((t.target - commissioned) / pace * _WEEK_MS)
            forecast = _local_date(eta, zone)
        out.append(RolloutStatus(
            t.programme, t.kind, t.district, t.target, t.start, t.deadline,
            planned, installed, commissioned, reporting, tuple(weekly), pace, forecast, completed_on,
        ))
    return out
