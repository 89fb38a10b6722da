"""MQTT plumbing of the simulators (paho-mqtt 2.x): broker URLs, a publisher with a bounded
number of unacknowledged messages, and wall-clock pacing. paho stays inside this module;
its errors become :class:`~simulators.errors.BrokerError`."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .errors import BrokerError

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://`` (TLS, 8883), with the TLS
    options of ``[mqtt]`` (:meth:`with_tls`): ``ca_file`` trusted instead of the system store,
    ``cert_file`` + ``key_file`` as client certificate, ``server_name`` verified instead of
    ``host``. Wherever the simulators take a broker URL string they take a BrokerURL too."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    @classmethod
    def parse(cls, url: str | BrokerURL) -> BrokerURL:
        if isinstance(url, BrokerURL):
            return url
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise BrokerError(f"bad broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
        try:
            port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        except ValueError:
            raise BrokerError(f"bad broker URL {url!r}: the port is not a number 1-65535") from None
        return cls(u.hostname, port, u.scheme == "mqtts",
                   unquote(u.username) if u.username else None, unquote(u.password) if u.password else None)

    def with_tls(self, ca_file: str = "", cert_file: str = "", key_file: str = "",
                 server_name: str = "") -> BrokerURL:
        if (ca_file or cert_file or key_file or server_name) and not self.tls:
            raise BrokerError(f"TLS options given for {self}: use an mqtts:// URL")
        return replace(self, ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=server_name)

    def tls_context(self) -> ssl.SSLContext:
        """The client TLS context (certificate and host name verified); BrokerError naming the
        file that cannot be loaded."""
        ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.server_name = self.server_name
        try:
            if self.ca_file:
                ctx.load_verify_locations(cafile=self.ca_file)
            else:
                ctx.load_default_certs()
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file or None)
        except (OSError, ssl.SSLError) as e:
            raise BrokerError(f"TLS files for {self} cannot be loaded: {e}") from None
        return ctx

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class _ServerNameContext(ssl.SSLContext):
    """Sends and verifies ``server_name`` (if set) instead of the host paho connects to."""

    server_name = ""

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        return super().wrap_socket(sock, *args, server_hostname=self.server_name or server_hostname, **kwargs)


def _new_client(b: BrokerURL, client_id: str | None) -> paho.Client:
    """A paho client for ``b`` (3.1.1, clean session, credentials and TLS from the URL)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=True,
                         protocol=paho.MQTTv311)
    if b.username:
        client.username_pw_set(b.username, b.password)
    if b.tls:
        client.tls_set_context(b.tls_context())
    return client


def connect(url: str | BrokerURL, client_id: str | None, *, timeout_s: float = 10.0,
            on_message: Callable | None = None, on_publish: Callable | None = None,
            max_inflight: int = 20) -> paho.Client:
    """A connected client with its network loop running; BrokerError if the broker cannot be
    reached or refuses us within ``timeout_s``."""
    b = BrokerURL.parse(url)
    client = _new_client(b, client_id)
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
    QoS 0: written to the socket). :meth:`close` waits for every message to be acknowledged.

    The network loop runs in the caller's thread (no paho background thread): a publish writes
    straight to the socket, and acknowledgements are read when the window is full, every few
    messages, and while :meth:`idle` waits, which keeps the connection alive between sparse
    messages. A lost connection is re-established (paho resends unacknowledged QoS 1 messages);
    BrokerError when that fails for ``timeout_s``. Not thread-safe: one publisher per thread.
    """

    def __init__(self, url: str | BrokerURL, *, client_id: str | None = None, max_inflight: int = 1000,
                 timeout_s: float = 10.0) -> None:
        self.url = str(url)
        self.timeout_s = timeout_s
        self._max = max_inflight
        self._inflight = 0
        self._since_read = 0
        self.published = 0
        self._client = _connect_manual(url, client_id, timeout_s, self._acked, max_inflight)

    def _acked(self, client, userdata, mid, reason_code, properties) -> None:
        self._inflight -= 1

    def _loop(self, timeout: float) -> None:
        rc = self._client.loop(timeout)
        if rc == paho.MQTT_ERR_SUCCESS:
            return
        deadline = time.monotonic() + self.timeout_s
        while True:  # connection lost: reconnect, paho then resends what was unacknowledged
            try:
                if self._client.reconnect() == paho.MQTT_ERR_SUCCESS and \
                        self._client.loop(0.5) == paho.MQTT_ERR_SUCCESS:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(f"lost the connection to the MQTT broker at {self.url} and could not "
                                  f"reconnect within {self.timeout_s:g} s")
            time.sleep(0.2)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if self._inflight >= self._max:
            deadline = time.monotonic() + self.timeout_s
            while self._inflight >= self._max:
                if time.monotonic() > deadline:
                    raise BrokerError(f"the MQTT broker at {self.url} acknowledged nothing for "
                                      f"{self.timeout_s:g} s ({self._max} messages in flight)")
                self._loop(0.05)
        self._inflight += 1
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN, paho.MQTT_ERR_CONN_LOST):
            self._inflight -= 1
            raise BrokerError(f"publishing to {topic} failed: {paho.error_string(info.rc)}")
        self.published += 1
        self._since_read += 1
        if self._since_read >= 64:
            self._since_read = 0
            self._loop(0)

    def idle(self, seconds: float) -> None:
        """Serve the connection (acknowledgements, keep-alive) for ``seconds``."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._loop(min(left, 0.5))

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """``close()`` after success (waits for acknowledgements), ``abort()`` after an error."""
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Disconnect at once, without waiting for acknowledgements (after an error)."""
        try:
            self._client.disconnect()
        except Exception:  # already broken: nothing more to release
            pass

    def close(self) -> None:
        """Wait (up to the timeout) until nothing is in flight, then disconnect."""
        deadline = time.monotonic() + self.timeout_s
        try:
            while self._inflight > 0:
                if time.monotonic() > deadline:
                    raise BrokerError(f"{self._inflight} messages were still unacknowledged by {self.url} "
                                      f"after {self.timeout_s:g} s")
                self._loop(0.05)
        finally:
            self._client.disconnect()
            self._client.loop(0.1)


def _connect_manual(url: str | BrokerURL, client_id: str | None, timeout_s: float, on_publish: Callable,
                    max_inflight: int) -> paho.Client:
    b = BrokerURL.parse(url)
    client = _new_client(b, client_id)
    result: list = []
    client.on_connect = lambda c, u, flags, rc, props: result.append(rc)
    client.on_publish = on_publish
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    try:
        client.connect(b.host, b.port, keepalive=30)
    except (OSError, ValueError) as e:
        raise BrokerError(f"cannot connect to the MQTT broker at {b}: {e}") from None
    deadline = time.monotonic() + timeout_s
    while not result:
        if time.monotonic() > deadline:
            raise BrokerError(f"the MQTT broker at {b} did not answer CONNECT within {timeout_s:g} s")
        rc = client.loop(0.1)
        if rc != paho.MQTT_ERR_SUCCESS:
            hint = " (TLS: does the broker require a client certificate, [mqtt] cert_file?)" if b.tls else ""
            raise BrokerError(f"the MQTT broker at {b} closed the connection before answering CONNECT: "
                              f"{paho.error_string(rc)}{hint}")
    if result[0].is_failure:
        raise BrokerError(f"the MQTT broker at {b} refused the connection: {result[0]}")
    return client


class Pacer:
    """Maps simulated (or recorded) time to wall-clock time at ``speed`` (None: no waiting).

    ``wait(t_ms)`` returns True when wall-clock time reaches the moment of ``t_ms``, False as
    soon as ``stop`` is set; while waiting it calls ``idle(seconds)`` (e.g. to serve a
    connection) or sleeps."""

    def __init__(self, t0_ms: int, speed: float | None, stop: threading.Event | None,
                 clock: Callable[[], float] = time.monotonic,
                 idle: Callable[[float], None] | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), not {speed!r}")
        self.t0_ms = t0_ms
        self.speed = speed
        self.stop = stop or threading.Event()
        self.clock = clock
        self.idle = idle
        self.wall0 = clock()

    def wait(self, t_ms: int) -> bool:
        if self.speed is None:
            return not self.stop.is_set()
        due = self.wall0 + (t_ms - self.t0_ms) / 1000.0 / self.speed
        while not self.stop.is_set():
            left = due - self.clock()
            if left <= 0.0005:
                return True
            if self.idle is None:
                self.stop.wait(left)
            else:
                self.idle(min(left, 0.25))
        return False
