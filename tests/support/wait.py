"""Polling for a condition in tests (moved from ingest/mqtt.py, where nothing but tests used it).

Use it to wait for something to *happen* (a count reached, an event set); never to let time pass
before checking that something did *not* happen: for that, wait for a later marker that proves
the system has processed past the point, then check.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or the timeout; the predicate's last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
