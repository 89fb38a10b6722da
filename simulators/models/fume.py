"""Restaurant cooking-fume monitors: one reading every 3 minutes.

Each restaurant opens for lunch (about 10:30-14:00) and dinner (about 16:30-21:30); the fan
and the electrostatic purifier run while it is open. Cooking peaks near 12:00 and 18:30. Fume
after the purifier is the raw kitchen fume (4-10 mg/m³ at the peak) times what the purifier
lets through (7-18 %, more as its plates get dirty), so a working purifier stays under the
GB 18483 limit of 2.0 mg/m³; the purifier current (0.3-0.8 A rated) falls as plates foul.
"""

from __future__ import annotations

import numpy as np

from ..timeutil import DAY_MS, local_hour
from .base import IntervalModel

TEMPLATE = (b'{"ts":%d,"seq":%d,"metrics":{"fume_mgm3":%.2f,"particulate_mgm3":%.2f,"nmhc_mgm3":%.2f,'
            b'"fan_on":%d,"purifier_on":%d,"purifier_current_a":%.2f}}')


class FumeModel(IntervalModel):
    kind = "fume"
    EFFECTS = ("purifier_off",)
    interval_ms = 180_000
    per_report = 6

    def __init__(self, devices, rng, start_ms):
        super().__init__(devices, rng, start_ms)
        n = self.n
        self.open1 = rng.normal(10.5, 0.3, n)
        self.close1 = rng.normal(14.0, 0.3, n)
        self.open2 = rng.normal(16.5, 0.3, n)
        self.close2 = rng.normal(21.5, 0.5, n)
        self.raw_peak = rng.uniform(4.0, 10.0, n)
        self.rated_a = self.attr("rated_current_a", 0.0)
        self.rated_a = np.where(self.rated_a > 0, self.rated_a, rng.uniform(0.3, 0.8, n))
        self.dirt0 = rng.uniform(0.0, 0.5, n)  # 0 clean .. 1 fouled
        self.dirt_per_day = rng.uniform(0.005, 0.015, n)

    def _report(self, idx, t):
        rng = self.rng
        k = len(idx)
        h = local_hour(t)
        open_ = ((h >= self.open1[idx]) & (h < self.close1[idx])) | ((h >= self.open2[idx]) & (h < self.close2[idx]))
        intensity = 0.25 + np.exp(-0.5 * ((h - 12.0) / 0.6) ** 2) + 0.9 * np.exp(-0.5 * ((h - 18.5) / 0.7) ** 2)
        intensity = np.where(open_, np.clip(intensity, 0, 1.2) * np.exp(rng.normal(0, 0.15, k)), 0.0)
        raw = intensity * self.raw_peak[idx]
        dirt = np.clip(self.dirt0[idx] + self.dirt_per_day[idx] * (t - self.start_ms) / DAY_MS, 0, 1)
        fan = open_
        off, _ = self.effect_mask("purifier_off", t, idx)
        purifier = fan & ~off
        passes = np.where(purifier, 0.07 + 0.11 * dirt, 1.0)
        fume = raw * passes + 0.03 + np.abs(rng.normal(0, 0.02, k))
        particulate = 1.3 * fume + np.abs(rng.normal(0.02, 0.01, k))
        nmhc = 0.4 + 2.5 * intensity * np.where(purifier, 0.6, 1.0) + np.abs(rng.normal(0, 0.05, k))
        current = np.where(purifier, self.rated_a[idx] * (1.0 - 0.6 * dirt) * rng.uniform(0.95, 1.05, k), 0.0)
        return self.payloads(TEMPLATE, idx, t, np.clip(fume, 0, 100), np.clip(particulate, 0, 200),
                             np.clip(nmhc, 0, 500), fan.astype(int), purifier.astype(int), current)
