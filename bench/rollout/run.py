"""The rollout report over the full programme: 500,000 gas meters in Wuhan's 13 districts with a
year of weekly history (not a test).

    python bench/rollout/run.py [--scale 1.0] [--weeks 52] [--db PATH|URL] [--repeat 3]

``--db`` is a state DB file (SQLite) or a ``[state] url`` (``postgresql://...``: built there when
its registry is empty; the newest values are then kept in /tmp/citywatch-bench-rollout/).

Builds (once; kept at --db) a state DB with the sample fleet's gas meters as a programme
(devices/rollout_sample.py: installed and commissioned over ``--weeks`` weeks, some planned,
silent or never heard) and, beside it, the newest RSRP and battery of every commissioned meter
(what a store's ``latest_values`` returns). Then, each in a fresh child process, times the
report document as JSON (``RolloutReport.to_dict`` + ``json.dumps``, the exception counts
included) and, when dashboards/rollout_report/ is importable, as HTML; prints wall time and
the child's CPU time over the same span (on a machine shared with other work the wall time
follows the load) and its peak RSS (``ru_maxrss``, the newest values loaded included).
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NOW_MS = 1_796_524_800_000  # 2026-12-06 12:00 Asia/Shanghai (a Sunday)


def target(db: str):
    """The state DB ``--db`` names: a file, or a database by URL."""
    from devices.db import parse_url

    return parse_url(db) if "://" in db else Path(db)


def latest_path(db: str) -> Path:
    if "://" in db:
        import hashlib

        return Path(f"/tmp/citywatch-bench-rollout/{hashlib.sha256(db.encode()).hexdigest()[:12]}.latest.pickle")
    return Path(db).with_suffix(".latest.pickle")


def built(db: str) -> bool:
    if "://" not in db:
        return Path(db).exists()
    from devices.registry import Registry

    reg = Registry.open(target(db))
    try:
        return reg.count() > 0 and latest_path(db).exists()
    finally:
        reg.close()


def build(db: str, scale: float, weeks: int) -> None:
    import numpy as np

    from devices.fleet import DISTRICT_INFO, sample_fleet
    from devices.registry import Registry
    from devices.rollout_sample import sample_programme

    t0 = time.perf_counter()
    fleet = sample_fleet(scale, seed=2021, kinds=["gas_meter"])
    # the 13 administrative districts: the meters of the three development zones go to them
    districts = list(DISTRICT_INFO)[:13]
    fleet = [d if d.district in districts else replace(d, district=districts[i % 13]) for i, d in enumerate(fleet)]
    prog = sample_programme(fleet, NOW_MS, weeks=weeks, weeks_left=12)
    reg = Registry.open(target(db))
    prog.load(reg)
    reg.close()
    rng = np.random.default_rng(1)
    ids = sorted(prog.first_seen)
    nominal = {d.device_id: d.attrs["battery_warn_v"] + 0.3 for d in prog.devices}  # 3.6 V lithium, 6 V AA: 0.3 V above
    rsrp = rng.normal(-100, 8, len(ids))
    batt = np.array([nominal[d] for d in ids]) - rng.exponential(0.06, len(ids))
    latest = {"rsrp_dbm": {d: (NOW_MS, float(v)) for d, v in zip(ids, rsrp, strict=True)},
              "battery_v": {d: (NOW_MS, float(v)) for d, v in zip(ids, batt, strict=True)}}
    latest_path(db).parent.mkdir(parents=True, exist_ok=True)
    latest_path(db).write_bytes(pickle.dumps(latest))
    print(f"built {db}: {len(prog.devices)} meters in {len(prog.targets)} districts, "
          f"{len(prog.first_seen)} commissioned, in {time.perf_counter() - t0:.1f} s", flush=True)


def child(db: str, fmt: str) -> None:
    """One report in this process; prints a JSON line of wall time and peak RSS."""
    latest = pickle.loads(latest_path(db).read_bytes())  # before the clock: the store's part
    from devices.registry import Registry
    from devices.rollout import RolloutReport

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime
    t0 = time.perf_counter()
    reg = Registry.open(target(db))
    doc = RolloutReport(reg, NOW_MS, latest=latest.__getitem__).to_dict()
    if fmt == "json":
        out = json.dumps(doc, ensure_ascii=False)
    else:
        from dashboards.rollout_report import render_html

        out = render_html(doc, language="zh")
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"format": fmt, "wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime - cpu0, 3),
                      "bytes": len(out.encode()),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "exceptions": {k: v["count"] for k, v in doc["exceptions"].items()}}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--db", default="/tmp/citywatch-bench-rollout/state.db", help="a state DB file or URL")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["json", "html"])
    a = ap.parse_args()
    if a.child:
        return child(a.db, a.child)
    if not built(a.db):
        if "://" not in a.db:
            Path(a.db).parent.mkdir(parents=True, exist_ok=True)
        build(a.db, a.scale, a.weeks)
    formats = ["json"]
    try:
        import dashboards.rollout_report  # noqa: F401

        formats.append("html")
    except ImportError as e:
        print(f"html: not measured ({e})")
    for fmt in formats:
        for _ in range(a.repeat):
            r = subprocess.run([sys.executable, __file__, "--db", str(a.db), "--child", fmt],
                               capture_output=True, text=True, check=False)
            print(r.stdout.strip() or r.stderr.strip()[-2000:], flush=True)


if __name__ == "__main__":
    main()
