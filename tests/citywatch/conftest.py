"""The API as ``serve`` builds it, over a seeded node (api_support.seeded_node); modules that need
another node (other settings, no tokens) define their own ``node``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.citywatch.api_support import seeded_node


@pytest.fixture
def node(tmp_path):
    with seeded_node(tmp_path / "node") as n:
        yield n


@pytest.fixture
def client(node):
    return TestClient(node.api_app(), raise_server_exceptions=False)
