"""Cooking fume at restaurants: concentration against the 2.0 mg/m³ limit, the purifier running
with the fan, its current, particulate and NMHC."""

from __future__ import annotations

from dashboards import limits
from dashboards.common import Board, Text, alerts_table, frame, series_query, timeseries

K = "fume"
TITLE = Text("Cooking fume", "餐饮油烟")


def make(lang: str):
    d = frame("citywatch-fume", TITLE, lang, kinds=[K], tags=["fume"])
    lim = limits.lines("fume.concentration")
    d = d.with_panel(timeseries(Text("Fume concentration", "油烟浓度")(lang), [series_query(K, "fume_mgm3")],
                                unit="conmgm3", limits=lim, width=12,
                                description=Text(f"Line: {lim[0][0]:g} mg/m³, GB 18483-2001.",
                                                 f"线：{lim[0][0]:g} mg/m³，GB 18483-2001。")(lang)))
    d = d.with_panel(timeseries(Text("Purifier current", "净化器电流")(lang), [series_query(K, "purifier_current_a")],
                                unit="amp", width=12))
    d = d.with_panel(timeseries(Text("Fan and purifier running (share of monitors)", "风机与净化器运行（占比）")(lang),
                                [series_query(K, "fan_on", by="", alias="fan"),
                                 series_query(K, "purifier_on", by="", alias="purifier")],
                                unit="percentunit", width=12))
    d = d.with_panel(timeseries(Text("Particulate and NMHC", "颗粒物与非甲烷总烃")(lang),
                                [series_query(K, "particulate_mgm3", by="", alias="particulate"),
                                 series_query(K, "nmhc_mgm3", by="", alias="NMHC")], unit="conmgm3", width=12))
    d = d.with_panel(alerts_table(lang, [K]))
    return d


BOARD = Board("citywatch-fume", TITLE, make)
