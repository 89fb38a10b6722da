"""Fixtures of the store tests: a fresh store per test (influxd: tests/conftest.py)."""

from __future__ import annotations

import itertools

import pytest

from ingest.stores.base import Store, open_store

_db_numbers = itertools.count(1)


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
