"""The MQTT consumer: paho-mqtt 2.x, QoS 1, persistent session, manual acknowledgement.

- Persistent session: a fixed client id with MQTT 5 ``clean_start=False`` and a session expiry
  (or MQTT 3.1.1 ``clean_session=False``), so the broker queues QoS 1 messages while the
  consumer is away and redelivers unacknowledged ones after a reconnect.
- Manual acknowledgement: each message hands the pipeline an ``ack`` callable; PUBACK is sent
  only when the pipeline calls it, after the message's contents are durable.
- Acknowledgements belong to a connection: after a reconnect the broker redelivers every
  message that was unacknowledged on the old connection (MQTT session resumption), and may reuse
  their packet ids for new messages. An ``ack`` from an older connection is therefore dropped,
  never sent: the redelivered copy is acknowledged instead (and stored once, stores being
  idempotent).
- Backpressure: with MQTT 5 the consumer announces ``receive_maximum``, the most
  unacknowledged QoS 1 messages the broker may send it. With 3.1.1 the broker's own limit
  applies (Mosquitto: ``max_inflight_messages``).
- PUBACKs in receive order (MQTT 4.6), failing closed on a refused or downgraded subscription
  (:class:`SubscriptionRefused`), a lost session reported, :data:`MAX_PACKET_SIZE` announced,
  the retain flag passed on, TLS options (:class:`TlsOptions`): as ``ingest/wire.py`` (the
  default client) describes; keep-alive while ``on_message`` blocks is the wire client's only.
"""

from __future__ import annotations

import functools
import inspect
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("citywatch.mqtt")

# on_message(topic, payload, ack or None); called with ``retained=True`` for a message the broker
# sent because it was retained (MQTT retain flag) if the callable accepts that keyword
OnMessage = Callable[[str, bytes, "Callable[[], None] | None"], None]
# messages received together, in order: [(topic, payload, ack or None)] (ingest/wire.py); a
# retained message is a 4-tuple (topic, payload, ack, True)
OnBatch = Callable[[list[tuple]], None]

# The Maximum Packet Size the consumer announces in its MQTT 5 CONNECT. The decoder quarantines
# payloads over ingest.decode.MAX_PAYLOAD (256 KiB) as ``too_large``, so somewhat larger ones
# must still reach it. deploy/mosquitto.conf refuses packets over ``max_packet_size 300000``
# from publishers; a PUBLISH the broker forwards to us is at most a few bytes longer (the MQTT 5
# property length, a subscription identifier). A broker discards, for this client only and
# silently, a message over the announced size: so the announced size is the broker's limit plus
# a margin, never less. It also bounds what one packet can make this client buffer.
MAX_PACKET_SIZE = 300_000 + 4096


class MqttError(Exception):
    pass


class SubscriptionRefused(MqttError):
    """The broker refused a subscription, granted it below the requested QoS, or allows less
    than that QoS at all (CONNACK Maximum QoS): at-least-once delivery cannot be kept."""


def close_gracefully(sock: socket.socket, linger_s: float = 2.0) -> None:
    """Half-close, then read (and discard) until the broker closes or ``linger_s`` pass.

    The broker may still be reading our last PUBACKs (Mosquitto reads them one packet at a
    time) and writing to us; closing at once makes our kernel answer with a RST, and the
    broker drops the PUBACKs it had not read yet (measured: up to ~40,000 acknowledged
    messages redelivered after a stop; tests/ingest/test_wire.py and tests/faults test_e check
    this). Both consumers call it after their DISCONNECT is written."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + linger_s
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0] or not sock.recv(65536):
                return
    except (OSError, ValueError):
        pass


def accepts_retained(fn: Callable) -> bool:
    """Whether ``fn`` takes a ``retained`` keyword (checked once, not per message)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "retained" or p.kind is p.VAR_KEYWORD for p in params)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS for ``mqtts://``: ``ca_file`` is trusted instead of the system store, ``cert_file`` +
    ``key_file`` is the client certificate, ``server_name`` the name sent (SNI) and verified
    instead of the URL's host (when connecting by IP address). All empty: the system store."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    def context(self) -> ssl.SSLContext:
        """A client context (certificate and host name verified; ``server_name``, if set, sent
        and verified whatever host name the caller passes); ssl.SSLError or OSError naming the
        file if one cannot be loaded."""
        ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and host name
        ctx.server_name = self.server_name
        if self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
        else:
            ctx.load_default_certs()
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx


class _ReportingSSLSocket(ssl.SSLSocket):
    """Hands a failed handshake (e.g. a certificate that does not verify) to the context's
    ``on_handshake_error`` before raising it: paho swallows it and retries in silence."""

    def do_handshake(self, *args, **kwargs):
        try:
            return super().do_handshake(*args, **kwargs)
        except ssl.SSLError as e:
            report = getattr(self.context, "on_handshake_error", None)
            if report is not None:
                report(e)
            raise


class _ServerNameContext(ssl.SSLContext):
    """Sends and verifies ``server_name`` instead of the host name it is given (paho passes the
    host it connects to, an IP address when the broker is reached by address)."""

    server_name = ""
    on_handshake_error: Callable[[ssl.SSLError], None] | None = None
    sslsocket_class = _ReportingSSLSocket

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        return super().wrap_socket(sock, *args, server_hostname=self.server_name or server_hostname, **kwargs)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str = ""
    password: str = ""

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``; ValueError naming the problem."""
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"expected mqtt:// or mqtts://, got {url!r}")
        if not u.hostname:
            raise ValueError(f"no host in {url!r}")
        try:
            port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        return cls(u.hostname, port, u.scheme == "mqtts", unquote(u.username or ""),
                   unquote(u.password or ""))


@dataclass(slots=True)
class ConsumerOptions:
    client_id: str = "citywatch-ingest"
    topics: list[str] = field(default_factory=lambda: ["city/#"])
    qos: int = 1
    protocol: int = 5  # 5 or 4 (3.1.1)
    username: str = ""
    password: str = ""
    receive_maximum: int = 20_000
    session_expiry_s: int = 7 * 86400
    keepalive_s: int = 30
    tls: TlsOptions = field(default_factory=TlsOptions)  # used with mqtts:// only


class MqttConsumer:
    """paho-mqtt consumer with the guarantees of :class:`ingest.wire.WireConsumer` (see its
    docstring): PUBACKs in receive order, fail closed on a refused or downgraded subscription,
    session loss an error, Maximum Packet Size announced, retained messages told apart, TLS
    options. Unlike the wire client, paho sends keep-alives from the thread that runs
    ``on_message``: while that blocks for 1.5 keep-alives, the broker drops the connection. A
    watchdog thread then clears ``connected`` (so /health tells), and paho reconnects once
    delivery resumes (the unacknowledged messages are redelivered)."""

    def __init__(self, url: str, on_message: OnMessage, options: ConsumerOptions | None = None, *,
                 metrics=None):
        self.address = BrokerAddress.parse(url)
        self.options = o = options or ConsumerOptions()
        if o.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {o.qos}")
        self._on_message = on_message
        self._on_message_retained = accepts_retained(on_message)
        self._metrics = metrics
        self._generation = 0
        # receive order of the current connection's QoS 1 messages (under _lock): see _ack
        self._rx_seq = 0
        self._next_seq = 0
        self._early: dict[int, int | None] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._closed = threading.Event()  # set by on_disconnect (see stop())
        self.subscribed = threading.Event()
        self.last_error = ""
        self.problem = ""  # why the consumer cannot receive as it must (fail closed); "" once subscribed
        self.session_lost_at: float | None = None
        self._had_session = False
        self._first_done = threading.Event()
        self._first_error: MqttError | None = None
        self._got_publish = False  # a message arrived (a resumed session's backlog, before the SUBACK)
        self._delivering_since = 0.0  # monotonic time on_message was entered, 0 when not in it
        self._stopping = threading.Event()
        proto = MQTTProtocolVersion.MQTTv5 if o.protocol == 5 else MQTTProtocolVersion.MQTTv311
        self._client = c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=o.client_id,
            clean_session=None if o.protocol == 5 else False,
            protocol=proto,
            manual_ack=True,
        )
        user = o.username or self.address.username
        if user:
            c.username_pw_set(user, o.password or self.address.password)
        if self.address.tls:
            ctx = o.tls.context()
            ctx.on_handshake_error = self._tls_failed
            c.tls_set_context(ctx)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        c.on_subscribe = self._subscribed

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, wait_s: float | None = 10.0) -> None:
        o = self.options
        props = None
        if o.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = o.session_expiry_s
            props.ReceiveMaximum = min(max(o.receive_maximum, 1), 65535)
            props.MaximumPacketSize = MAX_PACKET_SIZE
            self._client.connect_async(self.address.host, self.address.port, o.keepalive_s,
                                       clean_start=False, properties=props)
        else:
            self._client.connect_async(self.address.host, self.address.port, o.keepalive_s)
        self._client.loop_start()
        if o.keepalive_s:
            threading.Thread(target=self._watch_delivery, name="mqtt-paho-watchdog", daemon=True).start()
        if not wait_s:
            return
        wait_first_connection(self, wait_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect (the persistent session keeps what was not acknowledged).

        Waits (up to ``timeout_s``) until the DISCONNECT is written: the acknowledgements
        queued before it go out first. paho's ``loop_stop`` alone may end the network thread
        with them still queued, and the broker would redeliver messages already stored.
        """
        self._stopping.set()
        was_connected = self.connected.is_set()
        self._closed.clear()
        self._client.disconnect()
        if was_connected and not self._closed.wait(timeout_s):
            log.warning("MQTT DISCONNECT not written within %.0f s; closing anyway", timeout_s)
        self._client.loop_stop()

    # -- callbacks (network thread) ------------------------------------------------------------

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        o = self.options
        if reason_code.is_failure:
            self.last_error = f"connection refused: {reason_code}"
            log.error("MQTT connect refused: %s", reason_code)
            return
        max_qos = getattr(properties, "MaximumQoS", 2) if properties is not None else 2
        if max_qos < o.qos:
            self._refused(f"the broker allows QoS {max_qos} at most (CONNACK Maximum QoS), "
                          f"not the QoS {o.qos} at-least-once delivery needs")
            return
        with self._lock:
            self._new_generation()
        note_session(self, bool(getattr(flags, "session_present", False)), o.client_id)
        self.last_error = ""
        self.connected.set()
        client.subscribe([(t, o.qos) for t in o.topics])

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:
        o = self.options
        for topic, rc in zip(o.topics, reason_codes, strict=False):
            if rc.is_failure:
                self._refused(f"subscription to {topic!r} refused: {rc} (0x{rc.value:02x})")
                return
            if rc.value < o.qos:
                self._refused(f"subscription to {topic!r} granted at QoS {rc.value}, "
                              f"not the QoS {o.qos} at-least-once delivery needs")
                return
        self.problem = ""
        self._had_session = o.protocol == 4 or o.session_expiry_s > 0
        self.subscribed.set()
        self._first_done.set()

    def _refused(self, why: str) -> None:
        """Fail closed: log, count, keep the reason, and drop the connection so that paho makes
        it again with its backoff (``disconnect()`` would end paho's reconnecting)."""
        self.problem = self.last_error = why
        self.connected.clear()
        self.subscribed.clear()
        if self._metrics is not None:
            self._metrics.mqtt_refused.inc()
        log.error("MQTT broker %s:%d: %s; closing the connection and retrying",
                  self.address.host, self.address.port, why)
        if not self._first_done.is_set():
            self._first_error = SubscriptionRefused(why)
            self._first_done.set()
        sock = self._client.socket()
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket (under a TLS one)
            except OSError:
                pass

    def _tls_failed(self, e: ssl.SSLError) -> None:
        self.last_error = f"TLS with {self.address.host}:{self.address.port} failed: {e}"
        log.error("MQTT %s", self.last_error)

    def _new_generation(self) -> None:
        """Under _lock: acks of the connection so far are void from now on."""
        self._generation += 1
        self._rx_seq = self._next_seq = 0
        self._early = {}

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        # A new generation from the moment the connection is gone, not only at the next CONNACK:
        # paho's reconnect replaces the socket before on_connect runs, and an old ack sent in
        # between would reach the new connection, where its packet id may name another message.
        with self._lock:
            self._new_generation()
        self.connected.clear()
        self.subscribed.clear()
        sock = client.socket()
        if self._stopping.is_set() and reason_code.value == 0 and sock is not None:
            close_gracefully(sock)  # our DISCONNECT is written; paho closes the socket after this
        self._closed.set()
        if reason_code.value != 0:
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _watch_delivery(self) -> None:
        """Clear ``connected`` when on_message has blocked for 1.5 keep-alives: paho sent no
        PINGREQ meanwhile and the broker has dropped (or is about to drop) the connection."""
        limit = 1.5 * self.options.keepalive_s
        while not self._stopping.wait(min(1.0, limit / 3)):
            since = self._delivering_since
            if since and time.monotonic() - since > limit and self.connected.is_set():
                self.connected.clear()
                self.last_error = f"delivery blocked for over {limit:g} s (1.5 keep-alives): no keep-alive sent"
                log.warning("MQTT %s; the broker drops the connection, paho reconnects when delivery resumes",
                            self.last_error)

    def _message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        self._got_publish = True
        self._delivering_since = time.monotonic()
        try:
            self._deliver(msg)
        finally:
            self._delivering_since = 0.0
            if not self.connected.is_set() and client.is_connected() and self.subscribed.is_set():
                self.connected.set()  # the watchdog cleared it, but the broker kept the connection

    def _deliver(self, msg: paho.MQTTMessage) -> None:
        ack = None
        if msg.qos > 0:
            with self._lock:
                generation, seq = self._generation, self._rx_seq
                self._rx_seq += 1
            ack = functools.partial(self._ack, generation, seq, msg.mid, msg.qos)
        try:
            if msg.retain and self._on_message_retained:
                self._on_message(msg.topic, msg.payload, ack, retained=True)
            else:
                self._on_message(msg.topic, msg.payload, ack)
        except Exception:  # one bad message must not stop the loop (it stays unacknowledged)
            log.exception("handling a message on %s failed; payload %r", msg.topic, msg.payload[:200])
            if ack is not None:
                self._ack(generation, seq, None, msg.qos)  # passed over: later acks not held back

    def _ack(self, generation: int, seq: int, mid: int | None, qos: int) -> None:
        """PUBACKs in receive order (MQTT 4.6): an ack is held until every earlier message of the
        connection is acked (or passed over: ``mid`` None). Under the lock: a disconnect cannot
        come between the check and the send."""
        with self._lock:
            if generation != self._generation:
                return
            nxt = self._next_seq
            if seq != nxt:
                if seq > nxt:
                    if mid is not None:
                        self._early[seq] = mid
                    else:
                        self._early.setdefault(seq, None)
                return
            if mid is not None:
                self._client.ack(mid, qos)
            nxt += 1
            while nxt in self._early:
                held = self._early.pop(nxt)
                if held is not None:
                    self._client.ack(held, qos)
                nxt += 1
            self._next_seq = nxt


def note_session(consumer, session_present: bool, client_id: str) -> None:
    """After a consumer's CONNACK: a persistent session the broker no longer has (``session
    present`` 0 after one existed) is an error, counted and kept in ``session_lost_at`` for
    /api/v1/health; otherwise an ordinary connection."""
    address = consumer.address
    if not session_present and consumer._had_session:
        consumer.session_lost_at = time.time()
        if consumer._metrics is not None:
            consumer._metrics.mqtt_session_lost.inc()
        log.error("MQTT broker %s:%d no longer has the session of %r (session present = 0): the "
                  "messages it had queued for this consumer, and those unacknowledged, are lost",
                  address.host, address.port, client_id)
    else:
        log.info("connected to %s:%d (session present: %s)", address.host, address.port, session_present)


def wait_first_connection(consumer, wait_s: float) -> None:
    """Wait up to ``wait_s`` for a consumer's (:class:`MqttConsumer`, ``ingest.wire.WireConsumer``)
    first SUBACK, or for a CONNACK followed by messages (a resumed session may deliver its
    backlog before the SUBACK, which then waits behind it). Otherwise stop it and raise
    :class:`MqttError`; the subscription's refusal (:class:`SubscriptionRefused`) or a TLS
    failure, if that is what ended the first connection."""
    deadline = time.monotonic() + wait_s
    while not consumer._first_done.wait(0.02):
        if consumer.connected.is_set() and consumer._got_publish:
            return  # a backlog is being delivered; its SUBACK comes after it
        if time.monotonic() >= deadline:
            if consumer.connected.is_set():
                return
            consumer.stop()
            why = f": {consumer.last_error}" if consumer.last_error else ""
            raise MqttError(f"could not connect to {consumer.address.host}:{consumer.address.port} "
                            f"within {wait_s:.0f} s{why}")
    if consumer._first_error is not None:
        consumer.stop()
        raise consumer._first_error
