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

One integer scan of the registry (devices/rollout_scan.py), then numpy masks and sorts: 500,000
meters take about 2.3 s of CPU with all the exception counts (bench/rollout, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

from devices import db
from devices.model import RolloutTarget
from devices.registry import Registry
from devices.rollout_scan import DeviceScan

__all__ = ["EXCEPTIONS", "LatestValues", "REPORTING_WINDOW_MS", "RolloutOptions", "RolloutReport",
           "midnight_ms", "local_date"]

log = logging.getLogger("citywatch.rollout")

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
    """What one target's devices did: commissioning times (ms) and installation dates (ordinals)."""

    commissioned: np.ndarray  # int64, sorted
    installed_days: np.ndarray  # int64 date ordinals, sorted
    planned: int = 0
    installed: int = 0
    reporting: int = 0

    @classmethod
    def merge(cls, parts: list[_Series]) -> _Series:
        return cls(np.sort(np.concatenate([p.commissioned for p in parts] or [np.zeros(0, np.int64)])),
                   np.sort(np.concatenate([p.installed_days for p in parts] or [np.zeros(0, np.int64)])),
                   sum(p.planned for p in parts), sum(p.installed for p in parts), sum(p.reporting for p in parts))


class RolloutReport:
    """The rollout report over ``registry`` as of ``now_ms`` (of ``programme`` if given).

    ``latest`` gives the newest reading per device of a metric (a store's ``latest_values``;
    it raises LookupError when the store cannot answer); without it the weak_signal and
    low_battery lists are left out of the document and :meth:`exception_rows` raises
    LookupError for them. ``districts`` limits the report (figures, totals and lists) to those
    districts (an API token limited to districts).
    """

    def __init__(self, registry: Registry, now_ms: int, *, programme: str | None = None,
                 options: RolloutOptions = RolloutOptions(), latest: LatestValues | None = None,
                 districts: Collection[str] | None = None) -> None:
        self.registry = registry
        self.now_ms = int(now_ms)
        self.options = options
        self.zone = ZoneInfo(options.tz)
        self.today = local_date(self.now_ms, self.zone)
        self.latest = latest
        self.targets = registry.rollout_targets(programme)
        if districts is not None:  # a caller limited to districts: those only, totals over them
            self.targets = [t for t in self.targets if t.district in districts]
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
            "exceptions": self._exception_counts(),
        }

    def _exception_counts(self) -> dict:
        """Every list's count; a list over readings is left out when the readings cannot be had
        (no ``latest``, or it raised LookupError: the store down)."""
        out = {}
        for name, (zh, en) in EXCEPTIONS.items():
            try:
                out[name] = {"title_zh": zh, "title_en": en, "count": self.exception_count(name)}
            except LookupError as e:
                if self.latest is not None:
                    log.warning("rollout report without the %s list: %s", name, e)
        return out

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
        day_bounds = np.array([weeks[0].toordinal()] + [e.toordinal() for e in ends], np.int64)
        i_cum = np.searchsorted(s.installed_days, day_bounds, side="left")
        c_week, i_week = np.diff(c_cum).tolist(), np.diff(i_cum).tolist()
        c_cum, i_cum = c_cum[1:].tolist(), i_cum[1:].tolist()
        return [{"week_start": w.isoformat(), "installed": i_week[k], "commissioned": c_week[k],
                 "installed_cumulative": i_cum[k], "commissioned_cumulative": c_cum[k]}
                for k, w in enumerate(weeks)], c_week

    @cached_property
    def _scan(self) -> DeviceScan:
        """The scan of the figures; with ids and battery limits when the readings lists need them."""
        keys = sorted({(t.kind, t.district) for t in self.targets})
        if self.latest is None:
            return DeviceScan(self.registry.conn, keys)
        return DeviceScan(self.registry.conn, keys, with_ids=True, attr="battery_warn_v")

    @cached_property
    def _scan_ids(self) -> DeviceScan:
        if self._scan.ids is not None:
            return self._scan
        return DeviceScan(self.registry.conn, sorted({(t.kind, t.district) for t in self.targets}), with_ids=True)

    def _series(self) -> dict[tuple[str, str], _Series]:
        """Per (kind, district) of the targets, from the scan: counts, sorted times and dates."""
        sc = self._scan
        k = len(sc.keys)
        inside = sc.key >= 0

        def per_key(mask: np.ndarray) -> list[int]:
            return np.bincount(sc.key[mask & inside], minlength=k).tolist()

        planned, installed = per_key(sc.planned), per_key(sc.installed)
        reporting = per_key(sc.has_last_seen & (sc.last_seen >= self.now_ms - REPORTING_WINDOW_MS))
        comm = sc.has_commissioned & (sc.commissioned_at <= self.now_ms) & inside
        inst = sc.installed & (sc.installed_day >= 0) & (sc.installed_day <= self.today.toordinal()) & inside
        c_order = np.lexsort((sc.commissioned_at[comm], sc.key[comm]))
        c_key, c_ms = sc.key[comm][c_order], sc.commissioned_at[comm][c_order]
        i_order = np.lexsort((sc.installed_day[inst], sc.key[inst]))
        i_key, i_day = sc.key[inst][i_order], sc.installed_day[inst][i_order]
        c_split = np.searchsorted(c_key, np.arange(k + 1))
        i_split = np.searchsorted(i_key, np.arange(k + 1))
        return {key: _Series(c_ms[c_split[j]:c_split[j + 1]], i_day[i_split[j]:i_split[j + 1]],
                             planned[j], installed[j], reporting[j])
                for j, key in enumerate(sc.keys)}

    # -- exception lists ---------------------------------------------------------------------

    def exception_rows(self, name: str) -> list[dict]:
        """The rows of exception list ``name`` (:data:`EXCEPTIONS`), by district and device id:
        ``{device_id, district, asset_id, asset_name, responsible_unit, reason, since}``.
        KeyError for an unknown name; LookupError for a list that needs readings without ``latest``."""
        self._check(name)
        if name in _NEEDS_READINGS:
            flagged = self._reading_list(name)
        else:
            sc = self._scan_ids
            reason = getattr(self, f"_{name}_reason")(sc)
            flagged = [(sc.ids[i], *reason(i)) for i in np.flatnonzero(getattr(self, f"_{name}")(sc)).tolist()]
        details = self._details([f[0] for f in flagged])
        rows = [{"device_id": did, **details[did], "reason": why, "since": since} for did, why, since in flagged]
        rows.sort(key=lambda r: (r["district"], r["device_id"]))
        return rows

    def exception_count(self, name: str) -> int:
        self._check(name)
        if name in _NEEDS_READINGS:
            return len(self._reading_list(name))
        return int(np.count_nonzero(getattr(self, f"_{name}")(self._scan)))

    def _check(self, name: str) -> None:
        if name not in EXCEPTIONS:
            raise KeyError(f"unknown exception list {name!r} (known: {', '.join(EXCEPTIONS)})")
        if name in _NEEDS_READINGS and self.latest is None:
            raise LookupError(f"the {name} list needs the readings store, which is not available")

    def _key_min(self, field: str) -> dict[tuple[str, str], str]:
        """Per (kind, district), the earliest ``start`` or ``deadline`` of its targets (several
        programmes may share one)."""
        out: dict[tuple[str, str], str] = {}
        for t in self.targets:
            v = getattr(t, field)
            out[(t.kind, t.district)] = min(v, out.get((t.kind, t.district), v))
        return {k: out[k] for k in self._scan.keys}  # in the scan's key order

    def _details(self, device_ids: list[str]) -> dict[str, dict]:
        if not device_ids:
            return {}
        conn = self.registry.conn
        cols = "SELECT d.device_id, d.district, d.asset_id, d.asset_name, d.responsible_unit "
        if db.is_postgres(conn):
            rows = db.tuple_cursor(conn).execute(cols + "FROM devices d WHERE d.device_id = ANY(?)", (device_ids,))
        else:
            # by primary key, one id at a time (with ``IN (SELECT value FROM json_each(?))`` SQLite scanned the table)
            rows = db.tuple_cursor(conn).execute(cols + "FROM json_each(?) AS j CROSS JOIN devices d"
                                                 " ON d.device_id = j.value", (json.dumps(device_ids),))
        return {r[0]: {"district": r[1], "asset_id": r[2], "asset_name": r[3], "responsible_unit": r[4]}
                for r in rows}

    # each scan list: a mask over a scan, and (reason, since) of a flagged position

    def _never_heard(self, sc: DeviceScan) -> np.ndarray:
        cutoff = local_date(self.now_ms - round(self.options.never_heard_days * _DAY_MS), self.zone).toordinal()
        return (sc.key >= 0) & sc.installed & (sc.installed_day >= 0) & (sc.installed_day <= cutoff) \
            & ~sc.has_last_seen

    def _never_heard_reason(self, sc: DeviceScan):
        def reason(i: int) -> tuple[str, str]:
            day = date.fromordinal(int(sc.installed_day[i]))
            return f"installed {day.isoformat()}, no reading for {(self.today - day).days} days", day.isoformat()
        return reason

    def _silent(self, sc: DeviceScan) -> np.ndarray:
        cutoff = self.now_ms - round(self.options.silent_days * _DAY_MS)
        return (sc.key >= 0) & sc.has_commissioned & sc.has_last_seen & (sc.last_seen < cutoff)

    def _silent_reason(self, sc: DeviceScan):
        def reason(i: int) -> tuple[str, str]:
            last = int(sc.last_seen[i])
            return f"no reading for {(self.now_ms - last) / _DAY_MS:.1f} days", rfc3339(last, self.zone)
        return reason

    def _overdue_planned(self, sc: DeviceScan) -> np.ndarray:
        deadline = self._key_min("deadline")
        overdue = np.array([deadline[k] < self.today.isoformat() for k in sc.keys] + [False], bool)
        return sc.planned & overdue[sc.key]

    def _overdue_planned_reason(self, sc: DeviceScan):
        deadline = self._key_min("deadline")

        def reason(i: int) -> tuple[str, str]:
            d = deadline[sc.keys[sc.key[i]]]
            return f"still planned after the deadline {d}", d
        return reason

    # the lists over readings: the few low values first, then their meters in the registry

    def _reading_list(self, name: str) -> list[tuple[str, str, str]]:
        """``[(device_id, reason, since)]`` of ``weak_signal`` or ``low_battery``: new meters
        (commissioned since their target's start) whose newest reading is below the limit."""
        sc, o = self._scan, self.options
        newest = self.latest("rsrp_dbm" if name == "weak_signal" else "battery_v")
        pos, found = sc.index_of(newest.keys())
        tv = np.array(list(newest.values()), dtype=np.float64).reshape(-1, 2)[found]
        if name == "weak_signal":
            limit = np.full(len(pos), o.weak_rsrp_dbm)
        else:
            limit = np.where(np.isnan(sc.attr[pos]), o.low_battery_v, sc.attr[pos])
        start = np.array([midnight_ms(d, self.zone) for d in self._key_min("start").values()]
                         + [np.iinfo(np.int64).max], np.int64)
        key = sc.key[pos]
        low = (key >= 0) & sc.has_commissioned[pos] & (sc.commissioned_at[pos] >= start[key]) & (tv[:, 1] < limit)
        out = []
        for p, (ts, v), lim in zip(pos[low].tolist(), tv[low].tolist(), limit[low].tolist(), strict=True):
            text = f"RSRP {v:g} dBm" if name == "weak_signal" else f"battery {v:.2f} V below {lim:g} V"
            out.append((sc.ids[p], text, rfc3339(int(ts), self.zone)))
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
