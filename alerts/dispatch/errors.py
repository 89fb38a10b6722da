"""The one error hierarchy of ``alerts.dispatch``."""

from __future__ import annotations


class DispatchError(Exception):
    """Base of every error raised by the dispatch package."""


class DispatchConfigError(DispatchError, ValueError):
    """A ``[[receivers]]`` or ``[[routes]]`` entry is wrong; the program must refuse to start.

    ``key`` names the offending key the way an operator finds it in the file
    (``routes[1].receivers``), ``reason`` says what is wrong with it.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
