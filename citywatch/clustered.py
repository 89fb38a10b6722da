"""A node among several on one PostgreSQL state DB (``Settings.clustered``): what runs where.

- ``ingest``: ``[node] partitions`` ingest sessions, each run by the node holding its lease
  ``ingest/p<N>``: a recording pipeline (store, quarantine, events) and its consumer on the
  shared subscription ``$share/<group>/<topic>`` (``[mqtt] shared_group``, default
  ``citywatch``) with the persistent session ``<client_id>-ingest-p<N>``: the broker gives each
  message to one session, and a session whose node died is resumed by the node that takes its
  lease over, so nothing the dead node had received and not acknowledged is lost.
- ``rules``: the rule evaluation, in ``[node] partitions`` partitions of the devices
  (alerts/partitions.py), each run by the one node holding its lease ``rules/p<N>``: an engine
  restoring its devices' state from the state DB's checkpoints, its pipeline and its consumer on
  the persistent session ``<client_id>-rules-p<N>`` (not shared: every reading, of which it keeps
  its devices'; one client id for whoever holds the lease, so the next holder resumes the queue
  and nothing unacknowledged is lost). Its commits are fenced: a node whose lease moved on
  writes nothing (citywatch/cluster.py). Each ``rules`` node aims at its fair share of the
  partitions (rounded up) among the live ``rules`` nodes: below it, it takes one free partition
  per tick (a start takes time, and the leases it holds wait for their renewal meanwhile);
  above it, it gives one back per tick.
- ``dispatch``: the outbox's dispatcher, run by the one node holding the lease ``dispatch``.
- ``api``: the API (any number of nodes).

One thread per node heartbeats its membership row and ticks the duties a tenth of the lease
time apart. docs/ARCHITECTURE.md, "Several nodes", has the failure cases and their costs.
"""

from __future__ import annotations

import logging
import threading
import zlib
from pathlib import Path

from alerts.partitions import owner_of, topic_filter
from citywatch.cluster import Duty, Leases, Membership, fair_share, new_node_id
from devices import db
from devices.db import connect
from ingest.spool import Spool

log = logging.getLogger("citywatch.cluster")


def start_clustered(node) -> None:
    s = node.settings
    roles = s.roles
    node.node_id = new_node_id(s.api.listen)
    ttl = s.node.lease_s
    node.membership = Membership(connect(node.state_path), node.node_id, s.api.listen, sorted(roles), ttl)
    leases = Leases(connect(node.state_path), node.node_id, ttl)
    node.duties = []
    if node.alert_history:
        node.alert_history.start()
    if "dispatch" in roles:
        node.duties.append(Duty(leases, "dispatch", lambda lease: _start_dispatch(node), lambda: _stop_dispatch(node)))
    n = s.node.partitions
    if "rules" in roles:
        node.duties.append(_Partitions(node, leases, node.membership, "rules", n,
                                       lambda i: _Rules(node, i, n)))
        node._start_rollout_snapshots()  # one a day: a second node's is the same row, ignored
    if "api" in roles:
        node._start_api()
    if "ingest" in roles:
        if s.store.url.startswith("duckdb:"):
            log.warning("[store] url is DuckDB, one process's file: the readings this node records stay on "
                        "this node, and other nodes cannot read them. Run one ingest node, or use InfluxDB")
        if node.mqtt_protocol != 5 and n > 1:
            log.warning("MQTT 3.1.1 has no shared subscriptions: one ingest session records every reading")
        node.duties.append(_Partitions(node, leases, node.membership, "ingest", n if node.mqtt_protocol == 5 else 1,
                                       lambda i: _Ingest(node, i)))
    node.membership.beat()
    for duty in node.duties:
        duty.tick()
    node.cluster_started = True
    node._spawn(lambda: _cluster_loop(node, ttl / 10), "citywatch-cluster")


def _cluster_loop(node, every_s: float) -> None:
    while not node._stop.wait(every_s):
        try:
            node.membership.beat()
        except Exception as e:  # the state DB away: the duties' own checks decide what stops
            log.warning("cluster heartbeat failed: %s", e)
        for duty in node.duties:
            try:
                duty.tick()
            except Exception:  # a bug in one duty's tick must not end the others' renewals
                log.exception("cluster: ticking a duty failed")
    for duty in node.duties:
        duty.close()
    try:
        node.membership.leave()
    except Exception as e:
        log.warning("could not leave the cluster cleanly (the row expires): %s", e)


def stop_clustered(node) -> None:
    """Stop the duties (ingest, rules, dispatch): the cluster loop stops their work and gives
    their leases up."""
    node._stop.set()
    for t in node._threads:
        if t.name == "citywatch-cluster":
            t.join(30)


def _start_dispatch(node) -> None:
    node.dispatcher.start()
    node._dispatching = True


def _stop_dispatch(node) -> None:
    node.dispatcher.stop(timeout=10)
    node._dispatching = False


class _Partitions:
    """This node's share of the partitions of one kind of work (``rules`` or ``ingest``): a duty
    each, leased as ``<kind>/p<N>``, aiming at a fair share among the live nodes of that role."""

    def __init__(self, node, leases: Leases, membership: Membership, role: str, n: int, work) -> None:
        self.leases = leases
        self.membership = membership
        self.role = role
        self.n = n
        self.duties = []
        self.parts = [work(i) for i in range(n)]
        for i, part in enumerate(self.parts):
            duty = Duty(leases, f"{role}/p{i}", part.start, part.stop)
            part.fence = duty.fence
            self.duties.append(duty)
        first = zlib.crc32(node.node_id.encode()) % n  # nodes try different partitions first
        self.order = self.duties[first:] + self.duties[:first]

    def tick(self) -> None:
        for duty, part in zip(self.duties, self.parts, strict=True):
            failed = part.failed()
            if duty.running and failed is not None:  # it stopped; started afresh at a later tick
                duty.close(f"its work stopped: {failed}")
            elif duty.lease is not None:
                duty.tick()  # renew, or stop the work if the lease is gone
        try:
            fair = fair_share(self.n, len(self.membership.live(self.role)))
            held = [d for d in self.order if d.lease is not None]
            if len(held) > fair:
                held[-1].close("another node takes its share")  # one per tick: the others take them as they come free
                return
            if len(held) == fair:
                return
            taken = self.leases.holders(f"{self.role}/p")
        except db.DBError as e:
            log.warning("%s partitions: cannot reach the state DB: %s", self.role, e)
            return
        for duty in self.order:  # one more per tick: a start takes time, the held leases wait for it
            if duty.lease is None and duty.name not in taken:
                duty.tick()
                if duty.lease is not None:
                    return

    def close(self) -> None:
        for duty in self.duties:
            duty.close()

    def consumers(self) -> list:
        """The MQTT consumers of the partitions whose work runs here."""
        return [p.consumer for p in self.parts if p.consumer is not None]


class _Ingest:
    """One ingest session while this node holds its lease: a recording pipeline and its consumer
    on the shared subscription, with the persistent session ``<client_id>-ingest-p<N>`` (one
    client id for whoever holds the lease: the next holder resumes what a dead node had received
    and not acknowledged) and a spool of its own (``<spool_dir>/p<N>``)."""

    def __init__(self, node, slot: int) -> None:
        self.node = node
        self.slot = slot
        self.fence = None
        self.pipeline = self.consumer = None

    def start(self, lease) -> None:
        node, s = self.node, self.node.settings
        spool = Spool(Path(s.ingest.spool_dir) / f"p{self.slot}", s.ingest.spool_max_bytes)
        self.pipeline = node.make_pipeline(records=True, engine=None, spool=spool)
        self.pipeline.start()
        group = s.mqtt.shared_group or "citywatch"
        topics = [f"$share/{group}/{t}" if node.mqtt_protocol == 5 else t for t in s.mqtt.topics]
        self.consumer = node.make_consumer(self.pipeline, f"{s.mqtt.client_id}-ingest-p{self.slot}", topics)
        self.consumer.start(wait_s=20)

    def failed(self) -> BaseException | None:
        return None  # its write stage retries what fails (acknowledgements withheld meanwhile)

    def stop(self) -> None:
        pipeline, consumer = self.pipeline, self.consumer
        self.pipeline = self.consumer = None
        if pipeline is not None:
            pipeline.stop(timeout=10)  # what it holds is written and acknowledged
        if consumer is not None:
            consumer.stop()


class _Rules:
    """The rule evaluation of one partition while this node holds its lease."""

    def __init__(self, node, partition: int, partitions: int) -> None:
        self.node = node
        self.partition = partition
        self.partitions = partitions
        self.fence = None
        self.parts = None
        self.consumer = None

    def start(self, lease) -> None:
        node, s = self.node, self.node.settings
        owns = owner_of(self.partition, self.partitions)
        engine = node.make_engine(fence=self.fence, owns=owns if self.partitions > 1 else None)
        if self.partition == 0 and engine.retire_removed_rules(node.clock()):
            engine.checkpoint()  # once for the fleet: partition 0's holder retires removed rules' alerts
            node.dispatcher.wake()
        pipeline = node.make_pipeline(records=False, engine=engine, rules_required=True,
                                      accept=topic_filter(owns) if self.partitions > 1 else None)
        pipeline.start()
        consumer = node.make_consumer(pipeline, f"{s.mqtt.client_id}-rules-p{self.partition}",
                                      list(s.mqtt.topics))
        stop = threading.Event()
        tick = threading.Thread(target=node._tick_loop, args=(stop, engine, node.clock(), owns),
                                name=f"citywatch-rules-tick-p{self.partition}", daemon=True)
        self.parts = (engine, pipeline, consumer, stop, tick)
        self.consumer = consumer
        consumer.start(wait_s=20)
        tick.start()

    def failed(self) -> BaseException | None:
        """Why its rule evaluation stopped (the state DB away, the lease gone), if it did."""
        return self.parts[1].rules_failed if self.parts is not None else None

    def stop(self) -> None:
        if self.parts is None:
            return
        engine, pipeline, consumer, stop, tick = self.parts
        self.parts = self.consumer = None
        stop.set()
        pipeline.stop(timeout=10)  # what it holds is committed (if the fence lets it) and acknowledged
        consumer.stop()
        tick.join(10)
