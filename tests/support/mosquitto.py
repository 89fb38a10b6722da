"""A real Mosquitto for tests: free loopback port, temp dir, persistence, stopped afterwards."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import ServerProcess, free_port, port_open

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class TlsListener:
    """A second, TLS listener: the server certificate and key, the CA clients are checked
    against, and whether a client certificate is required (``require_certificate true``)."""

    cert: str
    key: str
    ca: str
    require_certificate: bool = False


class Mosquitto(ServerProcess):
    """``start()``/``stop()``/``restart()`` keep the port and the persistence directory. With
    ``tls``, a TLS listener on ``tls_port`` too (``tls_url``), same broker."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True,
                 autosave_interval_s: int = 1, tls: TlsListener | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else 0
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
        if tls:
            with self.conf.open("a") as f:
                f.write(f"listener {self.tls_port} 127.0.0.1\ncafile {tls.ca}\ncertfile {tls.cert}\n"
                        f"keyfile {tls.key}\nrequire_certificate {'true' if tls.require_certificate else 'false'}\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self.tls_port}"

    def command(self) -> list[str]:
        return [MOSQUITTO, "-c", str(self.conf)]

    def ready(self) -> bool:
        return port_open(self.port) and (not self.tls or port_open(self.tls_port))

    def start(self, timeout: float = 10.0) -> Mosquitto:
        self._start(timeout)
        return self

    def restart(self) -> None:
        self.stop()
        self.start()
