"""The reference stream (helpers.recorded_stream) and what the engine makes of it in one call."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from .helpers import Harness, batch, notice_keys, recorded_stream, signature


@pytest.fixture(scope="session")
def stream():
    return recorded_stream()


@pytest.fixture(scope="session")
def reference(stream):
    """The alerts' signature and the notices' keys when the whole stream is one batch."""
    rows, events = stream
    h = Harness()
    h.engine.process(batch(rows), events)
    return signature(h.alerts()), notice_keys(h.notices)


@pytest.fixture
def fresh_state(state_url, request, tmp_path):
    """More fresh state DBs on the engine of ``state_url`` (``fresh_state()`` gives a URL), for a
    test that compares two: SQLite files, or PostgreSQL schemas of the session's server."""
    if not state_url.startswith("postgresql"):
        n = itertools.count(2)
        return lambda: f"sqlite:///{tmp_path}/state-{next(n)}.db"
    from tests.support.postgres import fresh_schema

    server = request.getfixturevalue("postgres")
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    return lambda: stack.enter_context(fresh_schema(server, request.node.name))
