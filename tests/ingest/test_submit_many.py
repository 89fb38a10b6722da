"""Pipeline.submit_many (what the wire consumer hands over per read of its socket) records
exactly what the same messages submitted one by one record: readings, quarantine entries,
events, counters and acknowledgements in order."""

from __future__ import annotations

import json

import ingest.decode as decode_module
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from ingest.events import EventLog
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.quarantine import Quarantine
from ingest.stores.duckdb import DuckDBStore

NOW = 1_764_403_200_000


def messages(acks: list[int]) -> list[tuple[str, bytes, object]]:
    out = []
    for i in range(30):
        dev = f"n-{i % 4}"
        if i % 7 == 3:
            payload = b'{"ts": %d, "metrics": {"laeq_db": "loud"}}' % (NOW + i)  # quarantined
        elif i % 7 == 5:
            payload = json.dumps({"ts": NOW + i, "type": "door_open"}).encode()
            out.append((f"city/noise/{dev}/event", payload, lambda i=i: acks.append(i)))
            continue
        else:
            payload = json.dumps({"ts": NOW + i, "metrics": {"laeq_db": 50.0 + i, "pm10_ugm3": i}}).encode()
        out.append((f"city/noise/{dev}/telemetry", payload, lambda i=i: acks.append(i)))
    out.append(("city/noise/n-9/telemetry", b'{"ts": 1, "metrics": {}}', lambda: acks.append(99)))  # unregistered
    return out


def run(tmp_path, name: str, many: bool):
    state = tmp_path / f"{name}.db"
    Registry(connect(state)).upsert([Device(f"n-{i}", "noise", "江汉区", asset_id=f"site-{i}") for i in range(4)])
    store = DuckDBStore(tmp_path / f"{name}.duckdb")
    metrics = IngestMetrics()
    p = Pipeline(store=store, registry=Registry(connect(state)), quarantine=Quarantine(connect(state)),
                 events=EventLog(connect(state)), metrics=metrics)
    acks: list[int] = []
    msgs = messages(acks)
    if many:
        p.submit_many(msgs[:10], received_ms=NOW + 60_000)
        p.submit_many(msgs[10:], received_ms=NOW + 60_000)
    else:
        for t, payload, ack in msgs:
            p.submit(t, payload, ack, received_ms=NOW + 60_000)
    p.flush()
    rows = store._con.execute("SELECT x.device_id, x.metric, s.ts, s.value FROM samples s JOIN series x USING (sid) "
                              "ORDER BY s.ts, x.metric").fetchall()
    quarantined = [(r["topic"], r["reason"]) for r in Quarantine(connect(state)).recent(limit=100)]
    log = EventLog(connect(state))
    events = sorted((e["ts"], e["type"]) for i in range(4) for e in log.for_device(f"n-{i}", 0, 2**62))
    counted = {s.name + str(sorted(s.labels.items())): s.value for fam in metrics.registry.collect()
               for s in fam.samples if s.name.endswith("_total")}
    store.close()
    return rows, sorted(quarantined), events, acks, counted


def test_submit_many_records_what_submit_does(tmp_path):
    one = run(tmp_path, "one", many=False)
    many = run(tmp_path, "many", many=True)
    assert many == one
    rows, quarantined, events, acks, _ = many
    assert len(rows) == 2 * 22 and len(quarantined) == 5 and len(events) == 4
    assert acks == list(range(30)) + [99]  # every message acknowledged once, in order


def test_a_decoder_bug_quarantines_only_its_message(tmp_path, monkeypatch):
    real = decode_module.Decoder.decode_into

    def buggy(self, topic, payload, now, out, into):
        if b'"pm10_ugm3": 7' in payload:
            raise KeyError("bug")
        return real(self, topic, payload, now, out, into)

    monkeypatch.setattr(decode_module.Decoder, "decode_into", buggy)
    rows, quarantined, _, acks, _ = run(tmp_path, "bug", many=True)
    assert [r for _, r in quarantined if r.startswith("internal")] == ["internal: KeyError: 'bug'"]
    assert len(rows) == 2 * 21 and acks == list(range(30)) + [99]


def test_nothing_to_submit_is_a_no_op(tmp_path):
    p = Pipeline(store=None, registry=Registry(connect(tmp_path / "s.db")), quarantine=None, events=None)
    p.submit_many([])
    assert p.pending_messages() == 0
