"""Alert transitions written to the store too, so that Grafana can show alert tables and annotations.

Every notice of the alert lifecycle (``firing``, ``escalated``, ``acknowledged``, ``resolved``;
a notice of a silenced alert carries ``silenced=1``) becomes one point of the InfluxDB
measurement ``alerts``:

- tags ``rule``, ``severity``, ``kind``, ``district``, ``device_id`` (an empty value left out);
- fields ``state`` (the change: firing, escalated, acknowledged, resolved), ``alert_id``,
  ``summary``, ``url`` (the alert in citywatch's API, when ``[api] public_url`` or ``listen`` is
  known) as strings; ``value``, ``threshold`` (when the alert has them), ``silenced`` (0/1) and
  ``open`` (1 while the alert is firing or acknowledged, 0 once resolved) as floats;
- time: the transition's time as the state DB recorded it in the alert's history (event time
  for the engine's changes, the operator's time for an acknowledgement).

An escalation moves the alert to another ``severity`` series; a second point closes the old one
(``open`` = 0, state ``escalated``), so ``last("open")`` per series counts open alerts exactly
(one open alert per rule and device: alerts/store.py).

Off the alert path: the listener runs inside the transaction that records the change (it only
reads the history row just written and appends to a buffer); a thread writes the buffer to the
store every ``flush_s`` seconds. While the store is down the buffer keeps up to ``max_buffer``
points (then the oldest are dropped, counted and logged) and the write is retried. A listener
that ran inside a transaction later rolled back leaves a point of a change that did not commit
(only when the state DB refuses a commit); the state DB's history stays the reference.
Only the InfluxDB store takes these points (the DuckDB store has the state DB beside it).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .notice import AlertNotice

log = logging.getLogger("citywatch.alerts")

MEASUREMENT = "alerts"
TAGS = ("rule", "severity", "kind", "district", "device_id")
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})


def _field_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _tag(value: str) -> str:
    return value.rstrip("\\").translate(_KEY_ESC)


def encode_point(ts_ms: int, tags: Mapping[str, str], fields: Mapping[str, Any]) -> str:
    """One line of the ``alerts`` measurement (line protocol, ms precision)."""
    key = MEASUREMENT + "".join(f",{k}={_tag(str(tags[k]))}" for k in TAGS if tags.get(k))
    parts = []
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, str):
            parts.append(f"{k}={_field_str(v)}")
        else:
            parts.append(f"{k}={float(v)!r}")
    return f"{key} {','.join(parts)} {int(ts_ms)}"


class AlertHistoryWriter:
    """A notice listener that buffers alert transitions and a thread that writes them.

    ``write_lines(lines)`` writes line protocol to the store (``InfluxDBStore.write_lines``);
    ``clock`` gives the time (ms) when a history row cannot be read.
    """

    def __init__(self, write_lines: Callable[[list[str]], None], *, flush_s: float = 1.0,
                 max_buffer: int = 100_000, clock: Callable[[], int] | None = None) -> None:
        import time

        self._write_lines = write_lines
        self.flush_s = flush_s
        self.max_buffer = max_buffer
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._buf: deque[str] = deque()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0

    # -- the listener (inside the alert transaction: no store I/O here) -------------------------

    def listener(self, conn: Any, notice: AlertNotice) -> None:
        a, d = notice.alert, notice.device
        rows = conn.execute("SELECT ts_ms, severity FROM alert_history WHERE alert_id = ? ORDER BY seq DESC LIMIT 2",
                            (a["id"],)).fetchall()
        ts = rows[0][0] if rows else self._clock()
        tags = {"rule": a.get("rule") or "", "severity": a.get("severity") or "", "kind": d.get("kind") or "",
                "district": d.get("district") or "", "device_id": d.get("id") or ""}
        fields = {"state": notice.status, "alert_id": a["id"], "summary": a.get("summary") or "",
                  "url": a.get("url"), "value": a.get("value"), "threshold": a.get("threshold"),
                  "silenced": 1.0 if notice.silenced else 0.0,
                  "open": 0.0 if notice.status == "resolved" else 1.0}
        lines = [encode_point(ts, tags, fields)]
        if notice.status == "escalated" and len(rows) == 2 and rows[1][1] and rows[1][1] != tags["severity"]:
            lines.append(encode_point(ts, {**tags, "severity": rows[1][1]}, {**fields, "open": 0.0}))
        with self._lock:
            self._buf.extend(lines)
            over = len(self._buf) - self.max_buffer
            if over > 0:
                for _ in range(over):
                    self._buf.popleft()
                self.dropped += over
                log.warning("alert history buffer full: %d oldest points dropped (store unavailable?)", over)

    # -- the writer -----------------------------------------------------------------------------

    def pending(self) -> int:
        with self._lock:
            return len(self._buf)

    def flush(self) -> int:
        """Write what is buffered now; returns the points written (raises what the store raised,
        keeping the points)."""
        with self._write_lock:
            with self._lock:
                lines = list(self._buf)
            if not lines:
                return 0
            self._write_lines(lines)
            with self._lock:
                for _ in range(min(len(lines), len(self._buf))):
                    self._buf.popleft()
            self.written += len(lines)
            return len(lines)

    def start(self) -> AlertHistoryWriter:
        self._thread = threading.Thread(target=self._run, name="citywatch-alert-history", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception as e:  # the store down: keep the points, try again
                log.warning("alert history not written to the store yet (%s); retrying", e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.flush()
        except Exception as e:
            log.warning("alert history: %d points not written at stop (%s)", self.pending(), e)


def for_store(store: Any, **kw) -> AlertHistoryWriter | None:
    """A writer into ``store`` if it takes line protocol (InfluxDB), else None."""
    write_lines = getattr(store, "write_lines", None)
    return AlertHistoryWriter(write_lines, **kw) if callable(write_lines) else None
