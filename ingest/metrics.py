"""Counters of the ingest path, exposed at ``/metrics`` (prometheus-client).

One :class:`IngestMetrics` per process, on a registry passed in (tests use their own).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.messages = Counter("citywatch_ingest_messages", "MQTT messages received", ["channel"], registry=r)
        self.received = Counter("citywatch_ingest_readings_received", "readings accepted by validation",
                                ["kind"], registry=r)
        self.stored = Counter("citywatch_ingest_readings_stored", "readings newly stored (duplicates not counted)",
                              ["kind"], registry=r)
        self.duplicates = Counter("citywatch_ingest_readings_duplicate",
                                  "readings dropped as already stored (redeliveries)", ["kind"], registry=r)
        self.quarantined = Counter("citywatch_ingest_quarantined", "rejected messages or readings",
                                   ["code"], registry=r)
        self.events = Counter("citywatch_ingest_events", "device events stored", ["kind"], registry=r)
        self.spooled = Counter("citywatch_ingest_readings_spooled", "readings written to the disk spool",
                               ["kind"], registry=r)
        self.drained = Counter("citywatch_ingest_readings_drained", "readings drained from the spool",
                               ["kind"], registry=r)
        self.spool_bytes = Gauge("citywatch_ingest_spool_bytes", "bytes waiting in the spool", registry=r)
        self.spool_age = Gauge("citywatch_ingest_spool_oldest_age_seconds", "age of the oldest spooled batch",
                               registry=r)
        self.inflight = Gauge("citywatch_ingest_inflight_messages", "messages received, not yet acknowledged",
                              registry=r)
        self.flush_seconds = Histogram("citywatch_ingest_flush_seconds", "time to make one batch durable",
                                       registry=r)
        self.refused = Counter("citywatch_ingest_refused", "items a store or the state DB refused on their own, "
                               "set aside so that the rest of their batch was written", ["by"], registry=r)
        self.mqtt_refused = Counter("citywatch_mqtt_subscription_refused",
                                    "MQTT connections closed because the broker refused the subscription, "
                                    "granted it below QoS 1 or allows less than QoS 1", registry=r)
        self.mqtt_session_lost = Counter("citywatch_mqtt_session_lost",
                                         "MQTT reconnects that found the consumer's persistent session gone",
                                         registry=r)
        self.retained = Counter("citywatch_ingest_retained", "retained messages the broker re-sent, "
                                "by what was done with them (pipeline: retained status is state, not an event)",
                                ["outcome"], registry=r)
        self.rule_errors = Counter("citywatch_rules_errors", "batches the rule engine failed on", registry=r)
        self.rules_evaluated = Counter("citywatch_rules_readings_evaluated",
                                       "readings the rule engine evaluated (with received: whether the rules "
                                       "keep up)", registry=r)
