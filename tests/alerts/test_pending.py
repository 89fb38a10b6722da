"""Pending alerts are rows of the alert store (``pending_alerts``), written by the transition
function's ``pend``/``drop``/``fire``; a state DB from before keeps its pending alerts."""

from __future__ import annotations

import json

from alerts.store import AlertState
from devices.sqlite import connect

T0 = 1_764_000_000_000


def test_a_state_db_from_before_pending_alerts_keeps_its_pending_alerts(tmp_path):
    """SQLite only: state DBs that old are SQLite files."""
    conn = connect(tmp_path / "old.db")
    conn.executescript("""
        CREATE TABLE rule_streams (rule TEXT NOT NULL, device_id TEXT NOT NULL, state TEXT NOT NULL,
            last_ts INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (rule, device_id)) WITHOUT ROWID;
    """)
    view = {"sev": 0, "severity": "warning", "value": 57.5, "metric": "laeq", "kind": "noise", "district": "江汉区"}
    for device, state in (("noise-0001", "pending"), ("noise-0002", "firing")):
        data = {"alert": f"a-{device[-1]}", "started": T0, "since": [T0], "count": [1], "sev": 0, "view": view}
        conn.execute("INSERT INTO rule_streams VALUES ('noise.night_laeq', ?, ?, ?, ?)",
                     (device, state, T0 + 1000, json.dumps(data, ensure_ascii=False)))
    st = AlertState(conn)
    [p], nxt = st.list_alerts("pending")
    assert nxt is None and st.count_alerts("pending") == 1
    assert (p.id, p.rule, p.device_id, p.kind, p.district, p.severity, p.value, p.metric, p.started_ms) == (
        "a-1", "noise.night_laeq", "noise-0001", "noise", "江汉区", "warning", 57.5, "laeq", T0)
    assert st.get("a-1").state == "pending"
    AlertState(conn)  # opening it again copies nothing twice
    assert st.count_alerts("pending") == 1
