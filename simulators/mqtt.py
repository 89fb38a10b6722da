"""MQTT plumbing of the simulators (paho-mqtt 2.x): broker URLs, a publisher with a bounded
number of unacknowledged messages, and wall-clock pacing. paho stays inside this module;
its errors become :class:`~simulators.errors.BrokerError`."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .errors import BrokerError

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://`` (TLS, 8883)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "BrokerURL":
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise BrokerError(f"bad broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
        try:
            port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        except ValueError:
            raise BrokerError(f"bad broker URL {url!r}: the port is not a number 1-65535") from None
        return cls(u.hostname, port, u.scheme == "mqtts",
                   unquote(u.username) if u.username else None, unquote(u.password) if u.password else None)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def connect(url: str, client_id: str | None, *, timeout_s: float = 10.0,
            on_message: Callable | None = None, on_publish: Callable | None = None,
            max_inflight: int = 20) -> paho.Client:
    """A connected client with its network loop running; BrokerError if the broker cannot be
    reached or refuses us within ``timeout_s``."""
    b = BrokerURL.parse(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=True,
                         protocol=paho.MQTTv311)
    if b.username:
        client.username_pw_set(b.username, b.password)
    if b.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    connected = threading.Event()
    result: list = []

    def on_connect(c, userdata, flags, reason_code, properties):
        result.append(reason_code)
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    if on_publish is not None:
        client.on_publish = on_publish
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)  # 0: unbounded; Publisher bounds what is outstanding
    try:
        client.connect(b.host, b.port, keepalive=30)
    except (OSError, ValueError) as e:
        raise BrokerError(f"cannot connect to the MQTT broker at {b}: {e}") from None
    client.loop_start()
    if not connected.wait(timeout_s):
        client.loop_stop()
        raise BrokerError(f"the MQTT broker at {b} did not answer CONNECT within {timeout_s:g} s")
    rc = result[0]
    if rc.is_failure:
        client.loop_stop()
        raise BrokerError(f"the MQTT broker at {b} refused the connection: {rc}")
    return client


class Publisher:
    """Publishes with at most ``max_inflight`` messages not yet acknowledged (QoS 1: PUBACK;
    QoS 0: written to the socket). :meth:`close` waits for every message to be acknowledged."""

    def __init__(self, url: str, *, client_id: str | None = None, max_inflight: int = 1000,
                 timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._slots = threading.Semaphore(max_inflight)
        self._max = max_inflight
        self._client = connect(url, client_id, timeout_s=timeout_s, on_publish=self._acked,
                               max_inflight=max_inflight)
        self.published = 0

    def _acked(self, client, userdata, mid, reason_code, properties) -> None:
        self._slots.release()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if not self._slots.acquire(timeout=self.timeout_s):
            raise BrokerError(f"the MQTT broker at {self.url} acknowledged nothing for {self.timeout_s:g} s "
                              f"({self._max} messages in flight)")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self._slots.release()
            raise BrokerError(f"publishing to {topic} failed: {paho.error_string(info.rc)}")
        self.published += 1

    def close(self) -> None:
        """Wait (up to the timeout) until nothing is in flight, then disconnect."""
        deadline = time.monotonic() + self.timeout_s
        got = 0
        try:
            while got < self._max:
                left = deadline - time.monotonic()
                if left <= 0 or not self._slots.acquire(timeout=left):
                    raise BrokerError(f"{self._max - got} messages were still unacknowledged by {self.url} "
                                      f"after {self.timeout_s:g} s")
                got += 1
        finally:
            self._client.disconnect()
            self._client.loop_stop()


class Pacer:
    """Maps simulated (or recorded) time to wall-clock time at ``speed`` (None: no waiting).

    ``wait(t_ms)`` returns when wall-clock time reaches the moment of ``t_ms``, or at once
    when ``stop`` is set (then it returns False)."""

    def __init__(self, t0_ms: int, speed: float | None, stop: threading.Event | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), not {speed!r}")
        self.t0_ms = t0_ms
        self.speed = speed
        self.stop = stop or threading.Event()
        self.clock = clock
        self.wall0 = clock()

    def wait(self, t_ms: int) -> bool:
        if self.speed is None:
            return not self.stop.is_set()
        due = self.wall0 + (t_ms - self.t0_ms) / 1000.0 / self.speed
        left = due - self.clock()
        if left > 0.0005:
            return not self.stop.wait(left)
        return not self.stop.is_set()
