"""Which devices are registered, for the decoder: ``device_id -> (kind, district, asset_id)``
from a registry snapshot, refreshed when the registry changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("citywatch.ingest")


class RegistryView(Protocol):
    def snapshot(self) -> dict[str, tuple[str, str, str]]: ...
    def version(self) -> int: ...
    def mark_seen(self, seen: dict[str, int]) -> None: ...


class DeviceLookup:
    """device_id -> (kind, district, asset_id), from a registry snapshot refreshed on change.

    Any call re-reads the registry's version at most every ``recheck_s``, so that a device
    registered a moment ago is accepted, and one retired or changed (``DELETE``/``PATCH
    /api/v1/devices/{id}``, a CSV import) is seen as such, without a restart. While the
    registry cannot be read (the state DB away), the last snapshot answers.
    """

    def __init__(self, registry: RegistryView, recheck_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._version = registry.version()
        self._map = registry.snapshot()
        self._checked = clock()
        self._failing = False

    def __call__(self, device_id: str) -> tuple[str, str, str] | None:
        now = self._clock()
        if now - self._checked >= self._recheck_s:
            self._refresh(now)
        return self._map.get(device_id)

    def _refresh(self, now: float) -> None:
        with self._lock:
            self._checked = now
            try:
                v = self._registry.version()
                if v != self._version:
                    self._map = self._registry.snapshot()
                    self._version = v
            except Exception as e:  # the state DB away: the snapshot stays good until it is back
                if not self._failing:
                    log.warning("cannot read the registry (%s); devices are looked up in the last snapshot", e)
                self._failing = True
                return
            if self._failing:
                log.info("registry readable again")
            self._failing = False
