"""Street lighting cabinets: lamps on and off through dusk and dawn, cabinet voltage against the
supply band, leakage, door, failed lamps, power and power factor."""

from __future__ import annotations

from dashboards import limits
from dashboards.common import Board, Text, alerts_table, frame, series_query, timeseries

K = "lighting"
TITLE = Text("Lighting", "路灯照明")


def make(lang: str):
    d = frame("citywatch-lighting", TITLE, lang, kinds=[K], tags=["lighting"])
    d = d.with_panel(timeseries(Text("Cabinets with lamps on (share)", "亮灯控制柜占比")(lang),
                                [series_query(K, "lamp_on", by="", alias="on")], unit="percentunit", width=12,
                                description=Text("On at dusk, off at dawn: a step late in the morning or early in the "
                                                 "evening is a schedule or light-sensor fault.",
                                                 "黄昏开灯、黎明关灯：早上关得晚或傍晚开得早说明时控或光控故障。")(lang)))
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
                                width=8, limits=[(1, "yellow")]))
    d = d.with_panel(timeseries(Text("Power", "功率")(lang), [series_query(K, "power_w")], unit="watt", width=8))
    d = d.with_panel(timeseries(Text("Power factor", "功率因数")(lang), [series_query(K, "power_factor")], width=8,
                                limits=[(limits.lines("lighting.power_factor")[0][0], "green")], base="blue"))
    d = d.with_panel(alerts_table(lang, [K]))
    return d


BOARD = Board("citywatch-lighting", TITLE, make)
