"""A generated rollout programme as CSV files, and the report's figures computed from those rows
by plain Python (dates and loops, no numpy, nothing of devices.rollout): the reference the
tests compare the report with.

The programme's CSVs: rollout.csv and devices.csv as registry.md has them, plus traffic.csv
(``device_id, commissioned_at, last_seen`` in ms: what the registry derives from readings).
"""

from __future__ import annotations

import csv
import math
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devices.csvio import import_devices, import_rollout

SH = ZoneInfo("Asia/Shanghai")
P = "smart-gas-meters-2021"
DAY = 86_400_000
DISTRICTS = ("江岸区", "江汉区", "硚口区", "汉阳区", "武昌区")


def ms(text: str) -> int:
    """Epoch ms of a Shanghai local time, e.g. ``2026-11-29T12:00``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SH).timestamp() * 1000)


def generate(dirpath: Path, now_ms: int, seed: int = 7, meters: int = 1500) -> dict[str, Path]:
    """Write a programme of ``meters`` gas meters in five districts (seeded): statuses planned,
    installed, retired; installed over the 30 weeks before now; some commissioned (a few after
    now, which the report must not count yet), some silent, some never heard."""
    rng = random.Random(seed)
    today = datetime.fromtimestamp(now_ms / 1000, SH).date()
    targets = []
    for i, d in enumerate(DISTRICTS):
        start = today - timedelta(weeks=20 + 2 * i, days=i)
        deadline = today + timedelta(weeks=(-1 if i == 4 else 3 + 4 * i))  # the last one is past
        targets.append([P, "gas_meter", d, str(rng.randint(150, 450)), start.isoformat(), deadline.isoformat()])
    targets.append(["other-programme", "noise", "江汉区", "10", "2026-01-05", "2026-12-31"])
    devices, traffic = [], []
    for k in range(meters):
        district = rng.choice(DISTRICTS + ("青山区",))  # 青山区: in no target
        status = rng.choices(["planned", "installed", "retired"], [15, 80, 5])[0]
        inst = today - timedelta(days=rng.randint(0, 210))
        battery = rng.choice(["", '{"battery_warn_v": 4.8}'])
        devices.append([f"gas-{k:05d}", "gas_meter", district, f"A{k:06d}", f"资产{k}", "武汉市燃气集团",
                        status, inst.isoformat() if status != "planned" else "", battery])
        if status == "planned" or rng.random() < 0.1:
            continue
        first = ms(inst.isoformat() + "T00:00") + rng.randint(0, 9 * DAY)
        last = min(first + rng.randint(0, 200 * DAY), now_ms - rng.randint(0, 6 * DAY))
        traffic.append([f"gas-{k:05d}", str(first), str(max(first, last))])
    paths = {"rollout": dirpath / "rollout.csv", "devices": dirpath / "devices.csv",
             "traffic": dirpath / "traffic.csv"}
    _write(paths["rollout"], ["programme", "kind", "district", "target", "start", "deadline"], targets)
    _write(paths["devices"], ["device_id", "kind", "district", "asset_id", "asset_name", "responsible_unit",
                              "status", "installed_at", "attrs"], devices)
    _write(paths["traffic"], ["device_id", "commissioned_at", "last_seen"], traffic)
    return paths


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load(registry, paths: dict[str, Path]) -> None:
    """The CSVs into the registry: imports (registry.md) and traffic as the pipeline records it."""
    import_rollout(registry, paths["rollout"])
    import_devices(registry, paths["devices"])
    rows = read(paths["traffic"])
    registry.mark_seen({r["device_id"]: int(r["commissioned_at"]) for r in rows})
    registry.mark_seen({r["device_id"]: int(r["last_seen"]) for r in rows})


# --- the reference ------------------------------------------------------------------------------

def local_day(ms_: int) -> date:
    return datetime.fromtimestamp(ms_ / 1000, SH).date()


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method), by hand."""
    s = sorted(values)
    pos = q / 100 * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def expected_figures(devs: list[dict], target: int, start: str, deadline: str, weeks: list[date],
                     now_ms: int, pace_weeks: int = 8) -> dict:
    """The document's FIGURES for ``devs`` (merged devices.csv + traffic.csv rows, not retired)."""
    today = local_day(now_ms)
    comm_days = sorted(local_day(d["c"]) for d in devs if d["c"] is not None and d["c"] <= now_ms)
    comm_ms = sorted(d["c"] for d in devs if d["c"] is not None and d["c"] <= now_ms)
    inst_days = [date.fromisoformat(d["installed_at"]) for d in devs
                 if d["status"] == "installed" and d["installed_at"] and d["installed_at"] <= today.isoformat()]
    weekly = []
    for w in weeks:
        end = w + timedelta(days=7)
        weekly.append({
            "week_start": w.isoformat(),
            "installed": sum(w <= x < end for x in inst_days),
            "commissioned": sum(w <= x < end for x in comm_days),
            "installed_cumulative": sum(x < end for x in inst_days),
            "commissioned_cumulative": sum(x < end for x in comm_days),
        })
    start_d, deadline_d = date.fromisoformat(start), date.fromisoformat(deadline)
    full = [x["commissioned"] for x in weekly[:-1]
            if date.fromisoformat(x["week_start"]) + timedelta(days=6) >= start_d][-pace_weeks:]
    pace = sum(full) / len(full) if full else 0.0
    p10 = percentile(full, 10) if full else 0.0
    p90 = percentile(full, 90) if full else 0.0
    commissioned = len(comm_ms)
    remaining = target - commissioned

    def eta(p):
        return None if remaining <= 0 or p <= 0 else (today + timedelta(days=math.ceil(remaining / p * 7))).isoformat()

    completed_on = None
    if remaining <= 0:
        completed_on = start if target == 0 else local_day(comm_ms[target - 1]).isoformat()
    if completed_on is not None:
        on_track = completed_on <= deadline
    elif today > deadline_d:
        on_track = False
    elif not full:
        on_track = None
    else:
        on_track = pace > 0 and eta(pace) <= deadline
    days_left = (deadline_d - today).days + 1
    return {
        "target": target, "planned": sum(d["status"] == "planned" for d in devs),
        "installed": sum(d["status"] == "installed" for d in devs), "commissioned": commissioned,
        "reporting": sum(d["l"] is not None and d["l"] >= now_ms - 48 * 3600_000 for d in devs),
        "commissioned_share": commissioned / target if target else 0.0, "weekly": weekly,
        "pace_per_week": pace, "pace_p10": p10, "pace_p90": p90,
        "forecast": eta(pace), "forecast_early": eta(p90), "forecast_late": eta(p10), "completed_on": completed_on,
        "on_track": on_track,
        "needed_per_week": remaining / (days_left / 7) if remaining > 0 and days_left > 0 else None,
    }


def mondays(first: date, last: date) -> list[date]:
    out, w = [], first - timedelta(days=first.weekday())
    while w <= last:
        out.append(w)
        w += timedelta(days=7)
    return out


def expected_document(paths: dict[str, Path], now_ms: int, programme: str = P) -> dict:
    """``programmes[0]`` of the report for ``programme``, from the CSV rows."""
    traffic = {r["device_id"]: r for r in read(paths["traffic"])}
    devs = []
    for r in read(paths["devices"]):
        if r["status"] == "retired":
            continue
        t = traffic.get(r["device_id"])
        devs.append({**r, "c": int(t["commissioned_at"]) if t else None, "l": int(t["last_seen"]) if t else None})
    targets = sorted((t for t in read(paths["rollout"]) if t["programme"] == programme),
                     key=lambda t: (t["kind"], t["district"]))
    start = min(t["start"] for t in targets)
    weeks = mondays(date.fromisoformat(start), local_day(now_ms))
    districts, everyone = [], []
    for t in targets:
        mine = [d for d in devs if d["kind"] == t["kind"] and d["district"] == t["district"]]
        everyone += mine
        figs = expected_figures(mine, int(t["target"]), t["start"], t["deadline"], weeks, now_ms)
        districts.append({"district": t["district"], "start": t["start"], "deadline": t["deadline"], **figs})
    deadline = max(t["deadline"] for t in targets)
    totals = expected_figures(everyone, sum(int(t["target"]) for t in targets), start, deadline, weeks, now_ms)
    return {"programme": programme, "kind": targets[0]["kind"], "start": start, "deadline": deadline,
            "totals": totals, "districts": districts}


def approx_doc(expected):
    """``expected`` with its floats compared with a tolerance, everything else exactly."""
    import pytest

    if isinstance(expected, dict):
        return {k: approx_doc(v) for k, v in expected.items()}
    if isinstance(expected, list):
        return [approx_doc(v) for v in expected]
    if isinstance(expected, float):
        return pytest.approx(expected, rel=1e-12, abs=1e-12)
    return expected
