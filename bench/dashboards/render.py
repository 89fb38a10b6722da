"""Pictures of the Grafana boards, drawn with matplotlib from the boards' own panel queries.

    python bench/dashboards/render.py --out docs/img [--lang en]

Starts an influxd (tests/support/influxd.py) in a temp dir, writes the simulated day of
tests/dashboards/harness.py into it (the data of the query proof), runs every InfluxQL panel
query of every board with its variables at "All" and ``$timeFilter`` at the day, and draws each
board on its grid (Grafana's 24 columns): time series with their threshold lines, tables as
their first rows, stats as their values, histograms as histograms. No Prometheus server runs
here: a Prometheus panel shows its PromQL. Needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import textwrap
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from dashboards import boards  # noqa: E402
from dashboards.influxql import InfluxQuery  # noqa: E402
from tests.dashboards.harness import ROLLOUT_DAYS, TZ, simulated_day  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402

DB = "render"
COL_IN, ROW_IN = 0.62, 0.42  # inches per grid column and row
COLOURS = {"green": "#56a64b", "yellow": "#e0b400", "orange": "#ff780a", "red": "#e02f44", "blue": "#3274d9"}


def run(http: str, day: dict, q: str) -> list[dict]:
    q = q.replace("$timeFilter", f"time >= {day['start']}ms and time <= {day['end']}ms")
    q = q.replace("$__interval", "5m")
    q = q.replace("${__from}", str(day["start"])).replace("${__to}", str(day["end"]))
    for v in ("programme", "district", "asset", "device"):
        q = q.replace(f"${v}", ".*")
    r = httpx.get(f"{http}/query", params={"db": DB, "q": q, "epoch": "ms"}, timeout=60)
    r.raise_for_status()
    return r.json()["results"][0].get("series", [])


def label(series: dict, alias: str) -> str:
    tags = series.get("tags") or {}
    if "$tag_" in alias:
        return re.sub(r"\$tag_(\w+)", lambda m: str(tags.get(m.group(1), "")), alias)
    return alias or ",".join(str(v) for v in tags.values()) or series["columns"][1]


def overrides(panel) -> dict[str, dict]:
    """refId -> the properties its query's override sets (``byFrameRefID`` matchers)."""
    out: dict[str, dict] = {}
    for o in panel.field_config.overrides or []:
        if o.matcher.id_val == "byFrameRefID":
            out.setdefault(o.matcher.options, {}).update({p.id_val: p.value for p in o.properties})
    return out


def draw_timeseries(ax, panel, results, tz) -> None:
    bars = getattr(getattr(panel.field_config.defaults, "custom", None), "draw_style", None) == "bars"
    n = 0
    props = overrides(panel)
    right = None
    for t, series_list in results:
        o = props.get(t.ref_id, {})
        style = "--" if o.get("custom.lineStyle", {}).get("fill") == "dash" else "-"
        target = ax
        if o.get("custom.axisPlacement") == "right":
            right = target = right or ax.twinx()
            target.tick_params(labelsize=6)
            target.set_ylabel(o.get("unit", ""), fontsize=6)
        for s in series_list:
            pts = [(v[0], v[1]) for v in s["values"] if v[1] is not None]
            if not pts:
                continue
            x = [datetime.fromtimestamp(p[0] / 1000, tz) for p in pts]
            y = [p[1] for p in pts]
            if bars:
                ax.bar(x, y, width=0.03, alpha=0.7, label=label(s, t.alias))
            else:
                target.plot(x, y, lw=0.8, ls=style, label=label(s, t.alias), marker="o" if len(x) < 3 else None,
                            ms=3, color=f"C{n % 10}")
            n += 1
    th = panel.field_config.defaults.thresholds
    for step in (th.steps if th else []):
        if step.value is not None:
            ax.axhline(step.value, ls="--", lw=0.8, color=COLOURS.get(step.color, step.color))
    days = (ax.get_xlim()[1] - ax.get_xlim()[0]) > 2  # matplotlib's date units are days
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d" if days else "%H:%M", tz=tz))
    ax.tick_params(labelsize=6)
    if 0 < n <= 12:
        handles = [h for a in (ax, right) if a is not None for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles=handles, fontsize=5, loc="upper left", frameon=False, ncol=2)


def draw_rows(ax, results) -> None:
    rows = []
    for _t, series_list in results:
        for s in series_list:
            tags = s.get("tags") or {}
            cols = s["columns"]
            for v in s["values"][:8]:
                cells = [f"{k}={tags[k]}" for k in tags] + [
                    f"{c}=" + (f"{x:.3g}" if isinstance(x, float) else str(x))[:40]
                    for c, x in zip(cols[1:], v[1:], strict=True) if x is not None]
                rows.append("  ".join(cells))
    ax.axis("off")
    ax.text(0.01, 0.97, "\n".join(rows[:9]) or "(no rows)", va="top", ha="left", fontsize=6, family="monospace",
            transform=ax.transAxes, parse_math=False)


def draw_stat(ax, results) -> None:
    parts = []
    for t, series_list in results:
        for s in series_list:
            parts.append(f"{label(s, t.alias)}: {s['values'][-1][1]:g}")
    ax.axis("off")
    ax.text(0.5, 0.45, "   ".join(parts) or "-", ha="center", va="center", fontsize=14, transform=ax.transAxes,
            parse_math=False)


def draw_bargauge(ax, results) -> None:
    bars = [(label(s, t.alias), s["values"][-1][1]) for t, sl in results for s in sl]
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color=COLOURS["green"])
    ax.tick_params(labelsize=6)


def draw_histogram(ax, results) -> None:
    vals = [v[1] for _t, sl in results for s in sl for v in s["values"] if v[1] is not None]
    ax.hist(vals, bins=12, color=COLOURS["blue"])
    ax.tick_params(labelsize=6)


def render(board, lang: str, http: str, day: dict, out: Path) -> Path:
    model = board.build(lang)
    tz = ZoneInfo(TZ)
    height = max(p.grid_pos.y + p.grid_pos.h for p in model.panels)
    fig = plt.figure(figsize=(24 * COL_IN, height * ROW_IN + 0.6))
    when = f"{datetime.fromtimestamp(day['start'] / 1000, tz):%Y-%m-%d}"
    fig.suptitle(f"{model.title}  ({when}, {'模拟数据' if lang == 'zh' else 'simulated'})",
                 fontsize=12, x=0.01, ha="left")
    top = 1 - 0.6 / (height * ROW_IN + 0.6)
    for p in model.panels:
        g = p.grid_pos
        x0, w = g.x / 24, g.w / 24
        y1 = top * (1 - g.y / height)
        h = top * g.h / height
        ax = fig.add_axes((x0 + 0.035 * w + 0.004, y1 - h + 0.12 * h, w * 0.93, h * 0.72))
        ax.set_title(p.title, fontsize=8, loc="left", parse_math=False)
        influx = [t for t in (p.targets or []) if isinstance(t, InfluxQuery)]
        if not influx:
            ax.axis("off")
            width = max(20, int(g.w * 5.2))
            exprs = "\n".join(textwrap.fill(getattr(t, "expr", ""), width) for t in p.targets or [])
            ax.text(0.01, 0.9, "Prometheus (no server here):\n" + exprs, va="top", fontsize=5.5, family="monospace",
                    transform=ax.transAxes, parse_math=False)
            continue
        results = [(t, run(http, day, t.query)) for t in influx]
        if p.type_val == "timeseries":
            draw_timeseries(ax, p, results, tz)
        elif p.type_val == "stat":
            draw_stat(ax, results)
        elif p.type_val == "bargauge":
            draw_bargauge(ax, results)
        elif p.type_val == "histogram":
            draw_histogram(ax, results)
        else:
            draw_rows(ax, results)
    path = out / f"{board.uid}.png"
    fig.savefig(path, dpi=55)
    plt.close(fig)
    return path


def use_cjk_font() -> bool:
    """Use a CJK font if the system has one (district names and zh titles); True if found."""
    from matplotlib import font_manager

    keys = ("wqy", "notosanscjk", "noto-cjk", "droidsansfallback")
    found = [p for p in font_manager.findSystemFonts() if any(k in p.lower() for k in keys)]
    for p in found:
        font_manager.fontManager.addfont(p)
    names = sorted({font_manager.FontProperties(fname=p).get_name() for p in found})
    if not names:
        return False
    plt.rcParams["font.sans-serif"] = [*names, "DejaVu Sans"]
    plt.rcParams["font.monospace"] = [*names, "DejaVu Sans Mono"]
    plt.rcParams["font.family"] = "sans-serif"
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--lang", choices=["en", "zh"], help="default: zh if a CJK font is installed, else en")
    args = ap.parse_args()
    cjk = use_cjk_font()
    args.lang = args.lang or ("zh" if cjk else "en")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="citywatch-render-") as tmp:
        server = Influxd(Path(tmp) / "influxd").start()
        try:
            day = simulated_day(f"influxdb://127.0.0.1:{server.port}/{DB}", Path(tmp) / "state")
            week = {**day, "start": day["start"] - (ROLLOUT_DAYS - 1) * 86_400_000}  # the rollout snapshots
            for b in boards():
                print(render(b, args.lang, server.http, week if b.uid == "citywatch-rollout" else day, args.out))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
