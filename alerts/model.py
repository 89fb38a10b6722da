"""The alert lifecycle's value types: an :class:`Alert` and its history, a :class:`Silence`, and
the engine's :class:`Transition` of a (rule, device) stream. Immutable; no storage here (the
alert store, alerts/store.py, reads and writes them; alerts/lifecycle.py moves an alert from
one state to the next).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from devices.catalogue import KINDS, SEVERITIES
from devices.times import rfc3339

from .errors import InvalidSilence

ALERT_STATES = ("pending", "firing", "acknowledged", "resolved")
SILENCE_MATCHERS = ("rule", "kind", "district", "device", "severity")


def check_matchers(matchers: object) -> dict[str, str]:
    """The matchers of a silence or a maintenance window, checked; InvalidSilence naming the problem."""
    if not isinstance(matchers, Mapping) or not matchers:
        raise InvalidSilence(f"a silence needs at least one matcher of {', '.join(SILENCE_MATCHERS)}")
    unknown = set(matchers) - set(SILENCE_MATCHERS)
    if unknown:
        raise InvalidSilence(f"unknown matcher(s) {sorted(unknown)}; use {', '.join(SILENCE_MATCHERS)}")
    clean = {}
    for k, v in matchers.items():
        if not isinstance(v, str) or not v:
            raise InvalidSilence(f"matcher {k!r} must be a non-empty string, got {v!r}")
        clean[k] = v
    if "kind" in clean and clean["kind"] not in KINDS:
        raise InvalidSilence(f"matcher kind {clean['kind']!r} is not one of {', '.join(KINDS)}")
    if "severity" in clean and clean["severity"] not in SEVERITIES:
        raise InvalidSilence(f"matcher severity {clean['severity']!r} is not one of {', '.join(SEVERITIES)}")
    return clean


def require_who(by: object, verb: str) -> str:
    return require_text(by, f"{verb} needs the name of who does it ('by')")


def require_text(value: object, what: str) -> str:
    if not value or not str(value).strip():
        raise InvalidSilence(what)
    return str(value)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a (rule, device) stream, as decided by the engine.

    ``from_state``/``to_state`` are ``inactive``, ``pending``, ``firing`` or ``resolved``;
    a severity upgrade is ``firing -> firing`` with ``severity`` above ``prev_severity``.
    ``ts`` is event time (ms). ``alert_id`` is the open alert's id (stable from pending on).
    ``summary`` and ``threshold`` are empty for ``pending`` and ``dropped`` (never notified).
    """

    rule: str
    device_id: str
    kind: str
    alert_id: str
    from_state: str
    to_state: str
    ts: int
    severity: str
    summary: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    started_ms: int | None = None
    prev_severity: str | None = None
    district: str = ""
    asset_id: str = ""
    pending_severity: str | None = None  # pending -> firing: the severity and value when the
    pending_value: float | None = None  # condition started (for the alert's history)
    by: str | None = None  # a change an operator made (a manual resolve): who, and their note
    note: str | None = None

    @property
    def change(self) -> str:
        """What happened: ``pending``, ``dropped``, ``firing``, ``escalated`` or ``resolved``."""
        if self.to_state == "firing":
            return "escalated" if self.from_state == "firing" else "firing"
        if self.to_state == "inactive":
            return "dropped"
        return self.to_state


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: Mapping[str, str]
    start_ms: int
    end_ms: int
    reason: str
    created_by: str
    created_ms: int
    ended_by: str | None = None  # who ended it early (DELETE)

    def active(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms

    def matches(self, labels: Mapping[str, Any]) -> bool:
        return all(str(labels.get(k)) == v for k, v in self.matchers.items())

    def to_api(self, tz: ZoneInfo) -> dict:
        return {
            "id": self.id, "matchers": dict(self.matchers), "start": rfc3339(self.start_ms, tz),
            "end": rfc3339(self.end_ms, tz), "reason": self.reason, "created_by": self.created_by,
            "created_at": rfc3339(self.created_ms, tz), "ended_by": self.ended_by,
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts_ms: int
    change: str  # pending, firing, escalated, acknowledged, unacknowledged, resolved, assigned, commented
    severity: str | None
    value: float | None
    threshold: float | None
    by: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    rule: str
    device_id: str
    kind: str
    district: str
    state: str
    severity: str
    silenced: bool
    summary: str
    metric: str | None
    value: float | None
    threshold: float | None
    started_ms: int
    fired_ms: int | None
    ended_ms: int | None
    acked_by: str | None
    acked_ms: int | None
    ack_note: str | None
    device: Mapping[str, Any]
    seq: int = 0
    history: tuple[HistoryEntry, ...] = field(default=())
    assignee: str | None = None  # the responsible unit it is handed to

    @classmethod
    def from_row(cls, r: Mapping[str, Any], history: tuple[HistoryEntry, ...] = ()) -> Alert:
        return cls(
            r["id"], r["rule"], r["device_id"], r["kind"], r["district"], r["state"],
            r["severity"], bool(r["silenced"]), r["summary"], r["metric"], r["value"],
            r["threshold"], r["started_ms"], r["fired_ms"], r["ended_ms"], r["acked_by"],
            r["acked_ms"], r["ack_note"], json.loads(r["device"]), r["seq"], history, r["assignee"],
        )

    @property
    def labels(self) -> dict[str, str]:
        """What silences and maintenance windows match on."""
        return {"rule": self.rule, "kind": self.kind, "district": self.district, "device": self.device_id,
                "severity": self.severity}

    def webhook_alert(self, tz: ZoneInfo, base_url: str = "") -> dict:
        """The ``alert`` object of webhooks.md."""
        return {
            "id": self.id, "rule": self.rule, "severity": self.severity, "summary": self.summary,
            "metric": self.metric, "value": self.value, "threshold": self.threshold,
            "started_at": rfc3339(self.started_ms, tz), "ended_at": rfc3339(self.ended_ms, tz),
            "acknowledged_by": self.acked_by,
            "url": f"{base_url.rstrip('/')}/alerts/{self.id}" if base_url else None,
        }

    def to_api(self, tz: ZoneInfo, detail: bool = False) -> dict:
        """The alert as the REST API shows it; with ``history`` and ``comments`` when it has a
        history or ``detail`` (one alert's page: empty lists for a pending alert)."""
        out = {
            "id": self.id, "rule": self.rule, "state": self.state, "severity": self.severity,
            "silenced": self.silenced, "summary": self.summary, "device_id": self.device_id,
            "kind": self.kind, "district": self.district, "metric": self.metric,
            "value": self.value, "threshold": self.threshold,
            "started_at": rfc3339(self.started_ms, tz), "fired_at": rfc3339(self.fired_ms, tz),
            "ended_at": rfc3339(self.ended_ms, tz), "acknowledged_by": self.acked_by,
            "acknowledged_at": rfc3339(self.acked_ms, tz), "ack_note": self.ack_note,
            "assignee": self.assignee, "device": dict(self.device),
        }
        if self.history or detail:
            out["history"] = [
                {"at": rfc3339(h.ts_ms, tz), "change": h.change, "severity": h.severity,
                 "value": h.value, "threshold": h.threshold, "by": h.by, "note": h.note}
                for h in self.history
            ]
            out["comments"] = [{"at": rfc3339(h.ts_ms, tz), "by": h.by, "text": h.note}
                               for h in self.history if h.change == "commented"]
        return out

