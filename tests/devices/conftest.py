from __future__ import annotations

import pytest

from devices import db
from devices.registry import Registry


@pytest.fixture
def state_target(state_url):
    """The state database of the test, once on SQLite (a real file, WAL as in production) and
    once on PostgreSQL (tests/conftest.py ``state_url``)."""
    return db.parse_url(state_url)


@pytest.fixture
def registry(state_target):
    """A registry over the test's state database (:func:`state_target`)."""
    reg = Registry.open(state_target)
    yield reg
    reg.close()


@pytest.fixture
def sqlite_registry(tmp_path):
    """A registry over a state database file, for what only SQLite has (its locking, files of
    releases before migrations)."""
    reg = Registry.open(tmp_path / "state.db")
    yield reg
    reg.close()
