"""Bridge structural-health monitoring: one device per sensor point.

Each bridge (devices grouped by ``asset_id``) has a span (``attrs.span_m``, else 25-120 m), a
first natural frequency (``attrs.natural_hz``, else about 100 / span Hz, 0.8-6 Hz) and traffic:
Poisson arrivals shaped over the day (peaks near 08:00 and 18:00, 600-2500 vehicles an hour at
the peak), trucks 5 % by day and 20 % at night (central Wuhan restricts trucks by day). Truck
weights are a mixture of empty (about 12 t), loaded (about 0.65 of the bridge's rated load,
``attrs.rated_load_t``, default the 49 t of GB 1589-2016) and 0.3 % overloaded (about 1.2 x the
rated load), with axles from the weight.

A sensor's kind is ``attrs.sensor`` (``accel``, ``strain``, ``deflection``, ``tilt``, ``crack``,
``bearing``, ``temp``, ``wim``), else assigned in turn within its bridge. Readings:

- accel: one ``series`` window a second of ``accel_ms2`` at 100 Hz (QoS 0): narrow-band ambient
  vibration at the natural frequency (0.005-0.02 m/s², more with traffic) plus each vehicle's
  forced response and free decay (2 % damping), about 0.003 m/s² per tonne;
- strain (µε), deflection (mm), tilt (°), bearing (kN) every second: live load from the
  vehicles on the span (half-sine influence) plus the structure temperature's thermal part;
- crack (mm, with temp_c) and temp every 10 minutes: a slow drift, wider when cold;
- wim: one reading per vehicle (gross_t, axles, speed_kmh) as it enters.
"""

from __future__ import annotations

import numpy as np

from ..errors import ScenarioError
from ..timeutil import DAY_MS, air_temp_c, local_hour
from .base import Model

SENSORS = ("accel", "strain", "deflection", "tilt", "crack", "bearing", "temp", "wim")
DEFAULT_ROTATION = ("accel", "strain", "deflection", "wim", "tilt", "crack", "temp", "bearing")
SAMPLE_HZ = 100
SLOW_MS = 600_000
OVERLOAD_SHARE = 0.003  # of trucks over the bridge's rated load (attrs.rated_load_t, default 49 t)

_TRAFFIC = np.array([0.12, 0.08, 0.06, 0.05, 0.06, 0.15, 0.45, 0.85, 1.0, 0.8, 0.65, 0.65,
                     0.6, 0.6, 0.62, 0.68, 0.78, 0.95, 1.0, 0.8, 0.6, 0.45, 0.32, 0.2])

_ONE = {
    "strain": b'{"ts":%d,"seq":%d,"metrics":{"strain_ue":%.1f}}',
    "deflection": b'{"ts":%d,"seq":%d,"metrics":{"deflection_mm":%.2f}}',
    "tilt": b'{"ts":%d,"seq":%d,"metrics":{"tilt_deg":%.4f}}',
    "bearing": b'{"ts":%d,"seq":%d,"metrics":{"bearing_kn":%.1f}}',
    "crack": b'{"ts":%d,"seq":%d,"metrics":{"crack_mm":%.3f,"temp_c":%.1f}}',
    "temp": b'{"ts":%d,"seq":%d,"metrics":{"temp_c":%.1f}}',
}
WIM = b'{"ts":%d,"seq":%d,"metrics":{"gross_t":%.1f,"axles":%d,"speed_kmh":%.0f}}'
SERIES_HEAD = b'{"ts":%d,"seq":%d,"interval_ms":10,"series":{"accel_ms2":['
SERIES_TAIL = b"]}}"
SERIES_BODY = b",".join([b"%.4f"] * SAMPLE_HZ)
ZETA = 0.02  # damping ratio of the first mode


def _sensor_of(attrs) -> str | None:
    s = (attrs or {}).get("sensor")
    if not isinstance(s, str):
        return None
    s = s.split("_")[0].lower()
    return s if s in SENSORS else None


class BridgeModel(Model):
    kind = "bridge"
    EFFECTS = ("overloaded_truck", "pier_tilt", "strain_overload")
    NEEDS = {"overloaded_truck": "wim", "pier_tilt": "tilt", "strain_overload": "strain"}

    def __init__(self, devices, rng, start_ms):
        super().__init__(devices, rng, start_ms)
        n = self.n
        groups: dict[str, list[int]] = {}
        for i, d in enumerate(self.devices):
            groups.setdefault(d.asset_id or d.device_id, []).append(i)
        self.bridge_names = list(groups)
        nb = len(groups)
        self.bridge = np.zeros(n, dtype=np.int64)
        self.sensor = [""] * n
        for b, members in enumerate(groups.values()):
            for j, i in enumerate(members):
                self.bridge[i] = b
                self.sensor[i] = _sensor_of(self.devices[i].attrs) or DEFAULT_ROTATION[j % len(DEFAULT_ROTATION)]
        first = [members[0] for members in groups.values()]
        span = np.maximum(self.attr("span_m", 0), self.attr("main_span_m", 0))[first]
        self.span = np.where(span > 0, span, rng.uniform(25, 120, nb))
        nat = self.attr("natural_hz", 0)[first]
        self.natural_hz = np.where(nat > 0, nat, np.clip(100.0 / self.span, 0.8, 6.0) * rng.uniform(0.9, 1.1, nb))
        self.peak_vph = rng.uniform(600, 2500, nb)
        self.rated_t = self.attr("rated_load_t", 49.0)[first]
        self.design_ue = self.attr("design_strain_ue", 300.0)
        self.ambient = rng.uniform(0.005, 0.02, nb)
        self.by_sensor = {s: np.array([i for i in range(n) if self.sensor[i] == s], dtype=np.int64) for s in SENSORS}
        # per-sensor coefficients
        self.k_strain = rng.uniform(2.0, 3.0, n)
        self.k_therm = rng.uniform(4.0, 6.0, n)
        self.k_defl = rng.uniform(0.15, 0.25, n)
        self.k_tilt = rng.uniform(0.0002, 0.0004, n)
        self.tilt0 = self.attr("baseline_tilt_deg", 0.0) + rng.normal(0, 0.005, n)
        self.dead_kn = rng.uniform(2000, 8000, n)
        self.crack0 = rng.uniform(0.06, 0.14, n)
        self.crack_drift = rng.uniform(0.0001, 0.0005, n)  # mm a day
        self.phase = rng.integers(0, 1000, n).astype(np.int64)
        slow_phase = rng.integers(0, SLOW_MS // 1000, n).astype(np.int64) * 1000
        self.slow_due = self.first_due(start_ms, slow_phase + self.phase, SLOW_MS)
        self.t_ref = self.struct_temp(start_ms)
        # accelerometer ambient: 6 narrow-band components per accelerometer
        acc = self.by_sensor["accel"]
        self.acc_f = self.natural_hz[self.bridge[acc]][:, None] * (1 + rng.normal(0, 0.01, (len(acc), 6)))
        self.acc_phi = rng.uniform(0, 2 * np.pi, (len(acc), 6))
        # vehicles on or just past the span: bridge, enter ms, crossing ms, tonnes
        self.v_bridge = np.zeros(0, dtype=np.int64)
        self.v_enter = np.zeros(0, dtype=np.int64)
        self.v_dur = np.zeros(0, dtype=np.int64)
        self.v_t = np.zeros(0)
        self.wim_of_bridge = {int(self.bridge[i]): int(i) for i in self.by_sensor["wim"][::-1]}
        self.last_enter = np.full(nb, -1, dtype=np.int64)  # per bridge: the latest vehicle's entry (ms)

    def struct_temp(self, t) -> np.ndarray:
        """Structure temperature: the air two hours earlier (thermal inertia of concrete)."""
        return air_temp_c(np.asarray(t, dtype=np.int64) - 2 * 3600_000)

    def units(self, effect: str) -> list[np.ndarray]:
        """For the bridge effects: the sensors of the needed type, bridge by bridge."""
        if effect not in self.NEEDS:
            return super().units(effect)
        need = self.by_sensor[self.NEEDS[effect]]
        return [u for b in range(len(self.bridge_names)) if len(u := need[self.bridge[need] == b])]

    def targets(self, effect: str, rng: np.random.Generator, count: int) -> np.ndarray:
        """Devices an effect applies to: every sensor of the needed type on ``count`` bridges
        (for ``offline``: ``count`` sensors)."""
        if effect not in self.NEEDS:
            return super().targets(effect, rng, count)
        need = self.NEEDS[effect]
        cand = sorted({int(self.bridge[i]) for i in self.by_sensor[need]})
        if not cand:
            raise ScenarioError(f"this scenario needs a bridge '{need}' sensor (attrs.sensor = {need!r}); "
                                "the fleet has none")
        chosen = rng.choice(cand, size=min(count, len(cand)), replace=False)
        return np.array([i for i in self.by_sensor[need] if int(self.bridge[i]) in set(chosen.tolist())],
                        dtype=np.int64)

    # --- traffic -----------------------------------------------------------------------

    def _arrivals(self, s: int, extra: list[tuple[int, int, float, int, float]], out) -> None:
        rng = self.rng
        nb = len(self.bridge_names)
        h = int(local_hour(s))
        rate = self.peak_vph * _TRAFFIC[h] / 3600.0
        cnt = rng.poisson(rate)
        vb = np.repeat(np.arange(nb), cnt)
        m = len(vb)
        enter = s + rng.integers(0, 1000, m)
        night = h >= 22 or h < 6
        u = rng.random(m)
        truck = u < (0.20 if night else 0.05)
        bus = ~truck & (u < (0.23 if night else 0.10))
        mix = rng.random(m)
        rated = self.rated_t[vb]
        truck_t = np.where(mix < 0.40, np.clip(rng.normal(12, 3, m), 5, 0.6 * rated),
                           np.where(mix < 1.0 - OVERLOAD_SHARE,
                                    np.clip(rng.normal(0.65 * rated, 0.14 * rated, m), 0.4 * rated, rated),
                                    np.clip(rng.normal(1.2 * rated, 0.1 * rated, m), rated + 0.5, 90)))
        tonnes = np.where(truck, truck_t, np.where(bus, rng.uniform(12, 18, m), rng.uniform(1.2, 2.2, m)))
        axles = np.where(truck, np.searchsorted([18, 25, 31, 43], tonnes) + 2, 2)
        speed = np.clip(rng.normal(55 if night else 45, 9, m), 15, 80)
        for b, te, tn, ax, sp in extra:
            vb = np.append(vb, b)
            enter = np.append(enter, te)
            tonnes = np.append(tonnes, tn)
            axles = np.append(axles, ax)
            speed = np.append(speed, sp)
        if not len(vb):
            return
        order = np.argsort(enter, kind="stable")
        # Each vehicle enters its bridge at a millisecond of its own: a weigh-in-motion station
        # reports one reading per vehicle, and two at one millisecond would be one reading to the
        # store (keyed by device, metric and time; the second dropped as a duplicate).
        last = self.last_enter
        for j in order.tolist():
            b = int(vb[j])
            if enter[j] <= last[b]:
                enter[j] = last[b] + 1
            last[b] = enter[j]
        order = np.argsort(enter, kind="stable")
        dur = (self.span[vb] / (speed / 3.6) * 1000).astype(np.int64)
        self.v_bridge = np.concatenate([self.v_bridge, vb])
        self.v_enter = np.concatenate([self.v_enter, enter])
        self.v_dur = np.concatenate([self.v_dur, dur])
        self.v_t = np.concatenate([self.v_t, tonnes])
        for j in order.tolist():
            i = self.wim_of_bridge.get(int(vb[j]))
            if i is not None and self.alive(int(enter[j]), np.array([i]))[0]:
                seq = self.next_seq(i)
                out.append((int(enter[j]), self.telemetry[i],
                            WIM % (int(enter[j]), seq, tonnes[j], int(axles[j]), speed[j]), 1, False, 3))

    def live_load(self, t: int) -> np.ndarray:
        """Tonnes on each bridge's span at ``t`` weighted by a half-sine influence line."""
        ph = (t - self.v_enter) / np.maximum(self.v_dur, 1)
        on = (ph >= 0) & (ph <= 1)
        w = np.where(on, self.v_t * np.sin(np.pi * np.clip(ph, 0, 1)), 0.0)
        return np.bincount(self.v_bridge, weights=w, minlength=len(self.bridge_names))

    # --- the window ---------------------------------------------------------------------

    def _step(self, t0: int, t1: int, out) -> None:
        s = t0 + (-t0) % 1000
        while s + 1000 <= t1:
            self._second(s, out)
            s += 1000

    def _second(self, s: int, out) -> None:
        extra = []
        for e in self.effects:
            if e.name == "overloaded_truck" and not e.started and e.start_ms < s + 1000:
                e.started = True
                for b in sorted({int(self.bridge[i]) for i in e.idx.tolist()}):
                    extra.append((b, max(e.start_ms, s), float(e.params.get("gross_t", 62.0)),
                                  int(e.params.get("axles", 6)), 38.0))
        self._arrivals(s, extra, out)
        # forget vehicles whose vibration has died away (20 s after leaving)
        keep = self.v_enter + self.v_dur + 20_000 > s
        if not keep.all():
            self.v_bridge, self.v_enter, self.v_dur, self.v_t = (
                self.v_bridge[keep], self.v_enter[keep], self.v_dur[keep], self.v_t[keep])
        load = self.live_load(s + 500)
        dtemp = self.struct_temp(s) - self.t_ref
        self._accel(s, load, out)
        for name in ("strain", "deflection", "tilt", "bearing"):
            idx = self.by_sensor[name]
            if len(idx):
                self._fast(name, idx, s, load[self.bridge[idx]], dtemp, out)
        self._slow(s, dtemp, out)

    def _ramp(self, effect: str, idx: np.ndarray, t: int, key: str, default: float, rise_ms: int) -> np.ndarray:
        """The effect's parameter ``key`` on devices ``idx`` at ``t``, ramping up and down over
        ``rise_ms`` at its start and end (0 where no such effect is active)."""
        add = np.zeros(len(idx))
        for e in self.active_effects(effect, t, t + 1):
            m = np.isin(idx, e.idx)
            up = min(1.0, (t - e.start_ms) / rise_ms, (e.end_ms - t) / rise_ms)
            add[m] += float(e.params.get(key, default)) * up
        return add

    def _fast(self, name: str, idx: np.ndarray, s: int, load: np.ndarray, dtemp: float, out) -> None:
        rng = self.rng
        k = len(idx)
        if name == "strain":
            v = self.k_strain[idx] * load + self.k_therm[idx] * dtemp + rng.normal(0, 1.0, k)
            v += self._ramp("strain_overload", idx, s, "factor", 1.4, 30_000) * self.design_ue[idx]
        elif name == "deflection":
            v = self.k_defl[idx] * load + 0.3 * dtemp + rng.normal(0, 0.05, k)
        elif name == "tilt":
            v = self.tilt0[idx] + self.k_tilt[idx] * load + 0.0005 * dtemp + rng.normal(0, 0.001, k)
            v += self._ramp("pier_tilt", idx, s, "tilt_deg", 0.25, 600_000)
        else:
            v = self.dead_kn[idx] + 9.81 * 0.4 * load + rng.normal(0, 2.0, k)
        ok = self.alive(s + self.phase[idx], idx)
        tpl = _ONE[name]
        for i, ph, x, good in zip(idx.tolist(), self.phase[idx].tolist(), v.tolist(), ok.tolist(), strict=False):
            if good:
                out.append((s + ph, self.telemetry[i], tpl % (s + ph, self.next_seq(i), x), 1, False, 1))

    def _slow(self, s: int, dtemp: float, out) -> None:
        idx = np.nonzero(self.slow_due < s + 1000)[0]
        if not len(idx):
            return
        t = self.slow_due[idx]
        self.slow_due[idx] += SLOW_MS
        temp = self.struct_temp(t) + self.rng.normal(0, 0.2, len(idx))
        days = (t - self.start_ms) / DAY_MS
        crack = self.crack0[idx] + self.crack_drift[idx] * days - 0.002 * (temp - self.t_ref) \
            + self.rng.normal(0, 0.002, len(idx))
        crack = np.clip(crack, 0, 20)
        ok = self.alive(t, idx)
        for j, i in enumerate(idx.tolist()):
            name = self.sensor[i]
            if not ok[j] or name not in ("crack", "temp"):
                continue
            ts = int(t[j])
            vals = (crack[j], temp[j]) if name == "crack" else (temp[j],)
            out.append((ts, self.telemetry[i], _ONE[name] % (ts, self.next_seq(i), *vals), 1, False, len(vals)))

    def _accel(self, s: int, load: np.ndarray, out) -> None:
        idx = self.by_sensor["accel"]
        if not len(idx):
            return
        rng = self.rng
        t_ms = s + self.phase[idx][:, None] + np.arange(SAMPLE_HZ) * (1000 // SAMPLE_HZ)  # (k, 100)
        tsec = (t_ms - self.start_ms) / 1000.0
        b = self.bridge[idx]
        amp = (self.ambient[b] * (1 + load[b] / 50.0) * np.sqrt(2.0 / 6.0))[:, None, None]
        phase = 2 * np.pi * self.acc_f[:, :, None] * tsec[:, None, :] + self.acc_phi[:, :, None]
        sig = (amp * np.sin(phase)).sum(axis=1)
        sig += rng.normal(0, 0.001, sig.shape)
        if len(self.v_t):
            # every (accelerometer, vehicle on its bridge) pair at once
            j, v = np.nonzero(b[:, None] == self.v_bridge[None, :])
            if len(j):
                w = (2 * np.pi * self.natural_hz[b[j]])[:, None]
                tau = (t_ms[j] - self.v_enter[v][:, None]) / 1000.0
                dur = (self.v_dur[v] / 1000.0)[:, None]
                after = tau - dur
                env = np.where(tau < 0, 0.0,
                               np.where(after <= 0, 1.0 - np.exp(-2.0 * tau),
                                        (1.0 - np.exp(-2.0 * dur)) * np.exp(-ZETA * w * np.maximum(after, 0))))
                np.add.at(sig, j, (0.003 * self.v_t[v])[:, None] * env * np.sin(w * tau))
        sig = np.clip(sig, -50, 50)
        ok = self.alive(s + self.phase[idx], idx)
        for j, i in enumerate(idx.tolist()):
            if not ok[j]:
                continue
            ts = s + int(self.phase[i])
            body = SERIES_BODY % tuple(sig[j].tolist())
            out.append((ts, self.telemetry[i], SERIES_HEAD % (ts, self.next_seq(i)) + body + SERIES_TAIL, 0, False,
                        SAMPLE_HZ))
