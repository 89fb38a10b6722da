"""A real Mosquitto for tests: free loopback port, temp dir, persistence, stopped afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.process import ServerProcess, free_port, port_open

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto(ServerProcess):
    """``start()``/``stop()``/``restart()`` keep the port and the persistence directory."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True,
                 autosave_interval_s: int = 1):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        # Unlimited queues: the contract's measured default (1000) drops QoS 1 messages for a
        # consumer that falls behind a burst. Autosave every second by default, so that a test
        # killing the broker loses little; benchmarks pass deploy/mosquitto.conf's 60 s (each
        # save stops the broker's one thread while it writes every queued message).
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "user root\n"  # as root, stay root: the temp dir is not the mosquitto user's
            "allow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {self.dir}/\n"
            f"autosave_interval {autosave_interval_s}\n"
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [MOSQUITTO, "-c", str(self.conf)]

    def ready(self) -> bool:
        return port_open(self.port)

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self._start(timeout)
        return self

    def restart(self) -> None:
        self.stop()
        self.start()
