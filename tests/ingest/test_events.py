"""The event log (ingest/events.py) on both engines of the state DB: idempotent, newest first."""

from __future__ import annotations

from devices.db import connect, parse_url
from ingest.events import EventLog
from ingest.model import Event

T0 = 1_764_403_200_000


def test_redelivered_events_are_stored_once_and_read_newest_first(state_url) -> None:
    log = EventLog(connect(parse_url(state_url)))
    events = [Event("door-1", "manhole", T0 + i, "opened" if i % 2 else "closed", {"n": i, "名": "井盖"})
              for i in range(10)]
    assert log.add(events[:6]) == 6
    assert log.add(events) == 4  # the first six again: kept once
    assert log.add([]) == 0
    got = log.for_device("door-1", T0 + 2, T0 + 9, limit=3)
    assert got == [{"ts": T0 + i, "type": "opened" if i % 2 else "closed", "detail": {"n": i, "名": "井盖"}}
                   for i in (8, 7, 6)]
    assert log.for_device("door-2", 0, T0 * 2) == []
    again = EventLog(connect(parse_url(state_url)))  # a second open finds the table (migrated once)
    assert len(again.for_device("door-1", 0, T0 * 2)) == 10
