"""A seeded rollout report document of the agreed shape (/tmp/rollout_doc.md, devices/rollout.py's
``format=json``) and exception rows, for the renderers' tests and benchmark.

13 Wuhan districts, ``weeks`` of weekly series ending with the week of ``as_of``; each district
draws a weekly pace, some districts behind (they miss the deadline at their pace), one done, one
whose recent p10 pace is 0 (no late forecast) and one with no pace at all (on track unknown).
The figures are consistent with each other the way devices/rollout.py makes them (totals are the sums,
cumulative the running sums, forecasts from the pace), but nothing here is the report's own
computation: the renderers only show what the document says.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np

WUHAN = ["江岸区", "江汉区", "硚口区", "汉阳区", "武昌区", "青山区", "洪山区", "东西湖区", "汉南区", "蔡甸区",
         "江夏区", "黄陂区", "新洲区"]
PROGRAMME = "smart-gas-meters-2021"
EXCEPTIONS = {
    "never_heard": ("安装后未上报", "Installed, never heard from"),
    "silent": ("调试后静默超过 2 天", "Silent for more than 2 days after commissioning"),
    "weak_signal": ("新表信号弱", "Weak signal among new meters"),
    "low_battery": ("新表电量低", "Low battery among new meters"),
    "overdue_planned": ("超期未安装", "Planned past the deadline"),
}
RECENT = 8  # weeks of the pace


def _forecast(as_of: date, remaining: int, pace: float) -> str | None:
    if remaining <= 0 or pace <= 0:
        return None
    return (as_of + timedelta(days=math.ceil(remaining / pace * 7))).isoformat()


def figures(target: int, weekly_c: np.ndarray, weekly_i: np.ndarray, monday0: date, as_of: date, deadline: str,
            *, planned: int, reporting_share: float) -> dict:
    ci, cc = np.cumsum(weekly_i), np.cumsum(weekly_c)
    weekly = [{"week_start": (monday0 + timedelta(weeks=k)).isoformat(), "installed": int(weekly_i[k]),
               "commissioned": int(weekly_c[k]), "installed_cumulative": int(ci[k]),
               "commissioned_cumulative": int(cc[k])} for k in range(len(weekly_c))]
    commissioned = int(cc[-1]) if len(cc) else 0
    recent = weekly_c[-RECENT:].astype(float)
    pace = float(recent.mean()) if len(recent) else 0.0
    p10, p90 = (float(np.percentile(recent, 10)), float(np.percentile(recent, 90))) if len(recent) else (0.0, 0.0)
    remaining = target - commissioned
    done = remaining <= 0
    completed_on = None
    if done:
        k = int(np.searchsorted(cc, target))
        completed_on = (monday0 + timedelta(weeks=k, days=3)).isoformat()
    forecast = None if done else _forecast(as_of, remaining, pace)
    weeks_left = (date.fromisoformat(deadline) - as_of).days / 7
    on_track = (completed_on <= deadline) if done else (None if forecast is None else forecast <= deadline)
    return {
        "target": target, "planned": planned, "installed": int(ci[-1]) if len(ci) else 0,
        "commissioned": commissioned, "reporting": int(commissioned * reporting_share),
        "commissioned_share": commissioned / target if target else 0.0, "weekly": weekly,
        "pace_per_week": pace, "pace_p10": p10, "pace_p90": p90, "forecast": forecast,
        "forecast_early": None if done else _forecast(as_of, remaining, p90),
        "forecast_late": None if done else _forecast(as_of, remaining, p10),
        "completed_on": completed_on, "on_track": on_track,
        "needed_per_week": None if done else (remaining / weeks_left if weeks_left > 0 else float(remaining)),
    }


def _district_series(rng, k: int, weeks: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Weekly commissioned and installed: a ramp to a pace, behind for every fourth district."""
    speed = 0.45 if k % 4 == 1 else 0.85 + 0.1 * (k % 3)  # share of the target-rate pace
    base = target / 60 * speed
    ramp = np.minimum(1.0, np.arange(weeks) / 8 + 0.1)
    c = rng.poisson(base * ramp * rng.gamma(8.0, 1 / 8.0, size=weeks)).astype(np.int64)  # crews vary week to week
    if k == 2:  # done: a fast district capped at its target
        c = rng.poisson(target / 30 * ramp).astype(np.int64)
        cum = np.minimum(np.cumsum(c), target)
        c = np.diff(np.concatenate([[0], cum]))
    if k == 5:  # stalled lately: some weeks without commissioning, p10 = 0
        c[-RECENT:][::2] = 0
    if k == 8:  # stopped: no pace
        c[-RECENT:] = 0
    i = c + rng.integers(0, max(2, int(base * 0.15)), size=weeks)
    return c, i


def sample_document(seed: int = 7, *, weeks: int = 52, as_of: str = "2026-12-06", districts=WUHAN,
                    deadline: str = "2027-06-30") -> dict:
    rng = np.random.default_rng(seed)
    today = date.fromisoformat(as_of)
    monday_now = today - timedelta(days=today.weekday())
    monday0 = monday_now - timedelta(weeks=weeks - 1)
    rows, sums_c, sums_i = [], np.zeros(weeks, np.int64), np.zeros(weeks, np.int64)
    total_target = total_planned = total_reporting = 0
    for k, name in enumerate(districts):
        target = int(rng.integers(20_000, 55_000))
        c, i = _district_series(rng, k, weeks, target)
        planned = max(0, target - int(i.sum()))
        f = figures(target, c, i, monday0, today, deadline, planned=planned, reporting_share=0.93)
        rows.append({"district": name, "start": monday0.isoformat(), "deadline": deadline, **f})
        sums_c += c
        sums_i += i
        total_target += target
        total_planned += planned
        total_reporting += f["reporting"]
    totals = figures(total_target, sums_c, sums_i, monday0, today, deadline, planned=total_planned,
                     reporting_share=0.93)
    totals["reporting"] = total_reporting
    generated = datetime(today.year, today.month, today.day, 17, 0).isoformat() + "+08:00"
    return {
        "generated_at": generated, "as_of": as_of, "source": "live", "tz": "Asia/Shanghai",
        "programmes": [{"programme": PROGRAMME, "kind": "gas_meter", "start": monday0.isoformat(),
                        "deadline": deadline, "totals": totals, "districts": rows}],
        "exceptions": {n: {"title_zh": zh, "title_en": en, "count": int(rng.integers(0, 400))}
                       for n, (zh, en) in EXCEPTIONS.items()},
    }


REASONS = {"never_heard": "installed {d} days ago, no reading", "silent": "no reading for {d} days",
           "weak_signal": "RSRP -{r} dBm", "low_battery": "battery 3.{b} V",
           "overdue_planned": "planned, deadline passed {d} days ago"}


def sample_rows(doc: dict, n: int, name: str, seed: int = 11) -> list[dict]:
    """``n`` exception rows of list ``name`` over the document's districts."""
    rng = np.random.default_rng(seed)
    districts = [d["district"] for p in doc["programmes"] for d in p["districts"]]
    out = []
    for j in range(n):
        d = districts[j % len(districts)]
        since = datetime(2026, 11, 1 + j % 28, j % 24, j % 60).isoformat() + "+08:00"
        out.append({"device_id": f"GM{j:07d}", "district": d, "asset_id": f"HH-{j % 9000:05d}",
                    "asset_name": f"{d}幸福路{j % 300}号{j % 12 + 1}单元", "responsible_unit": f"{d}燃气营业所",
                    "reason": REASONS[name].format(d=int(rng.integers(3, 40)), r=int(rng.integers(116, 130)),
                                                   b=int(rng.integers(0, 2))),
                    "since": since if j % 5 else since[:10]})
    return out


def _tag(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def snapshot_lines(doc: dict, days: int, tz: str = "Asia/Shanghai") -> list[str]:
    """The daily ``rollout`` snapshots (measurement ``rollout``, tags programme and district,
    ``_all`` for the totals; integer counts, float pace and share; at the local midnight that
    starts each day) of the ``days`` days up to ``doc``'s as_of, as line protocol with ms
    timestamps (``InfluxDBStore.write_lines``): the shape the report writes. Earlier days step
    the figures back by the pace."""
    from zoneinfo import ZoneInfo

    today = date.fromisoformat(doc["as_of"])
    out = []
    for back in range(days):
        day = today - timedelta(days=back)
        ms = int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp()) * 1000
        for p in doc["programmes"]:
            for name, f in [("_all", p["totals"]), *((d["district"], d) for d in p["districts"])]:
                step = int(f["pace_per_week"] * back / 7)
                c, i = max(0, f["commissioned"] - step), max(0, f["installed"] - step)
                fields = {"target": f["target"], "planned": f["planned"] + (f["installed"] - i), "installed": i,
                          "commissioned": c, "reporting": min(f["reporting"], c)}
                share = c / f["target"] if f["target"] else 0.0
                out.append(f"rollout,district={_tag(name)},programme={_tag(p['programme'])} "
                           + ",".join(f"{k}={v}i" for k, v in fields.items())
                           + f",pace_per_week={float(f['pace_per_week'])},commissioned_share={share} {ms}")
    return out
