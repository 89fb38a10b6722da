"""What the alert store hands to its listeners: one notice per change a receiver cares about.

The transition function (``alerts.lifecycle``) decides which change sends a notice;
:class:`alerts.store.AlertState` builds an :class:`AlertNotice` for each ``firing``,
``resolved``, ``acknowledged`` and ``escalated`` (severity raised) change (a route's
``escalate_after`` escalation is an outbox row dispatch schedules itself, not a notice) and
calls every listener it was given (``AlertState(conn, listeners=[...])``) with its open state-DB
connection (SQLite or PostgreSQL, devices/db.py) *inside the transaction* that records the
change, so that an outbox row written by the listener commits or rolls back with it. The
listeners a node registers: dispatch's outbox (alerts/dispatch/outbox.py), the alert history
in the store (alerts/history_store.py) and the duty board's feed (dashboards/board/feed.py).
The field names follow webhooks.md (``alert`` and ``device`` objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

NOTICE_STATUSES = ("firing", "resolved", "acknowledged", "escalated")


@dataclass(frozen=True, slots=True)
class AlertNotice:
    status: str  # one of NOTICE_STATUSES
    alert: Mapping[str, Any]  # id, rule, severity, summary, metric, value, threshold,
    #                            started_at, ended_at (RFC 3339 with offset), acknowledged_by
    device: Mapping[str, Any]  # id, kind, district, asset_id, lat, lon, responsible_unit
    silenced: bool = False  # recorded, not sent on
    previous_severity: str | None = None  # an ``escalated`` notice's severity before it rose


class NoticeListener(Protocol):
    def __call__(self, conn: Any, notice: AlertNotice) -> None: ...
