"""Smart public toilets: one reading a minute.

Visitors arrive as a Poisson stream shaped over the day (morning, lunch and evening peaks, few
at night) around each toilet's daily total (median 800, 200-2000). NH3 and H2S rise with each
use (and steadily from drains) and fall with ventilation, a first-order balance: with the fans
working (air change every 8 minutes) NH3 stays at 0.25-0.7 mg/m³ for class II (scaled by the
class's limit) and H2S at 0.002-0.006, under GB/T 17217; with the ventilation failed both climb
over their limits within about half an hour. Water (6-9 L a use) and energy (lights,
fans, hand dryers) are cumulative; consumables fall with use and are refilled at 07:30 and 15:30.
"""

from __future__ import annotations

import numpy as np

from ..timeutil import air_temp_c, local_hour
from .base import IntervalModel

TEMPLATE = (b'{"ts":%d,"seq":%d,"metrics":{"nh3_mgm3":%.3f,"h2s_mgm3":%.4f,"people_count":%d,'
            b'"water_m3":%.3f,"energy_kwh":%.3f,"temp_c":%.1f,"humidity_pct":%.1f,'
            b'"consumables_pct":%.1f}}')

# share of the daily visits per local hour
_PROFILE = np.array([0.2, 0.1, 0.1, 0.1, 0.2, 0.8, 3.0, 7.5, 8.0, 6.0, 5.5, 6.5,
                     7.5, 6.5, 5.5, 5.5, 6.0, 7.0, 7.0, 5.5, 4.0, 2.5, 1.2, 0.5])
_PROFILE = _PROFILE / _PROFILE.sum()

VENT_TAU_MIN = 8.0
FAILED_VENT_TAU_MIN = 120.0
# emission per use and per minute from drains and urinals (mg/m³ of room air), for a class II
# toilet; NH3 is scaled by the class's limit
NH3_PER_USE, NH3_BASE = 0.015, 0.03
CLASS_NH3_LIMIT = {"I": 0.3, "II": 1.0, "III": 3.0}
H2S_PER_USE, H2S_BASE = 0.00015, 0.00025


class ToiletModel(IntervalModel):
    kind = "toilet"
    EFFECTS = ("ventilation_failure",)
    interval_ms = 60_000
    per_report = 8

    def __init__(self, devices, rng, start_ms):
        super().__init__(devices, rng, start_ms)
        n = self.n
        self.daily = np.clip(rng.lognormal(np.log(800), 0.45, n), 200, 2000)
        # cleaner toilets of a stricter class (attrs.class I/II/III, NH3 limit 0.3/1.0/3.0) smell less
        self.smell = np.array([CLASS_NH3_LIMIT.get(str((d.attrs or {}).get("class", "II")), 1.0)
                               for d in self.devices])
        self.nh3 = rng.uniform(0.08, 0.2, n)
        self.h2s = rng.uniform(0.0005, 0.002, n)
        self.water = rng.uniform(100, 20_000, n)
        self.energy = rng.uniform(1_000, 80_000, n)
        self.base_kw = rng.uniform(0.4, 1.2, n)
        self.use_pct = rng.uniform(0.03, 0.06, n)
        self.consumables = rng.uniform(50, 100, n)
        self.last_t = np.full(n, start_ms - self.interval_ms, dtype=np.int64)

    def _report(self, idx, t):
        rng = self.rng
        k = len(idx)
        h = local_hour(t)
        dt_min = (t - self.last_t[idx]) / 60_000.0
        self.last_t[idx] = t
        people = rng.poisson(self.daily[idx] * _PROFILE[h.astype(int) % 24] / 60.0 * dt_min)
        fail, which = self.effect_mask("ventilation_failure", t, idx)
        tau = np.where(fail, FAILED_VENT_TAU_MIN, VENT_TAU_MIN)
        decay = np.exp(-dt_min / tau)
        # drains=F: the drains give off F times their usual gas while the fans are down (blocked traps)
        drains = np.array([w.params.get("drains", 1.0) if w else 1.0 for w in which]) if fail.any() else 1.0
        self.nh3[idx] = self.nh3[idx] * decay + self.smell[idx] * (
            NH3_PER_USE * people * rng.uniform(0.7, 1.3, k) + NH3_BASE * drains * dt_min)
        self.h2s[idx] = (self.h2s[idx] * decay + H2S_PER_USE * people * rng.uniform(0.6, 1.4, k)
                         + H2S_BASE * drains * dt_min)
        self.water[idx] += people * rng.uniform(0.006, 0.009, k)
        day_light = np.where((h >= 6) & (h < 22), 1.0, 0.5)
        self.energy[idx] += (self.base_kw[idx] * day_light + 0.02 * people) * dt_min / 60.0
        refill = ((h >= 7.5) & (h - dt_min / 60 < 7.5)) | ((h >= 15.5) & (h - dt_min / 60 < 15.5))
        self.consumables[idx] = np.where(refill, 100.0,
                                         np.maximum(self.consumables[idx] - people * self.use_pct[idx], 0.0))
        temp = air_temp_c(t) * 0.7 + 6.0 + rng.normal(0, 0.3, k)
        hum = np.clip(75 - 0.6 * (temp - 18) + rng.normal(0, 2, k), 30, 98)
        return self.payloads(TEMPLATE, idx, t, np.clip(self.nh3[idx], 0, 100), np.clip(self.h2s[idx], 0, 20),
                             people, self.water[idx], self.energy[idx], temp, hum, self.consumables[idx])
