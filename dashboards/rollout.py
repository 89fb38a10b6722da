"""Meter rollout (燃气表改造进度): the programme's progress per district over months, from the
daily snapshots of the rollout report.

Reads the measurement ``rollout`` (written once a local day by the report, devices/rollout.py):
tags ``programme`` and ``district`` (``_all``: the programme's totals), integer fields
``target``, ``planned``, ``installed``, ``commissioned``, ``reporting`` and float fields
``pace_per_week``, ``commissioned_share``; one point per district per local day at the local
midnight that starts it. Variables: programme -> district (the districts of the chosen
programmes, without ``_all``). Panels use a minimum interval of a day: one snapshot a day.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge as bar_b
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, VizOrientation

from dashboards.common import ALL, Board, InfluxQuery, Text, frame, ident, stat, table, thresholds, timeseries
from dashboards.influxql import influx_ref

M = "rollout"
TOTAL = "_all"
TITLE = Text("Meter rollout", "燃气表改造进度")
PROGRAMME = '"programme" =~ /^$programme$/'
DISTRICTS = f'"district" =~ /^$district$/ AND "district" != \'{TOTAL}\''
DAY = "1d"
VARIABLES = {"programme": Text("Programme", "项目"), "district": Text("District", "行政区")}


def variables(lang: str) -> list:
    """programme -> district, chained, multi-value, "All" by default; ``_all`` is not a district."""
    queries = {"programme": f'SHOW TAG VALUES FROM {ident(M)} WITH KEY = "programme"',
               "district": f'SHOW TAG VALUES FROM {ident(M)} WITH KEY = "district" WHERE {PROGRAMME} AND '
                           f'"district" != \'{TOTAL}\''}
    return [db.QueryVariable(name).label(VARIABLES[name](lang)).datasource(influx_ref()).query(q)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(ALL)
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
            for name, q in queries.items()]


def per_district(field: str, *, alias: str = "$tag_district") -> InfluxQuery:
    """The day's snapshot of ``field`` per district (and programme) of the selection."""
    return InfluxQuery(f"SELECT last({ident(field)}) FROM {ident(M)} WHERE $timeFilter AND {PROGRAMME} AND "
                       f'{DISTRICTS} GROUP BY time($__interval), "district" fill(none)', alias=alias, shape="series")


def total(field: str) -> InfluxQuery:
    """The programmes' latest ``field`` (their ``_all`` row), one value per programme."""
    return InfluxQuery(f"SELECT last({ident(field)}) FROM {ident(M)} WHERE $timeFilter AND {PROGRAMME} AND "
                       f"\"district\" = '{TOTAL}' GROUP BY \"programme\"", alias="$tag_programme", shape="value")


STATS = [("target", Text("Target", "目标"), "short"), ("commissioned", Text("Commissioned", "已调试"), "short"),
         ("commissioned_share", Text("Share of target", "完成率"), "percentunit"),
         ("pace_per_week", Text("Commissioned per week (recent pace)", "近期每周调试"), "short")]
LATEST = ("target", "planned", "installed", "commissioned", "reporting", "commissioned_share", "pace_per_week")


def _dashed(panel, ref: str):
    return panel.override_by_query(ref, [dm.DynamicConfigValue(id_val="custom.lineStyle",
                                                               value={"fill": "dash", "dash": [6, 4]}),
                                         dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0)])


def _share_bars(lang: str):
    q = InfluxQuery(f'SELECT last("commissioned_share") FROM {ident(M)} WHERE $timeFilter AND {PROGRAMME} AND '
                    f'{DISTRICTS} GROUP BY "district"', alias="$tag_district", shape="value")
    return (bar_b.Panel().title(Text("Share of target, latest", "各区完成率（最新）")(lang)).span(8).height(10)
            .datasource(influx_ref()).unit("percentunit").min(0).max(1)
            .orientation(VizOrientation.HORIZONTAL).display_mode(BarGaugeDisplayMode.GRADIENT)
            .thresholds(thresholds([(0.5, "orange"), (0.9, "green")], base="red")).with_target(q))


def make(lang: str):
    d = frame("citywatch-rollout", TITLE, lang, kinds=["gas_meter"], tags=["rollout", "gas_meter"], levels=(),
              refresh="1h", time_from="now-1y", annotations=False).variables(variables(lang))
    for field, title, unit in STATS:
        d = d.with_panel(stat(title(lang), [total(field)], unit=unit, width=6, calc="lastNotNull"))
    versus = timeseries(Text("Commissioned (solid) and target (dashed) per district",
                             "各区已调试（实线）与目标（虚线）")(lang),
                        [per_district("commissioned"), per_district("target", alias="$tag_district " +
                                                                     Text("target", "目标")(lang))],
                        width=16, height=10,
                        description=Text("From the daily snapshots of the rollout report.",
                                         "来自进度报告的每日快照。")(lang))
    d = d.with_panel(_dashed(versus, "B").interval(DAY))
    d = d.with_panel(_share_bars(lang))
    d = d.with_panel(timeseries(Text("Share of target per district", "各区完成率")(lang),
                                [per_district("commissioned_share")], unit="percentunit", width=12,
                                limits=[(1.0, "green")], base="transparent").interval(DAY))
    d = d.with_panel(timeseries(Text("Commissioned per week (recent pace) per district", "各区近期每周调试数")(lang),
                                [per_district("pace_per_week")], width=12).interval(DAY))
    cols = ", ".join(f"last({ident(k)}) AS {ident(k)}" for k in LATEST)
    latest = InfluxQuery(f'SELECT {cols} FROM {ident(M)} WHERE $timeFilter AND {PROGRAMME} AND {DISTRICTS} '
                         'GROUP BY "programme", "district"', result_format="table", shape="table")
    d = d.with_panel(table(Text("Latest snapshot per district", "各区最新快照")(lang), [latest], width=24))
    return d


BOARD = Board("citywatch-rollout", TITLE, make)
