"""Rule types, registered by name: the one place a new type is added.

A rule's type is its ``type:`` key, or, without one, the type whose ``marker`` key it has
(``metric``, ``event`` or ``absent``). To add a type: a module with a
:class:`~alerts.rule_types.base.RuleType` subclass and one :func:`register` line below (a test
or a plug-in may also call :func:`register` before loading the rules). See alerts/RULES.md.
"""

from __future__ import annotations

from .absence import AbsenceRule
from .base import RULE_TYPES, Ctx, Parsed, RuleType, register, unregister
from .event import EventRule
from .metric import MetricRule

register(MetricRule())
register(EventRule())
register(AbsenceRule())

__all__ = ["RULE_TYPES", "Ctx", "Parsed", "RuleType", "register", "unregister"]
