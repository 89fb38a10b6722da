"""Instants as operators write them: one parser, a bounded range, a ValueError saying why."""

from __future__ import annotations

import pytest

from devices.times import MAX_MS, parse_time_ms


@pytest.mark.parametrize("text, ms", [
    ("0", 0), (1_764_428_045_000, 1_764_428_045_000), ("1764428045000", 1_764_428_045_000),
    ("2025-11-29T23:34:05+08:00", 1_764_430_445_000), ("2025-11-29T15:34:05Z", 1_764_430_445_000),
    ("2025-11-29T15:34:05.5z", 1_764_430_445_500), (MAX_MS, MAX_MS),
])
def test_parse(text, ms):
    assert parse_time_ms(text) == ms


@pytest.mark.parametrize("bad, says", [
    ("²", "expected epoch"), ("9" * 5000, "expected epoch"), (str(2**63), "outside"), (2**63, "outside"),
    (10**4000, "outside"), ("-1", "outside"), (MAX_MS + 1, "outside"), ("9999-12-31T23:59:59+00:00", "outside"),
    ("0001-01-01T00:00:00+00:00", "outside"), ("2025-11-29T15:34:05", "offset"), ("tomorrow", "expected epoch"),
    (True, "expected epoch"), (1.5, "expected epoch"), (None, "expected epoch"), ("", "expected epoch"),
])
def test_bad_says_why(bad, says):
    with pytest.raises(ValueError, match=says):
        parse_time_ms(bad)
