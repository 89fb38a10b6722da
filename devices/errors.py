"""Errors of the device registry: one hierarchy, messages a user can act on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class RegistryError(Exception):
    """Base of every error the registry raises."""


class InvalidDevice(RegistryError, ValueError):
    """A device (or rollout target) handed to the registry fails validation.

    ``problems`` lists ``(field, message)`` pairs, one per bad field.
    """

    def __init__(self, item_id: str, problems: Sequence[tuple[str, str]]) -> None:
        self.item_id = item_id
        self.problems = list(problems)
        super().__init__(
            f"{item_id}: " + "; ".join(f"{field}: {msg}" for field, msg in self.problems)
        )


class DeviceExists(RegistryError):
    """A device with that id is registered already (create refuses to overwrite it)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        super().__init__(f"device_id: {device_id!r} is registered already; change it with PATCH")


class CsvProblem(NamedTuple):
    """One bad cell (or header/row) of a CSV file. ``line`` is 1-based, the header is line 1."""

    line: int
    column: str
    message: str


class CsvError(RegistryError):
    """A CSV import was rejected whole; ``errors`` names every bad row by line and column.

    ``str()`` is one line per problem, e.g.
    ``devices.csv line 7, column kind: unknown kind 'bridg' (known: bridge, ...)``.
    """

    def __init__(self, filename: str, errors: Sequence[CsvProblem]) -> None:
        self.filename = filename
        self.errors = list(errors)
        super().__init__(self._format())

    MAX_LINES = 200  # of the message; ``errors`` keeps them all

    def _format(self) -> str:
        lines = [
            f"{self.filename} line {e.line}, column {e.column}: {e.message}" if e.column
            else f"{self.filename} line {e.line}: {e.message}"
            for e in self.errors[: self.MAX_LINES]
        ]
        if len(self.errors) > self.MAX_LINES:
            lines.append(f"... and {len(self.errors) - self.MAX_LINES} more")
        if len(self.errors) > 1:
            lines.insert(0, f"{self.filename}: {len(self.errors)} problems, nothing imported")
        return "\n".join(lines)
