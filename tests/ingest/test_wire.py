"""WireConsumer against a real Mosquitto (session fixture, or an own one for restarts).

A loopback TCP relay between the consumer and the broker records what each side sends (to
check PUBACK order, PINGREQs, connection counts, what the broker delivered) and can inject bytes
or cut connections.

No test sleeps to see that nothing (more) happened: it first proves the system has got past the
point, then checks. A marker message published after the others arrives after them (one
client's messages are delivered in order), a ``stop()`` has sent every acknowledgement called
before it (test_acks_called_just_before_stop_all_reach_the_broker), and a keep-alive round trip
begun now (:func:`round_trip`) is answered after everything the broker had decided to send.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.publish as paho_publish
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from ingest.mqtt import ConsumerOptions, MqttError
from ingest.wire import WireConsumer
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


# -- helpers -------------------------------------------------------------------------------------

def publish(port: int, messages: list[tuple[str, bytes, int]]) -> None:
    """Publish (topic, payload, qos) in order with paho (QoS 1 waits for each PUBACK)."""
    paho_publish.multiple([{"topic": t, "payload": p, "qos": q} for t, p, q in messages],
                          hostname="127.0.0.1", port=port, protocol=MQTTProtocolVersion.MQTTv311)


class Received:
    """on_message that records (topic, payload, ack) and optionally acks at once."""

    def __init__(self, ack_now: bool = False):
        self.ack_now = ack_now
        self.items: list[tuple[str, bytes, object]] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, ack) -> None:
        with self.lock:
            self.items.append((topic, payload, ack))
        if self.ack_now and ack is not None:
            ack()

    @property
    def payloads(self) -> list[bytes]:
        with self.lock:
            return [p for _, p, _ in self.items]

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


def options(protocol: int, topic: str, **kw) -> ConsumerOptions:
    return ConsumerOptions(client_id=f"wire-{uuid.uuid4().hex[:10]}", topics=[topic], protocol=protocol, **kw)


def packets(stream: bytes) -> list[tuple[int, bytes]]:
    """Split an MQTT byte stream into (first byte, body), independently of ingest.wire."""
    out, i = [], 0
    while i < len(stream):
        first, mult, length, i = stream[i], 1, 0, i + 1
        while True:
            b = stream[i]
            i += 1
            length += (b & 0x7F) * mult
            mult *= 128
            if b < 128:
                break
        out.append((first, stream[i:i + length]))
        i += length
    return out


class Relay:
    """TCP relay 127.0.0.1:port -> broker; records the bytes of both directions per connection."""

    def __init__(self, broker_port: int):
        self.broker_port = broker_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sent: list[bytearray] = []  # per connection, what the client sent
        self.got: list[bytearray] = []  # per connection, what the broker sent the client
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.broker_port))
            record, answer = bytearray(), bytearray()
            with self.lock:
                self.sent.append(record)
                self.got.append(answer)
                self.conns.append((client, broker))
            threading.Thread(target=self._pump, args=(client, broker, record), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, client, answer), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        """Forward ``src`` to ``dst``, recording what went (so what a test reads as sent has been
        handed on). At ``src``'s end only ``dst``'s sending side closes: the other direction
        keeps flowing until its own end (closing both cut acknowledgements still on their way to
        the broker when the client left, and the broker sent them again)."""
        try:
            while data := src.recv(65536):
                try:
                    dst.sendall(data)
                finally:
                    if record is not None:
                        with self.lock:
                            record += data
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def client_packets(self, conn: int = -1) -> list[tuple[int, bytes]]:
        with self.lock:
            return packets(bytes(self.sent[conn]))

    def broker_packets(self, conn: int = -1) -> list[tuple[int, bytes]]:
        with self.lock:
            return packets(bytes(self.got[conn]))

    def pubacks(self, conn: int = -1) -> list[int]:
        return [int.from_bytes(body[:2], "big") for first, body in self.client_packets(conn)
                if first >> 4 == 4]

    def inject(self, data: bytes) -> None:
        """Send bytes to the latest client as if from the broker."""
        with self.lock:
            client, _ = self.conns[-1]
        client.sendall(data)

    def cut(self) -> None:
        with self.lock:
            conns = list(self.conns)
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()
        self.cut()


def round_trip(relay: Relay, conn: int = -1, timeout_s: float = 5.0) -> list[tuple[int, bytes]]:
    """Wait for the answer to a PINGREQ the consumer sends after this call (a consumer with a short
    ``keepalive_s``); returns what the broker sent on the connection before that PINGRESP. The
    broker answers in order, so that is everything it had decided to send until then."""
    asked = sum(1 for first, _ in relay.client_packets(conn) if first == 0xC0)

    def answered() -> list | None:
        got = relay.broker_packets(conn)
        resps = [i for i, (first, _) in enumerate(got) if first == 0xD0]
        return got[:resps[asked]] if len(resps) > asked else None

    assert wait_for(lambda: answered() is not None, timeout_s), "no keep-alive round trip"
    return answered()


def publishes(packets_: list[tuple[int, bytes]]) -> int:
    return sum(1 for first, _ in packets_ if first >> 4 == 3)


def marked(port: int, topic: str, got: Received, timeout_s: float = 5.0) -> list[tuple[str, bytes, object]]:
    """Publish a marker on ``topic`` and wait until ``got`` has it: the messages before it are
    then all the consumer was sent before the marker. Returns them (the marker left out)."""
    return marked_all(port, topic, [got], timeout_s)[0]


def marked_all(port: int, topic: str, receivers: list[Received], timeout_s: float = 5.0) -> list[list]:
    """:func:`marked` for several consumers subscribed to ``topic``: one marker, awaited by all."""
    marker = f"marker-{uuid.uuid4().hex[:8]}".encode()
    publish(port, [(topic, marker, 1)])
    out = []
    for got in receivers:
        assert wait_for(lambda got=got: marker in got.payloads, timeout_s), "the marker did not arrive"
        with got.lock:
            i = [p for _, p, _ in got.items].index(marker)
            assert len(got.items) == i + 1, "messages after the marker"
            out.append(got.items[:i])
    return out


@pytest.fixture
def relay(mosquitto):
    r = Relay(mosquitto.port)
    yield r
    r.close()


@pytest.fixture
def topic() -> str:
    return f"wiretest/{uuid.uuid4().hex[:8]}"


def started(url: str, on_message, opts: ConsumerOptions, batched: bool = False) -> WireConsumer:
    """A started consumer; ``batched``: through ``on_batch`` (lists of messages), as a node runs it."""
    if batched:
        def on_batch(items):
            for t, p, a, *_ in items:
                on_message(t, p, a)
        c = WireConsumer(url, _unused, opts, on_batch=on_batch)
    else:
        c = WireConsumer(url, on_message, opts)
    c.start(5)
    assert c.subscribed.wait(5)
    return c


def _unused(topic, payload, ack):
    raise AssertionError("on_message called although on_batch was given")


# -- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("batched", [False, True], ids=["on_message", "on_batch"])
@pytest.mark.parametrize("protocol", [4, 5])
def test_qos1_topics_and_payloads_intact(mosquitto, topic, protocol, batched):
    got = Received(ack_now=True)
    c = started(mosquitto.url, got, options(protocol, f"{topic}/#"), batched)
    try:
        big = bytes(range(256)) * 800  # 200 KiB, every byte value
        msgs = [(f"{topic}/武汉/江汉区/noise-001", "噪声 ünïcode".encode(), 1),
                (f"{topic}/big", big, 1),
                (f"{topic}/empty", b"", 1),
                (f"{topic}/bin", b"\x00\xff\x10\x30\x40", 1)]
        msgs += [(f"{topic}/seq", str(i).encode(), 1) for i in range(200)]
        publish(mosquitto.port, msgs)
        items = marked(mosquitto.port, f"{topic}/end", got, 10)
        assert [(t, p) for t, p, _ in items] == [(t, p) for t, p, _ in msgs]
        assert all(a is not None for _, _, a in items)
    finally:
        c.stop()


@pytest.mark.parametrize("protocol", [4, 5])
def test_qos0(mosquitto, topic, protocol):
    got = Received()
    c = started(mosquitto.url, got, options(protocol, f"{topic}/#", qos=0))
    try:
        publish(mosquitto.port, [(f"{topic}/a", b"one", 0), (f"{topic}/b", b"two", 1)])
        assert wait_for(lambda: len(got) == 2, 5)
        assert got.items == [(f"{topic}/a", b"one", None), (f"{topic}/b", b"two", None)]
    finally:
        c.stop()


@pytest.mark.parametrize("batched", [False, True], ids=["on_message", "on_batch"])
@pytest.mark.parametrize("protocol", [4, 5])
def test_unacked_redelivered_acked_not_in_ack_order(mosquitto, relay, topic, protocol, batched):
    """Acks from another thread, out of order, message 11 never acked: the PUBACKs of 0-10 go
    out (receive order), those of the even ones after 11 are held back (MQTT 4.6); a new client
    with the same id gets exactly 11-19 again, in order; once acked, nothing more."""
    got = Received()
    opts = options(protocol, f"{topic}/#")
    c = started(relay.url, got, opts, batched)
    try:
        publish(mosquitto.port, [(f"{topic}/m", str(i).encode(), 1) for i in range(20)])
        assert wait_for(lambda: len(got) == 20, 5)
        items = list(got.items)
        order = [3, 1, 2, 0, 9, 8, 4, 5, 6, 7] + list(range(10, 20, 2))
        acker = threading.Thread(target=lambda: [items[i][2]() for i in order])
        acker.start()
        acker.join()
        assert wait_for(lambda: len(relay.pubacks()) == 11, 5)
    finally:
        c.stop()  # sends every acknowledgement that may go out: the record is complete
    assert relay.pubacks() == [a.args[2] for _, _, a in items[:11]]
    again = Received(ack_now=True)
    c2 = started(mosquitto.url, again, opts)
    try:
        assert [p for _, p, _ in marked(mosquitto.port, f"{topic}/m", again)] == [
            str(i).encode() for i in range(11, 20)]
    finally:
        c2.stop()
    rest = Received(ack_now=True)
    c3 = started(mosquitto.url, rest, opts)  # all acked now: nothing left
    try:
        assert marked(mosquitto.port, f"{topic}/m", rest) == []
    finally:
        c3.stop()


def test_pubacks_go_out_in_receive_order(mosquitto, relay, topic):
    """MQTT 4.6: PUBACKs in the order the PUBLISHes were received, whatever the ack order; an
    ack is held until every earlier message is acked."""
    got = Received()
    c = started(relay.url, got, options(4, f"{topic}/#"))
    try:
        publish(mosquitto.port, [(f"{topic}/m", str(i).encode(), 1) for i in range(10)])
        assert wait_for(lambda: len(got) == 10, 5)
        # the packet id of each message, as the broker sent it, is the ack's last bound argument
        pids = [ack.args[2] for _, _, ack in got.items]
        for i in (3, 1, 2):
            got.items[i][2]()
        got.items[0][2]()
        # had any of 1-3 gone out before message 0 was acked, it would come before 0 here
        assert wait_for(lambda: len(relay.pubacks()) == 4, 5)
        assert relay.pubacks() == pids[:4]
        for i in (9, 8, 4, 5, 6, 7):
            got.items[i][2]()
        assert wait_for(lambda: len(relay.pubacks()) == 10, 5)
        assert relay.pubacks() == pids
    finally:
        c.stop()


def test_ack_from_an_older_connection_is_dropped(mosquitto, relay, topic):
    got = Received()
    c = started(relay.url, got, options(5, f"{topic}/#"))
    try:
        publish(mosquitto.port, [(f"{topic}/m", b"x", 1)])
        assert wait_for(lambda: len(got) == 1, 5)
        old_ack = got.items[0][2]
        relay.cut()  # the connection drops; the consumer reconnects and gets the message again
        assert wait_for(lambda: len(got) == 2 and len(relay.sent) == 2, 5)
        old_ack()
        new_ack = got.items[1][2]
        new_ack()
        assert wait_for(lambda: len(relay.pubacks(1)) >= 1, 5)
    finally:
        c.stop()  # every acknowledgement that may go out has gone out
    assert relay.pubacks(0) == []
    assert relay.pubacks(1) == [new_ack.args[2]]  # the old ack was never sent on the new connection


def test_broker_restart_reconnects_and_resumes(tmp_path, topic):
    broker = Mosquitto(tmp_path / "mq").start()
    got = Received(ack_now=True)
    opts = options(4, f"{topic}/#")
    c = started(broker.url, got, opts)
    try:
        publish(broker.port, [(f"{topic}/m", b"before", 1)])
        assert wait_for(lambda: len(got) == 1, 5)
        broker.stop()
        assert wait_for(lambda: not c.connected.is_set(), 5)
        broker.start()
        assert c.connected.wait(10) and c.subscribed.wait(5)
        publish(broker.port, [(f"{topic}/m", b"after", 1)])
        assert wait_for(lambda: len(got) == 2, 5)
        assert got.payloads == [b"before", b"after"]
    finally:
        c.stop()
        broker.stop()


@pytest.mark.parametrize("protocol", [4, 5])
def test_receive_maximum_bounds_unacked_in_flight(mosquitto, topic, protocol):
    """v5 announces receive_maximum: the broker sends that many and waits for acks; with 3.1.1
    the test broker's limit (unlimited) applies. Mosquitto 2.0.11 refills the whole backlog after
    the first ack (paho-mqtt sees the same), so only the first window is exact."""
    got = Received()
    relay = Relay(mosquitto.port)
    c = started(relay.url, got, options(protocol, f"{topic}/#", receive_maximum=10, keepalive_s=1))
    try:
        publish(mosquitto.port, [(f"{topic}/m", str(i).encode(), 1) for i in range(35)])
        window = 10 if protocol == 5 else 35
        # the broker has taken all 35: what it sends unacknowledged is decided by the round trip
        assert publishes(round_trip(relay)) == window
        assert wait_for(lambda: len(got) == window, 5)
        for _, _, ack in list(got.items):  # from this (non-I/O) thread
            ack()
        assert wait_for(lambda: len(got) >= 35, 5)
        for _, _, ack in list(got.items)[10:]:
            ack()
        assert publishes(round_trip(relay)) == 35  # nothing sent twice
        assert got.payloads == [str(i).encode() for i in range(35)]
    finally:
        c.stop()
        relay.close()


@pytest.mark.parametrize("protocol", [4, 5])
def test_shared_subscription_splits_messages(mosquitto, topic, protocol):
    a, b = Received(ack_now=True), Received(ack_now=True)
    # each also subscribes (not shared) to the marker's topic: both get the marker, after their share
    def opts():
        o = options(protocol, f"$share/g/{topic}/#")
        o.topics.append(f"{topic}-end")
        return o
    ca = started(mosquitto.url, a, opts())
    cb = started(mosquitto.url, b, opts())
    try:
        publish(mosquitto.port, [(f"{topic}/m", str(i).encode(), 1) for i in range(100)])
        share_a, share_b = marked_all(mosquitto.port, f"{topic}-end", [a, b], 10)
        assert len(share_a) > 0 and len(share_b) > 0
        assert sorted([p for _, p, _ in share_a + share_b], key=int) == [str(i).encode() for i in range(100)]
    finally:
        ca.stop()
        cb.stop()


def test_keepalive_keeps_an_idle_connection_open(mosquitto, relay, topic):
    got = Received(ack_now=True)
    c = started(relay.url, got, options(4, f"{topic}/#", keepalive_s=1))
    try:
        # the broker answers a third PINGREQ (> 1.5 x keepalive after the CONNECT: a silent client
        # would have been closed by then) on the first connection
        for _ in range(3):
            round_trip(relay)
        assert c.connected.is_set() and len(relay.sent) == 1
        publish(mosquitto.port, [(f"{topic}/m", b"still here", 1)])
        assert wait_for(lambda: got.payloads == [b"still here"], 5)
    finally:
        c.stop()


def test_malformed_packet_closes_and_reconnects(mosquitto, relay, topic):
    got = Received(ack_now=True)
    c = started(relay.url, got, options(5, f"{topic}/#"))
    try:
        relay.inject(b"\x30\xff\xff\xff\xff\x01")  # remaining length of 5 bytes: malformed
        assert wait_for(lambda: len(relay.sent) == 2 and c.subscribed.is_set(), 5)
        relay.inject(b"\x62\x02\x00\x01")  # PUBREL: never valid for this client
        assert wait_for(lambda: len(relay.sent) == 3 and c.subscribed.is_set(), 5)
        publish(mosquitto.port, [(f"{topic}/m", b"ok", 1)])
        assert wait_for(lambda: got.payloads == [b"ok"], 5)
    finally:
        c.stop()


def test_on_message_exception_is_logged_and_loop_goes_on(mosquitto, topic, caplog):
    got = Received(ack_now=True)

    def handler(t, p, ack):
        if p == b"bad":
            raise RuntimeError("boom")
        got(t, p, ack)

    opts = options(4, f"{topic}/#")
    c = started(mosquitto.url, handler, opts)
    try:
        publish(mosquitto.port, [(f"{topic}/m", b"bad", 1), (f"{topic}/m", b"good", 1)])
        assert wait_for(lambda: got.payloads == [b"good"], 5)
    finally:
        c.stop()
    assert any(f"{topic}/m" in r.getMessage() and r.exc_info for r in caplog.records)
    again = Received(ack_now=True)  # the failed message was not acknowledged
    c2 = started(mosquitto.url, again, opts)
    try:
        assert wait_for(lambda: again.payloads == [b"bad"], 5)
    finally:
        c2.stop()


def test_on_batch_gets_what_one_read_held_and_a_failed_batch_stays_unacknowledged(mosquitto, topic, caplog):
    """A burst arrives in lists of several messages, in order; a list whose handler raises is
    logged and none of its messages is acknowledged (redelivered to the next session)."""
    calls: list[list[bytes]] = []
    fail = threading.Event()
    fail.set()

    def on_batch(items):
        if fail.is_set():
            fail.clear()
            raise RuntimeError("boom")
        calls.append([p for _, p, _ in items])
        for _, _, ack in items:
            ack()

    opts = options(4, f"{topic}/#")
    c = WireConsumer(mosquitto.url, _unused, opts, on_batch=on_batch)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        publish(mosquitto.port, [(f"{topic}/m", b"first", 1)])
        assert wait_for(lambda: not fail.is_set(), 5)
        burst = [str(i).encode() for i in range(2000)]
        sender = paho_client(mosquitto.port)
        for p in burst:
            sender.publish(f"{topic}/m", p, qos=0)
        assert wait_for(lambda: sum(map(len, calls)) >= len(burst), 10)
        sender.disconnect()
        sender.loop_stop()
    finally:
        c.stop()
    assert [p for call in calls for p in call] == burst
    assert max(map(len, calls)) > 1  # several messages per call under a burst
    assert any("boom" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    again = Received(ack_now=True)
    c2 = started(mosquitto.url, again, opts)
    try:
        assert wait_for(lambda: again.payloads == [b"first"], 5)
    finally:
        c2.stop()


def paho_client(port: int):
    import paho.mqtt.client as paho

    cl = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    cl.connect("127.0.0.1", port)
    cl.loop_start()
    return cl


def test_start_fails_with_a_clear_error_when_nothing_listens():
    c = WireConsumer(f"mqtt://127.0.0.1:{free_port()}", Received(), ConsumerOptions(client_id="x"))
    with pytest.raises(MqttError, match="could not connect to 127.0.0.1"):
        c.start(0.5)


def test_options_are_checked():
    with pytest.raises(ValueError, match="QoS 2"):
        WireConsumer("mqtt://127.0.0.1", Received(), ConsumerOptions(qos=2))
    with pytest.raises(ValueError, match="protocol"):
        WireConsumer("mqtt://127.0.0.1", Received(), ConsumerOptions(protocol=3))
    with pytest.raises(ValueError, match="mqtt://"):
        WireConsumer("http://127.0.0.1", Received(), ConsumerOptions())


def _tls_files(d) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1 (openssl CLI)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=wire-test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "san.ext")
    return str(d / "ca.crt"), str(d / "server.crt"), str(d / "server.key")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_mqtts_verifies_the_broker_certificate(tmp_path, topic, monkeypatch):
    ca, cert, key = _tls_files(tmp_path)
    broker = Mosquitto(tmp_path / "mq")
    tls_port = free_port()
    with broker.conf.open("a") as f:
        f.write(f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = WireConsumer(f"mqtts://localhost:{tls_port}", Received(), options(4, f"{topic}/#"))
        with pytest.raises(MqttError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.start(2)
        monkeypatch.setenv("SSL_CERT_FILE", ca)  # the default context's CA file
        got = Received(ack_now=True)
        c = started(f"mqtts://localhost:{tls_port}", got, options(5, f"{topic}/#"))
        try:
            big = b"z" * 100_000  # spans several TLS records
            publish(broker.port, [(f"{topic}/m", b"over tls", 1), (f"{topic}/big", big, 1)])
            assert wait_for(lambda: got.payloads == [b"over tls", big], 5)
        finally:
            c.stop()
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", [4, 5])
def test_acks_called_just_before_stop_all_reach_the_broker(mosquitto, topic, protocol):
    """Many acks from another thread, then stop() at once: none of them is lost (a close with
    unread data would reset the connection and drop the PUBACKs still in flight)."""
    got = Received()
    opts = options(protocol, f"{topic}/#")
    c = started(mosquitto.url, got, opts)
    n = 5000
    try:
        publish_fast(mosquitto.port, f"{topic}/m", n)
        assert wait_for(lambda: len(got) == n, 20)
        acker = threading.Thread(target=lambda: [a() for _, _, a in list(got.items)])
        acker.start()
        acker.join()
    finally:
        c.stop()
    rest = Received(ack_now=True)
    c2 = started(mosquitto.url, rest, opts)
    try:
        assert marked(mosquitto.port, f"{topic}/m", rest, 10) == []  # nothing redelivered before it
    finally:
        c2.stop()


def publish_fast(port: int, topic: str, n: int) -> None:
    """n QoS 1 messages (payload = sequence number) with mosquitto_pub -l."""
    lines = "".join(f"{i}\n" for i in range(n))
    subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-l"], input=lines.encode(),
                   check=True, timeout=60)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
@pytest.mark.parametrize("protocol", [4, 5])
def test_refused_connect_is_reported_and_credentials_work(tmp_path, topic, protocol):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "ingest", "s3cret/é"], check=True)
    broker = Mosquitto(tmp_path / "mq")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
                           + f"password_file {pw}\n")
    broker.start()
    try:
        refused = WireConsumer(broker.url, Received(), options(protocol, f"{topic}/#", username="ingest",
                                                                 password="wrong"))
        with pytest.raises(MqttError, match="refused.*(bad user name or password|not authorized)"):
            refused.start(1.5)
        got = Received(ack_now=True)
        url = f"mqtt://ingest:{'s3cret%2F%C3%A9'}@127.0.0.1:{broker.port}"  # credentials in the URL
        c = started(url, got, options(protocol, f"{topic}/#"))
        try:
            # publishing needs credentials too
            paho_publish.single(f"{topic}/m", b"authorised", qos=1, hostname="127.0.0.1", port=broker.port,
                                auth={"username": "ingest", "password": "s3cret/é"})
            assert wait_for(lambda: got.payloads == [b"authorised"], 5)
        finally:
            c.stop()
    finally:
        broker.stop()


def test_two_consumers_sharing_a_client_id_back_off(mosquitto, relay, topic):
    """Each takes the session from the other; the backoff keeps growing instead of a 0.2 s fight."""
    opts = options(5, f"{topic}/#")
    a = started(relay.url, Received(), opts)
    b = WireConsumer(relay.url, Received(), opts)
    b.start(5)
    try:
        time.sleep(4)
        assert len(relay.sent) <= 12  # 0.2 s retries would make ~40 connections
    finally:
        a.stop()
        b.stop()
