"""A real InfluxDB 1.x (Debian's ``influxd``) for tests, on free loopback ports, data in a temp dir.

``running_influxd(tmpdir)`` is the short form (yields the store URL); :class:`Influxd` adds
``stop()``/``start()`` for fault tests: a stopped server restarts on the same ports with the
same data, so a client configured with ``url`` reconnects to the same database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Influxd:
    """One influxd process: ``start()``, ``stop()``, ``url``; also a context manager."""

    def __init__(self, workdir: Path | str, database: str = "citywatch", *, auth: bool = False) -> None:
        """``auth``: HTTP authentication on (create the first admin with :meth:`create_admin`)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.port = free_port()
        self.rpc_port = free_port()  # the backup/restore RPC listener: 8088 unless told otherwise
        while self.rpc_port == self.port:
            self.rpc_port = free_port()
        self.conf = self.dir / "influxd.conf"
        self.log = self.dir / "influxd.log"
        self.conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n'
            '  wal-fsync-delay = "0s"\n  query-log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[http]\n  enabled = true\n"
            f'  bind-address = "127.0.0.1:{self.port}"\n'
            "  log-enabled = false\n  pprof-enabled = false\n"
            f"  auth-enabled = {'true' if auth else 'false'}\n"
            '[logging]\n  level = "warn"\n  suppress-logo = true\n'
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"influxdb://127.0.0.1:{self.port}/{self.database}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Influxd:
        """Start and wait until ``/ping`` answers 204; RuntimeError with the log otherwise."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([INFLUXD, "-config", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                if httpx.get(f"{self.http}/ping", timeout=0.5).status_code == 204:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"influxd did not answer /ping within {timeout} s: {self._log_tail()}")

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with ``kill``), then SIGKILL to the group after 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def create_admin(self, user: str, password: str) -> None:
        """The first user, an admin (InfluxDB allows this one without credentials)."""
        q = f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
        httpx.post(f"{self.http}/query", data={"q": q}).raise_for_status()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def __enter__(self) -> Influxd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def running_influxd(tmpdir: Path | str, database: str = "citywatch") -> Iterator[str]:
    """A started influxd; yields ``influxdb://127.0.0.1:PORT/<database>``; stops it on exit."""
    with Influxd(tmpdir, database) as server:
        yield server.url
