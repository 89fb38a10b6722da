"""One message's content cannot hold back the messages behind it, even past the decoder.

Defence in depth (issue: "one bad device must not stop the city"): when a store or the state DB
refuses a batch because of what one message carried, the write stage splits the batch, sets
aside what is refused on its own (quarantined with the error) and writes the rest; the
acknowledgements go out. The decoder lets nothing of the kind through, so these tests put the
poison in after it, as a decoder bug would: a reading InfluxDB cannot store, an event time
SQLite cannot store, a last-seen time beyond SQLite's integers. Everything else is real:
influxd, DuckDB, the state DB.
"""

from __future__ import annotations

import json
import math

import pytest

from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.model import Event
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.base import Query, open_store

NOW = 1_764_403_200_000


def _pipeline(tmp_path, store) -> tuple[Pipeline, str]:
    state = tmp_path / "state.db"
    Registry(connect(state)).upsert([Device(f"n-{i}", "noise", "江汉区", asset_id=f"site-{i}") for i in range(4)])
    p = Pipeline(store=store, registry=Registry(connect(state)), quarantine=Quarantine(connect(state)),
                 events=EventLog(connect(state)), metrics=IngestMetrics(), clock=lambda: (NOW + 60_000) / 1000)
    return p, state


def _poison_after_decoding(p: Pipeline, device: str, poison) -> None:
    """Wrap the decoder: after ``device``'s message is decoded, ``poison(out, into)`` adds to it."""
    decode_into = p.decoder.decode_into

    def wrapped(topic, payload, received_ms, out, into):
        decode_into(topic, payload, received_ms, out, into)
        if f"/{device}/" in topic:
            poison(out, into)

    p.decoder.decode_into = wrapped


def _messages(acks: list[int], kind_channel: str = "telemetry"):
    out = []
    for i in range(12):
        dev = f"n-{i % 4}"
        payload = json.dumps({"ts": NOW + i * 1000, "metrics": {"laeq_db": 50.0 + i}}).encode()
        out.append((f"city/noise/{dev}/{kind_channel}", payload, lambda i=i: acks.append(i)))
    return out


def test_a_reading_the_store_refuses_is_quarantined_and_the_rest_stored(tmp_path, influxd) -> None:
    store = open_store(f"influxdb://127.0.0.1:{influxd.port}/isolation")
    p, state = _pipeline(tmp_path, store)
    # InfluxDB cannot store a NaN: StoreRejected for the whole batch, before the split
    _poison_after_decoding(p, "n-2", lambda out, into: out.add("n-2", "noise", "lmax_db", NOW + 7, math.nan,
                                                                "江汉区", "site-2"))
    acks: list[int] = []
    p.submit_many(_messages(acks), received_ms=NOW + 60_000)
    p.flush()

    assert acks == list(range(12))  # every message acknowledged, in order
    for i in range(4):
        pts = store.query(Query(f"n-{i}", "laeq_db", NOW - 1, NOW + 60_000))
        assert [v for _, v in pts] == [50.0 + j for j in range(12) if j % 4 == i]
    entries = Quarantine(connect(state)).recent()
    assert len(entries) == 3  # the poison was added to each of n-2's three messages
    for e in entries:
        assert e["code"] == "store_refused" and "not a finite number" in e["reason"]
        assert e["device_id"] == "n-2" and e["topic"] == "city/noise/n-2/telemetry"
        assert json.loads(e["payload"].replace("NaN", "null"))["metrics"] == {"lmax_db": None}
    assert p.metrics.refused.labels("store")._value.get() == 3
    assert p.ack_status() is None
    store.close()


def test_an_event_the_state_db_refuses_is_quarantined_and_the_rest_logged(tmp_path) -> None:
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb")
    p, state = _pipeline(tmp_path, store)
    # an event time beyond SQLite's 64-bit integers: OverflowError while binding
    _poison_after_decoding(p, "n-1", lambda out, into: into.events.append(
        Event("n-1", "noise", 2**70, "door_open", {"x": 1}, "江汉区", "site-1")))
    acks: list[int] = []
    msgs = [(f"city/noise/n-{i % 4}/event", json.dumps({"ts": NOW + i, "type": "door_open"}).encode(),
             lambda i=i: acks.append(i)) for i in range(8)]
    p.submit_many(msgs, received_ms=NOW + 60_000)
    p.flush()

    assert acks == list(range(8))
    log = EventLog(connect(state))
    assert sorted(e["ts"] for i in range(4) for e in log.for_device(f"n-{i}", 0, 2**62)) == [NOW + i for i in range(8)]
    entries = Quarantine(connect(state)).recent()
    assert len(entries) == 2 and {e["code"] for e in entries} == {"state_refused"}
    assert all("OverflowError" in e["reason"] and e["topic"] == "city/noise/n-1/event" for e in entries)
    store.close()


def test_a_last_seen_time_the_registry_refuses_does_not_stop_presence(tmp_path, caplog) -> None:
    """The issue's wedge: a last-seen time SQLite cannot store retried the batch forever and
    froze every device's presence."""
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb")
    p, state = _pipeline(tmp_path, store)
    _poison_after_decoding(p, "n-3", lambda out, into: into.seen.__setitem__("n-3", 2**70))
    acks: list[int] = []
    p.submit_many(_messages(acks), received_ms=NOW + 60_000)
    p.flush()

    assert acks == list(range(12))
    seen = Registry(connect(state)).last_seen_map()
    assert seen == {"n-0": NOW + 8000, "n-1": NOW + 9000, "n-2": NOW + 10_000}
    assert caplog.text.count("refused the last-seen time") == 1
    # and the next batch's last-seen times are written as usual
    del p.decoder.decode_into  # the wrapper: n-3 sends sane messages again
    p.submit_many([("city/noise/n-3/telemetry", json.dumps({"ts": NOW + 20_000, "metrics": {"laeq_db": 55.0}}).encode(),
                    None)], received_ms=NOW + 60_000)
    p.flush()
    assert Registry(connect(state)).last_seen_map()["n-3"] == NOW + 20_000
    store.close()


def test_acknowledgements_withheld_are_reported_with_their_reason(tmp_path) -> None:
    """A store that cannot be reached and no spool: the acknowledgements wait, and ack_status
    (what /api/v1/health reports as degraded) says why."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    store = open_store(f"influxdb://127.0.0.1:{port}/gone?timeout=0.5")
    p, state = _pipeline(tmp_path, store)
    p.start()
    acks: list[int] = []
    try:
        p.submit_many(_messages(acks), received_ms=NOW + 60_000)
        deadline = time.monotonic() + 20
        while p.ack_status() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        status = p.ack_status()
        assert status is not None and "store unavailable" in status["reason"]
        assert status["messages"] == 12 and acks == []
    finally:
        p.stop(timeout=10)
    assert acks == []  # stopped while the store was unreachable: unacknowledged, for redelivery


@pytest.mark.parametrize("n_bad", [1, 5])
def test_the_split_costs_writes_in_proportion_to_the_bad_rows(tmp_path, n_bad) -> None:
    """A 4,096-row batch with ``n_bad`` refused rows: about ``2 * n_bad * log2(4096)`` writes."""
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb")
    p, _ = _pipeline(tmp_path, store)
    writes = []
    bad = set(range(0, 4096, 4096 // n_bad)[:n_bad])

    def write(part):
        writes.append(len(part))
        if any(i in bad for i in part):
            raise ValueError("refused")

    refused: list[int] = []
    p._isolate(list(range(4096)), write, lambda i, e: refused.append(i), "test")
    assert refused == sorted(bad)
    assert len(writes) <= 1 + 2 * n_bad * 12
    store.close()
