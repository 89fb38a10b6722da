"""Household NB-IoT gas meters (CJ/T 503-2016).

Use: a household cooks at breakfast (06-08), lunch (11-13) and dinner (17-20), 0.3-2 m³ a day
(median 0.9), nothing in between, so no normal household has gas flowing four hours in a row.
The meter keeps hourly readings: at each hour boundary ``H`` the cumulative ``volume_m3`` and
``flow_m3h``, the mean flow over the hour before ``H`` (so volume(H) - volume(H - 1 h) equals
flow(H) x 1 h, up to rounding). By default each meter sends them once a day as one packet of
its last 24 hourly readings at its own random minute (``mode="daily"``); ``mode="hourly"`` sends
each hourly reading at a random offset within the next hour. The last reading of a packet also
carries the valve state, battery voltage (lithium 3.6 V or 4xAA 6.0 V by the meter's
``attrs.battery``, draining slowly; a few meters have old batteries near their warning level),
NB-IoT signal strength (a per-meter level, -135..-65 dBm) and temperature.

Alarms are sent at once, as real meters do: an over-flow burst reports every 30 s and closes the
valve after 3 minutes (events ``valve_closed``/``valve_opened``), a strong magnet sends
``magnet_tamper`` and closes the valve; a leak is a steady micro-flow while nobody cooks.
"""

from __future__ import annotations

import numpy as np

from ..timeutil import DAY_MS, HOUR_MS, air_temp_c, local_hour
from .base import Model

_W = np.zeros(24)
for _h, _w in {6: 0.08, 7: 0.12, 11: 0.12, 12: 0.13, 17: 0.15, 18: 0.25, 19: 0.15}.items():
    _W[_h] = _w

_READ = b'{"ts":%d,"metrics":{"volume_m3":%.3f,"flow_m3h":%.3f}}'
_LAST = (b'{"ts":%d,"metrics":{"volume_m3":%.3f,"flow_m3h":%.3f,"valve_open":%d,"battery_v":%.2f,'
         b'"rsrp_dbm":%d,"temp_c":%.1f}}')
DAILY = b'{"seq":%d,"readings":[' + b",".join([_READ] * 23 + [_LAST]) + b"]}"
HOURLY = (b'{"ts":%d,"seq":%d,"metrics":{"volume_m3":%.3f,"flow_m3h":%.3f,"valve_open":%d,'
          b'"battery_v":%.2f,"rsrp_dbm":%d,"temp_c":%.1f}}')
ALARM = b'{"ts":%d,"seq":%d,"metrics":{"volume_m3":%.3f,"flow_m3h":%.3f,"valve_open":%d}}'

BURST_REPORT_MS = 30_000
BURST_CLOSE_MS = 180_000


class GasMeterModel(Model):
    kind = "gas_meter"
    EFFECTS = ("leak", "over_flow", "tamper")
    publishes_status = False  # NB-IoT meters arrive through a carrier platform, no MQTT session

    def __init__(self, devices, rng, start_ms, *, mode: str = "daily"):
        super().__init__(devices, rng, start_ms)
        if mode not in ("daily", "hourly"):
            raise ValueError(f"gas meter mode must be 'daily' or 'hourly', not {mode!r}")
        self.mode = mode
        n = self.n
        self.period = DAY_MS if mode == "daily" else HOUR_MS
        if mode == "daily":
            offset = rng.integers(0, 1440, n) * 60_000 + rng.integers(0, 60_000, n)
        else:
            offset = rng.integers(0, HOUR_MS, n)
        self.offset = offset.astype(np.int64)
        self.by_offset = np.argsort(self.offset, kind="stable")
        self.sorted_offset = self.offset[self.by_offset]
        self.daily_m3 = np.clip(rng.lognormal(np.log(0.9), 0.35, n), 0.3, 2.0)
        self.vol = np.round(rng.uniform(50.0, 3000.0, n), 3)
        old = rng.random(n) < 0.003
        # lithium 3.6 V (warn below 3.3 V) or 4xAA 6.0 V (warn below 4.8 V), as the fleet's attrs say
        aa = np.array([str(d.attrs.get("battery", "")).startswith("4xAA") for d in self.devices], dtype=bool)
        self.batt_warn = np.array([float(d.attrs.get("battery_warn_v", 4.8 if a else 3.3))
                                   for d, a in zip(self.devices, aa, strict=False)])
        lithium = np.where(old, rng.uniform(3.28, 3.35, n), rng.uniform(3.45, 3.66, n))
        alkaline = np.where(old, rng.uniform(4.65, 4.8, n), rng.uniform(5.7, 6.3, n))
        self.batt0 = np.where(aa, alkaline, lithium)
        self.batt_drain_per_day = rng.uniform(0.00005, 0.00015, n)
        self.rsrp = np.clip(rng.normal(-98.0, 10.0, n), -135.0, -65.0)
        self.temp_off = rng.normal(0.0, 1.5, n)
        self.valve = np.ones(n, dtype=np.int64)
        self.absent = np.zeros(n, dtype=bool)  # nobody cooks (a leak while away)
        self.quiet = np.zeros(n, dtype=bool)  # household use suppressed this hour (alarm)
        self.extra = np.zeros(n)  # volume of alarm bursts in the current hour
        self.use = np.zeros((n, 24), dtype=np.float32)  # ring of hourly volume by hour index
        self.low_batt_sent = np.zeros(n, dtype=bool)
        # history: the 24 hours before the start, so the first packets are full
        last = start_ms - start_ms % HOUR_MS
        self.last_h = last - 24 * HOUR_MS
        while self.last_h < last:
            self._hour(self.last_h + HOUR_MS)

    # --- physics ----------------------------------------------------------------------

    def _hour(self, h: int) -> None:
        """Close the hour ``[h - 1 h, h)``: draw household use, add leaks and bursts."""
        rng = self.rng
        n = self.n
        w = _W[int(local_hour(h - HOUR_MS))]
        if w > 0:
            cooks = rng.random(n) < 0.85
            use = np.where(cooks, self.daily_m3 * w / 0.85 * rng.gamma(4.0, 0.25, n), 0.0)
        else:
            use = np.zeros(n)
        use = np.where(self.quiet | self.absent | (self.valve == 0), 0.0, use)
        for e in self.active_effects("leak", h - HOUR_MS, h):
            frac = (min(e.end_ms, h) - max(e.start_ms, h - HOUR_MS)) / HOUR_MS
            use[e.idx] += e.params["rate"] * frac
        use = use + self.extra
        self.extra[:] = 0.0
        self.quiet[:] = False
        use = np.round(use, 3)  # the meter's register resolution, 1 litre
        self.vol += use
        self.use[:, (h // HOUR_MS) % 24] = use
        self.last_h = h

    def battery(self, idx: np.ndarray, t: int) -> np.ndarray:
        days = (t - self.start_ms) / DAY_MS
        cold = np.minimum(air_temp_c(t) - 10.0, 0.0) * 0.004
        return self.batt0[idx] - self.batt_drain_per_day[idx] * days + cold

    # --- the window ---------------------------------------------------------------------

    def _step(self, t0: int, t1: int, out) -> None:
        for e in self.effects:
            if not e.started and e.start_ms < t1:
                e.started = True
                self._start_effect(e)
            if e.started and not e.ended and e.end_ms < t1:
                e.ended = True
                self._end_effect(e)
        t = t0
        while t < t1:
            nxt = min(t1, self.last_h + HOUR_MS)
            self._sends(t, nxt, out)
            if nxt == self.last_h + HOUR_MS:
                self._hour(nxt)
            t = nxt

    def _sends(self, t0: int, t1: int, out) -> None:
        """Packets of the meters whose send time falls in ``[t0, t1)``, in time order."""
        period = self.period
        p0 = t0 - (t0 + (8 * HOUR_MS if period == DAY_MS else 0)) % period
        while p0 < t1:
            lo = np.searchsorted(self.sorted_offset, max(t0 - p0, 0))
            hi = np.searchsorted(self.sorted_offset, min(t1 - p0, period))
            if hi > lo:
                idx = self.by_offset[lo:hi]
                ts = p0 + self.offset[idx]
                self._emit(idx, ts, out)
            p0 += period

    def _emit(self, idx: np.ndarray, ts: np.ndarray, out) -> None:
        ok = self.alive(ts, idx)
        idx, ts = idx[ok], ts[ok]
        if not len(idx):
            return
        hl = self.last_h  # all sends of this segment see the same last boundary
        k = len(idx)
        cols = [((hl // HOUR_MS) - 23 + j) % 24 for j in range(24)]
        use = self.use[idx][:, cols].astype(np.float64)
        after = np.cumsum(use[:, ::-1], axis=1)[:, ::-1]  # use after each boundary, incl. its own
        vol_at = self.vol[idx, None] - after + use  # volume at each of the 24 boundaries
        flow = use  # m³ in one hour = mean m³/h
        batt = self.battery(idx, hl)
        rsrp = np.round(self.rsrp[idx] + self.rng.normal(0, 3.0, k))
        temp = air_temp_c(hl) * 0.6 + 8.0 + self.temp_off[idx]
        valve = self.valve[idx].astype(np.float64)
        seq = np.array([self.next_seq(i) for i in idx.tolist()], dtype=np.float64)
        topics = self.telemetry
        if self.mode == "daily":
            m = np.empty((k, 1 + 72 + 4))
            m[:, 0] = seq
            m[:, 1:73:3] = hl + (np.arange(24) - 23) * HOUR_MS
            m[:, 2:73:3] = vol_at
            m[:, 3:73:3] = flow
            m[:, 73], m[:, 74], m[:, 75], m[:, 76] = valve, batt, rsrp, temp
            tpl, nr = DAILY, 52
        else:
            m = np.column_stack([np.full(k, float(hl)), seq, vol_at[:, -1], flow[:, -1], valve, batt, rsrp, temp])
            tpl, nr = HOURLY, 6
        for i, t, row in zip(idx.tolist(), ts.tolist(), m.tolist(), strict=False):
            out.append((t, topics[i], tpl % tuple(row), 1, False, nr))
        low = (batt < self.batt_warn[idx]) & ~self.low_batt_sent[idx]
        for j in np.nonzero(low)[0].tolist():
            i = int(idx[j])
            self.low_batt_sent[i] = True
            self.event(int(ts[j]), i, "low_battery", {"battery_v": round(float(batt[j]), 2)}, out)

    # --- scenarios ----------------------------------------------------------------------

    def inject(self, name, idx, start_ms, end_ms, **params):
        """As Model.inject; an over-flow burst that would straddle an hour boundary starts one
        minute after it instead, so the hourly register and the alarm readings agree."""
        if name == "over_flow":
            into = start_ms % HOUR_MS
            if into + BURST_CLOSE_MS >= HOUR_MS:
                shift = HOUR_MS - into + 60_000
                start_ms, end_ms = start_ms + shift, end_ms + shift
        return super().inject(name, idx, start_ms, end_ms, **params)

    def _alarm(self, i: int, t: int, flow: float, valve: int, base_vol: float):
        def build():
            s = self.next_seq(i)
            return (t, self.telemetry[i], ALARM % (t, s, base_vol, flow, valve), 1, False, 3)
        return build

    def _event_later(self, i: int, t: int, type_: str, detail: dict):
        def build():
            out: list = []
            self.event(t, i, type_, detail, out)
            return out[0]
        return build

    def _start_effect(self, e) -> None:
        t = e.start_ms
        if e.name == "leak":
            self.absent[e.idx] = True
        elif e.name == "over_flow":
            for i in e.idx.tolist():
                rate = float(e.params.get("flow_m3h", 8.6))
                self.quiet[i] = True
                base = float(self.vol[i])
                for k in range(BURST_CLOSE_MS // BURST_REPORT_MS):
                    dt = k * BURST_REPORT_MS
                    f = round(rate + 0.1 * ((k * 7919 + i) % 5 - 2), 2)
                    self.later(t + dt, self._alarm(i, t + dt, f, 1, round(base + rate * dt / HOUR_MS, 3)))
                burst = round(rate * BURST_CLOSE_MS / HOUR_MS, 3)
                self.extra[i] += burst
                tc = t + BURST_CLOSE_MS
                self.later(tc, self._event_later(i, tc, "valve_closed", {"reason": "over_flow"}))
                self.later(tc, self._alarm(i, tc, 0.0, 0, round(base + burst, 3)))
            self.valve[e.idx] = 0
        elif e.name == "tamper":
            for i in e.idx.tolist():
                self.quiet[i] = True
                self.later(t, self._event_later(i, t, "magnet_tamper", {"field_mt": 0.3}))
                self.later(t + 2000, self._event_later(i, t + 2000, "valve_closed", {"reason": "magnet_tamper"}))
            self.valve[e.idx] = 0

    def _end_effect(self, e) -> None:
        if e.name == "leak":
            self.absent[e.idx] = False
        elif e.name in ("over_flow", "tamper"):
            self.valve[e.idx] = 1
            for i in e.idx.tolist():
                self.later(e.end_ms, self._event_later(i, e.end_ms, "valve_opened", {"reason": "service"}))
