"""The rollout report (registry.md "rollout.csv"; docs/ROLLOUT.md): is a programme on track,
district by district, and which meters must a field crew visit.

:class:`RolloutReport` computes, as of ``now_ms`` (time is passed in; only the state DB and,
for two exception lists, the newest readings are read):

- :meth:`RolloutReport.to_dict`: the report document (docs/ROLLOUT.md gives its shape and the
  definition of every figure), per programme (``totals``) and per district;
- :meth:`RolloutReport.exception_rows`: the rows of one exception list (:data:`EXCEPTIONS`).

Counting, for a target ``(programme, kind, district)``, the registry's devices of that kind in
that district, retired ones excluded:

- ``planned``/``installed``: status ``planned``/``installed``; ``commissioned``: a first valid
  reading (``commissioned_at``) at or before now; ``reporting``: a valid reading in the 48 hours
  before now (``last_seen``);
- ``weekly``: local weeks (Monday 00:00 in ``tz``) from the one holding the programme's first
  start to the one holding today; ``installed`` per week by ``installed_at`` (devices of status
  ``installed``), ``commissioned`` per week by ``commissioned_at``; the cumulative counts are
  every device installed/commissioned before the week's end (earlier ones included);
- ``pace_per_week``: the mean of the commissioned counts of the recent full weeks (the last
  ``pace_weeks`` weeks before the current one, none before the week holding the start);
  ``pace_p10``/``pace_p90``: numpy's 10th and 90th percentile of those counts;
- ``forecast``: today + ceil(remaining / pace × 7) days; ``forecast_early`` at ``pace_p90``,
  ``forecast_late`` at ``pace_p10`` (null at a pace of 0);
- ``completed_on``: local date of the target-th commissioning; ``on_track``: completed by the
  deadline, or not completed and (the deadline passed -> false; no full week yet -> null; pace 0
  -> false; else forecast <= deadline); ``needed_per_week``: remaining / (days from today to the
  deadline inclusive / 7), null when done or when the deadline has passed.

Heavy work is SQL aggregation and numpy over the commissioning times (one ordered index scan per
target): 500,000 meters take about a second (bench/rollout, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from devices.model import RolloutTarget
from devices.registry import Registry

__all__ = ["EXCEPTIONS", "LatestValues", "REPORTING_WINDOW_MS", "RolloutOptions", "RolloutReport",
           "midnight_ms", "local_date"]

REPORTING_WINDOW_MS = 48 * 3600 * 1000
_DAY_MS = 86_400_000

# metric -> {device_id: (ts_ms, value)}: the newest reading of that metric per device (a store's
# ``latest_values``), for the weak_signal and low_battery lists
LatestValues = Callable[[str], Mapping[str, tuple[int, float]]]

# name -> (title_zh, title_en), in the order lists are shown
EXCEPTIONS: dict[str, tuple[str, str]] = {
    "never_heard": ("安装后未上线", "Installed, never heard from"),
    "silent": ("投运后静默", "Silent after commissioning"),
    "weak_signal": ("新表信号弱", "Weak signal (new meters)"),
    "low_battery": ("新表电池电量低", "Low battery (new meters)"),
    "overdue_planned": ("逾期未安装", "Planned, past the deadline"),
}
_NEEDS_READINGS = ("weak_signal", "low_battery")


@dataclass(frozen=True, slots=True)
class RolloutOptions:
    """The report's parameters (``[rollout]`` in the configuration, docs/CONFIGURATION.md)."""

    tz: str = "Asia/Shanghai"
    pace_weeks: int = 8  # recent full weeks the pace and its percentiles are taken over
    never_heard_days: float = 3.0
    silent_days: float = 2.0
    weak_rsrp_dbm: float = -115.0
    low_battery_v: float = 3.3  # when a meter's attrs has no battery_warn_v (the rule pack's default)

    def __post_init__(self) -> None:
        ZoneInfo(self.tz)  # raises on an unknown zone
        if self.pace_weeks < 1:
            raise ValueError(f"pace_weeks must be >= 1, got {self.pace_weeks}")
        if not (self.never_heard_days >= 0 and self.silent_days >= 0):
            raise ValueError("never_heard_days and silent_days must be >= 0")


def midnight_ms(day: date | str, zone: ZoneInfo) -> int:
    """Epoch ms of the local midnight that starts ``day`` in ``zone``."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() * 1000)


def local_date(ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, zone).date()


def rfc3339(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Series:
    """What one target's devices did: commissioning times (sorted ms) and installations per date."""

    commissioned: np.ndarray  # int64, sorted
    installed_days: np.ndarray  # int64 date ordinals, sorted
    installed_counts: np.ndarray  # int64, per installed_days entry
    planned: int = 0
    installed: int = 0
    reporting: int = 0

    @classmethod
    def merge(cls, parts: list[_Series]) -> _Series:
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        days = np.concatenate([p.installed_days for p in parts])
        counts = np.concatenate([p.installed_counts for p in parts])
        order = np.argsort(days, kind="stable")
        return cls(np.sort(np.concatenate([p.commissioned for p in parts])), days[order], counts[order],
                   sum(p.planned for p in parts), sum(p.installed for p in parts),
                   sum(p.reporting for p in parts))


class RolloutReport:
    """The rollout report over ``registry`` as of ``now_ms`` (of ``programme`` if given).

    ``latest`` gives the newest reading per device of a metric (a store's ``latest_values``);
    without it the weak_signal and low_battery lists are left out of the document and
    :meth:`exception_rows` raises LookupError for them.
    """

    def __init__(self, registry: Registry, now_ms: int, *, programme: str | None = None,
                 options: RolloutOptions = RolloutOptions(), latest: LatestValues | None = None) -> None:
        self.registry = registry
        self.now_ms = int(now_ms)
        self.options = options
        self.zone = ZoneInfo(options.tz)
        self.today = local_date(self.now_ms, self.zone)
        self.latest = latest
        self.targets = registry.rollout_targets(programme)
        if programme is not None and not self.targets:
            raise LookupError(f"no rollout programme {programme!r} (rollout import FILE first)")

    # -- the document ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The report document (docs/ROLLOUT.md), ``source`` ``live``."""
        series = self._series()
        programmes: dict[str, list[RolloutTarget]] = {}
        for t in self.targets:
            programmes.setdefault(t.programme, []).append(t)
        return {
            "generated_at": rfc3339(self.now_ms, self.zone),
            "as_of": self.today.isoformat(),
            "source": "live",
            "tz": self.options.tz,
            "programmes": [self._programme(name, ts, series) for name, ts in programmes.items()],
            "exceptions": {name: {"title_zh": zh, "title_en": en, "count": len(self.exception_rows(name))}
                           for name, (zh, en) in EXCEPTIONS.items()
                           if name not in _NEEDS_READINGS or self.latest is not None},
        }

    def _programme(self, name: str, targets: list[RolloutTarget], series: dict) -> dict:
        start = min(date.fromisoformat(t.start) for t in targets)
        weeks = _mondays(start, self.today)
        districts = []
        for t in targets:
            figs = self._figures(t.target, t.start, t.deadline, series[(t.kind, t.district)], weeks)
            districts.append({"district": t.district, "start": t.start, "deadline": t.deadline, **figs})
        deadline = max(t.deadline for t in targets)
        totals = self._figures(sum(t.target for t in targets), start.isoformat(), deadline,
                               _Series.merge([series[(t.kind, t.district)] for t in targets]), weeks)
        kinds = sorted({t.kind for t in targets})
        return {"programme": name, "kind": ",".join(kinds), "start": start.isoformat(), "deadline": deadline,
                "totals": totals, "districts": districts}

    def _figures(self, target: int, start: str, deadline: str, s: _Series, weeks: list[date]) -> dict:
        weekly, comm_weekly = self._weekly(s, weeks)
        start_d = date.fromisoformat(start)
        full = [n for w, n in zip(weeks[:-1], comm_weekly[:-1], strict=True) if w + timedelta(days=6) >= start_d]
        recent = np.asarray(full[-self.options.pace_weeks:], dtype=np.float64)
        pace, p10, p90 = (float(recent.mean()), *map(float, np.percentile(recent, [10, 90]))) if len(recent) \
            else (0.0, 0.0, 0.0)
        commissioned = len(s.commissioned)
        remaining = target - commissioned
        completed_on = None
        if remaining <= 0:
            completed_on = start if target <= 0 else local_date(int(s.commissioned[target - 1]), self.zone).isoformat()
        forecast, early, late = (None, None, None) if remaining <= 0 else (
            self._eta(remaining, pace), self._eta(remaining, p90), self._eta(remaining, p10))
        deadline_d = date.fromisoformat(deadline)
        days_left = (deadline_d - self.today).days + 1
        return {
            "target": int(target), "planned": s.planned, "installed": s.installed, "commissioned": commissioned,
            "reporting": s.reporting, "commissioned_share": commissioned / target if target > 0 else 0.0,
            "weekly": weekly, "pace_per_week": pace, "pace_p10": p10, "pace_p90": p90,
            "forecast": forecast, "forecast_early": early, "forecast_late": late, "completed_on": completed_on,
            "on_track": _on_track(completed_on, deadline, self.today, bool(len(recent)), pace, forecast),
            "needed_per_week": remaining / (days_left / 7) if remaining > 0 and days_left > 0 else None,
        }

    def _eta(self, remaining: int, pace: float) -> str | None:
        if pace <= 0:
            return None
        return (self.today + timedelta(days=math.ceil(remaining / pace * 7))).isoformat()

    def _weekly(self, s: _Series, weeks: list[date]) -> tuple[list[dict], list[int]]:
        if not weeks:
            return [], []
        ends = weeks[1:] + [weeks[-1] + timedelta(days=7)]
        bounds = np.array([midnight_ms(weeks[0], self.zone)] + [midnight_ms(e, self.zone) for e in ends], np.int64)
        c_cum = np.searchsorted(s.commissioned, bounds, side="left")
        i_cum_all = np.concatenate([[0], np.cumsum(s.installed_counts)])
        day_bounds = np.array([weeks[0].toordinal()] + [e.toordinal() for e in ends], np.int64)
        i_cum = i_cum_all[np.searchsorted(s.installed_days, day_bounds, side="left")]
        c_week, i_week = np.diff(c_cum).tolist(), np.diff(i_cum).tolist()
        c_cum, i_cum = c_cum[1:].tolist(), i_cum[1:].tolist()
        return [{"week_start": w.isoformat(), "installed": i_week[k], "commissioned": c_week[k],
                 "installed_cumulative": i_cum[k], "commissioned_cumulative": c_cum[k]}
                for k, w in enumerate(weeks)], c_week

    def _series(self) -> dict[tuple[str, str], _Series]:
        """Per (kind, district) of the targets: aggregated in SQL, commissioning times as arrays."""
        conn = self.registry.conn
        today = self.today.isoformat()
        keys = sorted({(t.kind, t.district) for t in self.targets})
        counts = {(k, d): (p, i, r) for k, d, p, i, r in conn.execute(
            """SELECT kind, district, sum(status = 'planned'), sum(status = 'installed'),
                      sum(coalesce(last_seen >= ?, 0))
                 FROM devices WHERE status != 'retired' GROUP BY kind, district""",
            (self.now_ms - REPORTING_WINDOW_MS,))}
        installs: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for k, d, day, n in conn.execute(
                """SELECT kind, district, installed_at, count(*) FROM devices
                    WHERE status = 'installed' AND installed_at IS NOT NULL AND installed_at <= ?
                    GROUP BY 1, 2, 3""", (today,)):
            installs.setdefault((k, d), []).append((date.fromisoformat(day).toordinal(), n))
        cur = self.registry.conn.cursor()
        cur.row_factory = None
        out = {}
        for kind, district in keys:
            comm = np.fromiter((r[0] for r in cur.execute(
                """SELECT commissioned_at FROM devices INDEXED BY devices_commissioned
                    WHERE kind = ? AND district = ? AND commissioned_at <= ? AND status != 'retired'
                    ORDER BY commissioned_at""", (kind, district, self.now_ms))), np.int64)
            inst = sorted(installs.get((kind, district), []))
            p, i, r = counts.get((kind, district), (0, 0, 0))
            out[(kind, district)] = _Series(comm, np.array([a for a, _ in inst], np.int64),
                                            np.array([b for _, b in inst], np.int64), p, i, r)
        return out

    # -- exception lists ---------------------------------------------------------------------

    def exception_rows(self, name: str) -> list[dict]:
        """The rows of exception list ``name`` (:data:`EXCEPTIONS`), by district and device id:
        ``{device_id, district, asset_id, asset_name, responsible_unit, reason, since}``.
        KeyError for an unknown name; LookupError for a list that needs readings without ``latest``."""
        if name not in EXCEPTIONS:
            raise KeyError(f"unknown exception list {name!r} (known: {', '.join(EXCEPTIONS)})")
        if name in _NEEDS_READINGS and self.latest is None:
            raise LookupError(f"the {name} list needs the readings store, which is not available")
        rows = getattr(self, f"_{name}")()
        rows.sort(key=lambda r: (r["district"], r["device_id"]))
        return rows

    def _scope(self) -> tuple[str, list]:
        """A CTE ``t(kind, district, start_ms, deadline)`` of the targets (one row per target)."""
        values = ",".join("(?, ?, ?, ?)" for _ in self.targets) or "(NULL, NULL, NULL, NULL)"
        args: list = []
        for t in self.targets:
            args += [t.kind, t.district, midnight_ms(t.start, self.zone), t.deadline]
        return f"WITH t(kind, district, start_ms, deadline) AS (VALUES {values}) ", args

    def _select(self, where: str, args: list, extra: str = "") -> list[tuple]:
        cte, cargs = self._scope()
        sql = (cte + "SELECT DISTINCT d.device_id, d.district, d.asset_id, d.asset_name, d.responsible_unit"
               + extra + " FROM devices d JOIN t ON d.kind = t.kind AND d.district = t.district WHERE " + where)
        cur = self.registry.conn.cursor()
        cur.row_factory = None
        return cur.execute(sql, cargs + args).fetchall()

    @staticmethod
    def _row(r: tuple, reason: str, since: str) -> dict:
        return {"device_id": r[0], "district": r[1], "asset_id": r[2], "asset_name": r[3],
                "responsible_unit": r[4], "reason": reason, "since": since}

    def _never_heard(self) -> list[dict]:
        cutoff = local_date(self.now_ms - round(self.options.never_heard_days * _DAY_MS), self.zone).isoformat()
        rows = self._select("d.status = 'installed' AND d.installed_at <= ? AND d.last_seen IS NULL",
                            [cutoff], ", d.installed_at")
        return [self._row(r, f"installed {r[5]}, no reading for "
                          f"{(self.today - date.fromisoformat(r[5])).days} days", r[5]) for r in rows]

    def _silent(self) -> list[dict]:
        rows = self._select("d.status != 'retired' AND d.commissioned_at IS NOT NULL AND d.last_seen < ?",
                            [self.now_ms - round(self.options.silent_days * _DAY_MS)], ", d.last_seen")
        return [self._row(r, f"no reading for {(self.now_ms - r[5]) / _DAY_MS:.1f} days",
                          rfc3339(r[5], self.zone)) for r in rows]

    def _overdue_planned(self) -> list[dict]:
        rows = self._select("d.status = 'planned' AND t.deadline < ?", [self.today.isoformat()], ", t.deadline")
        return [self._row(r, f"still planned after the deadline {r[5]}", r[5]) for r in rows]

    def _new_meters_with(self, metric: str, low: Callable[[float], bool]) -> list[tuple]:
        """New meters (commissioned since their target's start) whose newest ``metric`` is low
        by ``low``: registry rows plus ``(value, ts, attrs)``."""
        newest = {d: tv for d, tv in self.latest(metric).items() if low(tv[1])}
        if not newest:
            return []
        rows = self._select("d.device_id IN (SELECT value FROM json_each(?)) AND d.status != 'retired' "
                            "AND d.commissioned_at >= t.start_ms", [json.dumps(sorted(newest))], ", d.attrs")
        return [(*r[:5], newest[r[0]][1], newest[r[0]][0], r[5]) for r in rows]

    def _weak_signal(self) -> list[dict]:
        limit = self.options.weak_rsrp_dbm
        return [self._row(r, f"RSRP {r[5]:g} dBm", rfc3339(r[6], self.zone))
                for r in self._new_meters_with("rsrp_dbm", lambda v: v < limit)]

    def _low_battery(self) -> list[dict]:
        default = self.options.low_battery_v
        cte, args = self._scope()
        highest = self.registry.conn.execute(
            cte + "SELECT max(json_extract(d.attrs, '$.battery_warn_v')) FROM devices d "
            "JOIN t ON d.kind = t.kind AND d.district = t.district", args).fetchone()[0]
        cap = max(default, highest) if isinstance(highest, (int, float)) else default
        out = []
        for r in self._new_meters_with("battery_v", lambda v: v < cap):
            limit = json.loads(r[7]).get("battery_warn_v", default)
            if isinstance(limit, (int, float)) and r[5] < limit:
                out.append(self._row(r, f"battery {r[5]:.2f} V below {limit:g} V", rfc3339(r[6], self.zone)))
        return out


def _mondays(first: date, last: date) -> list[date]:
    """Local Mondays from the one starting ``first``'s week to the one starting ``last``'s week."""
    w = first - timedelta(days=first.weekday())
    end = last - timedelta(days=last.weekday())
    out = []
    while w <= end:
        out.append(w)
        w += timedelta(days=7)
    return out


def _on_track(completed_on: str | None, deadline: str, today: date, known: bool, pace: float,
              forecast: str | None) -> bool | None:
    if completed_on is not None:
        return completed_on <= deadline
    if today.isoformat() > deadline:
        return False
    if not known:
        return None
    if pace <= 0:
        return False
    return forecast is not None and forecast <= deadline
