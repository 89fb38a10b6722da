"""The rollout report as JSON, CSV and a terminal table (HTML and XLSX: dashboards/rollout_report/,
handed in as renderers by the wiring).

CSV is RFC 4180 (comma separated, ``"`` quoting, CRLF line ends) in UTF-8 with a byte-order
mark, so that Excel opens the Chinese district names correctly (without the BOM it reads the
file as the local ANSI code page).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

__all__ = ["CONTENT_TYPES", "FIGURE_COLUMNS", "LIST_COLUMNS", "figures_csv", "figures_rows", "list_csv",
           "to_json", "print_table", "print_list"]

CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8; header=present",
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "table": "text/plain; charset=utf-8",
}

FIGURE_COLUMNS = (
    "as_of", "programme", "kind", "district", "start", "deadline", "target", "planned", "installed",
    "commissioned", "reporting", "commissioned_share", "pace_per_week", "pace_p10", "pace_p90", "forecast",
    "forecast_early", "forecast_late", "completed_on", "on_track", "needed_per_week",
)
LIST_COLUMNS = ("device_id", "district", "asset_id", "asset_name", "responsible_unit", "reason", "since")
ALL_DISTRICTS = "_all"  # the programme's totals, as in the snapshot measurement


def to_json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False).encode()


def figures_rows(doc: dict) -> Iterable[dict]:
    """One row per programme (district ``_all``: its totals) and per district, without the weekly series."""
    for p in doc["programmes"]:
        for district, figs in [(ALL_DISTRICTS, p["totals"])] + [(d["district"], d) for d in p["districts"]]:
            start = figs.get("start", p["start"])
            deadline = figs.get("deadline", p["deadline"])
            yield {**{k: figs[k] for k in FIGURE_COLUMNS if k in figs}, "as_of": doc["as_of"],
                   "programme": p["programme"], "kind": p["kind"], "district": district, "start": start,
                   "deadline": deadline}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _csv(columns: tuple[str, ...], rows: Iterable[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def figures_csv(doc: dict) -> bytes:
    """The figures, one row per programme total and district (:data:`FIGURE_COLUMNS`)."""
    return _csv(FIGURE_COLUMNS, figures_rows(doc))


def list_csv(rows: list[dict]) -> bytes:
    """An exception list's rows (:data:`LIST_COLUMNS`)."""
    return _csv(LIST_COLUMNS, rows)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _on_track(v) -> str:
    return {True: "[green]yes[/]", False: "[bold red]no[/]", None: "[dim]?[/]"}[v]


def print_table(doc: dict, console) -> None:
    """The report in the terminal (rich): per programme a table of its districts, then the lists."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]Rollout report[/] as of {doc['as_of']} ({doc['tz']}; {doc['source']}, "
                  f"generated {doc['generated_at']})", highlight=False)
    if not doc["programmes"]:
        console.print("no rollout programme: import its targets with citywatch rollout import rollout.csv",
                      highlight=False)
    for p in doc["programmes"]:
        t = Table(title=f"{escape(p['programme'])} ({p['kind']}): {p['start']} .. {p['deadline']}",
                  title_justify="left")
        for col in ("district", "target", "planned", "installed", "commissioned", "share", "reporting",
                    "pace/wk (p10-p90)", "forecast (range)", "deadline", "on track", "needed/wk"):
            t.add_column(col, justify="left" if col in ("district", "forecast (range)", "deadline") else "right")
        for i, (name, f) in enumerate([(d["district"], d) for d in p["districts"]] + [("total", p["totals"])]):
            forecast = f["completed_on"] and f"done {f['completed_on']}" or (
                f"{f['forecast'] or '-'} ({f['forecast_early'] or '-'} .. {f['forecast_late'] or 'never'})")
            t.add_row(
                escape(name), str(f["target"]), str(f["planned"]), str(f["installed"]), str(f["commissioned"]),
                _pct(f["commissioned_share"]), str(f["reporting"]),
                f"{f['pace_per_week']:.1f} ({f['pace_p10']:.1f}-{f['pace_p90']:.1f})", forecast,
                f.get("deadline", p["deadline"]), _on_track(f["on_track"]),
                "-" if f["needed_per_week"] is None else f"{f['needed_per_week']:.1f}",
                end_section=i == len(p["districts"]) - 1,
            )
        console.print(t)
    if doc["exceptions"]:
        console.print("Exception lists (citywatch report rollout --list NAME): " + ", ".join(
            f"{name} {e['count']}" for name, e in doc["exceptions"].items()), highlight=False)


def print_list(name: str, rows: list[dict], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{name}: {len(rows)} meters", title_justify="left")
    for c in LIST_COLUMNS:
        t.add_column(c)
    for r in rows:
        t.add_row(*(escape(_cell(r[c])) for c in LIST_COLUMNS))
    console.print(t)
