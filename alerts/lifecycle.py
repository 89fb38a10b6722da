"""The one transition function of alerts: ``(alert, event, time) -> (alert', history, notices)``.

Every path that changes an alert goes through :func:`transition`: the rule engine's changes
(recorded by the alert store's ``apply``), an operator's acknowledgement, its taking back and a
manual resolve, and the retiring of alerts whose rule is no longer loaded. It is pure: no
database, no clock; the store reads the alert, calls it, and writes what it returns (the alert
row, the history rows, the notices to its listeners) in one transaction.

States: ``None`` (no alert yet for that rule and device), ``pending``, ``firing``,
``acknowledged``, ``resolved``. Events (:data:`EVENTS`):

=================  ===================================================  ===============
event              from -> to                                           notice
=================  ===================================================  ===============
``pend``           None -> pending (the condition holds, ``for`` runs)   none
``drop``           pending -> None (it stopped before ``for``)           none
``fire``           None or pending -> firing                             ``firing``
``escalate``       firing/acknowledged -> same, severity raised          ``escalated``
``resolve``        firing/acknowledged -> resolved (the engine)          ``resolved``
``resolve_by_hand`` firing/acknowledged -> resolved (an operator)        ``resolved``
``ack``            firing -> acknowledged                                ``acknowledged``
``unack``          acknowledged -> firing                                none
``retire``         pending -> None; firing/acknowledged -> resolved      ``resolved`` (fired)
=================  ===================================================  ===============

Not changes (nothing written, nothing sent): ``ack`` of an acknowledged alert, ``unack`` of a
firing one, ``drop`` of no alert, and the engine's ``escalate``/``resolve``/``retire`` of an
alert an operator resolved by hand meanwhile (the engine forgets that stream). Every other pair
raises :class:`InvalidTransition` (the API answers 409), e.g. acknowledging a resolved alert.

An ``escalated`` notice carries the severity before it rose (``previous_severity``): dispatch
makes it webhooks.md's ``reason: severity_raised`` (alerts/dispatch/outbox.py
``escalation_fields``); a route's ``escalate_after`` is dispatch's own and changes no alert.
``silenced``: a notifying change records whether a silence or maintenance window matching the
alert (after the change) is active at the change's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .errors import AlertsError
from .model import Alert, HistoryEntry

EVENTS = ("pend", "drop", "fire", "escalate", "resolve", "resolve_by_hand", "ack", "unack", "retire")
ENGINE_EVENTS = ("pend", "drop", "fire", "escalate", "resolve", "retire")
# events whose notice records whether the alert is silenced (the store reads the silences for them)
SILENCING_EVENTS = ("fire", "escalate", "resolve", "resolve_by_hand", "retire")
_OPEN = ("firing", "acknowledged")
_VERBS = {"resolve_by_hand": "resolved", "ack": "acknowledged", "unack": "un-acknowledged"}


class InvalidTransition(AlertsError):
    """The event does not apply to the alert in its state (e.g. acknowledging a resolved alert)."""


class Silencer(Protocol):
    """A silence or a maintenance window."""

    def active(self, at_ms: int) -> bool: ...

    def matches(self, labels: dict) -> bool: ...


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What happens to an alert.

    ``pend``/``fire``: ``alert`` is the alert as the engine describes it (id, rule, device,
    severity, summary, value, threshold, started, device object); ``escalate``: the new
    ``severity``, ``summary``, ``value``, ``threshold``; ``resolve``: the ``severity``,
    ``value`` and ``threshold`` its history row records; operators' events: ``by`` and ``note``.
    """

    kind: str  # one of EVENTS
    alert: Alert | None = None
    severity: str | None = None
    summary: str | None = None
    value: float | None = None
    threshold: float | None = None
    by: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENTS:
            raise ValueError(f"unknown alert event {self.kind!r}; one of {', '.join(EVENTS)}")


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice to send: its status (``firing``, ``escalated``, ``resolved``, ``acknowledged``)
    and, for ``escalated``, the severity before."""

    status: str
    previous_severity: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The alert after the event (None: no alert), the history rows to add, the notices to send.
    ``changed`` is False when the event changes nothing (nothing to write or send)."""

    alert: Alert | None
    history: tuple[HistoryEntry, ...] = ()
    notices: tuple[Notice, ...] = ()
    changed: bool = True


def _unchanged(alert: Alert | None) -> Outcome:
    return Outcome(alert, changed=False)


def _entry(at: int, change: str, a: Alert, ev: AlertEvent, *, value: float | None = None) -> HistoryEntry:
    return HistoryEntry(at, change, a.severity, value, a.threshold, ev.by, ev.note or None)


def _silenced(alert: Alert, at: int, silencers: Sequence[Silencer]) -> Alert:
    silenced = any(s.active(at) and s.matches(alert.labels) for s in silencers)
    return alert if silenced == alert.silenced else replace(alert, silenced=silenced)


def _refuse(alert: Alert | None, ev: AlertEvent) -> InvalidTransition:
    if alert is None:
        return InvalidTransition(f"no alert to {ev.kind}")
    verb = _VERBS.get(ev.kind)
    if alert.state == "pending" and verb:
        return InvalidTransition(f"alert {alert.id} is pending (it has not fired); it cannot be {verb}")
    if verb:
        return InvalidTransition(f"alert {alert.id} is {alert.state}; only a firing or acknowledged alert "
                                 f"can be {verb}")
    return InvalidTransition(f"alert {alert.id} is {alert.state}: the engine's {ev.kind!r} does not apply")


def transition(alert: Alert | None, ev: AlertEvent, at_ms: int,
               silencers: Sequence[Silencer] = ()) -> Outcome:
    """The alert after ``ev`` at ``at_ms`` (event time for the engine's events, the operator's
    time for theirs), with its new history rows and notices; InvalidTransition if ``ev`` does
    not apply. ``silencers``: the silences and maintenance windows (needed for the events in
    :data:`SILENCING_EVENTS`)."""
    state = None if alert is None else alert.state
    if state == "resolved" and ev.kind in ("escalate", "resolve", "retire"):
        return _unchanged(alert)  # resolved by hand since the engine last looked
    step = _STEPS.get((state, ev.kind))
    if step is None:
        raise _refuse(alert, ev)
    return step(alert, ev, at_ms, silencers)


def _pend(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    return Outcome(replace(_described(ev), state="pending", fired_ms=None, ended_ms=None))


def _drop(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    return Outcome(None) if alert is not None else _unchanged(None)


def _fire(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    new = _described(ev)
    new = _silenced(replace(new, state="firing", fired_ms=at, ended_ms=None), at, silencers)
    history = [HistoryEntry(at, "firing", new.severity, new.value, new.threshold, ev.by, ev.note or None)]
    if alert is not None:  # the pending alert: when its condition started, at what severity and value
        history.insert(0, HistoryEntry(new.started_ms, "pending", alert.severity, alert.value, new.threshold))
    return Outcome(new, tuple(history), (Notice("firing"),))


def _escalate(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    new = replace(alert, severity=ev.severity or alert.severity, value=ev.value, threshold=ev.threshold,
                  summary=ev.summary if ev.summary is not None else alert.summary)
    new = _silenced(new, at, silencers)
    return Outcome(new, (_entry(at, "escalated", new, ev, value=new.value),),
                   (Notice("escalated", alert.severity),))


def _resolve(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    new = _silenced(replace(alert, state="resolved", ended_ms=at), at, silencers)
    entry = HistoryEntry(at, "resolved", ev.severity or alert.severity, ev.value, ev.threshold)
    return Outcome(new, (entry,), (Notice("resolved"),))


def _resolve_now(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    """A resolve without a reading (by hand, or its rule retired): at ``at`` but never before the
    alert fired; the history keeps the alert's value (by hand) or none (retired)."""
    at = max(at, alert.fired_ms or alert.started_ms)
    new = _silenced(replace(alert, state="resolved", ended_ms=at), at, silencers)
    value = alert.value if ev.kind == "resolve_by_hand" else None
    return Outcome(new, (_entry(at, "resolved", new, ev, value=value),), (Notice("resolved"),))


def _retire_pending(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    return Outcome(None)


def _ack(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    if alert.state == "acknowledged":
        return _unchanged(alert)
    new = replace(alert, state="acknowledged", acked_by=ev.by, acked_ms=at, ack_note=ev.note or None)
    return Outcome(new, (_entry(at, "acknowledged", new, ev, value=new.value),), (Notice("acknowledged"),))


def _unack(alert: Alert | None, ev: AlertEvent, at: int, silencers: Sequence[Silencer]) -> Outcome:
    if alert.state == "firing":
        return _unchanged(alert)
    new = replace(alert, state="firing", acked_by=None, acked_ms=None, ack_note=None)
    return Outcome(new, (_entry(at, "unacknowledged", new, ev, value=new.value),))


def _described(ev: AlertEvent) -> Alert:
    if ev.alert is None:
        raise ValueError(f"a {ev.kind!r} event needs the alert it describes")
    return ev.alert


_STEPS = {
    (None, "pend"): _pend, (None, "drop"): _drop, (None, "fire"): _fire,
    ("pending", "drop"): _drop, ("pending", "fire"): _fire, ("pending", "retire"): _retire_pending,
    **{(s, "escalate"): _escalate for s in _OPEN},
    **{(s, "resolve"): _resolve for s in _OPEN},
    **{(s, "resolve_by_hand"): _resolve_now for s in _OPEN},
    **{(s, "retire"): _resolve_now for s in _OPEN},
    **{(s, "ack"): _ack for s in _OPEN},
    **{(s, "unack"): _unack for s in _OPEN},
}
