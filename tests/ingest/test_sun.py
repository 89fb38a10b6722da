"""The sun's elevation (ingest/sun.py) against astral's independent computation: sunrise, sunset
and civil dusk and dawn at Wuhan (30.59 N, 114.30 E) within two minutes on dates through the
year, found where our elevation crosses the almanac's altitudes."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ingest.sun import CIVIL_DEG, HORIZON_DEG, elevation_deg

astral = pytest.importorskip("astral")
from astral.sun import elevation as astral_elevation  # noqa: E402
from astral.sun import sun  # noqa: E402

WUHAN = astral.Observer(latitude=30.59, longitude=114.30)
TZ = ZoneInfo("Asia/Shanghai")
DATES = [date(2026, 3, 20), date(2026, 6, 21), date(2026, 9, 23), date(2026, 12, 21), date(2024, 2, 29),
         date(2027, 1, 15), date(2026, 8, 1)]
EVENTS = (("sunrise", True, HORIZON_DEG), ("sunset", False, HORIZON_DEG), ("dawn", True, CIVIL_DEG),
          ("dusk", False, CIVIL_DEG))


def crossing_ms(near_ms: float, rising: bool, altitude: float) -> float:
    """Where our elevation crosses ``altitude`` within three hours of ``near_ms`` (1 s steps)."""
    ts = np.arange(near_ms - 3 * 3_600_000, near_ms + 3 * 3_600_000, 1000.0)
    above = elevation_deg(ts, WUHAN.latitude, WUHAN.longitude) > altitude
    i = np.flatnonzero(above[1:] != above[:-1])
    i = [j for j in i if above[j + 1] == rising]
    assert len(i) == 1, f"{len(i)} crossings of {altitude} near {near_ms}"
    return float(ts[i[0]])


@pytest.mark.parametrize("day", DATES, ids=str)
def test_sunrise_sunset_dusk_dawn_at_wuhan_within_two_minutes_of_astral(day):
    ref = sun(WUHAN, date=day, tzinfo=TZ)
    for name, rising, altitude in EVENTS:
        expected = ref[name].timestamp() * 1000
        off_min = (crossing_ms(expected, rising, altitude) - expected) / 60_000
        assert abs(off_min) < 2.0, f"{day} {name}: {off_min:+.2f} min from astral's {ref[name]:%H:%M:%S}"


def test_elevation_matches_astral_through_a_day_and_broadcasts():
    start = datetime(2026, 12, 6, tzinfo=TZ).timestamp() * 1000
    ts = start + np.arange(0, 24 * 60, 7) * 60_000.0
    ours = elevation_deg(ts, 30.59, 114.30)
    ref = [astral_elevation(WUHAN, datetime.fromtimestamp(t / 1000, TZ), with_refraction=False) for t in ts]
    assert np.max(np.abs(ours - ref)) < 0.05
    assert ours.max() == pytest.approx(90 - 30.59 - 22.5, abs=0.3)  # noon: declination -22.5° on 6 December
    # arrays of places broadcast against one time
    two = elevation_deg(ts[100], np.array([30.59, 45.0]), np.array([114.30, 114.30]))
    assert two.shape == (2,) and two[0] != two[1]
