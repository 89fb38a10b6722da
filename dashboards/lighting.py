"""Street lighting cabinets: lamps on and off against the sun's elevation (dusk and dawn),
cabinet voltage against the supply band, leakage, door, failed lamps, power and power factor."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from dashboards import limits
from dashboards.common import Board, Text, alerts_table, frame, series_query, timeseries
from ingest.context import SUN
from ingest.sun import CIVIL_DEG, HORIZON_DEG

K = "lighting"
TITLE = Text("Lighting", "路灯照明")


def lamps_against_sun(lang: str):
    """The share of cabinets with lamps on (left axis) and the sun's mean elevation at them
    (right axis, stored beside each report: ingest/context.py), dusk and dawn as the crossings of
    the horizon."""
    lamps = series_query(K, "lamp_on", by="", alias=Text("lamps on", "亮灯")(lang))
    sun = series_query(K, SUN, by="", alias=Text("sun elevation", "太阳高度角")(lang), ref="B")
    return (timeseries(Text("Lamps on against the sun", "亮灯与日出日落")(lang), [lamps, sun], unit="percentunit",
                       width=24, description=Text(
                           f"Left: share of cabinets with lamps on. Right: the sun's elevation at the cabinets "
                           f"(degrees); sunset and sunrise where it crosses {HORIZON_DEG:g}°, civil dusk and dawn at "
                           f"{CIVIL_DEG:g}°. Lamps should come on after sunset and go off before sunrise: a step late "
                           "in the morning or early in the evening is a schedule or light-sensor fault.",
                           f"左：亮灯控制柜占比。右：控制柜处的太阳高度角（度）；穿过 {HORIZON_DEG:g}° 为日落/日出，"
                           f"{CIVIL_DEG:g}° 为民用晨昏。应日落后开灯、日出前关灯："
                           "早上关得晚或傍晚开得早说明时控或光控故障。")(lang))
            .override_by_query("B", [DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                                     DynamicConfigValue(id_val="unit", value="degree"),
                                     DynamicConfigValue(id_val="custom.lineStyle",
                                                        value={"fill": "dash", "dash": [10, 10]})]))


def make(lang: str):
    d = frame("citywatch-lighting", TITLE, lang, kinds=[K], tags=["lighting"])
    d = d.with_panel(lamps_against_sun(lang))
    lo, hi = (v for v, _ in limits.lines("lighting.voltage"))
    d = d.with_panel(timeseries(Text("Cabinet voltage", "控制柜电压")(lang),
                                [series_query(K, "voltage_v")], unit="volt",
                                limits=[(lo, "green"), (hi, "yellow")], base="yellow", width=12,
                                description=Text(f"Band {lo:g}-{hi:g} V (GB/T 12325).",
                                                 f"允许范围 {lo:g}-{hi:g} V（GB/T 12325）。")(lang)))
    d = d.with_panel(timeseries(Text("Leakage current", "漏电流")(lang), [series_query(K, "leakage_ma", agg="max")],
                                unit="mamp", limits=limits.lines("lighting.leakage"), width=12))
    d = d.with_panel(timeseries(Text("Door open", "柜门开启")(lang), [series_query(K, "door_open", agg="max")],
                                width=12, limits=[(1, "orange")]))
    d = d.with_panel(timeseries(Text("Failed lamps", "故障灯数")(lang), [series_query(K, "lamps_failed", agg="max")],
                                width=12, limits=[(1, "yellow")]))
    d = d.with_panel(timeseries(Text("Power", "功率")(lang), [series_query(K, "power_w")], unit="watt", width=12))
    d = d.with_panel(timeseries(Text("Power factor", "功率因数")(lang), [series_query(K, "power_factor")], width=12,
                                limits=[(limits.lines("lighting.power_factor")[0][0], "green")], base="blue"))
    d = d.with_panel(alerts_table(lang, [K]))
    return d


BOARD = Board("citywatch-lighting", TITLE, make)
