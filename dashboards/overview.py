"""City overview (城市运行): open alerts by severity, district and kind; devices reporting per
kind and district; messages per second and quarantine rate; the alert timeline and table."""

from __future__ import annotations

from dashboards.common import (
    ALERTS,
    SEVERITY_COLOURS,
    Board,
    InfluxQuery,
    Text,
    alerts_table,
    frame,
    ident,
    prometheus,
    stat,
    table,
    timeseries,
)
from devices.catalogue import CATALOGUE, KINDS

TITLE = Text("City overview", "城市运行")
DISTRICT = '"district" =~ /^$district$/'
# open = last("open") of each (rule, device, severity) series: one open alert per rule and device
# (alerts/history_store.py); changes up to 30 days back, so an alert open for days still counts
_OPEN = (f'SELECT last("open") AS "o" FROM {ident(ALERTS)} WHERE time > now() - 30d AND {DISTRICT} '
         'GROUP BY "rule", "device_id", "severity", "district", "kind"')


def open_alerts(by: str, shape: str = "table", fmt: str = "table") -> InfluxQuery:
    return InfluxQuery(f'SELECT sum("o") AS "open" FROM ({_OPEN}) GROUP BY {ident(by)}', result_format=fmt,
                       shape=shape, alias=f"$tag_{by}")


def make(lang: str):
    d = frame("citywatch-overview", TITLE, lang, kinds=None, tags=["overview"], levels=("district",))
    by_severity = InfluxQuery(f'SELECT sum("o") AS "open" FROM ({_OPEN}) GROUP BY "severity"', shape="value",
                              alias="$tag_severity")
    d = d.with_panel(stat(Text("Open alerts by severity", "未恢复告警（按级别）")(lang), [by_severity], width=24,
                          limits=[(1, SEVERITY_COLOURS["major"])], base="green",
                          description=Text("Alerts firing or acknowledged, among those that changed in the last "
                                           "30 days.", "最近 30 天内有变化、仍在触发或已确认的告警。")(lang)))
    for by, title in (("district", Text("Open alerts by district", "各区未恢复告警")),
                      ("kind", Text("Open alerts by kind", "各类设施未恢复告警"))):
        d = d.with_panel(table(title(lang), [open_alerts(by)], width=12))
    reporting = [
        InfluxQuery(f'SELECT count(distinct("device_id")) AS "{k}" FROM (SELECT last(*) FROM {ident(k)} WHERE '
                    f'$timeFilter AND {DISTRICT} GROUP BY "device_id", "district") GROUP BY "district"',
                    result_format="table", shape="table")
        for k in KINDS
    ]
    title = Text("Devices reporting in the range, per kind and district", "时段内有上报的设备（按类型和区）")
    d = d.with_panel(table(title(lang),
                           reporting, width=12,
                           description=Text("Kinds: " + ", ".join(f"{k} = {CATALOGUE[k].title}" for k in KINDS),
                                            "类型：" + "，".join(f"{k} = {CATALOGUE[k].title_zh}"
                                                                for k in KINDS))(lang)))
    timeline = InfluxQuery(f'SELECT count("alert_id") FROM {ident(ALERTS)} WHERE $timeFilter AND {DISTRICT} AND '
                           '"state" = \'firing\' GROUP BY time($__interval), "severity" fill(0)', alias="$tag_severity",
                           shape="series")
    d = d.with_panel(timeseries(Text("Alerts fired (timeline)", "告警触发时间线")(lang),
                                [timeline], bars=True, width=12))
    d = d.with_panel(timeseries(Text("Messages per second", "每秒消息数")(lang),
                                [prometheus("sum(rate(citywatch_ingest_messages_total[$__rate_interval]))",
                                            "messages/s")],
                                unit="reqps", width=12, prometheus=True))
    d = d.with_panel(timeseries(
        Text("Quarantine rate (share of messages)", "隔离率（占消息比例）")(lang),
        [prometheus("sum(rate(citywatch_ingest_quarantined_total[$__rate_interval])) / "
                    "clamp_min(sum(rate(citywatch_ingest_messages_total[$__rate_interval])), 1e-9)", "quarantined")],
        unit="percentunit", width=12, prometheus=True))
    d = d.with_panel(alerts_table(lang, None, device=False))
    return d


BOARD = Board("citywatch-overview", TITLE, make)
