"""Prometheus metrics of dispatch, registered in a registry of the caller's choice."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class DispatchMetrics:
    """Counters per receiver: delivered, failed (given up), retried (failed attempts that will be
    tried again); the pending gauge; the latency from a delivery becoming due to its 2xx answer.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.delivered = Counter("citywatch_dispatch_delivered", "Webhook deliveries answered 2xx",
                                 ["receiver"], registry=registry)
        self.failed = Counter("citywatch_dispatch_failed",
                              "Webhook deliveries given up (not retryable or past the retry horizon)",
                              ["receiver"], registry=registry)
        self.retried = Counter("citywatch_dispatch_retried",
                               "Failed webhook attempts scheduled to be retried", ["receiver"],
                               registry=registry)
        self.pending = Gauge("citywatch_dispatch_pending",
                             "Webhook deliveries waiting to be sent or retried", ["receiver"],
                             registry=registry)
        self.latency = Histogram("citywatch_dispatch_latency_seconds",
                                 "From a delivery becoming due to its 2xx answer", ["receiver"],
                                 buckets=LATENCY_BUCKETS, registry=registry)


@functools.cache
def default_metrics() -> DispatchMetrics:
    """The process-wide metrics in prometheus_client's default registry (created once)."""
    return DispatchMetrics()
