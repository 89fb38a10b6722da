"""Render time of the rollout report's HTML page and workbook (dashboards/rollout_report).

    PYTHONPATH=$PWD python bench/dashboards/rollout_render.py [--weeks 52] [--rows 50000] [--repeat 3]

Over the seeded sample document of tests/dashboards/rollout_sample.py (13 Wuhan districts,
``--weeks`` of weekly series) and ``--rows`` exception rows spread over the five lists: the
wall time of ``render_html`` (zh, 14 charts) and ``render_xlsx``, best and median of
``--repeat`` runs after one warm-up (font lookup, imports), their median CPU time, the output
sizes, and the peak of Python allocations during one run of each (tracemalloc).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dashboards.rollout_report import render_html, render_xlsx  # noqa: E402
from tests.dashboards.rollout_sample import sample_document, sample_rows  # noqa: E402


def timed(fn, repeat: int) -> tuple[list[float], list[float], object]:
    """Wall and CPU seconds of each of ``repeat`` runs (CPU: this process, so other load on a
    shared machine shows in the wall time only)."""
    out = fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu, out


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    doc = sample_document(weeks=args.weeks)
    names = list(doc["exceptions"])
    lists = {n: sample_rows(doc, args.rows // len(names), n, seed=i) for i, n in enumerate(names)}
    jobs = {"html": lambda: render_html(doc, language="zh"), "xlsx": lambda: render_xlsx(doc, lists)}
    n = len(doc["programmes"][0]["districts"])
    print(f"{n} districts x {args.weeks} weeks, {sum(map(len, lists.values()))} exception rows")
    for name, fn in jobs.items():
        times, cpu, out = timed(fn, args.repeat)
        size = len(out.encode() if isinstance(out, str) else out)
        print(f"{name}: wall best {min(times):.2f} s, median {statistics.median(times):.2f} s, "
              f"CPU median {statistics.median(cpu):.2f} s, "
              f"{size / 2**20:.1f} MiB, peak Python allocations {peak_mib(fn):.0f} MiB")


if __name__ == "__main__":
    main()
