"""What the boards share: titles in two languages, template variables, the filter they make,
panels with thresholds, the alert annotation and tables, and the board frame.

Every board is built with grafana-foundation-sdk builders; queries are :class:`InfluxQuery`
(raw InfluxQL, dashboards/influxql.py) or the SDK's Prometheus query. The store's data model
(ingest/stores/influxdb.py): measurement = device kind, tags ``device_id``, ``district``,
``asset_id``, one float field per metric; the ``alerts`` measurement holds alert transitions
(alerts/history_store.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, ReduceDataOptions, VizLegendOptions
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    GraphDrawStyle,
    GraphTresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
)

from dashboards.influxql import INFLUX_UID, InfluxQuery, influx_ref, prometheus_ref

LANGUAGES = ("zh", "en")
FOLDER_UID = "citywatch"
SEVERITY_COLOURS = {"info": "blue", "warning": "yellow", "major": "orange", "critical": "red"}
ALERTS = "alerts"  # the measurement of alert transitions (alerts/history_store.py)
# Grafana's interpolation of a multi-value or "All" variable in a regex: all_value .* matches
# every value, also a missing tag (InfluxDB compares it as the empty string)
ALL = ".*"


@dataclass(frozen=True, slots=True)
class Text:
    """A title in both languages."""

    en: str
    zh: str

    def __call__(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"[dashboards] language must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    return lang


# -- template variables --------------------------------------------------------------------------

VARIABLE_TITLES = {"district": Text("District", "行政区"), "asset": Text("Asset", "设施"),
                   "device": Text("Device", "设备")}


def ident(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def variables(kind: str | None, lang: str, *, levels: Sequence[str] = ("district", "asset", "device")
              ) -> list[db.QueryVariable]:
    """``district`` -> ``asset`` -> ``device``, chained: each lists the tag values of ``kind``'s
    measurement (all measurements for None) under the choices above it."""
    src = f" FROM {ident(kind)}" if kind else ""
    out = []
    conds: list[str] = []
    tags = {"district": "district", "asset": "asset_id", "device": "device_id"}
    for name in levels:
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        q = f"SHOW TAG VALUES{src} WITH KEY = {ident(tags[name])}{where}"
        out.append(
            db.QueryVariable(name).label(VARIABLE_TITLES[name](lang)).datasource(influx_ref())
            .query(q).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(ALL)
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
        conds.append(f"{ident(tags[name])} =~ /^${name}$/")
    return out


def where(*, district: bool = True, asset: bool = True, device: bool = True) -> str:
    """``$timeFilter`` and the variables' tag filters, for a WHERE clause."""
    parts = ["$timeFilter"]
    if district:
        parts.append('"district" =~ /^$district$/')
    if asset:
        parts.append('"asset_id" =~ /^$asset$/')
    if device:
        parts.append('"device_id" =~ /^$device$/')
    return " AND ".join(parts)


def series_query(kind: str, metric: str, *, agg: str = "mean", by: str = "device_id", alias: str = "$tag_device_id",
                 ref: str = "A", filters: str | None = None, fill: str = "none") -> InfluxQuery:
    """``agg(metric)`` of ``kind`` per ``$__interval`` and ``by`` tag: one series per device."""
    group = f', {ident(by)}' if by else ""
    q = (f"SELECT {agg}({ident(metric)}) FROM {ident(kind)} WHERE {filters or where()} "
         f"GROUP BY time($__interval){group} fill({fill})")
    return InfluxQuery(q, ref_id=ref, alias=alias, shape="series")


# -- thresholds ------------------------------------------------------------------------------

def thresholds(steps: Iterable[tuple[float, str]], base: str = "green") -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=None, color=base)]
                   + [dm.Threshold(value=float(v), color=c) for v, c in sorted(steps)]))


# -- panels ----------------------------------------------------------------------------------

def _targets(panel, queries: Sequence):
    for i, q in enumerate(queries):
        if isinstance(q, InfluxQuery):
            q = q.with_ref_id(chr(ord("A") + i))
        panel = panel.with_target(q)
    return panel


def timeseries(title: str, queries: Sequence, *, unit: str = "", description: str = "",
               limits: Iterable[tuple[float, str]] = (), base: str = "green", width: int = 12, height: int = 8,
               bars: bool = False, prometheus: bool = False) -> ts_b.Panel:
    """A time series panel; ``limits`` (value, colour) are drawn as threshold lines."""
    p = (ts_b.Panel().title(title).description(description).unit(unit).span(width).height(height)
         .datasource(prometheus_ref() if prometheus else influx_ref())
         .legend(VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM)
                 .show_legend(True))
         .line_width(1).fill_opacity(10).span_nulls(False))
    if bars:
        p = p.draw_style(GraphDrawStyle.BARS).fill_opacity(80)
    limits = list(limits)
    if limits:
        p = p.thresholds(thresholds(limits, base)).thresholds_style(
            GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.DASHED))
    return _targets(p, queries)


def stat(title: str, queries: Sequence, *, unit: str = "", description: str = "", width: int = 6, height: int = 4,
         limits: Iterable[tuple[float, str]] = (), base: str = "green", calc: str = "lastNotNull",
         prometheus: bool = False) -> stat_b.Panel:
    """A single value (the ``calc`` reduction of each query's series)."""
    p = (stat_b.Panel().title(title).description(description).unit(unit).span(width).height(height)
         .datasource(prometheus_ref() if prometheus else influx_ref())
         .graph_mode(BigValueGraphMode.NONE)
         .reduce_options(ReduceDataOptions().calcs([calc]).values(False)))
    limits = list(limits)
    if limits:
        p = p.thresholds(thresholds(limits, base))
    return _targets(p, queries)


def table(title: str, queries: Sequence, *, description: str = "", width: int = 24, height: int = 8,
          unit: str = "") -> table_b.Panel:
    p = (table_b.Panel().title(title).description(description).span(width).height(height).unit(unit)
         .datasource(influx_ref()))
    return _targets(p, queries)


def prometheus(expr: str, legend: str = "", ref: str = "A") -> prom.Dataquery:
    return prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(prometheus_ref()).range()


# -- alerts ----------------------------------------------------------------------------------

def alert_filter(kinds: Sequence[str] | None) -> str:
    parts = []
    if kinds:
        parts.append("(" + " OR ".join(f'"kind" = \'{k}\'' for k in kinds) + ")")
    return " AND ".join(parts)


def alerts_table(lang: str, kinds: Sequence[str] | None, *, rules: Sequence[str] = (), title: Text | None = None,
                 width: int = 24, height: int = 8, device: bool = True) -> table_b.Panel:
    """Alert transitions of ``kinds`` (and ``rules``) in the time range, newest first."""
    conds = [where(asset=False, device=device)]
    if kinds:
        conds.append(alert_filter(kinds))
    if rules:
        conds.append("(" + " OR ".join(f'"rule" = \'{r}\'' for r in rules) + ")")
    q = (f'SELECT "state", "severity", "rule", "device_id", "district", "value", "summary", "alert_id", "url" '
         f'FROM {ident(ALERTS)} WHERE {" AND ".join(conds)} ORDER BY time DESC LIMIT 500')
    t = title or Text("Alert changes", "告警记录")
    return table(t(lang), [InfluxQuery(q, result_format="table", shape="table")], width=width, height=height,
                 description=Text("Every alert change (firing, escalated, acknowledged, resolved) of the range; "
                                  "url links to the alert in citywatch.",
                                  "时间范围内的每次告警变化（触发、升级、确认、恢复）；"
                                  "url 链接到 citywatch 中的告警。")(lang))


class InfluxAnnotationTarget(dm.AnnotationTarget):
    """The InfluxDB datasource's annotation target: a raw InfluxQL query whose ``summary``
    column is the text and ``rule``/``severity`` the tags."""

    def __init__(self, query: str) -> None:
        super().__init__()
        self.query = query

    def to_json(self) -> dict[str, object]:
        return {"refId": "Anno", "query": self.query, "rawQuery": True, "resultFormat": "table",
                "textColumn": "summary", "tagsColumn": "rule,severity,state"}


class _AnnotationTargetBuilder(cogbuilder.Builder[dm.AnnotationTarget]):
    def __init__(self, query: str) -> None:
        self.query = query

    def build(self) -> InfluxAnnotationTarget:
        return InfluxAnnotationTarget(self.query)


def alert_annotation(lang: str, kinds: Sequence[str] | None, *, district: bool = True,
                     device: bool = True, enable: bool = True) -> db.AnnotationQuery:
    """Alert changes of ``kinds`` as annotations on every time series panel (shown unless
    ``enable`` is False: then the board's annotation toggle turns them on)."""
    conds = [where(district=district, asset=False, device=device)]
    if kinds:
        conds.append(alert_filter(kinds))
    q = f'SELECT "summary", "rule", "severity", "state" FROM {ident(ALERTS)} WHERE {" AND ".join(conds)}'
    return (db.AnnotationQuery().name(Text("Alerts", "告警")(lang)).datasource(influx_ref()).enable(enable)
            .icon_color("red").target(_AnnotationTargetBuilder(q)))


def annotation_query(anno: dm.AnnotationQuery) -> InfluxQuery | None:
    t = anno.target
    if isinstance(t, InfluxAnnotationTarget):
        return InfluxQuery(t.query, result_format="table", shape="table")
    return None


# -- the board frame ---------------------------------------------------------------------------

# What Grafana 10.4 and 11 write (the SDK 10.1 model says 36): the boards use none of the
# options that migrations 37-39 rewrite (legend "hidden", table displayMode, the timeSeriesTable
# transform); later Grafana versions migrate it on load.
SCHEMA_VERSION = 39


@dataclass(frozen=True, slots=True)
class Board:
    """One dashboard: its uid, title and the function that builds it for a language."""

    uid: str
    title: Text
    make: Callable[[str], db.Dashboard]

    def build(self, lang: str) -> dm.Dashboard:
        d = self.make(check_language(lang)).build()
        d.schema_version = SCHEMA_VERSION
        for i, p in enumerate(d.panels or [], start=1):  # stable panel ids, in layout order
            p.id_val = i
        return d




def frame(uid: str, title: Text, lang: str, *, kinds: Sequence[str] | None, tags: Sequence[str] = (),
          levels: Sequence[str] = ("district", "asset", "device"), refresh: str = "1m",
          time_from: str = "now-24h", annotations: bool = True) -> db.Dashboard:
    """A board: uid, title in ``lang``, tags, browser time zone, refresh, the district ->
    asset -> device variables, the alert annotation (off at first with ``annotations=False``)
    and links to the other citywatch boards."""
    d = (db.Dashboard(title(lang)).uid(uid).tags(["citywatch", *tags]).timezone("browser").refresh(refresh)
         .time(time_from, "now").editable().tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .link(db.DashboardLink(Text("citywatch boards", "citywatch 看板")(lang)).type(dm.DashboardLinkType.DASHBOARDS)
               .tags(["citywatch"]).as_dropdown(True).keep_time(True).include_vars(False))
         .annotation(alert_annotation(lang, kinds, district="district" in levels, device="device" in levels,
                                      enable=annotations)))
    if levels:
        d = d.variables(variables(kinds[0] if kinds and len(kinds) == 1 else None, lang, levels=levels))
    return d


__all__ = ["ALERTS", "Board", "FOLDER_UID", "INFLUX_UID", "InfluxQuery", "Text", "alert_annotation", "alerts_table",
           "frame", "ident", "prometheus", "series_query", "stat", "table", "thresholds", "timeseries", "variables",
           "where"]
