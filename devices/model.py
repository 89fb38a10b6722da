"""Registry value types: a device and a rollout target (registry.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STATUSES = ("planned", "installed", "retired")


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    kind: str
    district: str
    lat: float | None = None
    lon: float | None = None
    asset_id: str = ""
    asset_name: str = ""
    responsible_unit: str = ""
    status: str = "installed"
    installed_at: str | None = None  # ISO date, e.g. "2026-03-02"
    attrs: Mapping[str, Any] = field(default_factory=dict)
    # derived from traffic, never imported:
    commissioned_at: int | None = None  # ms, time of its first valid reading
    last_seen: int | None = None  # ms, event time of its newest reading


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    programme: str
    kind: str
    district: str
    target: int
    start: str  # ISO date
    deadline: str  # ISO date
