from __future__ import annotations

import math

import pytest

from devices.durations import format_duration, parse_duration_ms


@pytest.mark.parametrize("text,ms", [
    ("500ms", 500), ("30s", 30_000), ("10m", 600_000), ("4h", 14_400_000), ("3d", 259_200_000),
    ("1w", 604_800_000), ("1h30m", 5_400_000), ("1.5h", 5_400_000), (" 2H ", 7_200_000),
    (30, 30_000), (2.5, 2_500), ("30", 30_000), (0, 0),
])
def test_parse(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "soon", "10 m", "5x", "-1s", "1h-30m", -1, math.nan, math.inf, True, None, [1],
                                 "1e308", "inf", "9" * 400 + "w", 10**400])  # no OverflowError either
def test_bad_names_the_value(bad):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration_ms(bad)


def test_format_round_trips():
    for ms in (1, 999, 1000, 90_000, 600_000, 5_400_000, 90_061_001):
        assert parse_duration_ms(format_duration(ms)) == ms
    assert format_duration(0) == "0s" and format_duration(90_000) == "1m30s"
