"""A real PostgreSQL (Debian's ``postgresql``) for tests, on a free loopback port, data in a temp dir.

PostgreSQL refuses to run as root, and tests here run as root: ``initdb`` and the server then run
as the ``postgres`` user the Debian package creates (``setpriv`` execs them as that user, so the
process the test holds is the server itself and SIGTERM reaches it). As any other user they run
as that user. The cluster trusts loopback connections (a throw-away test cluster) and runs with
``fsync = off``: durability across a machine crash is not what tests measure. As root the cluster
lives in its own directory under ``/tmp`` owned by ``postgres`` (pytest's temp dirs are closed to
other users), removed by :meth:`Postgres.remove`.

``running_postgres(tmpdir)`` is the short form (yields the URL); :class:`Postgres` adds
``stop()``/``start()`` for failover tests: a stopped server restarts on the same port with the
same data.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.process import ServerProcess, free_port


def _bindir() -> Path | None:
    """The newest installed server's bin directory (``/usr/lib/postgresql/N/bin``), else PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


BINDIR = _bindir()


def available() -> bool:
    return BINDIR is not None and (BINDIR / "initdb").exists()


class Postgres(ServerProcess):
    """One PostgreSQL server: ``start()``, ``stop()``, ``url``; also a context manager."""

    name = "postgres"
    # "fast" shutdown: clients are disconnected (SIGTERM's "smart" one waits for them to leave,
    # and the nodes under test never do)
    stop_signal = signal.SIGINT

    def __init__(self, workdir: Path | str, database: str = "citywatch") -> None:
        if not available():
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self._as = _run_as()
        if self._as is None:
            self.dir = Path(workdir)
            self.dir.mkdir(parents=True, exist_ok=True)
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="citywatch-pg-", dir="/tmp"))
            os.chown(self.dir, *self._as)
        self.data = self.dir / "data"
        self.sockets = self.dir / "run"
        self.log = self.dir / "postgres.log"
        self.database = database
        self.port = free_port()
        self.proc = None
        self.sockets.mkdir(exist_ok=True)
        if self._as is not None:
            os.chown(self.sockets, *self._as)
        self._initdb()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _prefix(self) -> list[str]:
        if self._as is None:
            return []
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]

    def _initdb(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        cmd = [*self._prefix(), str(BINDIR / "initdb"), "-D", str(self.data), "-U", "postgres",
               "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr[-2000:]}")

    def command(self) -> list[str]:
        return [*self._prefix(), str(BINDIR / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockets}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "logging_collector=off"]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                pass
        except OSError:
            return False
        done = subprocess.run([str(BINDIR / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                              capture_output=True)
        return done.returncode == 0

    def start(self, timeout: float = 30.0) -> Postgres:
        """Start, wait until it accepts connections, create the database if missing."""
        self._start(timeout)
        self._create_database()
        return self

    def _create_database(self) -> None:
        psql = [str(BINDIR / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                "-d", "postgres", "-tAc"]
        exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
                                capture_output=True, text=True, check=True)
        if exists.stdout.strip() != "1":
            subprocess.run([*psql, f'CREATE DATABASE "{self.database}"'], capture_output=True, check=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.remove()

    def remove(self) -> None:
        """Stop, and delete the cluster's directory when it is one of ours under ``/tmp``."""
        self.stop()
        if self._as is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of ``postgres`` when running as root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as "
                           "(Debian's postgresql package creates it)") from None
    return pw.pw_uid, pw.pw_gid


@contextmanager
def running_postgres(workdir: Path | str, database: str = "citywatch") -> Iterator[str]:
    with Postgres(workdir, database) as pg:
        yield pg.url


_schemas = itertools.count(1)


@contextmanager
def fresh_schema(server: Postgres, label: str = "t") -> Iterator[str]:
    """A URL whose connections work in a new, empty schema of ``server``'s database (dropped
    after): as good as a fresh database for the state-DB code, and much cheaper to make."""
    import psycopg

    name = re.sub(r"\W", "_", f"t{next(_schemas)}_{label}")[:60].lower()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{server.url}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
