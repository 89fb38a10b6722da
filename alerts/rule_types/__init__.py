"""Rule types, registered by name: the one place a new type is added.

A rule's type is its ``type:`` key, or, without one, the type whose ``marker`` key it has
(``metric``, ``event`` or ``absent``). To add a type: a module with a
:class:`~alerts.rule_types.base.RuleType` subclass and one :func:`register` line below (a test
or a plug-in may also call :func:`register` before loading the rules). See alerts/RULES.md.
"""

from __future__ import annotations

from .absence import AbsenceRule
from .base import Ctx, Parsed, RuleType
from .event import EventRule
from .metric import MetricRule

RULE_TYPES: dict[str, RuleType] = {}


def register(rule_type: RuleType) -> RuleType:
    """Make ``rule_type`` known by its name (a later one of the same name replaces it)."""
    if not rule_type.name:
        raise ValueError("a rule type needs a name")
    RULE_TYPES[rule_type.name] = rule_type
    return rule_type


def unregister(name: str) -> None:
    RULE_TYPES.pop(name, None)


register(MetricRule())
register(EventRule())
register(AbsenceRule())

__all__ = ["RULE_TYPES", "Ctx", "Parsed", "RuleType", "register", "unregister"]
