"""Device online state from absence of telemetry, per kind (catalogue ``offline_after_s``).

The kinds' offline rules in the built-in pack use the same durations, so a device shown offline
is one that has (or is about to have) an ``*.offline`` alert.
"""

from __future__ import annotations

from devices.catalogue import kind as _kind


def offline_after_ms(kind: str) -> int:
    """How long a device of this kind may stay silent and still count as online."""
    return int(_kind(kind).offline_after_s * 1000)


def online(kind: str, last_seen_ms: int | None, now_ms: int) -> bool:
    """True if the device's newest reading (event time) is recent enough for its kind.

    A device never seen (``last_seen_ms`` None) is not online. Raises KeyError for an unknown
    kind.
    """
    if last_seen_ms is None:
        return False
    return now_ms - last_seen_ms < offline_after_ms(kind)
