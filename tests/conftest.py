"""Session services: a real Mosquitto (and influxd for the store tests) on free loopback ports;
and ``fsynced``, the files Python code fsyncs during a test."""

from __future__ import annotations

import os

import pytest

from tests.support.influxd import Influxd
from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    yield server
    server.stop()


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The paths of the files ``os.fsync`` is called on during the test, in order (each fsync
    still happens). SQLite's own fsyncs, in C, do not pass through it."""
    paths: list[str] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return paths


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """One real PostgreSQL for the session (tests/support/postgres.py); started on first use."""
    from tests.support import postgres as pg

    if not pg.available():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    server = pg.Postgres(tmp_path_factory.mktemp("postgres"))
    with server:
        yield server


@pytest.fixture
def pg_state_url(postgres, request) -> str:
    """A ``[state] url`` on the session's PostgreSQL with a schema of its own (empty, dropped after)."""
    from tests.support.postgres import fresh_schema

    with fresh_schema(postgres, request.node.name) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request, tmp_path) -> str:
    """A fresh state database on each engine: the conformance tests of the state-DB code run
    once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("pg_state_url")
