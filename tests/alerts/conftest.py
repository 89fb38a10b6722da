"""The reference stream (helpers.recorded_stream) and what the engine makes of it in one call."""

from __future__ import annotations

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
