"""The alerts package's errors: one hierarchy, messages an operator can act on."""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error raised by ``alerts``."""


class RuleError(AlertsError):
    """A rule file is wrong. Names the file, the rule id and the field where it can."""

    def __init__(self, message: str, *, file: str = "", rule: str = "", field: str = "") -> None:
        self.file, self.rule, self.field, self.reason = file, rule, field, message
        where = []
        if file:
            where.append(file)
        if rule:
            where.append(f"rule {rule!r}")
        if field:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class AlertNotFound(AlertsError, KeyError):
    """No alert with that id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "alert not found"


class InvalidSilence(AlertsError, ValueError):
    """A silence request is wrong (unknown matcher, end before start, ...)."""
