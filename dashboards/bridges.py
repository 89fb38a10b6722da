"""Bridges: strain and deflection against the design values, tilt, crack width, weigh-in-motion
overloads, and vibration (RMS, peak and dominant frequency of each acceleration window, daily
means over weeks so a falling natural frequency shows)."""

from __future__ import annotations

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


def make(lang: str):
    rated = limits.lines("bridge.overload")[0][0]
    d = frame("citywatch-bridges", TITLE, lang, kinds=[K], tags=["bridge"])
    design = Text("Lines: 0.8 / 1.0 / 1.2 × the design value of the rule pack's default; a sensor with its own "
                  "design value in attrs is judged against that by the rule.",
                  "线：规则包默认设计值的 0.8 / 1.0 / 1.2 倍；"
                  "在 attrs 中设定了设计值的传感器由规则按其自身设计值判断。")
    d = d.with_panel(_ts(lang, Text("Strain", "应变"), "strain_ue", "bridge.strain", agg="max", desc=design))
    d = d.with_panel(_ts(lang, Text("Deflection", "挠度"), "deflection_mm", "bridge.deflection", agg="max",
                         desc=design))
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
