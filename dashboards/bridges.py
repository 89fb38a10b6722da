"""Bridges: strain and deflection against each sensor's design value (stored beside the readings:
ingest/context.py), tilt, crack width, weigh-in-motion overloads, and vibration (RMS, peak and
dominant frequency of each acceleration window, daily means over weeks so a falling natural
frequency shows)."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

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
    timeseries,
    where,
)

K = "bridge"
TITLE = Text("Bridges", "桥梁结构健康")


def _ts(lang, title: Text, metric: str, rule: str | None = None, *, agg: str = "mean", desc: Text | None = None,
        width: int = 12, **kw):
    return timeseries(title(lang), [series_query(K, metric, agg=agg)], unit=limits.unit(K, metric),
                      limits=limits.lines(rule) if rule else (), description=desc(lang) if desc else "",
                      width=width, **kw)


def design_queries(metric: str, rule_id: str) -> tuple[InfluxQuery, InfluxQuery]:
    """Per sensor: its design value as stored beside each reading (ingest/context.py: the
    attr the rule scales by, e.g. ``design_strain_ue``), and the reading / design value."""
    design = limits.rule(rule_id).params.scale.attr
    line = InfluxQuery(f'SELECT last({ident(design)}) FROM {ident(K)} WHERE {where()} '
                       'GROUP BY time($__interval), "device_id" fill(none)', alias="design $tag_device_id",
                       shape="series")
    # one InfluxDB point holds the reading and its design value: the ratio per point, then the
    # largest per interval
    ratio = InfluxQuery(f'SELECT max("r") FROM (SELECT {ident(metric)} / {ident(design)} AS "r" FROM {ident(K)} '
                        f'WHERE {where()} GROUP BY "device_id") WHERE $timeFilter '
                        'GROUP BY time($__interval), "device_id" fill(none)', alias="$tag_device_id", shape="series")
    return line, ratio


def _against_design(d, lang, title: Text, metric: str, rule_id: str):
    """Two panels: the readings with each sensor's design value as a dashed line, and the
    ratio reading / design value against the rule's multiples (0.8 / 1.0 / 1.2)."""
    line, ratio = design_queries(metric, rule_id)
    d = d.with_panel(timeseries(title(lang), [series_query(K, metric, agg="max"), line], unit=limits.unit(K, metric),
                                width=12, description=Text(
                                    "Dashed: each sensor's design value (attrs, else the rule pack's default), as "
                                    "the rule judged the reading.",
                                    "虚线：各传感器的设计值（attrs，未设则为规则包默认值），即规则判断读数所用的值。")(lang))
                     .override_by_query("B", [DynamicConfigValue(id_val="custom.lineStyle",
                                                                 value={"fill": "dash", "dash": [10, 10]})]))
    levels = ", ".join(f"{v:g}" for v, _ in limits.multiples(rule_id))
    return d.with_panel(timeseries(Text(f"{title.en} / design value", f"{title.zh} / 设计值")(lang), [ratio],
                                   unit="none", width=12, limits=limits.multiples(rule_id),
                                   description=Text(f"Lines: the levels of {rule_id} ({levels} × design value).",
                                                    f"线：{rule_id} 的告警级别（设计值的 {levels} 倍）。")(lang)))


def make(lang: str):
    rated = limits.lines("bridge.overload")[0][0]
    d = frame("citywatch-bridges", TITLE, lang, kinds=[K], tags=["bridge"])
    d = _against_design(d, lang, Text("Strain", "应变"), "strain_ue", "bridge.strain")
    d = _against_design(d, lang, Text("Deflection", "挠度"), "deflection_mm", "bridge.deflection")
    d = d.with_panel(_ts(lang, Text("Tilt", "倾角"), "tilt_deg", "bridge.tilt",
                         desc=Text("Lines: deviation limits of bridge.tilt from a zero baseline.",
                                   "线：bridge.tilt 相对零基线的偏差限值。")))
    d = d.with_panel(_ts(lang, Text("Crack width", "裂缝宽度"), "crack_mm", "bridge.crack"))
    d = d.with_panel(_ts(lang, Text("Vibration RMS per window", "振动有效值（每窗）"), "accel_rms_ms2", width=8))
    d = d.with_panel(_ts(lang, Text("Vibration peak per window", "振动峰值（每窗）"), "accel_peak_ms2", agg="max",
                         width=8))
    d = d.with_panel(_ts(lang, Text("Dominant frequency", "主频"), "accel_freq_hz", width=8,
                         desc=Text("FFT peak of each one-second acceleration window (ingest/features.py).",
                                   "每个一秒加速度窗的 FFT 峰值频率（ingest/features.py）。")))
    drift = InfluxQuery(f'SELECT mean("accel_freq_hz") FROM {ident(K)} WHERE {where()} '
                        'GROUP BY time(1d), "device_id" fill(none)', alias="$tag_device_id", shape="series")
    d = d.with_panel(timeseries(Text("Natural frequency, daily mean (30 days)", "固有频率日均值（30 天）")(lang),
                                [drift],
                                unit="hertz", width=12,
                                description=Text("A falling natural frequency is the classic sign of stiffness loss.",
                                                 "固有频率下降是刚度损失的典型征兆。")(lang)).time_from("30d"))
    vehicles = InfluxQuery(f'SELECT count("gross_t") FROM {ident(K)} WHERE {where()} GROUP BY time(1h), "asset_id" '
                           'fill(0)', alias="$tag_asset_id", shape="series")
    d = d.with_panel(timeseries(Text("Vehicles weighed per hour", "每小时称重车辆")(lang), [vehicles], width=12,
                                bars=True))
    over = InfluxQuery(f'SELECT "gross_t", "axles", "speed_kmh", "asset_id", "device_id" FROM {ident(K)} '
                       f'WHERE {where()} AND "gross_t" > {rated:g} ORDER BY time DESC LIMIT 500',
                       result_format="table", shape="table")
    trucks = Text(f"Trucks over the rated load ({rated:g} t)", f"超过额定荷载（{rated:g} t）的车辆")
    d = d.with_panel(table(trucks(lang),
                           [over], unit="", width=12))
    d = d.with_panel(alerts_table(lang, [K], width=24))
    return d


BOARD = Board("citywatch-bridges", TITLE, make)
