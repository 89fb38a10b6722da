"""Delivery ids: ULIDs (26 characters of Crockford base32, sortable by creation time).

48 bits of Unix milliseconds then 80 random bits. Ids from one :class:`UlidGenerator` are
strictly increasing even within one millisecond (the random part is incremented), so sorting
delivery ids sorts deliveries in the order they were created.
"""

from __future__ import annotations

import secrets
import threading

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RAND_BITS = 80
_RAND_MAX = (1 << _RAND_BITS) - 1


def encode(value: int) -> str:
    """The 26-character Crockford base32 form of a 128-bit integer."""
    if not 0 <= value < 1 << 128:
        raise ValueError("a ULID is a 128-bit unsigned integer")
    out = []
    for _ in range(26):
        out.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def timestamp_ms(ulid: str) -> int:
    """The creation time (Unix milliseconds) encoded in a ULID."""
    value = 0
    for ch in ulid.upper():
        value = value * 32 + CROCKFORD.index(ch)
    return value >> _RAND_BITS


class UlidGenerator:
    """Monotonic ULIDs; thread-safe. The time is passed in (seconds since the epoch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self, now: float) -> str:
        ms = max(int(now * 1000), 0)
        with self._lock:
            if ms <= self._last_ms:  # same millisecond, or the clock stepped back
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand > _RAND_MAX:  # 2**80 ids in one millisecond: borrow the next one
                    ms, rand = ms + 1, secrets.randbits(_RAND_BITS - 1)
            else:
                rand = secrets.randbits(_RAND_BITS - 1)  # leave headroom for increments
            self._last_ms, self._last_rand = ms, rand
        return encode((ms << _RAND_BITS) | rand)
