"""Fixtures of the store tests: one influxd for the session, a fresh store per test."""

from __future__ import annotations

import itertools

import pytest

from ingest.stores.base import Store, open_store
from tests.support.influxd import Influxd

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    server = Influxd(tmp_path_factory.mktemp("influxd")).start()
    yield server
    server.stop()


@pytest.fixture(params=["duckdb", "influxdb"])
def store(request, tmp_path) -> Store:
    """A fresh, empty store of each kind: a DuckDB file, or a new database on the session influxd."""
    if request.param == "duckdb":
        s = open_store(f"duckdb:///{tmp_path}/readings.duckdb")
    else:
        server = request.getfixturevalue("influxd")
        s = open_store(f"influxdb://127.0.0.1:{server.port}/t{next(_db_numbers)}")
    yield s
    s.close()
