"""Gas meters: daily consumption, flow against over-flow, battery and signal distributions, the
meters silent for more than a day, and the meters' alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import histogram as hist_b

from dashboards import limits
from dashboards.common import (
    Board,
    InfluxQuery,
    Text,
    alerts_table,
    frame,
    ident,
    series_query,
    table,
    thresholds,
    timeseries,
    where,
)
from dashboards.influxql import influx_ref

K = "gas_meter"
TITLE = Text("Gas meters", "智能燃气表")


def _histogram(title: str, metric: str, unit: str, bucket: float, lines):
    q = InfluxQuery(f'SELECT last({ident(metric)}) FROM {ident(K)} WHERE {where()} GROUP BY "device_id"',
                    result_format="table", shape="table")
    return (hist_b.Panel().title(title).unit(unit).span(12).height(8).datasource(influx_ref()).bucket_size(bucket)
            .with_target(q).thresholds(thresholds(lines, base="red")))


SILENT_AFTER_H = 24
LOOKBACK_D = 30


def silent_query() -> InfluxQuery:
    """Meters whose last reading up to the end of the range (``${__to}``, epoch ms) is more than
    :data:`SILENT_AFTER_H` hours before it, among those heard in the :data:`LOOKBACK_D` days
    before it: a filter, not a sort.

    InfluxDB 1.x intersects an outer query's time condition with its subqueries' ranges, so
    ``SELECT * FROM (SELECT last(..) ..) WHERE time < END - 1d`` would take the last reading
    *before* END - 1d of every meter and list them all. Instead, per meter, the union of a
    ``count()`` over the look-back (a point at its start, END - 30d) and the ``last()`` reading
    (at its own time) gives ``elapsed()`` = last reading - (END - 30d); the outer condition on
    that field keeps the meters whose last reading is older than END - 1d. The row's time is the
    last reading's. Both subqueries read the look-back window of the selected meters.
    """
    window = f'WHERE time >= ${{__to}}ms - {LOOKBACK_D}d AND time <= ${{__to}}ms AND ' + where().replace(
        "$timeFilter AND ", "")
    group = 'GROUP BY "device_id", "district", "asset_id"'
    start = f'SELECT count("volume_m3") AS "v" FROM {ident(K)} {window} {group}'
    last = f'SELECT last("volume_m3") AS "v" FROM {ident(K)} {window} {group}'
    since = f'SELECT elapsed("v", 1m) AS "since_start_m" FROM ({start}), ({last}) {group}'
    limit_m = (LOOKBACK_D * 24 - SILENT_AFTER_H) * 60
    return InfluxQuery(f'SELECT "device_id", "district", "asset_id" FROM ({since}) WHERE "since_start_m" < {limit_m}',
                       result_format="table", shape="table")


def make(lang: str):
    d = frame("citywatch-gas", TITLE, lang, kinds=[K], tags=["gas_meter"])
    daily = InfluxQuery(f'SELECT sum("c") FROM (SELECT spread("volume_m3") AS "c" FROM {ident(K)} WHERE {where()} '
                        'GROUP BY time(1d), "device_id") GROUP BY time(1d) fill(none)', alias="m³", shape="series")
    d = d.with_panel(timeseries(Text("Daily consumption, all selected meters", "日用气量（所选表合计）")(lang), [daily],
                                unit="m3", bars=True, width=12))
    d = d.with_panel(timeseries(Text("Flow", "流量")(lang), [series_query(K, "flow_m3h", agg="max")],
                                unit=limits.unit(K, "flow_m3h"), limits=limits.lines("gas.over_flow"), width=12,
                                description=Text("Line: over-flow at 1.2 × Qmax (default 6 m³/h).",
                                                 "线：超流量 1.2 × Qmax（默认 6 m³/h）。")(lang)))
    battery = Text("Battery voltage, last per meter", "电池电压分布（每表最新）")
    d = d.with_panel(_histogram(battery(lang),
                                "battery_v", "volt", 0.1, [(limits.lines("gas.low_battery")[0][0], "green")]))
    rsrp = Text("Signal (RSRP), last per meter", "信号强度 RSRP 分布（每表最新）")
    d = d.with_panel(_histogram(rsrp(lang), "rsrp_dbm", "dBm", 5, [(-115, "green")]))
    d = d.with_panel(table(Text("Meters silent for more than a day", "超过一天未上报的燃气表")(lang), [silent_query()],
                           width=12, description=Text(
                               "Meters whose last report, as of the end of the time range, is more than a day older "
                               f"than it (time: the last report), among those heard in the {LOOKBACK_D} days before; "
                               "meters that reported within the day are not listed (gas.offline alerts after 3 days).",
                               "截至时间范围终点、最后一次上报早于终点一天以上的燃气表（时间为最后上报时间），"
                               f"限于此前 {LOOKBACK_D} 天内上报过的表；一天内上报过的表不列出"
                               "（超过 3 天由 gas.offline 告警）。")(lang))
                     .sort_by([_sort("Time")]))
    d = d.with_panel(alerts_table(lang, [K], width=12, title=Text("Over-flow, tamper, low battery and other alerts",
                                                                  "超流量、强磁干扰、低电量等告警")))
    return d


def _sort(name: str):
    from grafana_foundation_sdk.builders.common import TableSortByFieldState

    return TableSortByFieldState().display_name(name).desc(False)


BOARD = Board("citywatch-gas", TITLE, make)
