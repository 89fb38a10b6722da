"""The sun's elevation above the horizon, for lamps judged against dusk and dawn.

The algorithm of NOAA's Solar Calculator (Global Monitoring Laboratory; Meeus, *Astronomical
Algorithms*, low-precision solar coordinates): the sun's apparent longitude and the obliquity of
the ecliptic give the declination, the equation of time gives the true solar time and so the
hour angle at the longitude. Vectorised over numpy arrays, no network. Accurate to about 0.01°
for dates 1800-2100: sunrise and sunset within a fraction of a minute (tests/ingest/test_sun.py
checks Wuhan against astral's independent computation). The shorter Fourier series of the same
lab (Spencer 1971) was tried first: up to 1.8 minutes off at Wuhan.

Refraction is not modelled: the geometric elevation of the sun's centre. Sunrise and sunset as
almanacs give them (the upper limb on the horizon, with standard refraction) are at
:data:`HORIZON_DEG` = -0.833°; civil dusk and dawn at :data:`CIVIL_DEG` = -6°.
"""

from __future__ import annotations

import numpy as np

HORIZON_DEG = -0.833  # the upper limb on the horizon, 34' of refraction (almanac sunrise/sunset)
CIVIL_DEG = -6.0  # civil twilight: street lighting switches within it
_DAY_MS = 86_400_000
_J2000_MS = 946_728_000_000  # 2000-01-01 12:00 UTC (Julian day 2451545.0)


def _sin(deg):
    return np.sin(np.radians(deg))


def elevation_deg(ts_ms, lat_deg, lon_deg) -> np.ndarray:
    """Elevation (degrees) of the sun's centre at UTC epoch milliseconds ``ts_ms`` seen from
    ``lat_deg``/``lon_deg`` (WGS-84 degrees, east positive); arrays broadcast together."""
    ts = np.asarray(ts_ms, np.float64)
    lat = np.radians(np.asarray(lat_deg, np.float64))
    t = (ts - _J2000_MS) / _DAY_MS / 36525.0  # Julian centuries since J2000.0
    l0 = np.mod(280.46646 + t * (36000.76983 + t * 0.0003032), 360.0)  # mean longitude
    m = 357.52911 + t * (35999.05029 - 0.0001537 * t)  # mean anomaly
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)  # orbit eccentricity
    centre = (_sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t)) + _sin(2 * m) * (0.019993 - 0.000101 * t)
              + _sin(3 * m) * 0.000289)
    omega = 125.04 - 1934.136 * t
    apparent = l0 + centre - 0.00569 - 0.00478 * _sin(omega)
    obliquity = (23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
                 + 0.00256 * np.cos(np.radians(omega)))
    decl = np.arcsin(_sin(obliquity) * _sin(apparent))
    y = np.tan(np.radians(obliquity / 2)) ** 2
    eqtime = 4.0 * np.degrees(y * _sin(2 * l0) - 2 * e * _sin(m) + 4 * e * y * _sin(m) * np.cos(np.radians(2 * l0))
                              - 0.5 * y * y * _sin(4 * l0) - 1.25 * e * e * _sin(2 * m))  # minutes
    minutes = np.mod(ts / 60_000.0, 1440.0)  # UTC minutes of the day
    hour_angle = np.radians(np.mod(minutes + eqtime + 4.0 * np.asarray(lon_deg, np.float64), 1440.0) / 4.0 - 180.0)
    cos_zenith = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    return 90.0 - np.degrees(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))
