"""Device online state from absence of telemetry, per kind (catalogue ``offline_after_s``).

The kinds' offline rules in the built-in pack use the same durations, so a device shown offline
is one that has (or is about to have) an ``*.offline`` alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devices.catalogue import kind as _kind
from devices.registry import offline_after_s


def offline_after_ms(kind: str, attrs: Mapping[str, Any] | None = None) -> int:
    """How long a device of this kind (with these attrs: ``offline_after_s``) may stay silent and
    still count as online."""
    _kind(kind)  # KeyError for an unknown kind
    return int(offline_after_s(kind, attrs) * 1000)


def online(kind: str, last_seen_ms: int | None, now_ms: int, attrs: Mapping[str, Any] | None = None) -> bool:
    """True if the device's newest reading (event time) is recent enough for it.

    A device never seen (``last_seen_ms`` None) is not online. Raises KeyError for an unknown
    kind.
    """
    if last_seen_ms is None:
        return False
    return now_ms - last_seen_ms < offline_after_ms(kind, attrs)
