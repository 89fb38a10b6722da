"""Noise and dust at construction sites: LAeq against the day and night limits (each its own
line), Lmax, PM10 against the warning and stop-work levels, PM2.5."""

from __future__ import annotations

from dashboards import limits
from dashboards.common import Board, Text, alerts_table, frame, series_query, timeseries

K = "noise"
TITLE = Text("Noise and dust", "工地噪声扬尘")


def make(lang: str):
    d = frame("citywatch-noise", TITLE, lang, kinds=[K], tags=["noise"])
    day, night = limits.lines("noise.day_laeq"), limits.lines("noise.night_laeq")
    d = d.with_panel(timeseries(Text("LAeq (1 min)", "等效声级 LAeq（1 分钟）")(lang), [series_query(K, "laeq_db")],
                                unit="dB", limits=[*day, *night], width=12,
                                description=Text(f"Lines: day limit {day[0][0]:g} dB(A) (06:00-22:00), night limit "
                                                 f"{night[0][0]:g} dB(A) (22:00-06:00), GB 12523-2011.",
                                                 f"线：昼间限值 {day[0][0]:g} dB(A)（06:00-22:00），夜间限值 "
                                                 f"{night[0][0]:g} dB(A)（22:00-06:00），GB 12523-2011。")(lang)))
    d = d.with_panel(timeseries(Text("Lmax", "最大声级 Lmax")(lang), [series_query(K, "lmax_db", agg="max")], unit="dB",
                                limits=limits.lines("noise.night_lmax"), width=12,
                                description=Text("Line: night Lmax limit.", "线：夜间 Lmax 限值。")(lang)))
    d = d.with_panel(timeseries(Text("PM10", "PM10")(lang),
                                [series_query(K, "pm10_ugm3")], unit=limits.unit(K, "pm10_ugm3"),
                                limits=limits.lines("dust.pm10"), width=12,
                                description=Text("Lines: hourly mean warning and stop-work levels.",
                                                 "线：小时均值预警与停工限值。")(lang)))
    d = d.with_panel(timeseries(Text("PM2.5", "PM2.5")(lang), [series_query(K, "pm25_ugm3")],
                                unit=limits.unit(K, "pm25_ugm3"), width=12))
    d = d.with_panel(alerts_table(lang, [K]))
    return d


BOARD = Board("citywatch-noise", TITLE, make)
