"""The catalogue in code matches ../shared/contract/catalogue.md: every kind, metric, unit, range."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.catalogue import CATALOGUE, KINDS

DOC = Path(__file__).resolve().parents[2].parent / "shared" / "contract" / "catalogue.md"


def _unit(cell: str) -> str:
    """The unit of a unit cell: ``cumulative m³`` -> ``m³``, ``mg/m³ after the purifier`` -> ``mg/m³``."""
    words = cell.strip().removeprefix("cumulative").split()
    return words[0] if words else ""


def doc_metrics() -> dict[str, dict[str, tuple[str | None, float, float]]]:
    """kind -> metric -> (unit or None where the row gives none per metric, lo, hi)."""
    out: dict[str, dict[str, tuple[str | None, float, float]]] = {}
    kind = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^## (\w+) — ", line)
        if m:
            kind = m.group(1)
            out[kind] = {}
            continue
        if kind is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([a-z0-9_]+)`", cells[0])
        if not names or len(cells) < 3 or not re.search(r"\.\.", cells[2]):
            continue  # a rule row (bridge.strain ...), not a metric row
        ranges = re.findall(r"(-?[\d.]+)\.\.(-?[\d.]+)", cells[2])
        units = [_unit(u) for u in cells[1].split(",")]
        for i, name in enumerate(names):
            lo, hi = ranges[i] if len(ranges) == len(names) else ranges[0]
            if len(units) == len(names):
                unit = units[i]
            elif len(names) == 1:
                unit = units[0]
            else:
                unit = None  # one description for several metrics (weigh-in-motion)
            out[kind][name] = (unit, float(lo), float(hi))
    return out


pytestmark = pytest.mark.skipif(not DOC.exists(), reason=f"contract not found at {DOC}")


def test_same_kinds_and_metrics():
    doc = doc_metrics()
    assert list(doc) == list(KINDS) == list(CATALOGUE)
    for kind, metrics in doc.items():
        assert list(CATALOGUE[kind].metrics) == list(metrics), kind


@pytest.mark.parametrize("kind", KINDS)
def test_units_and_ranges(kind):
    for name, (unit, lo, hi) in doc_metrics()[kind].items():
        m = CATALOGUE[kind].metrics[name]
        assert (m.lo, m.hi) == (lo, hi), f"{kind}.{name}"
        if unit and unit != "—":
            assert m.unit == unit, f"{kind}.{name}: {m.unit!r} != {unit!r}"
