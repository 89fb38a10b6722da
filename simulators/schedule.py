"""Fault scenarios on a schedule: one every few minutes, each kind in turn (``citywatch up``'s demo).

:func:`rotation` yields ``(start_ms, spec)`` pairs for ``Simulation(schedule=...)``: the first at
``first_ms``, then one every ``every_ms``, cycling through the kinds of the fleet in the order of
``devices.catalogue.KINDS`` (starting at ``seed`` modulo their number). For each kind it takes
the first scenario of :data:`DEMO` whose local-time window holds the whole fault (a restaurant's
purifier matters only while its fan runs, night rules only at night); the simulation's seeded
generator picks the devices. So a fleet, a seed and a start fix which scenario hits which device
at which simulated time.

The scenarios are those of :mod:`simulators.scenarios`, shortened with ``for=`` so that each
alert fires within minutes and resolves when its fault ends (a windowed rule also when its
window ends):

====================  =============================================================  ===========================
kind                  scenario                                                       alert (fires after, about)
====================  =============================================================  ===========================
bridge                strain-overload for 2 min: strain ramps to 1.4 x design         bridge.strain warning, escalated
                                                                                      to major and critical (10 s)
gas_meter             gas-over-flow: 8.6 m³/h for 3 min, then the valve shuts         gas.over_flow critical (60 s)
fume                  11:00-13:15, 17:00-20:45: purifier-off for 15 min               fume.purifier_off major (6-9 min)
                      otherwise: device-offline for 20 min                            fume.offline warning (15 min)
noise                 22:00-05:50: night-construction for 10 min                      noise.night_lmax (at once),
                                                                                      noise.night_laeq major (5 min)
                      otherwise: the same machines 12 dB louder, by day               noise.day_laeq warning (5 min)
toilet                ventilation failure with drains at 4 x for 25 min               toilet.nh3, toilet.h2s (15 min)
lighting              cabinet-door-open for 4 min                                     lighting.door_open major (1 min)
====================  =============================================================  ===========================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from devices.catalogue import KINDS

from .errors import ScenarioError
from .scenarios import parse_spec
from .timeutil import DAY_MS, HOUR_MS, LOCAL_OFFSET_MS


@dataclass(frozen=True, slots=True)
class Choice:
    """A scenario spec (no ``@WHEN``) and the local hours ``[lo, hi)`` its start must lie in;
    ``lo > hi`` crosses midnight; no windows: any time."""

    spec: str
    windows: tuple[tuple[float, float], ...] = ()

    def fits(self, at_ms: int) -> bool:
        if not self.windows:
            return True
        h = ((at_ms + LOCAL_OFFSET_MS) % DAY_MS) / HOUR_MS
        return any(lo <= h < hi if lo < hi else (h >= lo or h < hi) for lo, hi in self.windows)


DEMO: Mapping[str, tuple[Choice, ...]] = MappingProxyType({
    "bridge": (Choice("strain-overload,for=2m"),),
    "gas_meter": (Choice("gas-over-flow,for=5m"),),
    "fume": (Choice("purifier-off,for=15m", ((11.0, 13.25), (17.0, 20.75))),
             Choice("device-offline,kind=fume,for=20m")),
    "noise": (Choice("night-construction,for=10m", ((22.0, 5.83),)),
              Choice("night-construction,for=10m,extra_db=12")),
    "toilet": (Choice("toilet-ventilation-failure,for=25m,drains=4"),),
    "lighting": (Choice("cabinet-door-open,for=4m"),),
})


def _check_demo() -> None:
    for kind, choices in DEMO.items():
        if not choices or choices[-1].windows:
            raise ScenarioError(f"DEMO[{kind!r}]: the last choice must fit any time")
        for c in choices:
            spec = parse_spec(c.spec)
            if spec.at is not None:
                raise ScenarioError(f"DEMO[{kind!r}]: {c.spec!r} must not name a time")


_check_demo()


def choose(kind: str, at_ms: int) -> str:
    """The spec of :data:`DEMO` for ``kind`` at ``at_ms``."""
    return next(c.spec for c in DEMO[kind] if c.fits(at_ms))


def rotation(kinds: Sequence[str], *, first_ms: int, every_ms: int, seed: int = 0,
             until_ms: int | None = None) -> Iterator[tuple[int, str]]:
    """``(start_ms, spec)``: one scenario every ``every_ms`` from ``first_ms`` (until ``until_ms``,
    else for ever), each of ``kinds`` in turn, in catalogue order from ``seed`` modulo their number."""
    if every_ms <= 0:
        raise ScenarioError(f"a schedule needs a positive interval, got {every_ms} ms")
    order = [k for k in KINDS if k in set(kinds)]
    unknown = sorted(set(kinds) - set(DEMO))
    if unknown or not order:
        raise ScenarioError(f"no demo scenario for kinds {unknown or list(kinds)} (known: {', '.join(DEMO)})")
    i = seed % len(order)
    at = first_ms
    while until_ms is None or at < until_ms:
        kind = order[i % len(order)]
        yield at, choose(kind, at)
        i += 1
        at += every_ms
