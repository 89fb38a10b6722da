"""The embedded MQTT broker of ``citywatch up`` (amqtt, MQTT 3.1.1, in its own thread).

Zero install, but measured at about 9,000 msg/s (QoS 0) where Mosquitto takes 125,000: for the
demo, never for a benchmark or production (use ``citywatch serve`` with Mosquitto).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import warnings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883):
        self.host = host
        self.port = port or free_port(host)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._broker = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="citywatch-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded broker did not start")
        if self._error is not None:
            raise RuntimeError(f"embedded broker on {self.host}:{self.port} failed: {self._error}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from amqtt.broker import Broker

            cfg = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "sys_interval": 0,
                "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                "topic-check": {"enabled": False},
            }
            try:
                self._broker = Broker(cfg, loop=self._loop)
                self._loop.run_until_complete(self._broker.start())
            except BaseException as e:  # noqa: BLE001 - reported to start()
                self._error = e
                self._ready.set()
                return
        self._ready.set()
        self._loop.run_forever()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        if self._broker is not None and self._error is None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(timeout)
            except Exception:  # clients still connected can hold shutdown; stop the loop anyway
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None
