"""What every device model shares: per-device topics and counters, reporting schedules,
silencing (the ``device-offline`` scenario) and injected effects (the other scenarios).

A model simulates all devices of one kind at once with numpy. The engine calls
:meth:`Model.step` for consecutive windows ``[t0, t1)`` of simulated time; the model appends
``(sim_ts, topic, payload, qos, retain, n_readings)`` tuples for every message its devices publish in the
window, in a deterministic order. Models never read the clock and draw all randomness from
the generator they are given, so a seed fixes their output.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.catalogue import CATALOGUE
from devices.model import Device

from ..errors import ScenarioError

# (sim_ts, topic, payload, qos, retain, readings in the payload)
Emission = tuple[int, str, bytes, int, bool, int]


@dataclass(slots=True)
class Effect:
    """A scenario's effect on some devices of a model from ``start_ms`` to ``end_ms``."""

    name: str
    idx: np.ndarray  # device indexes within the model
    start_ms: int
    end_ms: int
    params: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    ended: bool = False

    def active(self, t: int) -> bool:
        return self.start_ms <= t < self.end_ms


def fmt_bool(x: float) -> int:
    return 1 if x else 0


class Model:
    """Base of the six kind models. Subclasses implement :meth:`_step` and list the effects
    they support in ``EFFECTS``."""

    kind: str = ""
    EFFECTS: tuple[str, ...] = ()

    def __init__(self, devices: Sequence[Device], rng: np.random.Generator, start_ms: int) -> None:
        self.devices = list(devices)
        self.n = len(self.devices)
        self.rng = rng
        self.start_ms = start_ms
        self.spec = CATALOGUE[self.kind]
        ids = [d.device_id for d in self.devices]
        self.ids = ids
        self.telemetry = [f"city/{self.kind}/{i}/telemetry" for i in ids]
        self.event_topic = [f"city/{self.kind}/{i}/event" for i in ids]
        self.status_topic = [f"city/{self.kind}/{i}/status" for i in ids]
        self.seq = [0] * self.n
        # silenced devices publish nothing from silent_from until silent_to
        self.silent_from = np.full(self.n, np.iinfo(np.int64).max, dtype=np.int64)
        self.silent_to = np.full(self.n, np.iinfo(np.int64).max, dtype=np.int64)
        self.effects: list[Effect] = []
        # messages scheduled ahead (alarm bursts, events): (ts, order, build) with build() -> Emission
        self._pending: list[tuple[int, int, Any]] = []
        self._pending_n = 0

    # --- scheduling helpers -------------------------------------------------------------

    def spread(self, interval_ms: int) -> np.ndarray:
        """A per-device phase in ``[0, interval_ms)`` so devices do not all report at once."""
        return self.rng.integers(0, interval_ms, self.n).astype(np.int64)

    @staticmethod
    def first_due(start_ms: int, phase: np.ndarray, interval_ms: int) -> np.ndarray:
        """The first time ``>= start_ms`` on each device's grid ``phase + k * interval_ms``."""
        base = start_ms - (start_ms % interval_ms)
        due = base + phase
        return np.where(due < start_ms, due + interval_ms, due)

    def next_seq(self, i: int) -> int:
        s = self.seq[i]
        self.seq[i] = s + 1
        return s

    def alive(self, t: np.ndarray | int, idx: np.ndarray | None = None) -> np.ndarray:
        """Mask of devices (all, or ``idx``) not silenced at ``t``."""
        sf = self.silent_from if idx is None else self.silent_from[idx]
        st = self.silent_to if idx is None else self.silent_to[idx]
        return ~((sf <= t) & (t < st))

    # --- effects --------------------------------------------------------------------------

    def units(self, effect: str) -> list[np.ndarray]:
        """What a probabilistic scenario draws from: by default each device on its own."""
        return [np.array([i], dtype=np.int64) for i in range(self.n)]

    def targets(self, effect: str, rng: np.random.Generator, count: int) -> np.ndarray:
        """The devices an effect hits: ``count`` distinct devices drawn with ``rng``, sorted."""
        return np.sort(rng.choice(self.n, size=min(count, self.n), replace=False)).astype(np.int64)

    def inject(self, name: str, idx: np.ndarray, start_ms: int, end_ms: int, **params: Any) -> tuple[int, int]:
        """Schedule an effect (a scenario) on the devices ``idx`` of this model; returns the
        (start, end) it was scheduled for (a model may move it, see GasMeterModel)."""
        if name == "offline":
            self.silent_from[idx] = start_ms
            self.silent_to[idx] = end_ms
        elif name not in self.EFFECTS:
            raise ScenarioError(f"{self.kind} devices do not support the effect {name!r} "
                                f"(they support: {', '.join(self.EFFECTS + ('offline',))})")
        self.effects.append(Effect(name, np.asarray(idx, dtype=np.int64), start_ms, end_ms, params))
        return start_ms, end_ms

    def active_effects(self, name: str, t0: int, t1: int) -> list[Effect]:
        """Effects called ``name`` overlapping the window ``[t0, t1)``."""
        return [e for e in self.effects if e.name == name and e.start_ms < t1 and e.end_ms > t0]

    def effect_mask(self, name: str, t: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, list[Effect]]:
        """For devices ``idx`` at times ``t`` (same length): a mask of those under an active
        ``name`` effect, and the matching effect per row (None where inactive)."""
        mask = np.zeros(len(idx), dtype=bool)
        which: list[Effect | None] = [None] * len(idx)
        if not len(idx):
            return mask, which
        tmin, tmax = int(t.min()), int(t.max())
        for e in self.effects:
            if e.name != name or e.end_ms <= tmin or e.start_ms > tmax:
                continue
            m = np.isin(idx, e.idx) & (t >= e.start_ms) & (t < e.end_ms)
            if m.any():
                mask |= m
                for j in np.nonzero(m)[0]:
                    which[j] = e
        return mask, which

    # --- status (MQTT last will and birth) ---------------------------------------------

    publishes_status = True

    def _status(self, t0: int, t1: int, out: list[Emission]) -> None:
        """``offline`` (retained) when a silenced device goes quiet, ``online`` when it is back."""
        if not self.publishes_status:
            return
        for e in self.effects:
            if e.name != "offline":
                continue
            if not e.started and t0 <= e.start_ms < t1:
                e.started = True
                for i in e.idx.tolist():
                    out.append((e.start_ms, self.status_topic[i], b"offline", 1, True, 0))
            if not e.ended and t0 <= e.end_ms < t1:
                e.ended = True
                for i in e.idx.tolist():
                    out.append((e.end_ms, self.status_topic[i], b"online", 1, True, 0))

    def birth(self, t: int, out: list[Emission]) -> None:
        """The retained ``online`` status every device publishes when it connects."""
        if not self.publishes_status:
            return
        for i in range(self.n):
            out.append((t, self.status_topic[i], b"online", 1, True, 0))

    def event(self, t: int, i: int, type_: str, detail: dict[str, Any] | None, out: list[Emission]) -> None:
        """An event message of device ``i``."""
        from .. import jsonfmt
        body = {"ts": int(t), "type": type_}
        if detail:
            body["detail"] = detail
        out.append((int(t), self.event_topic[i], jsonfmt.dumps(body), 1, False, 0))

    # --- the window -----------------------------------------------------------------------

    def later(self, ts: int, build: Any) -> None:
        """Schedule a message at ``ts``: ``build()`` makes the Emission when its window comes
        (so per-device ``seq`` numbers follow publication order)."""
        heapq.heappush(self._pending, (int(ts), self._pending_n, build))
        self._pending_n += 1

    def step(self, t0: int, t1: int, out: list[Emission]) -> None:
        """Append every message of the window ``[t0, t1)``."""
        self._status(t0, t1, out)
        self._step(t0, t1, out)
        if self.effects and min(e.end_ms for e in self.effects) < t0:
            # over before this window, and seen to its end by the previous one
            self.effects = [e for e in self.effects if e.end_ms >= t0]
        while self._pending and self._pending[0][0] < t1:
            _, _, build = heapq.heappop(self._pending)
            em = build()
            if em is not None:
                out.append(em)

    def _step(self, t0: int, t1: int, out: list[Emission]) -> None:
        raise NotImplementedError

    def attr(self, name: str, default: float) -> np.ndarray:
        """Per-device numeric parameter from ``attrs`` (registry.md), with a default."""
        out = np.full(self.n, float(default))
        for i, d in enumerate(self.devices):
            v = d.attrs.get(name) if d.attrs else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[i] = float(v)
        return out


class IntervalModel(Model):
    """A model whose devices each report every ``interval_ms`` at their own phase.

    Subclasses implement :meth:`_report`, computing one reading for the due devices ``idx`` at
    times ``t`` (vectorised) and returning the payloads.
    """

    interval_ms: int = 60_000
    per_report: int = 1  # readings in one report

    def __init__(self, devices: Sequence[Device], rng: np.random.Generator, start_ms: int) -> None:
        super().__init__(devices, rng, start_ms)
        self.phase = self.spread(self.interval_ms)
        self.due = self.first_due(start_ms, self.phase, self.interval_ms)

    def _step(self, t0: int, t1: int, out: list[Emission]) -> None:
        self._before(t0, t1, out)
        while True:
            idx = np.nonzero(self.due < t1)[0]
            if len(idx) == 0:
                break
            t = self.due[idx]
            order = np.lexsort((idx, t))
            idx, t = idx[order], t[order]
            self.due[idx] += self.interval_ms
            ok = self.alive(t, idx)
            # the physics runs whether or not the device can send
            payloads = self._report(idx, t)
            topics = self.telemetry
            for j, (i, ts, p) in enumerate(zip(idx.tolist(), t.tolist(), payloads, strict=False)):
                if ok[j]:
                    out.append((ts, topics[i], p, 1, False, self.per_report))

    def _before(self, t0: int, t1: int, out: list[Emission]) -> None:
        """Hook for events and effects that are not periodic readings."""

    def _report(self, idx: np.ndarray, t: np.ndarray) -> list[bytes]:
        raise NotImplementedError

    def payloads(self, template: bytes, idx: np.ndarray, t: np.ndarray, *columns: np.ndarray) -> list[bytes]:
        """Format one single-reading payload per row: ``template % (ts, seq, *columns)``."""
        seq = self.seq
        rows = zip(idx.tolist(), t.tolist(), *(np.asarray(c).tolist() for c in columns), strict=False)
        res = []
        for i, ts, *vals in rows:
            s = seq[i]
            seq[i] = s + 1
            res.append(template % (ts, s, *vals))
        return res
