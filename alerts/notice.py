"""What the alert lifecycle hands to dispatch: one notice per change a receiver cares about.

The transition function (``alerts.lifecycle``) decides which change sends a notice (``firing``,
``escalated``, ``resolved``, ``acknowledged``); the alert store (``alerts.store``) builds the
:class:`AlertNotice` and calls every registered listener with the open SQLite connection
*inside the transaction* that records the change, so that an outbox row written by the
listener commits or rolls back with it.
The field names follow webhooks.md (``alert`` and ``device`` objects).
"""

from __future__ import annotations

import sqlite3
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
    def __call__(self, conn: sqlite3.Connection, notice: AlertNotice) -> None: ...
