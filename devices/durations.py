"""Durations as operators write them, one parser for every place that reads one.

``500ms``, ``30s``, ``10m``, ``4h``, ``3d``, ``1w``, combinations such as ``1h30m``, or a plain
number of seconds (``30``, ``2.5``, ``"30"``). Used by the rule files, the dispatch routes, the
simulator options and the API's ``step``.
"""

from __future__ import annotations

import math
import re

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration_ms(value: object) -> int:
    """Milliseconds; ValueError naming the value for anything else (negative, NaN, a bool)."""
    if isinstance(value, bool):
        raise _bad(value)
    if isinstance(value, (int, float)):
        try:
            ms = float(value) * 1000
        except OverflowError:  # an int too large for a float
            raise _bad(value) from None
        if not math.isfinite(ms) or ms < 0:
            raise _bad(value)
        return int(round(ms))
    if not isinstance(value, str):
        raise _bad(value)
    text = value.strip().lower()
    try:
        return parse_duration_ms(float(text))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * UNIT_MS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text) or not math.isfinite(total):
        raise _bad(value)
    return int(round(total))


def format_duration(ms: int) -> str:
    """The shortest exact form: 600000 -> ``10m``, 90000 -> ``1m30s``."""
    if ms <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        n, ms = divmod(ms, UNIT_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def _bad(value: object) -> ValueError:
    return ValueError(f"bad duration {value!r}: expected a duration like 30s, 10m, 4h, 1d or 1h30m "
                      "(or a number of seconds)")
