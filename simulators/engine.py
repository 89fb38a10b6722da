"""The simulation: a fleet, a seed, a start time and scenarios -> an ordered message stream.

:class:`Simulation` is pure: no I/O, no clock. It advances simulated time in windows of a
minute aligned to the minute (models with finer steps, the bridges' seconds, step inside the
window), asks each kind's model for the messages of the window, and yields them ordered by
simulated time (ties keep the kinds' order of ``devices.catalogue.KINDS``, then each model's own
order). Guarantees:

- Same fleet (same order), seed, start, scenarios, schedule and options: the same messages, byte
  for byte, in the same order, however ``messages()`` is called (one call or many slices).
- Every message has ``sim_ts`` >= the previous one's and < the ``until_ms`` it was asked for.
- Payloads follow device-protocol.md, values lie in catalogue.md's physical ranges (only the
  ``bad-payloads`` scenario breaks this, on purpose).

Timestamps are simulated time. Note that ingest rejects readings more than 5 minutes in the
future of its own clock: run faster than real time from a start in the past.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from devices.catalogue import CATALOGUE, KINDS
from devices.model import Device

from .errors import FleetError, ScenarioError
from .message import Message
from .models import MODELS, Emission, Model
from .scenarios import ScenarioSpec, bad_payloads, parse_spec
from .timeutil import DAY_MS, local_midnight

WINDOW_MS = 60_000
log = logging.getLogger("simulators")


@dataclass(frozen=True, slots=True)
class Injection:
    """A planned fault: scenario ``name`` on ``device_ids`` from ``start_ms`` to ``end_ms``."""

    name: str
    kind: str
    device_ids: tuple[str, ...]
    start_ms: int
    end_ms: int


class Simulation:
    """Simulated devices of a fleet, see the module doc.

    Options: ``gas_mode`` ("daily" packets of 24 hourly readings, or "hourly"), ``birth``
    (publish each device's retained ``online`` status at the start; gas meters never do).

    ``schedule``: scenarios planned as the stream goes, an iterable (possibly endless, e.g.
    :func:`simulators.schedule.rotation`) of ``(start_ms, spec)`` in time order, ``spec`` without
    ``@WHEN``. Each is injected when the stream reaches its window, in this thread, with the
    simulation's generator choosing the devices: same schedule, same stream. One the fleet
    cannot take (no device of its kind) is skipped with a warning.
    """

    def __init__(self, fleet: Sequence[Device], *, seed: int, start_ms: int, scenarios: Sequence[str] = (),
                 gas_mode: str = "daily", birth: bool = True,
                 schedule: Iterable[tuple[int, str]] = ()) -> None:
        if not fleet:
            raise FleetError("the fleet is empty: give --devices, --scale or --fleet")
        by_kind: dict[str, list[Device]] = {}
        for d in fleet:
            if d.kind not in CATALOGUE:
                raise FleetError(f"device {d.device_id!r} has unknown kind {d.kind!r} (known: {', '.join(KINDS)})")
            if d.status == "retired":
                continue
            by_kind.setdefault(d.kind, []).append(d)
        self.seed = int(seed)
        self.start_ms = int(start_ms)
        self.models: dict[str, Model] = {}
        for ki, kind in enumerate(KINDS):
            if kind in by_kind:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, ki]))
                kw = {"mode": gas_mode} if kind == "gas_meter" else {}
                self.models[kind] = MODELS[kind](by_kind[kind], rng, self.start_ms, **kw)
        self.tick_ms = WINDOW_MS
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1000]))
        self.specs: list[ScenarioSpec] = [parse_spec(s) for s in scenarios]
        self.injections: list[Injection] = []
        self._extra: list[tuple[int, int, Emission]] = []  # (ts, order, emission) not from models
        self._extra_n = 0
        self._planned_days: set[int] = set()
        self.now = self.start_ms
        self._schedule = iter(schedule)
        self._next: tuple[int, str] | None = next(self._schedule, None)
        for spec in self.specs:
            self._check(spec)
            if spec.p is None:
                self._plan_fixed(spec)
        self._buffer: deque[tuple[Message, int]] = deque()
        self.messages_out = 0
        self.readings_out = 0
        self.reached = self.start_ms  # every message before it has been yielded (sim.now runs ahead)
        self._birth = birth

    # --- scenarios --------------------------------------------------------------------------

    def _kinds_for(self, spec: ScenarioSpec) -> list[str]:
        sc = spec.scenario
        if sc.effect == "offline":
            return [spec.kind] if spec.kind else list(self.models)
        if sc.effect == "bad_payloads":
            return list(self.models)[:1]
        return [sc.kind]

    def _check(self, spec: ScenarioSpec) -> None:
        for kind in self._kinds_for(spec):
            if kind not in self.models:
                raise ScenarioError(f"scenario {spec.scenario.name!r} needs {kind} devices; the fleet has none "
                                    f"(it has: {', '.join(self.models)})")

    def _inject(self, spec: ScenarioSpec, kind: str, idx: np.ndarray, start: int) -> None:
        model = self.models[kind]
        start, end = model.inject(spec.scenario.effect, idx, start, start + spec.resolve_duration(kind),
                                  **dict(spec.params))
        self.injections.append(Injection(spec.scenario.name, kind, tuple(model.ids[i] for i in idx.tolist()),
                                         start, end))

    def _plan_fixed(self, spec: ScenarioSpec) -> None:
        self._plan_at(spec, spec.resolve_at(self.start_ms))

    def _plan_at(self, spec: ScenarioSpec, start: int) -> None:
        if spec.scenario.effect == "bad_payloads":
            self._plan_bad(start)
            return
        for kind in self._kinds_for(spec):
            self._inject(spec, kind, self.models[kind].targets(spec.scenario.effect, self._rng, spec.devices), start)

    def _plan_day(self, day: int) -> None:
        """Draw the day's occurrences of the probabilistic scenarios: each unit (a device, or for
        bridge faults the sensors of the needed type on one bridge) is hit with probability p."""
        self._planned_days.add(day)
        for spec in self.specs:
            if spec.p is None:
                continue
            tod = spec.time_of_day_ms()
            for kind in self._kinds_for(spec):
                model = self.models[kind]
                units = model.units(spec.scenario.effect)  # devices, or sensor groups of a bridge
                hit = np.nonzero(self._rng.random(len(units)) < spec.p)[0]
                if spec.scenario.effect == "bad_payloads":
                    if len(hit):
                        self._plan_bad(day + int(self._rng.integers(0, DAY_MS)))
                    continue
                offs = self._rng.integers(0, DAY_MS, len(hit)) if tod is None else np.full(len(hit), tod)
                for j, u in enumerate(hit.tolist()):
                    start = day + int(offs[j])
                    if start >= self.start_ms:
                        self._inject(spec, kind, units[u], start)

    def _plan_scheduled(self, until_ms: int) -> None:
        """Inject the scheduled scenarios starting before ``until_ms`` (never behind the stream)."""
        while self._next is not None and self._next[0] < until_ms:
            at, text = self._next
            self._next = next(self._schedule, None)
            try:
                spec = parse_spec(text)
                self._check(spec)
                self._plan_at(spec, max(at, self.now))
            except ScenarioError as e:
                log.warning("scheduled scenario %r skipped: %s", text, e)

    def _plan_bad(self, t: int) -> None:
        t = max(t, self.now)  # never behind the stream
        model = next(iter(self.models.values()))
        i = int(model.targets("bad_payloads", self._rng, 1)[0])
        other = next(((m.ids[0], k) for k, m in self.models.items() if k != model.kind), None)
        for j, (_, topic, payload) in enumerate(bad_payloads(model.ids[i], model.kind, other, t)):
            heapq.heappush(self._extra, (t + j, self._extra_n, (t + j, topic, payload, 1, False, 0)))
            self._extra_n += 1
        self.injections.append(Injection("bad-payloads", model.kind, (model.ids[i],), t, t + 15))

    # --- the stream -----------------------------------------------------------------------

    def messages(self, until_ms: int) -> Iterator[Message]:
        """The messages with ``sim_ts < until_ms`` not yielded yet, in publication order.

        ``messages_out`` and ``readings_out`` count what has been yielded so far."""
        buf = self._buffer
        while True:
            while buf and buf[0][0].sim_ts < until_ms:
                msg, n = buf.popleft()
                self.messages_out += 1
                self.readings_out += n
                yield msg
            if buf or self.now >= until_ms:
                self.reached = max(self.reached, until_ms)
                return
            self._window()

    def _window(self) -> None:
        t0 = self.now
        t1 = t0 - t0 % self.tick_ms + self.tick_ms
        self._plan_scheduled(t1)
        if any(s.p is not None for s in self.specs):
            for d in (local_midnight(t0), local_midnight(t1 - 1)):
                if d not in self._planned_days:
                    self._plan_day(d)
        out: list[Emission] = []
        if self._birth and t0 == self.start_ms:
            for m in self.models.values():
                m.birth(t0, out)
        for m in self.models.values():
            m.step(t0, t1, out)
        while self._extra and self._extra[0][0] < t1:
            out.append(heapq.heappop(self._extra)[2])
        out.sort(key=_ts)
        self.now = t1
        self._buffer.extend((Message(topic, payload, qos, retain, ts), n)
                            for ts, topic, payload, qos, retain, n in out)


def _ts(e: Emission) -> int:
    return e[0]
