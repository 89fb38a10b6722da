"""MQTT clients for the security tests: a bare CONNECT/CONNACK exchange (no library), a paho
client with a username, and a consumer callback that records what arrives."""

from __future__ import annotations

import socket
import ssl
import struct
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.wait import wait_for

ACCEPTED, NOT_AUTHORISED = 0, 5  # MQTT 3.1.1 CONNACK return codes


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connack(port: int, client_id: str, username: str | None = None, password: str | None = None, *,
            tls: ssl.SSLContext | None = None, server_name: str = "localhost") -> int:
    """Send one MQTT 3.1.1 CONNECT (clean session false) and return the CONNACK's code; then
    drop the connection (no DISCONNECT). Independent of any MQTT library. With ``tls``, over
    TLS (ssl.SSLError when the handshake fails)."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = _utf8("MQTT") + bytes((4, flags)) + struct.pack(">H", 30) + _utf8(client_id)
    body += (_utf8(username) if username is not None else b"") + (_utf8(password) if password is not None else b"")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        s = tls.wrap_socket(raw, server_hostname=server_name) if tls else raw
        s.sendall(bytes((0x10, len(body))) + body)
        got = b""
        while len(got) < 4:
            chunk = s.recv(4 - len(got))
            if not chunk:
                raise ConnectionError(f"closed before CONNACK (got {got!r})")
            got += chunk
    assert got[0] == 0x20, got
    return got[3]


class Client:
    """A paho MQTT 5 client with a username; records what it receives."""

    def __init__(self, port: int, username: str, password: str, client_id: str = "",
                 tls: ssl.SSLContext | None = None):
        self.received: list[tuple[str, bytes]] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username,
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.username_pw_set(username, password)
        if tls:
            self.c.tls_set_context(tls)
        self.c.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        connected, self.dropped = threading.Event(), threading.Event()
        self.c.on_connect = lambda c, u, flags, rc, props: connected.set() if not rc.is_failure else None
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.dropped.set()
        self.c.connect("localhost" if tls else "127.0.0.1", port)
        self.c.loop_start()
        assert connected.wait(10), f"{username} could not connect"

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, waits for the PUBACK (the broker has routed it by then)."""
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def attempt(self, topic: str, payload: bytes) -> None:
        """A QoS 1 publish the broker may refuse: wait for its PUBACK (Mosquitto's is 0x87,
        not authorised) or for the broker to close the connection, which Mosquitto 2.0.11 did
        here after some refused publishes; either way it has handled the PUBLISH by then."""
        info = self.c.publish(topic, payload, qos=1)
        assert wait_for(lambda: info.is_published() or self.dropped.is_set(), 10)

    def subscribe(self, topic: str) -> list:
        codes: list = []
        done = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, props: (codes.extend(rcs), done.set())
        self.c.subscribe(topic, qos=1)
        assert done.wait(10)
        return codes

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Received:
    def __init__(self):
        self.items: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, ack) -> None:
        with self.lock:
            self.items.append((topic, bytes(payload)))
        if ack is not None:
            ack()

    def tagged(self, tag: bytes) -> list[tuple[str, bytes]]:
        with self.lock:
            return [(t, p) for t, p in self.items if p.startswith(tag)]

    def wait(self, tag: bytes, payload: bytes, timeout: float = 10) -> list[tuple[str, bytes]]:
        """Wait for ``tag + payload``; return everything tagged ``tag`` received by then."""
        assert wait_for(lambda: any(p == tag + payload for _, p in self.tagged(tag)), timeout), \
            f"{tag + payload!r} never arrived: {self.tagged(tag)}"
        return self.tagged(tag)


