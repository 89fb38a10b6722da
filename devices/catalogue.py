"""The six device kinds: metrics, units, physical ranges, reporting intervals.

This module is the single source of truth in code for ../shared/contract/catalogue.md.
A reading outside a metric's physical range is rejected by ingest (quarantined): the
range is what a working sensor can report, not an alert threshold (those live in the
rule pack, ``alerts/``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KINDS: tuple[str, ...] = ("bridge", "gas_meter", "fume", "noise", "toilet", "lighting")

SEVERITIES: tuple[str, ...] = ("info", "warning", "major", "critical")


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a kind. ``lo``/``hi`` is the physical range, inclusive."""

    name: str
    unit: str
    lo: float
    hi: float
    description: str = ""
    typical: str = ""
    interval_s: float | None = None  # typical reporting interval, None if event-driven
    boolean: bool = False  # sent as 0/1
    cumulative: bool = False  # a counter that only grows
    derived: bool = False  # computed by citywatch (ingest/features.py, ingest/context.py), never sent by a device

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"metric {self.name}: bad range {self.lo}..{self.hi}")

    def in_range(self, value: float) -> bool:
        return self.lo <= value <= self.hi


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    title: str
    title_zh: str
    metrics: Mapping[str, Metric]
    events: tuple[str, ...] = ()
    interval_s: float = 60.0  # typical reporting interval of its telemetry
    offline_after_s: float = 600.0  # absence that makes a device offline (the kind's offline rule)
    asset: str = ""  # what the asset_id names

    def metric(self, name: str) -> Metric:
        return self.metrics[name]


def _kind(name: str, title: str, title_zh: str, metrics: list[Metric], **kw) -> Kind:
    return Kind(name, title, title_zh, MappingProxyType({m.name: m for m in metrics}), **kw)


M = Metric

CATALOGUE: Mapping[str, Kind] = MappingProxyType(
    {
        "bridge": _kind(
            "bridge",
            "Bridge structural-health sensor",
            "桥梁结构健康监测",
            [
                M("accel_ms2", "m/s²", -50, 50, "acceleration, usually a series at 50-200 Hz",
                  "ambient 0.005-0.05, truck 0.05-0.3", 1.0),
                M("strain_ue", "microstrain", -5000, 5000, "strain",
                  "live load 10-150, thermal ±200; dynamic 20 Hz, static 1 Hz", 1.0),
                M("deflection_mm", "mm", -1000, 1000, "deflection", "1 Hz", 1.0),
                M("tilt_deg", "degrees", -30, 30, "pier/girder tilt (single-column-pier bridges)",
                  "±0.01-0.05 under traffic", 1.0),
                M("crack_mm", "mm", 0, 20, "crack width", "0.05-0.3, every 10 min", 600.0),
                M("bearing_kn", "kN", -1000, 200000, "bearing force", "1 Hz", 1.0),
                M("temp_c", "°C", -40, 90, "temperature", "every 10 min", 600.0),
                M("gross_t", "t", 0, 500, "weigh-in-motion gross vehicle weight, one reading per vehicle"),
                M("axles", "count", 2, 20, "weigh-in-motion axle count"),
                M("speed_kmh", "km/h", 0, 200, "weigh-in-motion vehicle speed"),
            ],
            interval_s=1.0,
            offline_after_s=300.0,
            asset="bridge",
        ),
        "gas_meter": _kind(
            "gas_meter",
            "Household smart gas meter (NB-IoT, CJ/T 503-2016)",
            "NB-IoT 家用智能燃气表",
            [
                M("volume_m3", "m³", 0, 10_000_000, "cumulative volume", "0.5-1.5 m³/day per household",
                  3600.0, cumulative=True),
                M("flow_m3h", "m³/h", 0, 100, "flow", "cooking peaks 0.3-1.2; G4 Qmax 6, Qmin 0.04", 3600.0),
                M("valve_open", "0/1", 0, 1, "valve state", "", 3600.0, boolean=True),
                M("battery_v", "V", 0, 15, "battery voltage", "lithium 3.6, 4×AA 6.0", 3600.0),
                M("rsrp_dbm", "dBm", -160, -20, "NB-IoT signal strength", "weak below -115", 3600.0),
                M("temp_c", "°C", -40, 90, "temperature", "", 3600.0),
            ],
            events=("valve_closed", "valve_opened", "magnet_tamper", "low_battery"),
            interval_s=86400.0,
            offline_after_s=3 * 86400.0,
            asset="gas account",
        ),
        "fume": _kind(
            "fume",
            "Restaurant cooking-fume online monitor",
            "餐饮油烟在线监测",
            [
                M("fume_mgm3", "mg/m³", 0, 100, "cooking fume after the purifier",
                  "0.1-2.5; reported every 3 min", 180.0),
                M("particulate_mgm3", "mg/m³", 0, 200, "particulate", "", 180.0),
                M("nmhc_mgm3", "mg/m³", 0, 500, "non-methane hydrocarbons", "", 180.0),
                M("fan_on", "0/1", 0, 1, "fan running", "", 180.0, boolean=True),
                M("purifier_on", "0/1", 0, 1, "purifier running", "", 180.0, boolean=True),
                M("purifier_current_a", "A", 0, 100, "purifier current", "0.1-1 electrostatic module", 180.0),
            ],
            interval_s=180.0,
            offline_after_s=15 * 60.0,
            asset="restaurant",
        ),
        "noise": _kind(
            "noise",
            "Construction-site noise and dust station",
            "建筑工地噪声扬尘监测",
            [
                M("laeq_db", "dB(A)", 20, 140, "1-min Leq", "50-85", 60.0),
                M("lmax_db", "dB(A)", 20, 150, "maximum level", "", 60.0),
                M("pm10_ugm3", "µg/m³", 0, 5000, "PM10", "30-300", 60.0),
                M("pm25_ugm3", "µg/m³", 0, 5000, "PM2.5", "30-300", 60.0),
            ],
            interval_s=60.0,
            offline_after_s=10 * 60.0,
            asset="construction site",
        ),
        "toilet": _kind(
            "toilet",
            "Smart public toilet",
            "智慧公厕",
            [
                M("nh3_mgm3", "mg/m³", 0, 100, "ammonia", "0.1-3", 60.0),
                M("h2s_mgm3", "mg/m³", 0, 20, "hydrogen sulphide", "0.001-0.05", 60.0),
                M("people_count", "persons", 0, 10000, "persons since the previous reading",
                  "200-2000 a day", 60.0),
                M("water_m3", "m³", 0, 10_000_000, "cumulative water", "", 60.0, cumulative=True),
                M("energy_kwh", "kWh", 0, 10_000_000, "cumulative energy", "", 60.0, cumulative=True),
                M("temp_c", "°C", -40, 90, "temperature", "", 60.0),
                M("humidity_pct", "%", 0, 100, "relative humidity", "", 60.0),
                M("consumables_pct", "%", 0, 100, "consumables remaining (paper, soap)", "", 60.0),
            ],
            interval_s=60.0,
            offline_after_s=30 * 60.0,
            asset="toilet",
        ),
        "lighting": _kind(
            "lighting",
            "Street and landscape lighting cabinet controller",
            "路灯景观照明控制柜",
            [
                M("voltage_v", "V", 0, 500, "phase voltage", "220", 60.0),
                M("current_a", "A", 0, 1000, "current", "", 60.0),
                M("power_w", "W", 0, 500_000, "active power", "LED lamps 60-250 W each", 60.0),
                M("power_factor", "", 0, 1, "power factor", "≥ 0.85", 60.0),
                M("energy_kwh", "kWh", 0, 100_000_000, "cumulative energy", "", 60.0, cumulative=True),
                M("lamp_on", "0/1", 0, 1, "lamps switched on", "on at dusk, off at dawn", 60.0, boolean=True),
                M("lamps_failed", "count", 0, 100_000, "failed lamps", "", 60.0),
                M("door_open", "0/1", 0, 1, "cabinet door open", "", 60.0, boolean=True),
                M("leakage_ma", "mA", 0, 100_000, "residual (leakage) current", "", 60.0),
            ],
            interval_s=60.0,
            offline_after_s=15 * 60.0,
            asset="lighting cabinet",
        ),
    }
)


# Metrics citywatch computes from what a device sent and stores as readings of that device
# (ingest/features.py, ingest/context.py). Not in their kind's ``metrics``: a device sending one is quarantined
# (``unknown_metric``), as the contract's metric list does not name them.
DERIVED: Mapping[str, Mapping[str, Metric]] = MappingProxyType({
    "bridge": MappingProxyType({m.name: m for m in (
        M("accel_rms_ms2", "m/s²", 0, 50, "RMS of one accel_ms2 window (mean removed)", "", 1.0, derived=True),
        M("accel_peak_ms2", "m/s²", 0, 100, "largest absolute sample of one accel_ms2 window (mean removed)",
          "", 1.0, derived=True),
        M("accel_freq_hz", "Hz", 0, 1000, "dominant frequency of one accel_ms2 window (FFT peak)",
          "first natural frequency 0.8-6 Hz", 1.0, derived=True),
        M("design_strain_ue", "microstrain", 0, 100000, "design strain of the sensor at that reading "
          "(attrs.design_strain_ue, else the bridge.strain default)", "250-450", 1.0, derived=True),
        M("design_deflection_mm", "mm", 0, 10000, "design deflection of the sensor at that reading "
          "(attrs.design_deflection_mm, else the bridge.deflection default)", "span/600", 1.0, derived=True),
    )}),
    "lighting": MappingProxyType({m.name: m for m in (
        M("sun_elevation_deg", "degrees", -90, 90, "the sun's elevation at the cabinet at the message's time",
          "below -0.833: after sunset", 60.0, derived=True),
    )}),
})

del M


# --- Wuhan, for sample fleets (catalogue.md "Wuhan, for sample fleets") ---------------------

CENTRAL_DISTRICTS: tuple[str, ...] = ("江岸区", "江汉区", "硚口区", "汉阳区", "武昌区", "青山区", "洪山区")
NEW_URBAN_DISTRICTS: tuple[str, ...] = ("东西湖区", "汉南区", "蔡甸区", "江夏区", "黄陂区", "新洲区")
FUNCTIONAL_ZONES: tuple[str, ...] = ("东湖新技术开发区", "武汉经开区", "东湖风景区")
DISTRICTS: tuple[str, ...] = CENTRAL_DISTRICTS + NEW_URBAN_DISTRICTS + FUNCTIONAL_ZONES


@dataclass(frozen=True, slots=True)
class CityScale:
    """Public figures of Wuhan's scale, the devices a scale factor of 1.0 stands for."""

    devices: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(
            {
                # 221 monitored bridges; the fleet counts bridges, each with several sensors.
                "bridge": 221,
                "gas_meter": 500_000,  # the 2021 rollout programme
                "fume": 30_000,  # small restaurants
                "noise": 940,  # construction sites
                "toilet": 1_000,  # sanitation public toilets
                # 190,000+ street lamps; a cabinet feeds roughly 80 lamps
                "lighting": 190_000 // 80,
            }
        )
    )
    bridge_sensors: int = 8  # sensor points per monitored bridge
    lamps_per_cabinet: int = 80


WUHAN = CityScale()


def kind(name: str) -> Kind:
    """The kind called ``name``; KeyError with the known kinds if there is none."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown kind {name!r} (known: {', '.join(KINDS)})") from None
