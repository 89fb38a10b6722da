"""The rollout report as one Excel workbook (XlsxWriter): the office's copy.

Sheets: ``汇总 Summary`` (each programme's totals and districts, then the exception counts;
printed landscape, one page wide), one sheet per district with its weekly series, the target
and an Excel line chart of both, one sheet per exception list (device_id, district,
asset_id, asset_name, responsible_unit, reason, since). Headers in Chinese and English, the
header row frozen, numbers as numbers, dates as Excel dates, share as a percentage; sheet names
valid for Excel (31 characters, none of ``[]:*?/\\``, unique ignoring case). Text cells are
written as text, never as formulas (an asset named ``=HYPERLINK(...)`` stays a name).
"""

from __future__ import annotations

import io
import re
import unicodedata
from datetime import date, datetime

import xlsxwriter

from dashboards.rollout_report.document import (
    COUNTS,
    LIST_COLUMNS,
    TOTAL,
    both,
    check,
    exception_title,
    label,
    rows,
    status,
)

MAX_SHEET_NAME = 31
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
WIDTH_SAMPLE = 2000  # rows looked at to size a column
MAX_WIDTH = 60


def sheet_name(wanted: str, taken: set[str]) -> str:
    """``wanted`` as a valid, unused Excel sheet name (``taken``: lower-cased names in use)."""
    base = _BAD_SHEET_CHARS.sub("_", wanted).strip("'").strip() or "Sheet"
    if base.lower() == "history":  # reserved by Excel
        base = f"{base}_"
    name, n = base[:MAX_SHEET_NAME], 1
    while name.lower() in taken:
        n += 1
        suffix = f" ({n})"
        name = base[:MAX_SHEET_NAME - len(suffix)] + suffix
    taken.add(name.lower())
    return name


def text_width(value: object) -> int:
    """Display width in Excel's character units: a CJK character counts two."""
    s = value if isinstance(value, str) else str(value)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _date(v: str | None) -> date | datetime | None:
    """An ISO date or RFC 3339 time as Excel takes it (naive: the wall clock of its own offset)."""
    if not v:
        return None
    if len(v) == 10:
        return date.fromisoformat(v)
    return datetime.fromisoformat(v.replace("Z", "+00:00")).replace(tzinfo=None)


def _shown_width(v: object) -> int:
    if isinstance(v, datetime):
        return 16
    if isinstance(v, date):
        return 10
    if isinstance(v, int | float) and not isinstance(v, bool):
        return len(f"{v:,.1f}")
    return text_width(v)


class _Book:
    """The workbook, its formats, and writing that keeps each column's widest value."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        # in memory: the constant-memory mode's temporary files cost more wall time than its
        # memory saves (bench/dashboards/rollout_render.py: 9 s against 4 s for 50,000 rows)
        self.wb = xlsxwriter.Workbook(self.buf, {"in_memory": True, "strings_to_formulas": False,
                                                 "strings_to_numbers": False, "strings_to_urls": False,
                                                 "remove_timezone": True})
        f = self.wb.add_format
        self.fmt = {
            "head": f({"bold": True, "bg_color": "#E8EDF3", "text_wrap": True, "valign": "top", "border": 1}),
            "date": f({"num_format": "yyyy-mm-dd"}), "datetime": f({"num_format": "yyyy-mm-dd hh:mm"}),
            "int": f({"num_format": "#,##0"}), "dec": f({"num_format": "#,##0.0"}),
            "pct": f({"num_format": "0.0%"}), "late": f({"font_color": "#C62828", "bold": True}),
            "total": f({"bold": True}), "text": None,
        }
        self.taken: set[str] = set()

    def sheet(self, wanted: str, headers: list[str], *, frozen_columns: int = 0):
        ws = self.wb.add_worksheet(sheet_name(wanted, self.taken))
        for c, h in enumerate(headers):
            ws.write_string(0, c, h, self.fmt["head"])
        ws.freeze_panes(1, frozen_columns)
        ws.set_row(0, 30)
        return ws, [max(8, min(MAX_WIDTH, max(text_width(w) for w in h.split(" ")) + 2)) for h in headers]

    def cell(self, ws, r: int, c: int, v: object, kind: str, widths: list[int]) -> None:
        fmt = self.fmt.get(kind)
        if v is None or v == "":
            ws.write_blank(r, c, None, fmt)
            return
        if kind in ("date", "datetime"):
            v = _date(v) if isinstance(v, str) else v
            ws.write_datetime(r, c, v, self.fmt["datetime" if isinstance(v, datetime) else "date"])
        elif isinstance(v, bool) or not isinstance(v, int | float):
            ws.write_string(r, c, str(v), fmt)
        else:
            ws.write_number(r, c, v, fmt)
        if r <= WIDTH_SAMPLE:
            shown = _shown_width(v)
            if shown + 2 > widths[c]:
                widths[c] = min(MAX_WIDTH, shown + 2)

    def done(self, ws, widths: list[int]) -> None:
        for c, w in enumerate(widths):
            ws.set_column(c, c, w)

    def close(self) -> bytes:
        self.wb.close()
        return self.buf.getvalue()


SUMMARY = [("programme", "text"), ("district", "text"), ("deadline", "date"),
           *((k, "int") for k in COUNTS), ("share", "pct"), ("pace", "dec"), ("p10_col", "dec"), ("p90_col", "dec"),
           ("forecast", "date"), ("early", "date"), ("late", "date"), ("completed_on", "date"),
           ("on_track", "text"), ("needed", "dec")]


def _summary_values(programme: str, name: str, f: dict) -> list[object]:
    return [programme, label("total", "zh") if name == TOTAL else name, f.get("deadline"),
            *(f[k] for k in COUNTS), f["commissioned_share"], f["pace_per_week"], f["pace_p10"], f["pace_p90"],
            f["forecast"], f["forecast_early"], f["forecast_late"], f["completed_on"],
            label(status(f), "zh"), f["needed_per_week"]]


def _summary(book: _Book, doc: dict) -> None:
    ws, widths = book.sheet(both("summary_sheet"), [both(k) for k, _ in SUMMARY], frozen_columns=2)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)  # printed: one page wide
    r = 1
    for p in doc["programmes"]:
        for name, f in rows(p):
            values = _summary_values(p["programme"], name, f)
            for c, (v, (key, kind)) in enumerate(zip(values, SUMMARY, strict=True)):
                late = key == "on_track" and status(f) == "no"
                book.cell(ws, r, c, v, "late" if late else ("total" if name == TOTAL and kind == "text" else kind),
                          widths)
            r += 1
    r += 1
    ws.write_string(r, 0, both("exceptions"), book.fmt["head"])
    ws.write_string(r, 1, both("list"), book.fmt["head"])
    ws.write_string(r, 2, both("count"), book.fmt["head"])
    for name, e in doc["exceptions"].items():
        r += 1
        book.cell(ws, r, 0, name, "text", widths)
        book.cell(ws, r, 1, exception_title(name, e, "zh"), "text", widths)
        book.cell(ws, r, 2, e["count"], "int", widths)
    book.done(ws, widths)


WEEKLY = [("week_start", "date"), ("installed_week", "int"), ("commissioned_week", "int"),
          ("installed_cumulative", "int"), ("commissioned_cumulative", "int")]
_WEEK_KEYS = ("week_start", "installed", "commissioned", "installed_cumulative", "commissioned_cumulative")


def _district(book: _Book, wanted: str, f: dict) -> None:
    """The weekly series, the target beside it, and a line chart of both cumulatives and the
    target (Excel's own chart: it follows edits to the sheet)."""
    ws, widths = book.sheet(wanted, [both(k) for k, _ in WEEKLY] + [both("target")])
    for r, w in enumerate(f["weekly"], start=1):
        for c, (key, (_, kind)) in enumerate(zip(_WEEK_KEYS, WEEKLY, strict=True)):
            book.cell(ws, r, c, w[key], kind, widths)
        book.cell(ws, r, len(WEEKLY), f["target"], "int", widths)
    book.done(ws, widths)
    if f["weekly"]:
        ws.insert_chart(1, len(WEEKLY) + 2, _chart(book, ws.name, len(f["weekly"])))


def _chart(book: _Book, sheet: str, n: int):
    chart = book.wb.add_chart({"type": "line"})
    for col, colour, dash in ((3, "#8FB3E8", "solid"), (4, "#1F5FBF", "solid"), (5, "#333333", "dash")):
        chart.add_series({"name": [sheet, 0, col], "categories": [sheet, 1, 0, n, 0], "values": [sheet, 1, col, n, col],
                          "line": {"color": colour, "width": 2 if col == 4 else 1.25, "dash_type": dash}})
    chart.set_title({"name": sheet, "name_font": {"size": 12}})
    chart.set_x_axis({"date_axis": True, "num_format": "yyyy-mm", "major_unit": 2, "major_unit_type": "months"})
    chart.set_y_axis({"num_format": "#,##0", "min": 0})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": 720, "height": 360})
    return chart


def _list(book: _Book, wanted: str, items: list[dict]) -> None:
    kinds = {"since": "date"}
    ws, widths = book.sheet(wanted, [f"{label(k, 'zh')} {k}" if k != "district" else both(k) for k in LIST_COLUMNS])
    for r, row in enumerate(items, start=1):
        for c, key in enumerate(LIST_COLUMNS):
            book.cell(ws, r, c, row.get(key), kinds.get(key, "text"), widths)
    if items:
        ws.autofilter(0, 0, len(items), len(LIST_COLUMNS) - 1)
    book.done(ws, widths)


def render_xlsx(doc: dict, lists: dict[str, list[dict]]) -> bytes:
    """The workbook of ``doc`` with the exception ``lists`` (NAME -> rows), as .xlsx bytes."""
    check(doc)
    book = _Book()
    _summary(book, doc)
    several = len(doc["programmes"]) > 1
    for p in doc["programmes"]:
        for name, f in rows(p):
            wanted = label("total", "zh") if name == TOTAL else name
            _district(book, f"{wanted} {p['programme']}" if several else wanted, f)
    names = [*doc["exceptions"], *(n for n in lists if n not in doc["exceptions"])]
    for name in names:
        _list(book, exception_title(name, doc["exceptions"].get(name), "zh"), lists.get(name, []))
    return book.close()
