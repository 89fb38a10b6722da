"""Construction-site noise and dust stations: one reading a minute.

Sound: a background of city traffic (about 48 dB(A) by day, 42 at night) plus site work
between each site's start (about 07:00) and end (about 19:30) with a lunch break; a working site
adds 60-68 dB(A) of machinery, so the 1-min Leq sits at 60-70 by day and below 50 at night,
inside GB 12523-2011's 70/55 limits. Lmax is Leq plus a few to 15 dB of impulsive peaks.
Dust: PM10 is a seasonal background (Wuhan: about 90 µg/m³ in winter, 45 in summer) plus a
site excess that follows activity with a 20-minute lag; PM2.5 is mostly background.
"""

from __future__ import annotations

import numpy as np

from ..timeutil import day_of_year, local_hour
from .base import IntervalModel

TEMPLATE = (b'{"ts":%d,"seq":%d,"metrics":{"laeq_db":%.1f,"lmax_db":%.1f,'
            b'"pm10_ugm3":%.0f,"pm25_ugm3":%.0f}}')


class NoiseModel(IntervalModel):
    kind = "noise"
    EFFECTS = ("night_construction", "dust_storm")
    interval_ms = 60_000
    per_report = 4

    def __init__(self, devices, rng, start_ms):
        super().__init__(devices, rng, start_ms)
        n = self.n
        self.work_start = rng.normal(7.0, 0.3, n)
        self.work_end = rng.normal(19.5, 0.5, n)
        self.machine_db = rng.uniform(60.0, 68.0, n)
        self.dust_excess_max = rng.uniform(20.0, 70.0, n)
        self.excess = np.zeros(n)
        self.activity = np.zeros(n)

    def _report(self, idx, t):
        rng = self.rng
        k = len(idx)
        h = local_hour(t)
        working = (h >= self.work_start[idx]) & (h < self.work_end[idx]) & ~((h >= 12.0) & (h < 13.5))
        night = (h >= 22.0) | (h < 6.0)
        act = np.where(working, np.clip(rng.normal(0.8, 0.15, k), 0.2, 1.0), 0.0)
        machine = self.machine_db[idx] + rng.normal(0.0, 2.0, k)
        nc, which = self.effect_mask("night_construction", t, idx)
        act = np.where(nc, np.clip(rng.normal(0.95, 0.05, k), 0.7, 1.0), act)
        if nc.any():  # louder machines than by day: 4 dB, or the scenario's extra_db
            machine = machine + np.array([w.params.get("extra_db", 4.0) if w else 0.0 for w in which])
        bg = np.where(night, 42.0, 48.0) + rng.normal(0.0, 1.5, k)
        with np.errstate(divide="ignore"):
            laeq = 10 * np.log10(10 ** (bg / 10) + act * 10 ** (machine / 10))
        lmax = laeq + 3.0 + rng.exponential(np.where(act > 0, 5.0, 2.5))
        # dust: first-order lag toward the activity's excess (tau 20 min)
        target = act * self.dust_excess_max[idx]
        ds, which = self.effect_mask("dust_storm", t, idx)
        if ds.any():
            target = target + np.array([w.params.get("pm10_ugm3", 280.0) if w else 0.0 for w in which])
        alpha = 1.0 - np.exp(-1.0 / 20.0)
        self.excess[idx] += alpha * (target - self.excess[idx])
        doy = day_of_year(t)
        season = 67.0 + 22.0 * np.cos(2 * np.pi * (doy - 15) / 365.25)
        pm10 = season * np.exp(rng.normal(0, 0.08, k)) + self.excess[idx]
        pm25 = 0.6 * season * np.exp(rng.normal(0, 0.08, k)) + 0.3 * self.excess[idx]
        return self.payloads(TEMPLATE, idx, t, np.clip(laeq, 20, 140), np.clip(lmax, 20, 150),
                             np.clip(pm10, 0, 5000), np.clip(pm25, 0, 5000))
