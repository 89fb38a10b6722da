"""Gas meters: daily consumption, flow against over-flow, battery and signal distributions, the
meters heard from least recently, and the meters' alerts."""

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
    silent = InfluxQuery(f'SELECT last("volume_m3") AS "volume_m3" FROM {ident(K)} WHERE {where()} '
                         'GROUP BY "device_id", "district"', result_format="table", shape="table")
    d = d.with_panel(table(Text("Last report per meter (oldest first: silent more than a day at the top)",
                                "每表最后上报（最早的在前：超过一天未上报的在顶部）")(lang), [silent], width=12)
                     .sort_by([_sort("Time")]))
    d = d.with_panel(alerts_table(lang, [K], width=12, title=Text("Over-flow, tamper, low battery and other alerts",
                                                                  "超流量、强磁干扰、低电量等告警")))
    return d


def _sort(name: str):
    from grafana_foundation_sdk.builders.common import TableSortByFieldState

    return TableSortByFieldState().display_name(name).desc(False)


BOARD = Board("citywatch-gas", TITLE, make)
