"""citywatch itself, from its Prometheus ``/metrics`` (ingest/metrics.py, alerts/dispatch/metrics.py):
ingest rate, readings stored, spool depth and age, quarantine by reason, refused items, rule
errors, dispatch deliveries and failures, dispatch latency."""

from __future__ import annotations

from dashboards.common import Board, Text, frame, prometheus, stat, timeseries

TITLE = Text("citywatch", "citywatch 运行状态")
R = "[$__rate_interval]"


def make(lang: str):
    d = frame("citywatch-self", TITLE, lang, kinds=None, tags=["self"], levels=(), refresh="30s", time_from="now-6h")

    def ts(title: Text, exprs, unit="", width=12, **kw):
        return timeseries(title(lang), [prometheus(e, legend, chr(65 + i)) for i, (e, legend) in enumerate(exprs)],
                          unit=unit, width=width, prometheus=True, **kw)

    d = d.with_panel(stat(Text("Messages/s", "消息/秒")(lang),
                          [prometheus(f"sum(rate(citywatch_ingest_messages_total{R}))")],
                          unit="reqps", width=6, prometheus=True))
    d = d.with_panel(stat(Text("Spool", "落盘缓冲")(lang), [prometheus("citywatch_ingest_spool_bytes")], unit="bytes",
                          width=6, prometheus=True, limits=[(1, "orange")]))
    d = d.with_panel(stat(Text("Unacknowledged messages", "未确认消息")(lang),
                          [prometheus("citywatch_ingest_inflight_messages")], width=6, prometheus=True))
    d = d.with_panel(stat(Text("Dispatch pending", "待发送通知")(lang), [prometheus("sum(citywatch_dispatch_pending)")],
                          width=6, prometheus=True, limits=[(1, "yellow"), (100, "red")]))
    d = d.with_panel(ts(Text("Ingest rate by channel", "接入速率（按通道）"),
                        [(f"sum by (channel) (rate(citywatch_ingest_messages_total{R}))", "{{channel}}")], "reqps"))
    d = d.with_panel(ts(Text("Readings stored by kind", "入库读数（按类型）"),
                        [(f"sum by (kind) (rate(citywatch_ingest_readings_stored_total{R}))", "{{kind}}"),
                         (f"sum(rate(citywatch_ingest_readings_duplicate_total{R}))", "duplicates")], "ops"))
    d = d.with_panel(ts(Text("Spool depth and oldest age", "落盘缓冲大小与最旧时长"),
                        [("citywatch_ingest_spool_bytes", "bytes"),
                         ("citywatch_ingest_spool_oldest_age_seconds", "oldest age (s)")]))
    d = d.with_panel(ts(Text("Quarantine by reason", "隔离（按原因）"),
                        [(f"sum by (code) (rate(citywatch_ingest_quarantined_total{R}))", "{{code}}"),
                         (f"sum by (by) (rate(citywatch_ingest_refused_total{R}))", "refused by {{by}}")], "ops"))
    d = d.with_panel(ts(Text("Batch durability time (p50, p99)", "批次落盘耗时（p50、p99）"),
                        [(f"histogram_quantile(0.5, sum by (le) (rate(citywatch_ingest_flush_seconds_bucket{R})))",
                          "p50"),
                         (f"histogram_quantile(0.99, sum by (le) (rate(citywatch_ingest_flush_seconds_bucket{R})))",
                          "p99")], "s"))
    d = d.with_panel(ts(Text("Rule engine errors", "规则引擎错误"),
                        [(f"sum(rate(citywatch_rules_errors_total{R}))", "errors")], "ops"))
    d = d.with_panel(ts(Text("Webhook deliveries", "通知发送"),
                        [(f"sum by (receiver) (rate(citywatch_dispatch_delivered_total{R}))", "delivered {{receiver}}"),
                         (f"sum by (receiver) (rate(citywatch_dispatch_retried_total{R}))", "retried {{receiver}}"),
                         (f"sum by (receiver) (rate(citywatch_dispatch_failed_total{R}))", "failed {{receiver}}")],
                        "ops"))
    d = d.with_panel(ts(Text("Alert delivery latency (p50, p99)", "告警送达延迟（p50、p99）"),
                        [(f"histogram_quantile(0.5, sum by (le) (rate(citywatch_dispatch_latency_seconds_bucket{R})))",
                          "p50"),
                         (f"histogram_quantile(0.99, sum by (le) (rate(citywatch_dispatch_latency_seconds_bucket{R})))",
                          "p99")], "s"))
    return d


BOARD = Board("citywatch-self", TITLE, make)
