"""Wiring of the rollout report (docs/ROLLOUT.md): the service over the configured state DB and
store, for the API (citywatch/runner.py) and ``citywatch report rollout``; the daily snapshot
writer of the node. The work is in devices/rollout*.py; HTML and XLSX come from
dashboards/rollout_report/, imported when first asked for."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from citywatch.console import ConfigOpt, err, settings
from citywatch.console import fail as _fail
from citywatch.settings import Settings
from devices.db import connect, parse_url
from devices.registry import Registry
from devices.rollout_service import FORMATS, RendererMissing, ReportError, RolloutService

log = logging.getLogger("citywatch.rollout")

report_app = typer.Typer(no_args_is_help=True, help="Reports: the rollout report.")

_OPTION = {"format": "--format", "programme": "--programme", "as_of": "--as-of", "list": "--list",
           "language": "--language"}


def _renderer(name: str) -> Callable:
    def render(doc, arg):
        try:
            import dashboards.rollout_report as r
        except ImportError as e:
            raise RendererMissing(f"the {name} format needs dashboards/rollout_report/ and its dependencies "
                                  f"(pip install 'citywatch[dashboards]'): {e}") from None
        return r.render_html(doc, language=arg) if name == "html" else r.render_xlsx(doc, arg)
    return render


RENDERERS = {"html": _renderer("html"), "xlsx": _renderer("xlsx")}


def service(s: Settings, *, latest=None, clock: Callable[[], int] | None = None) -> RolloutService:
    """The report over ``s``'s state DB (a connection per request) and ``latest`` (a store's ``latest_values``)."""
    path = parse_url(s.state.url)
    return RolloutService(lambda: Registry(connect(path)), options=s.rollout.options(s.timezone),
                          clock=clock or (lambda: int(time.time() * 1000)), latest=latest,
                          renderers=RENDERERS, language=s.dashboards.language)


def snapshot_writer(s: Settings, state_path, store):
    """The node's :class:`~devices.rollout_history.SnapshotWriter` (None when ``[rollout] snapshots`` is off)."""
    if not s.rollout.snapshots:
        return None
    from devices.rollout_history import SnapshotWriter

    return SnapshotWriter(Registry(connect(state_path)), options=s.rollout.options(s.timezone),
                          latest=store.latest_values, write_lines=getattr(store, "write_lines", None))




class _NoReadings:
    """A DuckDB store that does not exist yet: no readings (a report does not create the file)."""

    def latest_values(self, metric: str) -> dict:
        return {}

    def close(self) -> None:
        pass


def _open_store(s: Settings):
    """The readings store for the weak-signal and low-battery lists, or None with a warning (a
    DuckDB file is locked while a node runs: the API has them then)."""
    from ingest.stores.base import StoreError, open_store

    if s.store.url.startswith("duckdb:"):
        from ingest.stores.duckdb import parse_url as duckdb_path

        path = duckdb_path(s.store.url)[0]
        if path != ":memory:" and not Path(path).exists():
            return _NoReadings()
    try:
        store = open_store(s.store.url)
    except (StoreError, ValueError) as e:
        err.print(f"warning: readings store not available ({e}); the weak_signal and low_battery lists are left "
                  f"out (the running node's API has them: GET /api/v1/reports/rollout)",
                  highlight=False, soft_wrap=True)
        return None
    return store


@report_app.command("rollout")
def rollout(
    config: ConfigOpt = None,
    programme: Annotated[str | None, typer.Option("--programme", "-p", help="One programme (default: all).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv, xlsx or html.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (default: stdout).")] = None,
    list_name: Annotated[str | None, typer.Option(
        "--list", help="One exception list instead of the figures: never_heard, silent, weak_signal, "
                       "low_battery, overdue_planned (csv, json or table).")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD: the report of that day's snapshot.")] = None,
    language: Annotated[str | None, typer.Option(
        "--language", help="zh or en (html; default: the dashboards language setting).")] = None,
) -> None:
    """The rollout report: per programme and district, target, progress, pace, forecast; exception lists."""
    if fmt not in ("table", *FORMATS):
        _fail(f"--format: expected table, {', '.join(FORMATS)}, got {fmt!r}", 2)
    if fmt == "xlsx" and out is None:
        _fail("--out: the xlsx format is written to a file; give --out PATH", 2)
    s = settings(config)
    needs_store = as_of is None and (list_name in (None, "weak_signal", "low_battery"))
    store = _open_store(s) if needs_store else None
    # a file or a pipe gets the table 200 columns wide (rich would cut it to 80)
    console = Console(record=True, width=200, file=io.StringIO()) if out is not None else \
        Console() if sys.stdout.isatty() else Console(width=200)
    body = b""
    try:
        svc = service(s, latest=store.latest_values if store is not None else None)
        if fmt == "table":
            _table(svc, programme, as_of, list_name, console)
            body = console.export_text().encode() if out is not None else b""
        else:
            body = svc.export(fmt, programme=programme, as_of=as_of, list_name=list_name, language=language).body
    except ReportError as e:
        _fail(f"{_OPTION.get(e.param, e.param)}{str(e)[len(e.param):]}")
    except RendererMissing as e:
        _fail(str(e))
    finally:
        if store is not None:
            store.close()
    if out is None and fmt != "table":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    elif out is not None:
        out.write_bytes(body)
        err.print(f"wrote {escape(str(out))} ({len(body)} bytes)", highlight=False, soft_wrap=True)


def _table(svc: RolloutService, programme: str | None, as_of: str | None, list_name: str | None,
           console: Console) -> None:
    from devices.rollout_formats import print_list, print_table

    if list_name is not None:
        if as_of:
            raise ReportError("list", "exception lists are live only")
        print_list(list_name, svc.rows(list_name, programme=programme), console)
    else:
        print_table(svc.document(programme=programme, as_of=as_of), console)
