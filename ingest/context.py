"""Derived context readings: what a reading is judged against, stored beside it.

Some readings mean something only against the device's registry entry or the time of day, and a
Grafana panel over InfluxDB cannot join the registry. So the write stage stores, at the event
time of the message that carried the reading, with the device's tags:

- ``sun_elevation_deg`` for every lighting cabinet message: the sun's elevation (ingest/sun.py)
  at the cabinet's ``lat``/``lon``, else its district's centre (devices/fleet.py), else Wuhan's
  (30.59 N, 114.30 E). Lamps should be on below the horizon (-0.833°) and off above it: the
  lighting board draws the lamps against it.
- ``design_strain_ue`` for every bridge message with ``strain_ue``, ``design_deflection_mm`` for
  every one with ``deflection_mm``: the design value the rule judges that reading against,
  ``attrs.design_strain_ue`` / ``attrs.design_deflection_mm`` of the device, else the rule pack's
  default (the scale of ``bridge.strain`` / ``bridge.deflection``, resolved by the pack's own
  :meth:`alerts.rules.Param.resolve`). The bridge board draws 0.8 / 1.0 / 1.2 × it per sensor
  and the ratio reading / design value (one InfluxDB point holds both fields).

Event time, like the waveform features (ingest/features.py): a replay of recorded traffic stores
what live ingest stored, with the registry as it is at the replay. A design value changed in
the registry applies from the next message on (the rules' attrs snapshot moves the same way);
the readings already stored keep the value they were judged against.

Only telemetry messages (``metrics``): a ``series`` window of strain gets no design point.
Devices cannot send these metrics (not in their kind's ``metrics``: the decoder quarantines
them). Where: the rules stage keeps the batch's message list (:func:`messages`, no copy); the
write stage computes and appends the readings (:func:`add_context`), off the alert path.
"""

from __future__ import annotations

import numpy as np

from devices.fleet import DISTRICT_INFO
from ingest.model import Readings, ReadingsBuilder
from ingest.sun import elevation_deg

SUN = "sun_elevation_deg"
LIGHTING = "lighting"
BRIDGE = "bridge"
WUHAN_CENTRE = (30.59, 114.30)
# reading metric -> the rule whose scale is its design value (the derived metric is the attr's name)
DESIGN_RULES = {"strain_ue": "bridge.strain", "deflection_mm": "bridge.deflection"}


class Context:
    """What the derived readings need: the registry (positions, attrs) and the rule pack of
    ``rule_files`` (``[rules] files``: the design parameters and their defaults)."""

    def __init__(self, registry, rule_files=()) -> None:
        from alerts.rules import RulePack

        pack = RulePack.load(rule_files)  # the node's pack: its design parameters and defaults
        self.registry = registry
        self.design = {}  # reading metric -> (derived metric, Param)
        for metric, rule_id in DESIGN_RULES.items():
            try:
                scale = pack.get(rule_id).params.scale
            except KeyError:
                continue
            if scale is not None and scale.attr:
                self.design[metric] = (scale.attr, scale)

    def wanted(self, per_kind: dict[str, int]) -> bool:
        """Whether a batch with these readings per kind can yield context readings (most of the
        traffic, e.g. a batch of noise stations, is not looked at)."""
        return LIGHTING in per_kind or (bool(self.design) and BRIDGE in per_kind)

    def position(self, positions: dict, device_id: str, district: str) -> tuple[float, float]:
        lat, lon, reg_district = positions.get(device_id, (None, None, district))
        if lat is not None and lon is not None:
            return float(lat), float(lon)
        d = DISTRICT_INFO.get(reg_district or district)
        return (d.lat, d.lon) if d is not None else WUHAN_CENTRE

    def readings(self, msg_lists: list[list[tuple]]) -> Readings | None:
        """The derived readings of the messages (``ReadingsBuilder`` message tuples), or None."""
        lamps, designs = [], []
        for msgs in msg_lists:
            for m in msgs:
                kind = m[1]
                if kind == LIGHTING:
                    lamps.append(m)
                elif kind == BRIDGE and self.design:
                    designs.append(m)
        rows: list[tuple] = []
        if lamps:
            rows += self._sun_rows(lamps)
        if designs:
            rows += self._design_rows(designs)
        return Readings.from_rows(rows) if rows else None

    def _sun_rows(self, msgs: list[tuple]) -> list[tuple]:
        positions = self.registry.positions(LIGHTING)
        where = np.array([self.position(positions, m[0], m[3]) for m in msgs], np.float64)
        elev = elevation_deg(np.fromiter((m[2] for m in msgs), np.float64, len(msgs)), where[:, 0], where[:, 1])
        return [(m[0], LIGHTING, SUN, m[2], round(float(e), 3), m[3], m[4])
                for m, e in zip(msgs, elev.tolist(), strict=True)]

    def _design_rows(self, msgs: list[tuple]) -> list[tuple]:
        attrs = self.registry.attrs_snapshot(BRIDGE)
        rows = []
        for m in msgs:
            for metric in m[5]:
                d = self.design.get(metric)
                if d is not None:
                    rows.append((m[0], BRIDGE, d[0], m[2], d[1].resolve(attrs.get(m[0])), m[3], m[4]))
        return rows


def messages(builder: ReadingsBuilder) -> list[list[tuple]]:
    """The batch's message list, kept for the write stage (the builder's own list, which it does
    not reuse: no copy)."""
    return [builder._msgs] if builder._msgs else []


def add_context(pipeline, p) -> Readings:
    """``p.batch`` with the derived readings of ``p.context`` (then forgotten, so a retried write
    does not add them twice), counted as received and in flight like the readings they come
    from (as ingest/features.py add_derived does)."""
    msgs, p.context = p.context, []
    derived = pipeline.context.readings(msgs) if pipeline.context is not None else None
    if derived is None:
        return p.batch
    with pipeline._cond:
        pipeline._inflight_readings += len(derived)
    for kind, n in zip(*np.unique(derived.kind.astype(str), return_counts=True), strict=True):
        pipeline.metrics.received.labels(str(kind)).inc(int(n))
    return Readings.concat([p.batch, derived])
