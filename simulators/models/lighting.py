"""Street-lighting cabinet controllers: one reading a minute.

Lamps switch on a few minutes after sunset and off a few minutes before sunrise, computed for
Wuhan (30.59 N, 114.30 E) and the date; from 23:30 to 05:00 the cabinet dims to 70 % (half-night
dimming). Power is the working lamps times their rating (LED 100-250 W) plus the controller;
voltage is a 220 V phase, a little lower in the evening peak and higher late at night; current
is per phase of a balanced three-phase feed; energy is cumulative. Lamps fail rarely (about
one per cabinet in fifty nights) and are repaired on the next morning's round.
"""

from __future__ import annotations

import numpy as np

from ..timeutil import DAY_MS, HOUR_MS, LOCAL_OFFSET_MS, local_hour, local_midnight, sun_times_ms
from .base import IntervalModel

TEMPLATE = (b'{"ts":%d,"seq":%d,"metrics":{"voltage_v":%.1f,"current_a":%.2f,"power_w":%.0f,'
            b'"power_factor":%.3f,"energy_kwh":%.2f,"lamp_on":%d,"lamps_failed":%d,"door_open":%d,'
            b'"leakage_ma":%.1f}}')

LAMP_FAILURE_PER_HOUR = 2e-5
CONTROLLER_W = 15.0


class LightingModel(IntervalModel):
    kind = "lighting"
    EFFECTS = ("lamp_failures", "door_open")
    interval_ms = 60_000
    per_report = 9

    def __init__(self, devices, rng, start_ms):
        super().__init__(devices, rng, start_ms)
        n = self.n
        lamps = self.attr("lamps", 0)
        self.lamps = np.where(lamps > 0, lamps, rng.integers(40, 121, n)).astype(int)
        lamp_w = self.attr("lamp_w", 0)
        self.lamp_w = np.where(lamp_w > 0, lamp_w, rng.choice([100.0, 120.0, 150.0, 180.0, 250.0], n))
        self.on_delay_ms = rng.uniform(-5, 15, n) * 60_000
        self.off_early_ms = rng.uniform(-5, 15, n) * 60_000
        self.pf_on = rng.uniform(0.92, 0.97, n)
        self.leak = rng.uniform(2.0, 10.0, n)
        self.energy = rng.uniform(10_000, 500_000, n)
        self.failed = np.zeros(n, dtype=int)
        self.last_t = np.full(n, start_ms - self.interval_ms, dtype=np.int64)
        self._sun: dict[int, tuple[int, int]] = {}

    def sun(self, t: int) -> tuple[int, int]:
        """(sunrise, sunset) of the local day of ``t``, cached per day."""
        day = local_midnight(t)
        if day not in self._sun:
            self._sun[day] = sun_times_ms(day + 12 * HOUR_MS)
        return self._sun[day]

    def lamps_should_be_on(self, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        days = t - (t + LOCAL_OFFSET_MS) % DAY_MS
        rise = np.empty(len(t), dtype=np.int64)
        sets = np.empty(len(t), dtype=np.int64)
        for day in np.unique(days).tolist():
            m = days == day
            rise[m], sets[m] = self.sun(day)
        return (t >= sets + self.on_delay_ms[idx]) | (t < rise - self.off_early_ms[idx])

    def _report(self, idx, t):
        rng = self.rng
        k = len(idx)
        h = local_hour(t)
        dt_h = (t - self.last_t[idx]) / HOUR_MS
        self.last_t[idx] = t
        on = self.lamps_should_be_on(idx, t)
        # rare failures while burning; the morning round repairs them
        self.failed[idx] += rng.binomial(self.lamps[idx], np.where(on, LAMP_FAILURE_PER_HOUR * dt_h, 0.0))
        repair = (h >= 10.0) & (h - dt_h < 10.0)
        self.failed[idx] = np.where(repair, 0, self.failed[idx])
        failed = self.failed[idx].copy()
        lf, which = self.effect_mask("lamp_failures", t, idx)
        if lf.any():
            failed = failed + np.array([w.params.get("lamps", 12) if w else 0 for w in which])
        failed = np.minimum(failed, self.lamps[idx])
        door, _ = self.effect_mask("door_open", t, idx)
        dim = np.where((h >= 23.5) | (h < 5.0), 0.7, 1.0)
        lamp_power = (self.lamps[idx] - failed) * self.lamp_w[idx] * dim * rng.normal(1.0, 0.01, k)
        power = np.where(on, lamp_power, 0.0) + CONTROLLER_W
        grid = 224.0 - 4.0 * ((h >= 18) & (h < 21)) + 4.0 * ((h >= 0) & (h < 5))
        volt = grid + rng.normal(0.0, 1.5, k)
        pf = np.where(on, self.pf_on[idx] + rng.normal(0, 0.005, k), 0.5 + rng.normal(0, 0.02, k))
        pf = np.clip(pf, 0.0, 1.0)
        current = power / (3.0 * volt * pf)
        self.energy[idx] += power * dt_h / 1000.0
        leak = self.leak[idx] * np.where(on, 1.2, 1.0) + rng.normal(0, 0.3, k)
        return self.payloads(TEMPLATE, idx, t, np.clip(volt, 0, 500), current, power, pf, self.energy[idx],
                             on.astype(int), failed, door.astype(int), np.clip(leak, 0, 100_000))
