"""A real InfluxDB 1.x (Debian's ``influxd``) for tests, on free loopback ports, data in a temp dir.

``running_influxd(tmpdir)`` is the short form (yields the store URL); :class:`Influxd` adds
``stop()``/``start()`` for fault tests: a stopped server restarts on the same ports with the
same data, so a client configured with ``url`` reconnects to the same database.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.process import ServerProcess, free_port

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"



class Influxd(ServerProcess):
    """One influxd process: ``start()``, ``stop()``, ``url``; also a context manager."""

    name = "influxd"

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
        self.proc = None

    @property
    def url(self) -> str:
        return f"influxdb://127.0.0.1:{self.port}/{self.database}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [INFLUXD, "-config", str(self.conf)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.http}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 30.0) -> Influxd:
        """Start and wait until ``/ping`` answers 204; RuntimeError with the log otherwise."""
        self._start(timeout)
        return self

    def create_admin(self, user: str, password: str) -> None:
        """The first user, an admin (InfluxDB allows this one without credentials)."""
        q = f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
        httpx.post(f"{self.http}/query", data={"q": q}).raise_for_status()

    def __enter__(self) -> Influxd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def running_influxd(tmpdir: Path | str, database: str = "citywatch") -> Iterator[str]:
    """A started influxd; yields ``influxdb://127.0.0.1:PORT/<database>``; stops it on exit."""
    with Influxd(tmpdir, database) as server:
        yield server.url
