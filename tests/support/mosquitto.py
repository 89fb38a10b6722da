"""A real Mosquitto for tests: free loopback port, temp dir, persistence, stopped afterwards."""

from __future__ import annotations

import shutil
import signal
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
                 autosave_interval_s: int = 1, tls: TlsListener | None = None, *, password_file: Path | None = None,
                 acl_file: Path | None = None, listener_conf: str = "", extra_conf: str = ""):
        """Anonymous clients allowed unless ``password_file`` is given; ``listener_conf`` is
        added to the listener's block (e.g. ``use_username_as_clientid true``), ``extra_conf``
        at the end of the file (e.g. another listener)."""
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
        auth = f"allow_anonymous {'false' if password_file else 'true'}\n"
        if password_file:
            auth += f"password_file {password_file}\n"
        if acl_file:
            auth += f"acl_file {acl_file}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + (listener_conf.rstrip("\n") + "\n" if listener_conf else "")
            + "user root\n"  # as root, stay root: the temp dir is not the mosquitto user's
            + auth +
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {self.dir}/\n"
            f"autosave_interval {autosave_interval_s}\n"
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + extra_conf
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

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its password and ACL files (connected clients stay)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()


def purge_sessions(port: int, client_ids: list[str]) -> None:
    """Remove persistent sessions from the broker on ``port``: a clean-session connection with
    each client id. A session a test leaves behind queues every later test's messages."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    for cid in client_ids:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        c.disconnect()
        c.loop_stop()
