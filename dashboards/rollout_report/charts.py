"""The cumulative progress chart of a district (or a programme's totals), as PNG bytes.

Commissioned and installed cumulative per week (each week's point at the week's end, the
current week's at ``as_of``), the target as a horizontal line, the deadline as a vertical one,
and from today the forecast cone: the target reached at the 10th and 90th percentile of the
recent weekly pace (the area between) and at the recent pace (dashed). Drawn with matplotlib's
object API on the Agg canvas (no pyplot, no global backend switch), text in the CJK font of
:mod:`fonts`.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dashboards.rollout_report.document import district_name, label, status
from dashboards.rollout_report.fonts import cjk_family

COLOURS = {"commissioned": "#1f5fbf", "installed": "#8fb3e8", "target": "#333333", "deadline": "#c62828",
           "cone": "#f2a900", "pace": "#b07800", "now": "#777777", "late": "#c62828",
           "unknown": "#8a6d00"}
# ConciseDateFormatter's levels: years, months, days, hours, minutes, seconds
DATE_FORMATS = {"zh": (["%Y年", "%-m月", "%-d日", "%H:%M", "%H:%M", "%S.%f"],
                       ["", "%Y年", "%-m月", "%-m月%-d日", "%H:%M", "%H:%M"]),
                "en": (["%Y", "%b", "%d", "%H:%M", "%H:%M", "%S.%f"], ["", "%Y", "%b", "%b-%d", "%H:%M", "%H:%M"])}
HORIZON_WEEKS = 26  # drawn past the later of today and the deadline, unless the forecast is sooner


def _dates(weekly: list[dict], as_of: date) -> list[date]:
    """Each week's cumulative is what stood at its end (the current week: today)."""
    return [min(date.fromisoformat(w["week_start"]) + timedelta(days=7), as_of) for w in weekly]


def _x_end(f: dict, as_of: date, deadline: date) -> date:
    end = max(as_of, deadline) + timedelta(weeks=HORIZON_WEEKS)
    late = [date.fromisoformat(x) for x in (f.get("forecast_late"), f.get("forecast")) if x]
    return min(end, max([max(as_of, deadline) + timedelta(weeks=4), *late]))


def _cone(ax, f: dict, as_of: date, end: date, language: str) -> None:
    """From today, the target reached at p10 .. p90 of the pace and at the pace itself."""
    remaining = f["target"] - f["commissioned"]
    if remaining <= 0 or end <= as_of:
        return
    days = np.arange(0, (end - as_of).days + 1, 1)
    x = [as_of + timedelta(days=int(d)) for d in days]

    def at(pace: float) -> np.ndarray:
        return np.minimum(f["target"], f["commissioned"] + max(pace, 0.0) * days / 7)

    ax.fill_between(x, at(f["pace_p10"]), at(f["pace_p90"]), color=COLOURS["cone"], alpha=0.25, lw=0,
                    label=label("cone", language))
    ax.plot(x, at(f["pace_per_week"]), color=COLOURS["pace"], lw=1.2, ls="--")


def _lines(ax, target: int, due: date, today: date, language: str, family: list[str]) -> None:
    """The target (labelled with its value, left) and the deadline (labelled, at the top)."""
    ax.axhline(target, color=COLOURS["target"], lw=1, ls=(0, (4, 3)))
    ax.axvline(due, color=COLOURS["deadline"], lw=1.2)
    ax.axvline(today, color=COLOURS["now"], lw=0.8, ls=":")
    ax.annotate(f"{label('target_line', language)} {target:,}", (0, target), xycoords=("axes fraction", "data"),
                xytext=(3, 2), textcoords="offset points", fontsize=7.5, fontfamily=family, color=COLOURS["target"],
                parse_math=False)
    ax.annotate(f"{label('deadline_line', language)} {due:%Y-%m-%d}", (due, 1), xycoords=("data", "axes fraction"),
                xytext=(-3, -10), textcoords="offset points", ha="right", fontsize=7.5, fontfamily=family,
                color=COLOURS["deadline"], parse_math=False)


def _title(ax, name: str, f: dict, language: str, family: list[str]) -> None:
    st = status(f)
    mark = "⚠ " if st == "no" else ""
    share = f"{f['commissioned_share'] * 100:.1f} %"
    colour = {"no": COLOURS["late"], "unknown": COLOURS["unknown"]}.get(st, "#222222")
    ax.set_title(f"{mark}{district_name(name, language)}  {share}  {label(st, language)}", loc="left",
                 fontsize=10, fontfamily=family, color=colour, fontweight="bold" if st == "no" else "normal",
                 parse_math=False)


def progress_chart(name: str, f: dict, as_of: str, deadline: str, language: str, *, size=(4.6, 2.9),
                   dpi: int = 130) -> bytes:
    """PNG of ``f``'s (FIGURES of district ``name``) cumulative progress, ``size`` inches at
    ``dpi`` (130: shown 460 px wide, sharp on screens that scale by 1.25 or more)."""
    family = [cjk_family(), "DejaVu Sans"]  # DejaVu for the symbols CJK fonts lack (⚠)
    today, due = date.fromisoformat(as_of), date.fromisoformat(deadline)
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    weekly = f["weekly"]
    x = _dates(weekly, today)
    end = _x_end(f, today, due)
    ax.plot(x, [w["installed_cumulative"] for w in weekly], color=COLOURS["installed"], lw=1.4)
    ax.plot(x, [w["commissioned_cumulative"] for w in weekly], color=COLOURS["commissioned"], lw=2)
    _cone(ax, f, today, end, language)
    start = x[0] - timedelta(days=7) if x else today
    ax.set_xlim(start, end)
    top = max(f["target"], f["installed"], f["commissioned"], 1) * 1.15
    ax.set_ylim(0, top)
    _lines(ax, f["target"], due, today, language, family)
    _title(ax, name, f, language, family)
    _axes_style(ax, family, top, language)
    fig.subplots_adjust(left=0.105, right=0.985, bottom=0.1, top=0.9)  # fixed: tight_layout costs a draw
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _axes_style(ax, family: list[str], top: float, language: str) -> None:
    import matplotlib.dates as mdates
    import matplotlib.ticker as mticker

    locator = mdates.AutoDateLocator(minticks=3, maxticks=6)
    formats, zero_formats = DATE_FORMATS[language]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, formats=formats, zero_formats=zero_formats,
                                                             show_offset=False))
    thousands = top >= 10_000
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _pos: f"{v / 1000:,.0f}k" if thousands and v
                                                       else f"{v:,.0f}"))
    ax.yaxis.set_major_locator(mticker.MaxNLocator(5, integer=True))  # meters: no 0.2 steps printed as 0, 0, 1
    ax.tick_params(labelsize=8)
    for t in (*ax.get_xticklabels(), *ax.get_yticklabels()):
        t.set_fontfamily(family)
    ax.grid(True, color="#e6e6e6", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

