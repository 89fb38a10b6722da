"""The rollout report on request, as the CLI (``citywatch report rollout``) and the API
(``GET /api/v1/reports/rollout``) both give it: the parameters checked, the document built live
or read from a snapshot (``as_of``), and encoded in the format asked for.

Renderers the devices package does not have (HTML and XLSX: dashboards/rollout_report/) are
handed in by the wiring as ``renderers = {"html": f(doc, language), "xlsx": f(doc, lists)}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from devices.registry import Registry
from devices.rollout import EXCEPTIONS, LatestValues, RolloutOptions, RolloutReport
from devices.rollout_formats import CONTENT_TYPES, figures_csv, list_csv, to_json
from devices.rollout_history import read_snapshot

__all__ = ["FORMATS", "ReportError", "RendererMissing", "Export", "RolloutService"]

FORMATS = ("json", "csv", "html", "xlsx")


class ReportError(ValueError):
    """A bad request: ``param`` names the parameter (``format``, ``programme``, ``as_of``,
    ``list``, ``language``); ``missing`` when it names something that does not exist."""

    def __init__(self, param: str, message: str, *, missing: bool = False) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.missing = missing


def _answering(latest: LatestValues) -> LatestValues:
    """``latest`` with the store's failures (down, refusing) as LookupError: the report then
    leaves out the lists over readings instead of failing whole."""
    def call(metric: str):
        try:
            return latest(metric)
        except Exception as e:  # StoreError and its kin: devices/ does not import ingest/
            raise LookupError(f"the readings store did not answer: {e}") from None
    return call


class RendererMissing(RuntimeError):
    """The format's renderer is not installed (HTML/XLSX without the dashboards extra)."""


@dataclass(frozen=True, slots=True)
class Export:
    body: bytes
    content_type: str
    filename: str


class RolloutService:
    """``open_registry()`` gives a registry over a connection of the caller's own (closed after
    each request); ``latest`` the store's ``latest_values`` (None: no readings lists); ``clock``
    the time in ms."""

    def __init__(self, open_registry: Callable[[], Registry], *, options: RolloutOptions,
                 clock: Callable[[], int], latest: LatestValues | None = None,
                 renderers: Mapping[str, Callable] | None = None, language: str = "zh") -> None:
        self.open_registry = open_registry
        self.options = options
        self.clock = clock
        self.latest = None if latest is None else _answering(latest)
        self.renderers = dict(renderers or {})
        self.language = language

    def document(self, *, programme: str | None = None, as_of: str | None = None,
                 districts: frozenset[str] | None = None) -> dict:
        registry = self.open_registry()
        try:
            return self._document(registry, programme, as_of, districts)[0]
        finally:
            registry.close()

    def _document(self, registry: Registry, programme: str | None, as_of: str | None,
                  districts: frozenset[str] | None) -> tuple[dict, RolloutReport | None]:
        if as_of and districts is not None:
            raise ReportError("as_of", "the daily snapshots cover every district: a token limited to districts "
                                       "gets the live report only")
        if as_of:
            try:
                date.fromisoformat(as_of)
            except ValueError:
                raise ReportError("as_of", f"expected a date YYYY-MM-DD, got {as_of[:40]!r}") from None
            try:
                return read_snapshot(registry.conn, as_of, programme), None
            except LookupError as e:
                raise ReportError("programme" if "programme" in str(e) else "as_of", str(e), missing=True) from None
        report = self._report(registry, programme, districts)
        return report.to_dict(), report

    def _report(self, registry: Registry, programme: str | None, districts: frozenset[str] | None) -> RolloutReport:
        try:
            return RolloutReport(registry, self.clock(), programme=programme, options=self.options,
                                 latest=self.latest, districts=districts)
        except LookupError as e:
            raise ReportError("programme", str(e), missing=True) from None

    def _rows(self, report: RolloutReport, list_name: str) -> list[dict]:
        try:
            return report.exception_rows(list_name)
        except LookupError as e:
            raise ReportError("list", str(e)) from None

    def export(self, fmt: str = "json", *, programme: str | None = None, as_of: str | None = None,
               list_name: str | None = None, language: str | None = None,
               districts: frozenset[str] | None = None) -> Export:
        """The report (or with ``list_name`` one exception list) encoded as ``fmt``; ``districts``
        limits it to those (None: all)."""
        if fmt not in FORMATS:
            raise ReportError("format", f"expected one of {', '.join(FORMATS)}, got {fmt[:40]!r}")
        language = language or self.language
        if language not in ("zh", "en"):
            raise ReportError("language", f"expected zh or en, got {language[:40]!r}")
        if list_name is not None:
            self._check_list(list_name, fmt, as_of)
        if fmt in ("html", "xlsx") and fmt not in self.renderers:
            raise RendererMissing(f"the {fmt} format is not available here")
        registry = self.open_registry()
        try:
            if list_name is not None:
                report = self._report(registry, programme, districts)
                rows = self._rows(report, list_name)
                body = list_csv(rows) if fmt == "csv" else to_json(rows)
                return Export(body, CONTENT_TYPES[fmt], f"rollout-{list_name}-{report.today.isoformat()}.{fmt}")
            doc, report = self._document(registry, programme, as_of, districts)
            stem = f"rollout-{doc['as_of']}"
            if fmt == "json":
                return Export(to_json(doc), CONTENT_TYPES[fmt], f"{stem}.json")
            if fmt == "csv":
                return Export(figures_csv(doc), CONTENT_TYPES[fmt], f"{stem}.csv")
            if fmt == "html":
                return Export(self.renderers["html"](doc, language).encode(), CONTENT_TYPES[fmt], f"{stem}.html")
            lists = {} if report is None else {name: report.exception_rows(name) for name in doc["exceptions"]}
            return Export(self.renderers["xlsx"](doc, lists), CONTENT_TYPES[fmt], f"{stem}.xlsx")
        finally:
            registry.close()

    def rows(self, list_name: str, *, programme: str | None = None) -> list[dict]:
        """One exception list's rows, live."""
        self._check_list(list_name, "json", None)
        registry = self.open_registry()
        try:
            return self._rows(self._report(registry, programme, None), list_name)
        finally:
            registry.close()

    @staticmethod
    def _check_list(name: str, fmt: str, as_of: str | None) -> None:
        if name not in EXCEPTIONS:
            raise ReportError("list", f"unknown exception list {name[:40]!r} (known: {', '.join(EXCEPTIONS)})")
        if fmt not in ("csv", "json"):
            raise ReportError("list", f"an exception list is exported as csv or json, not {fmt}")
        if as_of:
            raise ReportError("list", "exception lists are live only: the daily snapshots keep their counts, "
                                      "not their rows")
