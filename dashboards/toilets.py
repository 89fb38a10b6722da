"""Public toilets: NH3 against the class limits of GB/T 17217 (one line per class), H2S, visitors,
consumables, temperature and humidity."""

from __future__ import annotations

from dashboards import limits
from dashboards.common import Board, InfluxQuery, Text, alerts_table, frame, ident, series_query, timeseries, where

K = "toilet"
TITLE = Text("Public toilets", "智慧公厕")


def make(lang: str):
    d = frame("citywatch-toilets", TITLE, lang, kinds=[K], tags=["toilet"])
    nh3 = limits.lines("toilet.nh3")
    classes = " / ".join(f"{v:g}" for v, _ in nh3)
    d = d.with_panel(timeseries(Text("NH3", "氨气 NH3")(lang), [series_query(K, "nh3_mgm3")], unit="conmgm3",
                                limits=nh3, width=12,
                                description=Text(f"Lines: class I / II / III limits {classes} mg/m³ (GB/T 17217-1998).",
                                                 f"线：一类 / 二类 / 三类限值 {classes} mg/m³"
                                                 "（GB/T 17217-1998）。")(lang)))
    d = d.with_panel(timeseries(Text("H2S", "硫化氢 H2S")(lang), [series_query(K, "h2s_mgm3")], unit="conmgm3",
                                limits=limits.lines("toilet.h2s"), width=12))
    people = InfluxQuery(f'SELECT sum("people_count") FROM {ident(K)} WHERE {where()} GROUP BY time(1h), "asset_id" '
                         'fill(0)', alias="$tag_asset_id", shape="series")
    d = d.with_panel(timeseries(Text("Visitors per hour", "每小时如厕人次")(lang), [people], bars=True, width=12))
    d = d.with_panel(timeseries(Text("Consumables remaining", "耗材余量")(lang), [series_query(K, "consumables_pct")],
                                unit="percent", limits=limits.lines("toilet.consumables"), base="blue", width=12))
    d = d.with_panel(timeseries(Text("Temperature", "温度")(lang),
                                [series_query(K, "temp_c")], unit="celsius", width=12))
    d = d.with_panel(timeseries(Text("Humidity", "湿度")(lang), [series_query(K, "humidity_pct")], unit="percent",
                                width=12))
    d = d.with_panel(alerts_table(lang, [K]))
    return d


BOARD = Board("citywatch-toilets", TITLE, make)
