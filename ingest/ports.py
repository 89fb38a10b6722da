"""What the ingest pipeline is handed (ingest/pipeline.py): the rule engine it feeds, the spool
it falls back on. Interfaces only, so that the pipeline does not import their packages."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Any, Protocol

from ingest.model import Event, Readings
from ingest.stores.base import Store


class RuleSink(Protocol):
    def process(self, batch: Readings, events: Sequence[Event]) -> Sized:
        """Evaluate and commit; returns the alert changes (``after_rules`` runs if any)."""

    def checkpoint(self) -> Any:
        """Make durable what :meth:`process` changed and left uncommitted (called before the
        readings passed to it are acknowledged; alerts.engine.RuleEngine, deferred mode)."""


class SpoolLike(Protocol):
    def append(self, batch: Readings) -> None: ...
    def full(self) -> bool: ...
    def depth(self) -> tuple[int, int]: ...
    def oldest_age_ms(self, now_ms: int) -> int | None: ...
    def drain(self, store: Store, max_batches: int | None = None) -> int: ...
    @property
    def drained_by_kind(self) -> dict[str, int]: ...  # cumulative readings drain() wrote, per kind
