"""The consumers' at-least-once guarantees against a real Mosquitto: fail closed on a refused or
downgraded subscription, a lost session reported, keep-alive and acks while delivery blocks,
the Maximum Packet Size, the retain flag (wire and paho where both apply)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid

import paho.mqtt.publish as paho_publish
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from ingest.metrics import IngestMetrics
from ingest.mqtt import MAX_PACKET_SIZE, ConsumerOptions, MqttConsumer, SubscriptionRefused
from ingest.wire import WireConsumer
from tests.ingest.test_wire import Received, Relay
from tests.support.mosquitto import Mosquitto
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

PINGREQ, PUBACK, CONNECT = 12, 4, 1


@pytest.fixture
def topic() -> str:
    return f"guar/{uuid.uuid4().hex[:8]}"


def opts(protocol: int, *topics: str, **kw) -> ConsumerOptions:
    return ConsumerOptions(client_id=f"g-{uuid.uuid4().hex[:10]}", topics=list(topics), protocol=protocol, **kw)


def make(kind: str, url: str, on_message, o: ConsumerOptions, metrics=None, on_batch=None):
    if kind == "wire":
        return WireConsumer(url, on_message, o, metrics=metrics, on_batch=on_batch)
    return MqttConsumer(url, on_message, o, metrics=metrics)


def counter(metrics: IngestMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_total") or 0.0


def publish(port: int, messages: list[tuple[str, bytes, int]], retain: bool = False) -> None:
    paho_publish.multiple([{"topic": t, "payload": p, "qos": q, "retain": retain} for t, p, q in messages],
                          hostname="127.0.0.1", port=port, protocol=MQTTProtocolVersion.MQTTv311)


# -- fail closed -----------------------------------------------------------------------------------

DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def dynsec_broker(d, readable: str) -> Mosquitto:
    """Anonymous clients may subscribe to ``readable`` only (Mosquitto's dynamic-security plugin:
    its plain ``acl_file`` grants every subscription and filters at delivery, measured with
    Mosquitto 2.0.11, so it never refuses a SUBACK)."""
    b = Mosquitto(d)
    write_dynsec(d, readable)
    b.conf.write_text(b.conf.read_text() + f"plugin {DYNSEC}\nplugin_opt_config_file {d / 'dynsec.json'}\n")
    return b


def write_dynsec(d, readable: str) -> None:
    (d / "dynsec.json").write_text(json.dumps({
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True, "subscribe": False,
                             "unsubscribe": True},
        "clients": [], "groups": [{"groupname": "anon", "roles": [{"rolename": "reader"}]}],
        "roles": [{"rolename": "reader", "acls": [{"acltype": "subscribePattern", "topic": readable,
                                                    "allow": True, "priority": 0}]}],
        "anonymousGroup": "anon"}))


needs_dynsec = pytest.mark.skipif(not os.path.exists(DYNSEC), reason="needs Mosquitto's dynamic-security plugin")


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory):
    b = dynsec_broker(tmp_path_factory.mktemp("mq-acl"), "allowed/#").start()
    yield b
    b.stop()


@needs_dynsec
@pytest.mark.parametrize("kind", ["wire", "paho"])
@pytest.mark.parametrize("protocol", [4, 5])
def test_a_denied_subscription_fails_closed(acl_broker, kind, protocol, caplog):
    """Mosquitto 2.0 answers a subscription its ACL denies with SUBACK 0x80 (3.1.1) or 0x87 (5,
    not authorized): start() raises naming it, the consumer keeps retrying with backoff, never
    ``subscribed``, the reason in ``problem`` and counted."""
    metrics = IngestMetrics()
    o = opts(protocol, "allowed/#", "denied/#")
    c = make(kind, acl_broker.url, Received(), o, metrics)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(SubscriptionRefused) as e:
            c.start(5)
    why = str(e.value)
    assert "'denied/#'" in why and "refused" in why
    assert ("0x87" in why and "uthorized" in why) if protocol == 5 else "0x80" in why
    assert c.problem == why and not c.subscribed.is_set() and not c.connected.is_set()
    assert counter(metrics, "citywatch_mqtt_subscription_refused") == 1
    assert any("denied/#" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@needs_dynsec
def test_a_refused_subscription_is_retried_and_visible_while_running(tmp_path):
    """After a good start, the broker comes back denying the filter: each reconnect fails
    closed (counted), ``subscribed`` stays clear; once allowed again, the consumer subscribes
    and ``problem`` clears."""
    d = tmp_path / "mq"
    b = dynsec_broker(d, "allowed/#").start()
    metrics = IngestMetrics()
    c = WireConsumer(b.url, Received(), opts(5, "allowed/x/#"), metrics=metrics)
    try:
        c.start(5)
        assert c.subscribed.wait(5) and c.problem == ""
        b.stop()
        write_dynsec(d, "other/#")
        b.start()
        assert wait_for(lambda: counter(metrics, "citywatch_mqtt_subscription_refused") >= 2, 15)
        assert not c.subscribed.is_set() and "refused" in c.problem
        b.stop()
        write_dynsec(d, "allowed/#")
        b.start()
        assert wait_for(lambda: c.subscribed.is_set(), 15)
        assert c.problem == ""
    finally:
        c.stop()
        b.stop()


@pytest.fixture(scope="module")
def qos0_broker(tmp_path_factory):
    """``max_qos 0``: MQTT 5 clients get CONNACK Maximum QoS 0, 3.1.1 clients a SUBACK granting QoS 0."""
    b = Mosquitto(tmp_path_factory.mktemp("mq-qos0"))
    b.conf.write_text(b.conf.read_text() + "max_qos 0\n")
    b.start()
    yield b
    b.stop()


@pytest.mark.parametrize("kind", ["wire", "paho"])
@pytest.mark.parametrize("protocol", [4, 5])
def test_qos_below_1_fails_closed(qos0_broker, topic, kind, protocol):
    metrics = IngestMetrics()
    c = make(kind, qos0_broker.url, Received(), opts(protocol, f"{topic}/#"), metrics)
    with pytest.raises(SubscriptionRefused) as e:
        c.start(5)
    if protocol == 5:
        assert "CONNACK Maximum QoS" in str(e.value)
    else:
        assert "granted at QoS 0" in str(e.value)
    assert counter(metrics, "citywatch_mqtt_subscription_refused") >= 1
    assert not c.subscribed.is_set()


# -- session lost --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["wire", "paho"])
@pytest.mark.parametrize("persistence", [False, True], ids=["restart-without-persistence", "restart-kept"])
def test_a_lost_session_is_an_error_counted_and_visible(tmp_path, topic, kind, persistence, caplog):
    b = Mosquitto(tmp_path / "mq", persistence=persistence).start()
    metrics = IngestMetrics()
    c = make(kind, b.url, Received(), opts(5, f"{topic}/#"), metrics)
    try:
        c.start(5)
        assert c.subscribed.wait(5)
        assert c.session_lost_at is None  # the first connection: nothing expected
        before = time.time()
        with caplog.at_level(logging.ERROR):
            b.restart()
            assert wait_for(lambda: c.subscribed.is_set() and c.connected.is_set(), 15)
            time.sleep(0.3)
        lost = counter(metrics, "citywatch_mqtt_session_lost")
        if persistence:
            assert lost == 0 and c.session_lost_at is None
        else:
            assert lost == 1 and c.session_lost_at >= before
            assert any("no longer has the session" in r.getMessage() for r in caplog.records
                       if r.levelno == logging.ERROR)
    finally:
        c.stop()
        b.stop()


# -- keep-alive independent of backpressure ------------------------------------------------------------

@pytest.mark.parametrize("protocol", [4, 5])
def test_keepalive_and_acks_while_delivery_blocks(mosquitto, topic, protocol):
    """keepalive 2 s, a delivery that blocks 6 s (3 keep-alives; Mosquitto drops a client silent
    for 1.5): the connection survives (one connection, PINGREQs sent during the block), an ack
    called from another thread during the block goes out during it, the blocked message is
    acknowledged after the block, and nothing is redelivered."""
    relay = Relay(mosquitto.port)
    held: list = []
    block = threading.Event()
    released = threading.Event()

    def on_batch(items):
        for _t, p, ack, *_ in items:
            if p == b"slow":
                block.set()
                time.sleep(6)
                released.set()
                ack()
            else:
                held.append(ack)

    o = opts(protocol, f"{topic}/#", keepalive_s=2)
    c = WireConsumer(relay.url, Received(), o, on_batch=on_batch)
    try:
        c.start(5)
        assert c.subscribed.wait(5)
        publish(mosquitto.port, [(f"{topic}/m", b"first", 1)])
        assert wait_for(lambda: len(held) == 1, 5)
        publish(mosquitto.port, [(f"{topic}/m", b"slow", 1)])
        assert block.wait(5)
        t_block = time.monotonic()
        threading.Timer(1.0, held[0]).start()  # the pipeline's write stage acks "first" meanwhile
        assert wait_for(lambda: [f >> 4 for f, _ in relay.client_packets()].count(PUBACK) == 1, 4)
        assert time.monotonic() - t_block < 5.5 and not released.is_set()  # during the block
        assert released.wait(10)
        assert wait_for(lambda: [f >> 4 for f, _ in relay.client_packets()].count(PUBACK) == 2, 5)
        kinds = [f >> 4 for f, _ in relay.client_packets()]
        assert kinds.count(PINGREQ) >= 2
        assert len(relay.sent) == 1 and c.connected.is_set()  # never reconnected
    finally:
        c.stop()
        relay.close()
    again = Received(ack_now=True)
    c2 = WireConsumer(mosquitto.url, again, o)
    c2.start(5)
    try:
        time.sleep(0.5)
        assert again.payloads == []  # both acknowledged: nothing redelivered
    finally:
        c2.stop()


def test_connected_clears_when_the_connection_breaks_during_a_block(mosquitto, topic):
    relay = Relay(mosquitto.port)
    block = threading.Event()
    done = threading.Event()

    def on_batch(items):
        block.set()
        done.wait(10)

    c = WireConsumer(relay.url, Received(), opts(5, f"{topic}/#", keepalive_s=1), on_batch=on_batch)
    try:
        c.start(5)
        assert c.subscribed.wait(5)
        publish(mosquitto.port, [(f"{topic}/m", b"x", 1)])
        assert block.wait(5)
        relay.cut()
        assert wait_for(lambda: not c.connected.is_set(), 6)  # while delivery is still blocked
        assert not done.is_set()
    finally:
        done.set()
        c.stop()
        relay.close()


# -- Maximum Packet Size -----------------------------------------------------------------------------

def test_maximum_packet_size_announced_and_oversized_payloads_still_arrive(mosquitto, topic):
    """A payload over the decoder's 256 KiB (so that it is quarantined as too_large) but within
    the broker's max_packet_size of deploy/mosquitto.conf still reaches the consumer."""
    relay = Relay(mosquitto.port)
    got = Received(ack_now=True)
    c = WireConsumer(relay.url, got, opts(5, f"{topic}/#"))
    try:
        c.start(5)
        assert c.subscribed.wait(5)
        connect = relay.client_packets(0)[0]
        assert connect[0] >> 4 == CONNECT and b"\x27" + MAX_PACKET_SIZE.to_bytes(4, "big") in connect[1]
        big = b"x" * 290_000
        publish(mosquitto.port, [(f"{topic}/big", big, 1)])
        assert wait_for(lambda: got.payloads == [big], 5)
    finally:
        c.stop()
        relay.close()


def test_a_packet_over_the_maximum_is_a_protocol_error(mosquitto, topic, caplog):
    relay = Relay(mosquitto.port)
    c = WireConsumer(relay.url, Received(), opts(4, f"{topic}/#"))
    try:
        c.start(5)
        assert c.subscribed.wait(5)
        n = MAX_PACKET_SIZE + 10  # a PUBLISH header announcing more than the maximum
        varint = bytes([(n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14])
        with caplog.at_level(logging.ERROR):
            relay.inject(b"\x30" + varint + b"\x00\x01t" + b"x" * 1000)
            assert wait_for(lambda: len(relay.sent) == 2 and c.subscribed.is_set(), 10)  # closed, reconnected
        assert any("Maximum Packet Size" in r.getMessage() for r in caplog.records)
    finally:
        c.stop()
        relay.close()


# -- retained messages --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["wire-batch", "wire", "paho"])
def test_retained_messages_are_told_apart(mosquitto, topic, kind):
    publish(mosquitto.port, [(f"{topic}/kept", b"state", 1)], retain=True)
    try:
        seen: list[tuple[bytes, bool]] = []
        lock = threading.Lock()

        def on_message(t, p, ack, retained=False):
            with lock:
                seen.append((p, retained))
            if ack is not None:
                ack()

        def on_batch(items):
            for item in items:
                on_message(item[0], item[1], item[2], retained=len(item) == 4 and item[3])

        o = opts(5, f"{topic}/#")
        if kind == "wire-batch":
            c = WireConsumer(mosquitto.url, Received(), o, on_batch=on_batch)
        else:
            c = make(kind, mosquitto.url, on_message, o)
        c.start(5)
        try:
            assert wait_for(lambda: len(seen) == 1, 5)
            publish(mosquitto.port, [(f"{topic}/live", b"news", 1)])
            assert wait_for(lambda: len(seen) == 2, 5)
            assert seen == [(b"state", True), (b"news", False)]
        finally:
            c.stop()
    finally:
        publish(mosquitto.port, [(f"{topic}/kept", b"", 1)], retain=True)  # clear the retained message


def test_a_retained_message_to_an_on_message_without_the_keyword(mosquitto, topic):
    """Backward compatible: an on_message(topic, payload, ack) still gets retained messages."""
    publish(mosquitto.port, [(f"{topic}/kept", b"state", 1)], retain=True)
    try:
        got = Received(ack_now=True)
        c = WireConsumer(mosquitto.url, got, opts(4, f"{topic}/#"))
        c.start(5)
        try:
            assert wait_for(lambda: got.payloads == [b"state"], 5)
        finally:
            c.stop()
    finally:
        publish(mosquitto.port, [(f"{topic}/kept", b"", 1)], retain=True)


def test_paho_clears_connected_while_delivery_blocks_and_loses_nothing(mosquitto, topic):
    """paho sends no keep-alive while on_message blocks: after 1.5 keep-alives ``connected``
    clears (the broker drops the connection); afterwards paho reconnects and the message,
    unacknowledged, comes again and is acknowledged."""
    seen: list[bytes] = []
    block = threading.Event()

    def on_message(t, p, ack):
        seen.append(p)
        if len(seen) == 1:
            block.set()
            time.sleep(8)  # 4 keep-alives: the broker has dropped the connection (at 1.5) well before
            return  # not acknowledged: its connection is gone by now
        ack()

    o = opts(5, f"{topic}/#", keepalive_s=2)
    c = MqttConsumer(mosquitto.url, on_message, o)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        publish(mosquitto.port, [(f"{topic}/m", b"slow", 1)])
        assert block.wait(5)
        assert wait_for(lambda: not c.connected.is_set(), 5)  # while still blocked
        assert wait_for(lambda: seen == [b"slow", b"slow"] and c.connected.is_set(), 15), (seen, c.connected.is_set())
    finally:
        c.stop()
    again = Received(ack_now=True)
    c2 = MqttConsumer(mosquitto.url, again, o)
    c2.start(5)
    try:
        time.sleep(0.5)
        assert again.payloads == []
    finally:
        c2.stop()


def test_paho_pubacks_go_out_in_receive_order(mosquitto, topic):
    """MQTT 4.6 with the paho client too: acks called 3, 1, 2, 0, ... go out as 0, 1, 2, 3, ..."""
    relay = Relay(mosquitto.port)
    got = Received()
    c = MqttConsumer(relay.url, got, opts(4, f"{topic}/#"))
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        publish(mosquitto.port, [(f"{topic}/m", str(i).encode(), 1) for i in range(10)])
        assert wait_for(lambda: len(got) == 10, 5)
        pids = [ack.args[2] for _, _, ack in got.items]  # (generation, seq, packet id, qos)
        for i in (3, 1, 2):
            got.items[i][2]()
        time.sleep(0.3)
        assert relay.pubacks() == []
        for i in (0, 9, 8, 4, 5, 6, 7):
            got.items[i][2]()
        assert wait_for(lambda: len(relay.pubacks()) == 10, 5)
        assert relay.pubacks() == pids
    finally:
        c.stop()
        relay.close()
