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
