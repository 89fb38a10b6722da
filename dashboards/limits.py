"""Threshold lines of the boards, read from the rule pack (alerts/pack/default.yaml) and the
catalogue (devices/catalogue.py), so a board never disagrees with what raises the alert.

A per-device parameter (``attrs``) cannot be a fixed line of a panel showing many devices: the
line is the pack's default (e.g. crack limit 0.20 mm), and the panel's description says so. The
bridge design values are the exception: the node stores each reading's design value beside it
(ingest/context.py), so the bridge board draws them per sensor and the ratio against
:func:`multiples`.
"""

from __future__ import annotations

import functools

from alerts.rules import Param, Rule, RulePack
from dashboards.common import SEVERITY_COLOURS
from devices.catalogue import CATALOGUE, DERIVED, Metric


@functools.cache
def pack() -> RulePack:
    return RulePack.load()


def rule(rule_id: str) -> Rule:
    return pack().get(rule_id)


def _value(p: Param) -> list[float]:
    if p.value is not None:
        return [float(p.value)]
    if p.mapping:
        return [float(v) for _, v in p.mapping]
    return [float(p.default)]


def lines(rule_id: str) -> list[tuple[float, str]]:
    """(value, colour) of each level of a metric rule: thresholds times the scale's default; a
    per-class mapping (toilet.nh3) gives one line per class; a band (``outside``) both edges."""
    r = rule(rule_id)
    scale = _value(r.params.scale)[0] if r.type == "metric" else 1.0
    out = []
    for level in r.levels:
        colour = SEVERITY_COLOURS[level.severity]
        for p in level.threshold:
            for v in _value(p):
                out.append((round(v * scale, 6), colour))
    return sorted(set(out))


def multiples(rule_id: str) -> list[tuple[float, str]]:
    """(multiple, colour) of each level of a rule with a per-device ``scale`` (bridge.strain:
    0.8 / 1.0 / 1.2 × the design value): the lines of a reading / design value panel."""
    r = rule(rule_id)
    if r.type != "metric":
        raise ValueError(f"rule {rule_id} has no scale")
    return sorted({(float(v), SEVERITY_COLOURS[level.severity]) for level in r.levels for p in level.threshold
                   for v in _value(p)})


def metric(kind: str, name: str) -> Metric:
    m = CATALOGUE[kind].metrics.get(name) or DERIVED.get(kind, {}).get(name)
    if m is None:
        raise KeyError(f"{kind} has no metric {name!r}")
    return m


# Grafana unit ids for the catalogue's units
_UNITS = {"m/s²": "accMS2", "mm": "lengthmm", "degrees": "degree", "°C": "celsius", "t": "masst", "km/h": "velocitykmh",
          "m³": "m3", "m³/h": "flowcms", "V": "volt", "dBm": "dBm", "mg/m³": "conmgm3", "A": "amp", "dB(A)": "dB",
          "µg/m³": "conμgm3", "%": "percent", "kWh": "kwatth", "W": "watt", "mA": "mamp", "Hz": "hertz"}


def unit(kind: str, name: str) -> str:
    """The Grafana unit of a catalogue metric (its own unit text as a suffix when Grafana has none)."""
    u = metric(kind, name).unit
    if name == "flow_m3h":
        return "suffix: m³/h"
    if u in _UNITS:
        return _UNITS[u]
    return f"suffix: {u}" if u and u not in ("0/1", "count", "") else "none"
