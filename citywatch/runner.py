"""The all-in-one runner: wires the packages into one process.

``Node(settings).start()`` opens the state DB and the store, then starts, in order: the alert
history writer, dispatch, the ingest pipeline, the API, the MQTT consumer, the absence-rule ticker
and the rollout snapshots (docs/ARCHITECTURE.md, "Threads of a node"). ``stop()`` drains first:
buffered readings are written and acknowledged before the consumer disconnects, so Ctrl-C loses
nothing. ``citywatch up`` adds the embedded broker and a
sample fleet with its simulators in front.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import uvicorn
from prometheus_client import CollectorRegistry

from citywatch import rollout
from citywatch.settings import Settings
from devices.db import connect, parse_url
from devices.registry import Registry
from ingest import features
from ingest.context import Context
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.mqtt import ConsumerOptions, MqttConsumer
from ingest.pipeline import Pipeline
from ingest.priority import Gate
from ingest.quarantine import Quarantine
from ingest.spool import Spool
from ingest.stores.base import open_store
from ingest.wire import WireConsumer

log = logging.getLogger("citywatch")


def now_ms() -> int:
    return int(time.time() * 1000)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    Ingest allocates a tuple or two per reading, so with CPython's default thresholds (a young
    collection every 700 allocations, a full one every ~70 of those) the collector ran many times
    a second, each full pass walking every object of the node (registry snapshots, rule state)
    while holding the GIL: every thread stopped, the alert path included. The objects made at
    start are frozen (never scanned again) and young collections run every 100,000 allocations.
    Measured with ``python bench/alert_latency/run.py --linger-ms 5`` (docs/PERFORMANCE.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 100)


class Node:
    """One citywatch process: consumer, store, rules, dispatch, API."""

    def __init__(self, settings: Settings, *, broker_url: str | None = None, mqtt_protocol: int | None = None,
                 clock: Callable[[], int] = now_ms):
        self.settings = settings
        self.broker_url = broker_url or settings.mqtt.url
        self.mqtt_protocol = mqtt_protocol or settings.mqtt.protocol
        self.clock = clock
        self.metrics_registry = CollectorRegistry()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._opened = False
        self._dispatching = False
        self.server: uvicorn.Server | None = None
        self.consumer: MqttConsumer | None = None
        self.dispatcher = None
        self.engine = None
        self.demo_webhooks = None  # citywatch up's webhook receiver log (alerts.dispatch.receiver)

    # -- start ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the state DB and the store (no network, no threads); once."""
        if self._opened:
            return
        self._opened = True
        s = self.settings
        self.state_path = parse_url(s.state.url)
        self.store = open_store(s.store.url, **s.store.options())
        self.registry = Registry(connect(self.state_path))
        self.quarantine = Quarantine(connect(self.state_path), s.ingest.quarantine_retention())
        self.events = EventLog(connect(self.state_path))
        self.spool = Spool(Path(s.ingest.spool_dir), s.ingest.spool_max_bytes)
        self.ingest_metrics = IngestMetrics(self.metrics_registry)
        self._open_rules()

    def _open_rules(self) -> None:
        from alerts.dispatch.dispatcher import Dispatcher
        from alerts.dispatch.metrics import DispatchMetrics
        from alerts.history_store import for_store
        from alerts.store import AlertState
        from dashboards.board import AlertFeed

        s = self.settings
        self.board_feed = AlertFeed()
        base_url = s.api.public_url or f"http://{s.api.listen}"
        # the dispatcher and the rules stage hold it, the intake and the write stage step aside
        self.gate = Gate(max_wait_s=s.ingest.priority_wait_ms / 1000)
        self.dispatcher = Dispatcher(self.state_path, s.dispatch_config(), public_url=base_url,
                                     metrics=DispatchMetrics(self.metrics_registry), gate=self.gate)
        engine_conn = connect(self.state_path)
        self.outbox = self.dispatcher.make_outbox(engine_conn)
        self.alert_history = for_store(self.store)  # transitions into the store too (InfluxDB)
        history = [self.alert_history.listener] if self.alert_history else []
        history.append(self.board_feed.listener)  # the board's live stream (dashboards/board/feed.py)
        self.alerts = AlertState(engine_conn, tz=s.timezone, base_url=base_url,
                                 listeners=[self.outbox.listener, *history])
        if not s.clustered:  # several nodes: made where the rule-evaluation lease is taken
            self.engine = self.make_engine()
        # The API acknowledges from its own threads: its own connection, the same listeners.
        api_conn = connect(self.state_path)
        self.api_alerts = AlertState(api_conn, tz=s.timezone, base_url=base_url,
                                     listeners=[self.dispatcher.make_outbox(api_conn).listener, *history])
        self.api_outbox = self.dispatcher.make_outbox(connect(self.state_path))
        self.api_outbox.tz = s.tz  # /deliveries times in the zone's offset, as every API time

    def make_engine(self, fence=None, owns=None):
        """The rule engine over the alert store, its state restored from the state DB."""
        from alerts.engine import RuleEngine
        from alerts.rules import RulePack

        s = self.settings
        rules_registry = Registry(connect(self.state_path))
        return RuleEngine(RulePack.load(s.rules.files), self.alerts, attrs=rules_registry.attrs_snapshot,
                          device_info=rules_registry.device_info, tz=s.timezone, attrs_recheck_s=1.0,
                          deferred=True, fence=fence, owns=owns)  # deferred: checkpoint, then acknowledge

    def start(self) -> None:
        self.open()
        _tune_gc()
        self.started_ms = self.clock()
        if self.settings.clustered:
            from citywatch.clustered import start_clustered

            start_clustered(self)
            gc.freeze()
            return
        s = self.settings
        # role "ingest" records (store, quarantine, events); role "rules" evaluates and dispatches;
        # "all" does both (settings.py: only ingest nodes may share a subscription)
        records, evaluates = s.role in ("all", "ingest"), s.role in ("all", "rules")
        if self.alert_history:
            self.alert_history.start()
        if evaluates:
            self.dispatcher.start()
            self._dispatching = True
            # alerts of rules since removed or disabled: nothing evaluates them any more
            if self.engine.retire_removed_rules(self.clock()):
                self.engine.checkpoint()
                self.dispatcher.wake()
        self.pipeline = self.make_pipeline(records=records, engine=self.engine if evaluates else None)
        self.pipeline.start()
        topics = list(s.mqtt.topics)
        if s.mqtt.shared_group:
            topics = [f"$share/{s.mqtt.shared_group}/{t}" for t in topics]
        self.consumer = self.make_consumer(self.pipeline, s.mqtt.client_id, topics)
        # The API first: its start-up (imports, uvicorn) then does not compete with the backlog a
        # resumed session delivers the moment the consumer connects.
        self._start_api()
        self.consumer.start(wait_s=20)
        if evaluates:
            self._spawn(self._tick_loop, "citywatch-rules-tick")
            self._start_rollout_snapshots()
        # What start-up built after _tune_gc (the API app, its imports, the registry snapshot,
        # the rule state) lives as long as the process: frozen too. Otherwise the first young
        # collection, under load, walked all of it: 86,707 objects, 49-87 ms holding the GIL
        # (bench/alert_latency --profile).
        gc.freeze()

    def _start_rollout_snapshots(self) -> None:
        self.rollout_snapshots = rollout.snapshot_writer(self.settings, self.state_path, self.store)
        if self.rollout_snapshots is not None:
            self._spawn(self._rollout_snapshot_loop, "citywatch-rollout-snapshot")

    def make_pipeline(self, *, records: bool, engine, accept=None, spool: Spool | None = None,
                      rules_required: bool = False) -> Pipeline:
        """The ingest pipeline: recording (store, quarantine, events) and/or evaluating ``engine``."""
        s = self.settings
        features.ENABLED = s.ingest.waveform_features
        return Pipeline(
            store=self.store if records else None, registry=self.registry,
            quarantine=self.quarantine if records else None, events=self.events if records else None,
            metrics=self.ingest_metrics, spool=(spool or self.spool) if records else None,
            rules=engine, after_rules=self.dispatcher.wake if engine is not None else None,
            max_batch_readings=s.ingest.batch_readings, max_batch_messages=s.ingest.batch_messages,
            context=Context(self.registry, s.rules.files) if records else None,
            max_pending_readings=s.ingest.max_pending_readings, linger_ms=s.ingest.linger_ms,
            write_linger_ms=s.ingest.write_linger_ms, gate=self.gate, accept=accept, rules_required=rules_required,
        )

    def make_consumer(self, pipeline: Pipeline, client_id: str, topics: list[str]):
        """An MQTT consumer (persistent session ``client_id``) feeding ``pipeline``."""
        s = self.settings
        options = ConsumerOptions(
            client_id=client_id, topics=topics, qos=s.mqtt.qos, protocol=self.mqtt_protocol,
            username=s.mqtt.username, password=s.mqtt.password, receive_maximum=s.mqtt.receive_maximum,
            tls=s.mqtt.tls_options(),
        )
        if s.mqtt.client == "wire":  # what one read of the socket held, decoded in one call
            return WireConsumer(self.broker_url, pipeline.submit, options,
                                on_batch=pipeline.submit_many, metrics=self.ingest_metrics)
        return MqttConsumer(self.broker_url, pipeline.submit, options, metrics=self.ingest_metrics)

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _tick_loop(self, stop: threading.Event | None = None, engine=None, since_ms: int | None = None,
                   owns: Callable[[str], bool] | None = None) -> None:
        """Absence rules every ``[rules] tick_s`` until ``stop`` (default: the node's), over the
        devices ``owns`` says are the engine's (default: all)."""
        stop = stop or self._stop
        engine = engine or self.engine
        since_ms = self.started_ms if since_ms is None else since_ms
        conn_registry = Registry(connect(self.state_path))
        while not stop.wait(self.settings.rules.tick_s):
            try:
                # Silence that began before evaluation started here is not evidence of absence
                # (the broker may still be handing over a backlog): count from the start.
                last_seen = {d: max(ts, since_ms) for d, ts in conn_registry.last_seen_map().items()
                             if owns is None or owns(d)}
                if engine.tick(self.clock(), last_seen):
                    engine.checkpoint()  # deferred mode: its commit durable now, not at the next batch
                    self.dispatcher.wake()
            except Exception:
                log.exception("absence-rule tick failed")

    def _rollout_snapshot_loop(self) -> None:
        """The day's rollout snapshot at start and on the first check of each new local day."""
        while True:
            try:
                self.rollout_snapshots.tick(self.clock())
            except Exception:
                log.exception("rollout snapshot failed")
            if self._stop.wait(self.settings.rollout.snapshot_check_s):
                return

    def _broker_connected(self) -> bool:
        """Whether this node's MQTT sessions are connected (several nodes: those of the
        partitions it runs now; none is as good as connected)."""
        if self.settings.clustered:
            return all(c.connected.is_set() for d in getattr(self, "duties", [])
                       for c in getattr(d, "consumers", list)())
        return self.consumer is not None and self.consumer.connected.is_set()

    def _broker_status(self) -> dict:
        """The consumer's fail-closed problem and latest lost session, for /health."""
        c = self.consumer
        lost = getattr(c, "session_lost_at", None)
        return {"problem": getattr(c, "problem", ""),
                "session_lost_at": None if lost is None else
                datetime.fromtimestamp(lost, UTC).isoformat(timespec="seconds")}

    def api_app(self):
        """The API application over this node's services (after :meth:`open`; not yet served)."""
        from citywatch.api.app import create_app
        from citywatch.api.tokens import TokenStore

        s = self.settings
        state = SimpleNamespace(
            settings=s, store=self.store, spool=self.spool, now=self.clock,
            registry_ro=_Serialized(Registry(connect(self.state_path))),
            registry_rw=_Serialized(Registry(connect(self.state_path))),  # admin writes (devices/api.py)
            quarantine_ro=_Serialized(Quarantine(connect(self.state_path))),
            events_ro=_Serialized(EventLog(connect(self.state_path))),
            metrics_registry=self.metrics_registry,
            broker_connected=self._broker_connected,
            ack_status=lambda: self.pipeline.ack_status() if hasattr(self, "pipeline") else None,
            broker_status=self._broker_status,
            tokens=s.api.tokens, listen=s.api.listen, demo_webhooks=self.demo_webhooks,
            token_store=TokenStore(self.state_path, clock=self.clock), api_open=s.api.open,
            rollout=rollout.service(s, latest=self.store.latest_values, clock=self.clock),
            board_feed=self.board_feed, broker_url=self.broker_url,
            cluster_status=self.cluster_status,
        )
        # the API's writes that may queue a notice (acknowledged, resolved) or change what is sent (silences)
        state.alerts = _Serialized(self.api_alerts, after=self.dispatcher.wake,
                                   after_calls=("ack", "add_silence", "resolve"))
        state.outbox = _Serialized(self.api_outbox)
        return create_app(state)

    def cluster_status(self) -> dict | None:
        """Several nodes: this node's id and roles, whether its start is complete, and the duties
        (leases) whose work it runs now; None for a node on its own."""
        if not self.settings.clustered or not hasattr(self, "node_id"):
            return None
        duties = [d for duty in getattr(self, "duties", []) for d in getattr(duty, "duties", [duty])]
        return {"node": self.node_id, "roles": sorted(self.settings.roles),
                "started": getattr(self, "cluster_started", False),
                "duties": sorted(d.name for d in duties if d.running)}

    def _start_api(self) -> None:
        s = self.settings
        # log_config None: uvicorn's records go through the process's handler (citywatch/logs.py)
        config = uvicorn.Config(self.api_app(), host=s.api.host, port=s.api.port, log_level="warning",
                                access_log=False, lifespan="off", log_config=None)
        self.server = uvicorn.Server(config)
        self._spawn(self.server.run, "citywatch-api")
        deadline = time.monotonic() + 15
        while not self.server.started and self._threads[-1].is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # the thread ends at once when the address is taken (uvicorn logs why)
        if not self.server.started:
            raise RuntimeError(f"the API could not listen on {s.api.listen}")

    def totals(self) -> dict[str, int]:
        """Readings received, stored, dropped as duplicates, spooled, evaluated by the rules;
        messages quarantined."""
        m = self.ingest_metrics

        def total(metric) -> int:
            return int(sum(s.value for f in metric.collect() for s in f.samples if s.name.endswith("_total")))

        return {"received": total(m.received), "stored": total(m.stored), "duplicates": total(m.duplicates),
                "spooled": total(m.spooled), "quarantined": total(m.quarantined),
                "evaluated": total(m.rules_evaluated)}

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Drain and stop: nothing buffered is lost."""
        self._stop.set()
        if self.settings.clustered and hasattr(self, "duties"):
            from citywatch.clustered import stop_clustered

            stop_clustered(self)  # the rules and dispatch duties stop, their leases are given up
        # The pipeline first: it stops taking messages, writes what it holds and acknowledges it
        # while the consumer is still connected; what arrives after stays unacknowledged in the
        # broker's session. Then the consumer disconnects.
        if hasattr(self, "pipeline"):
            self.pipeline.stop()
        if self.consumer is not None:
            self.consumer.stop()
        if self._dispatching:
            self.dispatcher.stop()
        if getattr(self, "alert_history", None):
            self.alert_history.stop()
        if self.server is not None:
            if hasattr(self, "board_feed"):
                self.board_feed.close()  # the board's streams end: the server waits for open responses
            self.server.should_exit = True
        for t in self._threads:
            t.join(10)
        if hasattr(self, "store"):
            self.store.close()


class _Serialized:
    """Calls into ``target`` one at a time: the API's threads share its SQLite connection.

    ``after`` runs after each call of a method named in ``after_calls`` (the dispatcher's
    wake-up after an acknowledgement: it holds the priority gate briefly, so not after reads).
    """

    def __init__(self, target, after: Callable[[], None] | None = None, after_calls: Iterable[str] = ()):
        self._target = target
        self._lock = threading.Lock()
        self._after = after
        self._after_calls = frozenset(after_calls)

    def __getattr__(self, name: str):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._lock:
                result = attr(*args, **kwargs)
            if self._after is not None and name in self._after_calls:
                self._after()
            return result

        return call
