"""Time helpers of the simulators: durations, start times, local time, sun and weather.

Local time is Asia/Shanghai, UTC+8 all year (China has kept no daylight saving since 1991), so
a fixed offset is exact and keeps the models vectorised.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import numpy as np

from devices.durations import parse_duration_ms  # noqa: F401  (re-exported: simulators use it from here)

LOCAL_OFFSET_MS = 8 * 3600 * 1000
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS

WUHAN_LAT = 30.59
WUHAN_LON = 114.30



def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 / RFC 3339 time (a naive one is Asia/Shanghai)."""
    s = text.strip()
    if re.fullmatch(r"\d{10,14}", s):
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time {text!r}: use epoch ms or ISO 8601, e.g. 2026-11-29T08:00+08:00") from None
    if dt.tzinfo is None:
        return int(round(dt.replace(tzinfo=UTC).timestamp() * 1000)) - LOCAL_OFFSET_MS
    return int(round(dt.timestamp() * 1000))


def local_hour(ts_ms: np.ndarray | int) -> np.ndarray | float:
    """Local (Asia/Shanghai) hour of day as a float in [0, 24)."""
    return ((np.asarray(ts_ms, dtype=np.int64) + LOCAL_OFFSET_MS) % DAY_MS) / HOUR_MS


def local_midnight(ts_ms: int) -> int:
    """Epoch ms of the local midnight starting the day of ``ts_ms``."""
    return ts_ms - (ts_ms + LOCAL_OFFSET_MS) % DAY_MS


def day_of_year(ts_ms: np.ndarray | int) -> np.ndarray:
    """Local day of year, 1..366, as float (fractional within the day)."""
    days = (np.asarray(ts_ms, dtype=np.int64) + LOCAL_OFFSET_MS) / DAY_MS
    # 1970-01-01 is day 1; an average year is close enough for seasons.
    return (days % 365.2425) + 1.0


def sun_times_ms(day_ts_ms: int, lat: float = WUHAN_LAT, lon: float = WUHAN_LON) -> tuple[int, int]:
    """(sunrise, sunset) in epoch ms for the local day containing ``day_ts_ms``.

    NOAA's solar position algorithm (declination and equation of time from the fractional
    year), zenith 90.833° (refraction and the solar disc); accurate to about a minute at
    Wuhan's latitude.
    """
    midnight = local_midnight(day_ts_ms)
    dt = datetime.fromtimestamp((midnight + LOCAL_OFFSET_MS) / 1000, tz=UTC)
    doy = dt.timetuple().tm_yday
    days_in_year = 366 if (dt.year % 4 == 0 and (dt.year % 100 != 0 or dt.year % 400 == 0)) else 365
    gamma = 2 * math.pi / days_in_year * (doy - 1)  # at local noon, close enough
    eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
                       - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma))
    decl = (0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma)
            - 0.006758 * math.cos(2 * gamma) + 0.000907 * math.sin(2 * gamma)
            - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma))
    phi = math.radians(lat)
    cos_ha = (math.cos(math.radians(90.833)) / (math.cos(phi) * math.cos(decl))
              - math.tan(phi) * math.tan(decl))
    ha = math.degrees(math.acos(max(-1.0, min(1.0, cos_ha))))
    # minutes after UTC midnight of the local calendar date
    sunrise_utc_min = 720 - 4 * (lon + ha) - eqtime
    sunset_utc_min = 720 - 4 * (lon - ha) - eqtime
    utc_midnight = midnight + LOCAL_OFFSET_MS
    return (utc_midnight + int(round(sunrise_utc_min * 60_000)),
            utc_midnight + int(round(sunset_utc_min * 60_000)))


def air_temp_c(ts_ms: np.ndarray | int) -> np.ndarray:
    """Typical Wuhan air temperature (°C): seasonal mean 4 °C in January to 29 °C in July,
    a daily swing of ±4 °C, coolest near 03:00 and warmest near 15:00 local time."""
    doy = day_of_year(ts_ms)
    seasonal = 16.5 - 12.5 * np.cos(2 * np.pi * (doy - 20) / 365.25)
    hour = local_hour(ts_ms)
    daily = 4.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)  # min 03:00, max 15:00
    return seasonal + daily
