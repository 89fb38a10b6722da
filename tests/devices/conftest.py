from __future__ import annotations

import pytest

from devices.registry import Registry


@pytest.fixture
def registry(tmp_path):
    """A registry over a real state database file (WAL, as in production)."""
    reg = Registry.open(tmp_path / "state.db")
    yield reg
    reg.close()
