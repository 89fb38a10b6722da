"""SIGKILL the dispatcher process while deliveries are pending; a new process delivers them (the
outbox on each state-DB engine: a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerts.dispatch import DispatchConfig, Outbox
from alerts.statedb import target_of
from devices.db import connect, write_transaction

from .conftest import example_receiver, make_notice, wait_for

SCRIPT = Path(__file__).with_name("run_dispatcher.py")


def start(db_path: str, config_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(db_path), str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    return proc


@pytest.mark.integration
# the kinds of outage are the receiver's: PostgreSQL takes one (each engine is a fixture parameter)
@pytest.mark.parametrize(("state_url", "outage"), [("sqlite", "in_flight"), ("sqlite", "refused"),
                                                   ("postgresql", "in_flight")], indirect=["state_url"])
def test_sigkill_with_pending_deliveries_then_restart_delivers_them(tmp_path, state_url, receivers, outage):
    r = receivers()
    raw = {"receivers": [{"name": "jh", "url": r.url, "secret": "s3cret", "timeout": "10s",
                          "max_concurrency": 4}],
           "routes": [{"match": {}, "receivers": ["jh"]}]}
    config_path = tmp_path / "dispatch.json"
    config_path.write_text(json.dumps(raw))
    db_path = state_url
    conn = connect(target_of(db_path))
    outbox = Outbox(conn, DispatchConfig.from_raw(raw["receivers"], raw["routes"]))

    if outage == "in_flight":
        r.behaviour.delay_s = 5.0  # requests hang in flight when the process dies
    else:
        r.down()
    proc = start(db_path, config_path)
    with write_transaction(conn):
        for i in range(10):
            outbox.listener(conn, make_notice(alert_id=f"a-{i}"))
    ids = {row[0] for row in conn.execute("SELECT delivery_id FROM dispatch_deliveries")}

    if outage == "in_flight":
        wait_for(lambda: len(r.received()) >= 4)  # max_concurrency requests on the wire
    else:
        wait_for(lambda: conn.execute("SELECT MIN(attempts) FROM dispatch_deliveries").fetchone()[0] >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    assert proc.returncode == -signal.SIGKILL
    states = [row[0] for row in conn.execute("SELECT state FROM dispatch_deliveries")]
    assert states == ["pending"] * 10

    if outage == "refused":
        r.up()
    r.behaviour.delay_s = 0.0
    proc = start(db_path, config_path)
    try:
        wait_for(lambda: conn.execute(
            "SELECT COUNT(*) FROM dispatch_deliveries WHERE state = 'delivered'").fetchone()[0] == 10,
            timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0, proc.stderr.read()
    assert set(r.ids()) == ids  # every notice, under its original delivery id
    for hit in r.received():
        assert example_receiver.verify("s3cret", hit.headers, hit.body, time.time())
    conn.close()
