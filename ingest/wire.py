"""A fast MQTT consumer on stdlib sockets: the ingest hot path without paho's per-packet costs.

``WireConsumer`` has exactly the interface of :class:`ingest.mqtt.MqttConsumer` (same
``BrokerAddress`` URL, same ``ConsumerOptions``, ``start``/``stop``, ``connected`` and
``subscribed`` events, ``on_message(topic, payload, ack)``) and the same guarantees:

- Persistent session: ``clean_session=False`` (3.1.1) or ``clean_start=False`` with a Session
  Expiry Interval (5), so the broker queues QoS 1 messages while the consumer is away and
  redelivers the unacknowledged ones after a reconnect.
- Manual acknowledgement: a QoS 1 message comes with an ``ack`` callable, callable from any
  thread, at most once; its PUBACK is sent only then. PUBACKs go out in the order the PUBLISHes
  were received (MQTT 3.1.1 4.6, MQTT 5 4.6), whatever the order of the ``ack`` calls: an ack
  that comes before an earlier message's is held until that one is acked (or its handler
  failed: then it is passed over, never acknowledged on this connection, and redelivered after
  the next reconnect). Acks are queued under a lock; every pending PUBACK goes out in one
  ``sendall``, from the I/O thread after each chunk of received packets, or from the sender
  thread, woken at most once per batch of acks, not once per ack.
- Keep-alive and acknowledgements do not depend on delivery: while ``on_message``/``on_batch``
  blocks (the pipeline's backpressure), the I/O thread does not read the socket (TCP
  backpressure), but the sender thread still sends the acks called meanwhile and a PINGREQ
  every keep-alive, so the broker keeps the connection. Socket writes are serialised by a lock
  (and so are TLS reads, an SSL object being unsafe to use from two threads at once). If a write
  fails, ``connected`` is cleared at once and the connection is closed and made again.
- Acknowledgements belong to a connection: an ``ack`` from an older connection (generation
  counter) is dropped, never sent, because after a reconnect the broker redelivers every
  unacknowledged message and may reuse their packet ids for new ones.
- Backpressure: with MQTT 5 the CONNECT carries ``receive_maximum``; while ``on_message`` blocks,
  the socket is not read (TCP backpressure).
- Fails closed: a SUBACK refusing any filter (0x80, or an MQTT 5 reason >= 0x80), granting less
  than the requested QoS, or a CONNACK Maximum QoS below it is an error (:class:`SubscriptionRefused`):
  logged, counted, kept in ``problem`` (for /health), the connection closed and made again with
  backoff, ``subscribed`` clear; ``start()`` raises it if the first connection ends that way.
- Session loss is an error: a CONNACK with session present = 0 after this consumer had a session
  (a subscription acknowledged earlier, with a session that outlives the connection) means the
  broker dropped what it queued for us; logged at ERROR, counted, ``session_lost_at`` set.
- Maximum Packet Size (MQTT 5): :data:`ingest.mqtt.MAX_PACKET_SIZE` is announced; a longer packet
  from the broker is a protocol error (the connection is closed and made again).
- Retained messages are told apart: ``on_batch`` gets ``(topic, payload, ack, True)`` for a
  PUBLISH with the retain flag, ``on_message`` gets ``retained=True`` if it takes that keyword.
- Reconnects by itself with backoff (0.2 s doubling to 5 s, jittered down by up to a quarter; back to
  0.2 s after a connection that lasted 5 s) after a drop, a broker restart, a refused CONNECT or a missed PINGRESP;
  resubscribes on every connection; ``connected`` is clear while down. A malformed packet
  closes the connection (logged) and never ends the I/O thread; an exception from
  ``on_message`` is logged with the topic and the loop goes on (that message stays
  unacknowledged).

Supported: MQTT 3.1.1 and 5, QoS 0 and 1 subscriptions (the broker never sends a higher QoS than
subscribed; a QoS 2 PUBLISH is treated as a protocol error), shared subscriptions (``$share/g/f``
is just a filter), mqtts:// (the system CA store, or ``ConsumerOptions.tls``: a CA file, a
client certificate and key, the server name to verify; host name always checked). Not
supported: QoS 2, MQTT 5 enhanced authentication, topic aliases (none are announced, so the
broker sends none).

Why it exists (measured in bench/mqtt_client/README.md): paho-mqtt spends several ``recv`` calls,
a Properties object (v5) and, with manual acknowledgement, a socketpair wake-up per message,
which caps the consumer far below what the broker can deliver. Here one ``recv`` reads up to
256 KiB and every complete packet in it is parsed in one loop.
"""

from __future__ import annotations

import functools
import logging
import select
import socket
import ssl
import threading
import time

from devices.backoff import Backoff
from ingest.mqtt import (
    MAX_PACKET_SIZE,
    BrokerAddress,
    ConsumerOptions,
    MqttError,
    OnBatch,
    OnMessage,
    SubscriptionRefused,
    accepts_retained,
    close_gracefully,
    note_session,
    wait_first_connection,
)
from ingest.mqtt_packets import (
    _DISCONNECT,
    _MAXIMUM_QOS,
    _PINGREQ,
    _SERVER_KEEP_ALIVE,
    _U16,
    _U32,
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    ProtocolError,
    _packet,
    _properties,
    _pubacks,
    _reason,
    _utf8,
    _varint,
)

log = logging.getLogger("citywatch.mqtt.wire")

__all__ = ["ProtocolError", "WireConsumer"]

CHUNK = 256 * 1024  # bytes asked of one recv
# reconnects: 0.2 s doubling to 5 s, each delay 75-100 % of that (devices/backoff.py): consumers
# that lost the broker together spread out, and the doubling stays what two consumers fighting
# over one client id need (test_two_consumers_sharing_a_client_id_back_off)
RECONNECT = Backoff(0.2, 5.0, jitter=0.25)
CONNECT_TIMEOUT_S = 10.0  # TCP/TLS connect, then CONNACK
STABLE_S = 5.0  # a connection that lasted this long resets the backoff
FLUSH_EVERY = 1024  # packets parsed between two PUBACK flushes inside one chunk
# A packet over MAX_PACKET_SIZE is always incomplete in the data of one recv (CHUNK is smaller),
# so _parse checks the size only where it waits for the rest of a packet: no per-packet cost.
assert CHUNK < MAX_PACKET_SIZE

class _Closed(Exception):
    """The connection ended (EOF, socket error, keepalive timeout); reconnect."""


class WireConsumer:
    """MQTT 3.1.1/5 consumer: one I/O thread and one sender thread, QoS 0/1, persistent session,
    manual acks.

    Drop-in replacement for :class:`ingest.mqtt.MqttConsumer`; ``on_message`` runs on the I/O
    thread, in receive order. With ``on_batch``, that is called instead, once per read of the
    socket (at most ``FLUSH_EVERY`` messages), with the list of ``(topic, payload, ack)`` it held
    (``(topic, payload, ack, True)`` for a retained message; the ingest pipeline's
    ``submit_many``: its per-call costs paid once per read, not per message). ``metrics`` (an
    :class:`ingest.metrics.IngestMetrics`) counts refused subscriptions and lost sessions.
    """

    def __init__(self, url: str, on_message: OnMessage, options: ConsumerOptions | None = None, *,
                 on_batch: OnBatch | None = None, metrics=None):
        self.address = BrokerAddress.parse(url)
        self.options = o = options or ConsumerOptions()
        if o.qos not in (0, 1):
            raise ValueError(f"WireConsumer subscribes at QoS 0 or 1, got {o.qos} (QoS 2 is not supported)")
        if o.protocol not in (4, 5):
            raise ValueError(f"protocol must be 4 (MQTT 3.1.1) or 5, got {o.protocol}")
        if not o.client_id:
            raise ValueError("a persistent session needs a client_id")
        if not o.topics:
            raise ValueError("no topics to subscribe to")
        if not 0 <= o.keepalive_s <= 65535:
            raise ValueError(f"keepalive_s must be within 0..65535, got {o.keepalive_s}")
        self._on_message = on_message
        self._on_message_retained = accepts_retained(on_message)
        self._on_batch = on_batch
        self._metrics = metrics
        self._user = o.username or self.address.username
        self._password = (o.password or self.address.password) if self._user else ""
        self._connect_packet = self._build_connect()
        self._subscribe_packet = self._build_subscribe()
        self._tls_context = o.tls.context() if self.address.tls else None
        self._server_name = o.tls.server_name or self.address.host

        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.last_error = ""  # the latest reason the connection failed or was refused
        self.problem = ""  # why the consumer cannot receive as it must (fail closed); "" once subscribed
        self.session_lost_at: float | None = None  # wall-clock time of the latest lost session
        # a session the broker keeps for us once a subscription was acknowledged (3.1.1: always;
        # 5: with a session expiry): a later CONNACK without it means the broker lost it
        self._session_outlives = o.protocol == 4 or o.session_expiry_s > 0
        self._had_session = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._first_done = threading.Event()  # the first connection subscribed, or ended refused
        self._first_error: MqttError | None = None
        self._got_publish = False  # a PUBLISH arrived on this connection (a backlog before the SUBACK)
        self._io_ident = 0
        self._connacked = False  # of the current connection (I/O thread only)
        self._connacked_at = 0.0
        self._wake_r, self._wake_w = socket.socketpair()  # wakes the I/O thread's select on stop
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Socket writes (and TLS reads) under _write_lock; _sock is the current connection's
        # socket once CONNACKed, None otherwise: what the sender thread writes to.
        self._write_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._current: socket.socket | None = None  # the connection being made or run (I/O thread)
        self._send_wake = threading.Event()
        self._keepalive = o.keepalive_s
        self._last_send = 0.0
        self._ping_sent = 0.0
        # ack queue, guarded by _ack_lock, of the current generation: _acks holds the packet ids
        # ready to go out (receive order); _next_seq is the receive number of the next message
        # to acknowledge; _early holds acks (seq -> pid, or None: passed over) that came first
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._acks: list[int] = []
        self._next_seq = 0
        self._early: dict[int, int | None] = {}
        self._rx_seq = 0  # receive number of the next QoS 1 PUBLISH (I/O thread)
        self._ack_signalled = False  # a wake-up is on its way (or the I/O thread will flush anyway)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, wait_s: float | None = 10.0) -> None:
        """Start the I/O and sender threads; with ``wait_s``, wait that long for the first
        connection's SUBACK (or for a CONNACK followed by messages: a resumed session may
        deliver its backlog before the SUBACK) or stop and raise MqttError
        (:class:`SubscriptionRefused` when the broker refused the subscription)."""
        if self._thread is not None:
            raise MqttError("WireConsumer already started")
        self._thread = threading.Thread(target=self._run, name="mqtt-wire", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-wire-sender", daemon=True)
        self._thread.start()
        self._sender.start()
        if not wait_s:
            return
        wait_first_connection(self, wait_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send the acks already called, DISCONNECT (the session keeps what was not
        acknowledged) and end the threads (waits up to ``timeout_s``)."""
        self._stopping.set()
        self._wake()
        self._send_wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout_s)
            if t.is_alive():
                log.warning("MQTT I/O thread did not end within %.0f s (on_message blocked?)", timeout_s)
        if self._sender is not None and self._sender is not threading.current_thread():
            self._sender.join(timeout_s)
        if t is None or not t.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    # -- acknowledgements (any thread) -----------------------------------------------------------

    def _ack(self, generation: int, seq: int, pid: int | None) -> None:
        """Acknowledge the ``seq``-th QoS 1 message of connection ``generation`` (packet id
        ``pid``; None: pass it over unacknowledged). Its PUBACK is queued once every earlier
        message of the connection is acknowledged or passed over (receive order)."""
        with self._ack_lock:
            if generation != self._generation:
                return  # an older connection's message: its redelivered copy gets acked instead
            if seq == self._next_seq and not self._early and pid is not None:  # in order: the usual case
                self._acks.append(pid)
                self._next_seq = seq + 1
            elif not self._ack_in_order(seq, pid):
                return
            if self._ack_signalled:
                return
            self._ack_signalled = True
        if threading.get_ident() != self._io_ident:
            self._send_wake.set()  # the I/O thread flushes after its current chunk anyway

    def _ack_in_order(self, seq: int, pid: int | None) -> bool:
        """Under _ack_lock: record an ack that is out of order or passes a message over; True if
        PUBACKs were queued."""
        nxt = self._next_seq
        if seq != nxt:
            if seq > nxt:
                if pid is not None:
                    self._early[seq] = pid
                else:
                    self._early.setdefault(seq, None)
            return False  # held back; or seq < nxt: acknowledged (or passed over) already
        if pid is not None:
            self._acks.append(pid)
        nxt += 1
        early = self._early
        while nxt in early:
            held = early.pop(nxt)
            if held is not None:
                self._acks.append(held)
            nxt += 1
        self._next_seq = nxt
        return True

    def _pass_over(self, items) -> None:
        """The handler of these messages failed: they stay unacknowledged (redelivered after the
        next reconnect) without holding back the PUBACKs of the messages after them."""
        for item in items:
            acker = item[2]
            if acker is not None:
                generation, seq, _ = acker.args
                self._ack(generation, seq, None)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\x00")
        except (BlockingIOError, OSError):
            pass  # full (a wake-up is pending anyway) or closed (stopped)

    def _flush_acks(self) -> None:
        """Send every queued PUBACK (I/O or sender thread); OSError if the socket fails."""
        with self._write_lock:
            with self._ack_lock:
                pids, self._acks = self._acks, []
                self._ack_signalled = False
            sock = self._sock
            if pids and sock is not None:
                sock.sendall(_pubacks(pids))
                self._last_send = time.monotonic()

    def _new_generation(self) -> int:
        with self._ack_lock:
            self._generation += 1
            self._acks = []
            self._early = {}
            self._next_seq = 0
            self._rx_seq = 0
            self._ack_signalled = False
            return self._generation

    # -- sender thread: acks called while the I/O thread is busy, keep-alive ----------------------

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            timeout = None
            if self._sock is not None and self._keepalive:
                timeout = max(self._last_send + self._keepalive - time.monotonic(), 0.0)
            self._send_wake.wait(timeout)
            self._send_wake.clear()
            if self._stopping.is_set():
                return  # the I/O thread sends the last acks and the DISCONNECT
            sock = self._sock
            try:
                self._flush_acks()
                self._keepalive_tick()
            except OSError as e:
                self._broken(sock, e)
            except Exception:  # a bug here must not end keep-alive: log, go on
                log.exception("MQTT sender thread failed")

    def _keepalive_tick(self) -> None:
        ka = self._keepalive
        if not ka:
            return
        with self._write_lock:
            sock = self._sock
            now = time.monotonic()
            if sock is not None and now - self._last_send >= ka:
                if not self._ping_sent:  # before the send: its PINGRESP may be read before sendall returns
                    self._ping_sent = now
                sock.sendall(_PINGREQ)
                self._last_send = now

    def _broken(self, sock: socket.socket | None, e: OSError) -> None:
        """A write failed: the connection cannot be kept. Clear ``connected`` now (the I/O
        thread may be blocked in delivery) and shut the socket so that the I/O thread's next
        read ends the connection and it reconnects."""
        with self._write_lock:
            if sock is None or sock is not self._sock:
                return  # that connection is over already
            self._sock = None
        self.connected.clear()
        self.last_error = f"sending to the broker failed: {e or type(e).__name__}"
        log.warning("MQTT connection to %s:%d cannot be kept (%s); reconnecting",
                    self.address.host, self.address.port, self.last_error)
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket (under a TLS one)
        except OSError:
            pass

    # -- packets we send -------------------------------------------------------------------------

    def _build_connect(self) -> bytes:
        o = self.options
        flags = 0x00  # clean session / clean start: false
        if self._user:
            flags |= 0x80
            if self._password:
                flags |= 0x40
        body = _utf8("MQTT") + bytes((o.protocol, flags)) + _U16.pack(o.keepalive_s)
        if o.protocol == 5:
            props = (b"\x11" + _U32.pack(min(max(o.session_expiry_s, 0), 0xFFFFFFFF))
                     + b"\x21" + _U16.pack(min(max(o.receive_maximum, 1), 65535))
                     + b"\x27" + _U32.pack(MAX_PACKET_SIZE))
            body += _varint(len(props)) + props
        body += _utf8(o.client_id)
        if self._user:
            body += _utf8(self._user)
            if self._password:
                body += _utf8(self._password)
        return _packet(CONNECT << 4, body)

    def _build_subscribe(self) -> bytes:
        o = self.options
        body = _U16.pack(1)  # packet id 1: the only SUBSCRIBE in flight
        if o.protocol == 5:
            body += b"\x00"  # no properties
        for t in o.topics:
            body += _utf8(t) + bytes((o.qos,))  # v5 options: no-local 0, retain-as-published 0, handling 0
        return _packet((SUBSCRIBE << 4) | 0x02, body)

    # -- I/O thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        retry = RECONNECT.streak()
        while not self._stopping.is_set():
            sock = None
            self._connacked = False
            self._got_publish = False
            failure: MqttError | None = None
            try:
                sock = self._open()
                self._session(sock)
            except SubscriptionRefused as e:
                failure = e
                self.last_error = self.problem = str(e)
                if self._metrics is not None:
                    self._metrics.mqtt_refused.inc()
                log.error("MQTT broker %s:%d: %s; closing the connection and retrying",
                          self.address.host, self.address.port, e)
            except ProtocolError as e:
                self.last_error = str(e)
                log.error("MQTT protocol error from %s:%d, closing the connection: %s",
                          self.address.host, self.address.port, e)
            except ssl.SSLError as e:  # before OSError: certificate problems are errors, not drops
                self.last_error = f"TLS with {self.address.host}:{self.address.port} failed: {e}"
                failure = MqttError(self.last_error)
                log.error("MQTT %s", self.last_error)
            except (_Closed, OSError) as e:
                self.last_error = str(e) or type(e).__name__
                if not self._stopping.is_set():
                    log.warning("MQTT connection to %s:%d lost or failed (%s); reconnecting",
                                self.address.host, self.address.port, self.last_error)
            except Exception:  # a bug here must not end ingest: log, reconnect
                log.exception("MQTT I/O thread failed; reconnecting")
            finally:
                with self._write_lock:
                    self._sock = None
                self.connected.clear()
                self.subscribed.clear()
                self._new_generation()  # acks of that connection are void from now on
                if sock is not None:
                    sock.close()
            if failure is not None and not self._first_done.is_set():
                self._first_error = failure
                self._first_done.set()
            if self._connacked and time.monotonic() - self._connacked_at >= STABLE_S:
                retry.reset()  # a connection that had lasted: retry soon
            # else (refused, or dropped at once, e.g. two consumers sharing a client id taking
            # the session from each other): keep doubling
            if self._stopping.wait(retry.next()):
                break

    def _open(self) -> socket.socket:
        a = self.address
        sock = socket.create_connection((a.host, a.port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls_context is not None:
                sock = self._tls_context.wrap_socket(sock, server_hostname=self._server_name)
            sock.sendall(self._connect_packet)
        except BaseException:
            sock.close()
            raise
        return sock

    def _session(self, sock: socket.socket) -> None:
        """Run one connection until it ends (returns on stop, raises otherwise)."""
        tls = isinstance(sock, ssl.SSLSocket)
        self._current = sock
        self._keepalive = self.options.keepalive_s
        self._last_send = now = time.monotonic()
        self._ping_sent = 0.0
        connect_deadline = now + CONNECT_TIMEOUT_S
        write_lock = self._write_lock
        parts: list[bytes] = []
        have = need = 0  # bytes buffered; bytes needed before parsing is worthwhile
        try:
            while True:
                if self._stopping.is_set():
                    if self._connacked:
                        self._flush_acks()
                        with write_lock:
                            self._sock = None  # the sender writes nothing after the DISCONNECT
                            sock.sendall(_DISCONNECT)
                    close_gracefully(sock)
                    return
                timeout = self._tick(connect_deadline)
                if tls:
                    with write_lock:
                        pending = sock.pending()
                if not (tls and pending):
                    readable, _, _ = select.select([sock, self._wake_r], [], [], timeout)
                    if self._wake_r in readable:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    if sock not in readable:
                        continue
                if tls:
                    with write_lock:
                        chunk = sock.recv(CHUNK)
                else:
                    chunk = sock.recv(CHUNK)
                if not chunk:
                    raise _Closed("connection closed by the broker")
                self._ping_sent = 0.0  # the broker is alive
                parts.append(chunk)
                have += len(chunk)
                if have < need:
                    continue
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                pos, need = self._parse(data)
                rest = data[pos:]
                parts = [rest] if rest else []
                have = len(rest)
                if self._ping_sent:
                    # sent (by the sender thread) while delivery blocked: its PINGRESP may wait
                    # unread in the socket; give it a keep-alive from now
                    self._ping_sent = time.monotonic()
                if self._connacked:
                    self._flush_acks()
        except TimeoutError:
            raise _Closed(f"socket send or receive timed out ({CONNECT_TIMEOUT_S:.0f} s)") from None

    def _tick(self, connect_deadline: float) -> float | None:
        """CONNACK and PINGRESP deadlines (the sender thread sends the PINGREQs); returns the
        select timeout until the next check."""
        now = time.monotonic()
        if not self._connacked:
            if now >= connect_deadline:
                raise _Closed(f"no CONNACK within {CONNECT_TIMEOUT_S:.0f} s")
            return connect_deadline - now
        ka = self._keepalive
        if not ka:
            return None
        ping_sent = self._ping_sent
        if not ping_sent:
            return ka
        if now - ping_sent >= ka:
            raise _Closed(f"no PINGRESP within {ka} s")
        return ping_sent + ka - now

    def _parse(self, data: bytes) -> tuple[int, int]:
        """Handle every complete packet in ``data``; returns (bytes consumed, bytes the next
        packet needs from there, or 0 if unknown yet)."""
        n = len(data)
        pos = 0
        v5 = self.options.protocol == 5
        on_message = self._on_message
        ack = self._ack
        partial = functools.partial
        generation = self._generation
        seq = self._rx_seq
        since_flush = 0
        batch: list[tuple] | None = [] if self._on_batch is not None else None
        try:
            while True:
                if n - pos < 2:
                    return pos, 0
                b0 = data[pos]
                b = data[pos + 1]
                if b < 0x80:
                    length, h = b, pos + 2
                else:
                    length, shift, h = b & 0x7F, 7, pos + 2
                    while True:
                        if h >= n:
                            return pos, 0
                        b = data[h]
                        h += 1
                        length |= (b & 0x7F) << shift
                        if b < 0x80:
                            break
                        shift += 7
                        if shift > 21:
                            raise ProtocolError("malformed remaining length")
                end = h + length
                if end > n:
                    if end - pos > MAX_PACKET_SIZE:
                        raise ProtocolError(f"packet of {end - pos} bytes is over the Maximum Packet "
                                            f"Size of {MAX_PACKET_SIZE}")
                    return pos, end - pos
                if b0 >> 4 == PUBLISH:
                    qos = (b0 >> 1) & 3
                    if length < 2 or not self._connacked:
                        raise ProtocolError("PUBLISH too short" if length < 2 else "PUBLISH before CONNACK")
                    j = h + 2 + ((data[h] << 8) | data[h + 1])
                    try:
                        topic = data[h + 2:j].decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError("PUBLISH topic is not UTF-8") from None
                    if qos:
                        if qos != 1:
                            raise ProtocolError(f"PUBLISH at QoS {qos}, subscribed at most at 1")
                        pid = (data[j] << 8) | data[j + 1] if j + 2 <= end else 0
                        if not pid:
                            raise ProtocolError("PUBLISH without a packet id")
                        j += 2
                    if v5:
                        if j < end and data[j] < 0x80:
                            j += 1 + data[j]
                        else:
                            _, j = _properties(data, j, end)
                    if j > end or not topic:
                        raise ProtocolError("malformed PUBLISH")
                    payload = data[j:end]
                    if qos:
                        acker = partial(ack, generation, seq, pid)
                        seq += 1
                    else:
                        acker = None
                    if batch is not None:
                        batch.append((topic, payload, acker) if not b0 & 1 else (topic, payload, acker, True))
                    else:
                        try:
                            if b0 & 1 and self._on_message_retained:
                                on_message(topic, payload, acker, retained=True)
                            else:
                                on_message(topic, payload, acker)
                        except Exception:  # one bad message must not stop the loop; it stays unacknowledged
                            log.exception("handling a message on %s failed; payload %r", topic, payload[:200])
                            if acker is not None:
                                ack(generation, seq - 1, None)
                    since_flush += 1
                    if since_flush >= FLUSH_EVERY:
                        since_flush = 0
                        if batch:
                            self._deliver(batch)
                        self._flush_acks()
                else:
                    if batch:
                        self._deliver(batch)  # in order: what came before a control packet first
                    self._rx_seq = seq
                    self._control(b0, data, h, end)
                    generation = self._generation
                    seq = self._rx_seq
                pos = end
        finally:
            if seq != self._rx_seq:
                self._rx_seq = seq
                self._got_publish = True
            if batch:
                self._deliver(batch)  # what was parsed before a return or an error

    def _deliver(self, batch: list) -> None:
        """Hand the messages parsed so far to ``on_batch`` (and empty the list)."""
        self._got_publish = True
        try:
            self._on_batch(batch)
        except Exception:  # they stay unacknowledged; the loop goes on
            log.exception("handling %d messages (first on %s) failed", len(batch), batch[0][0])
            self._pass_over(batch)
        batch.clear()

    def _control(self, b0: int, data: bytes, h: int, end: int) -> None:
        """Every packet but PUBLISH."""
        kind = b0 >> 4
        o = self.options
        if not self._connacked and kind != CONNACK:
            raise ProtocolError(f"expected CONNACK, got packet type {kind}")
        if kind == PINGRESP:
            self._ping_sent = 0.0
        elif kind == SUBACK:
            self._suback(data, h, end)
        elif kind == CONNACK:
            self._connack(data, h, end)
        elif kind == DISCONNECT:
            code = data[h] if end > h else 0
            props = _properties(data, h + 1, end)[0] if o.protocol == 5 and end > h + 1 else {}
            raise _Closed(f"broker sent DISCONNECT: {_reason(code, 5, props)}")
        elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH):
            raise ProtocolError(f"unexpected packet type {kind} (this client publishes nothing "
                                "and never subscribes at QoS 2)")
        else:
            raise ProtocolError(f"unknown or client-only packet type {kind}")

    def _suback(self, data: bytes, h: int, end: int) -> None:
        """Every filter granted at the requested QoS, or SubscriptionRefused (fail closed: a
        refused filter receives nothing, a QoS 0 grant ends at-least-once delivery)."""
        o = self.options
        if end - h < 3:
            raise ProtocolError("SUBACK too short")
        i = h + 2
        props: dict[int, object] = {}
        if o.protocol == 5:
            props, i = _properties(data, i, end)
        codes = data[i:end]
        if len(codes) != len(o.topics):
            raise ProtocolError(f"SUBACK has {len(codes)} codes for {len(o.topics)} topics")
        for topic, code in zip(o.topics, codes, strict=True):
            if code >= 0x80:
                raise SubscriptionRefused(f"subscription to {topic!r} refused: {_reason(code, 5, props)}")
            if code < o.qos:
                raise SubscriptionRefused(f"subscription to {topic!r} granted at QoS {code}, "
                                          f"not the QoS {o.qos} at-least-once delivery needs")
        self.problem = ""
        self._had_session = self._session_outlives
        self.subscribed.set()
        self._first_done.set()

    def _connack(self, data: bytes, h: int, end: int) -> None:
        o = self.options
        if self._connacked:
            raise ProtocolError("second CONNACK")
        if end - h < 2:
            raise ProtocolError("CONNACK too short")
        session_present, code = data[h] & 1, data[h + 1]
        props = _properties(data, h + 2, end)[0] if o.protocol == 5 and end > h + 2 else {}
        if code:
            self.last_error = f"connection refused: {_reason(code, o.protocol, props)}"
            log.error("MQTT broker %s:%d refused the connection: %s; retrying",
                      self.address.host, self.address.port, _reason(code, o.protocol, props))
            raise _Closed(self.last_error)
        max_qos = props.get(_MAXIMUM_QOS, 2)
        if max_qos < o.qos:
            raise SubscriptionRefused(f"the broker allows QoS {max_qos} at most (CONNACK Maximum QoS), "
                                      f"not the QoS {o.qos} at-least-once delivery needs")
        if _SERVER_KEEP_ALIVE in props:  # the broker's keepalive overrides ours (MQTT 5 3.2.2.3.14)
            self._keepalive = int(props[_SERVER_KEEP_ALIVE])
        self._new_generation()
        self._connacked = True
        self._connacked_at = time.monotonic()
        self.last_error = ""
        note_session(self, bool(session_present), o.client_id)
        with self._write_lock:
            sock = self._sock = self._current
            sock.sendall(self._subscribe_packet)
            self._last_send = time.monotonic()
        self._send_wake.set()  # the sender's keep-alive timer starts now
        self.connected.set()
