"""Instants as operators write them (operator.md): epoch milliseconds or RFC 3339 with an offset;
and as the API shows them: RFC 3339 with the configured zone's offset.

One parser (:func:`parse_time_ms`) for every time the API reads (query parameters ``start``/``end``,
the times of a silence or a maintenance window); an RFC 3339 time without an offset is refused
(``2026-11-29T08:00`` could be UTC or local: the operator says which). One formatter
(:func:`rfc3339`) for every time the API and the webhooks show. Every accepted instant lies
in :data:`MIN_MS` .. :data:`MAX_MS` (1970-01-01 to 2262-01-01 UTC, the range a nanosecond int64
store can hold), so nothing downstream (SQLite, DuckDB, InfluxDB) meets a value it cannot take.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

MIN_MS = 0
MAX_MS = 9_214_646_400_000  # 2262-01-01T00:00:00Z
MAX_TEXT = 64  # an RFC 3339 time with nanoseconds and an offset is 35 characters

_EPOCH_MS = re.compile(r"-?[0-9]{1,19}")


def parse_time_ms(value: object) -> int:
    """Epoch milliseconds; ValueError saying what is wrong (form, missing offset, range)."""
    if isinstance(value, bool):
        raise ValueError(f"expected epoch milliseconds or RFC 3339, got {value!r}")
    if isinstance(value, int):
        return check_range(value)
    if not isinstance(value, str):
        raise ValueError(f"expected epoch milliseconds or RFC 3339, got {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"expected epoch milliseconds or RFC 3339, got {len(text)} characters")
    if _EPOCH_MS.fullmatch(text):
        return check_range(int(text))
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected epoch milliseconds or RFC 3339, got {value!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"RFC 3339 time needs an offset (e.g. +08:00), got {value!r}")
    try:
        ms = int(dt.timestamp() * 1000)
    except (OverflowError, ValueError):
        raise ValueError(f"{value!r} is outside 1970-01-01 .. 2262-01-01") from None
    return check_range(ms)


def check_range(ms: int) -> int:
    if not MIN_MS <= ms <= MAX_MS:
        shown = str(ms) if abs(ms) < 10**24 else "a number that large"
        raise ValueError(f"{shown} is outside 1970-01-01 .. 2262-01-01 ({MIN_MS} .. {MAX_MS} ms)")
    return ms


def rfc3339(ms: int | float | None, tz: tzinfo) -> str | None:
    """Epoch ms as RFC 3339 with the zone's offset (``2026-11-29T23:14:05+08:00``); None stays None.

    Whole seconds are shown without a fraction, others to the millisecond.
    """
    if ms is None:
        return None
    ms = int(round(ms))
    dt = datetime.fromtimestamp(ms / 1000, tz)
    return dt.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
