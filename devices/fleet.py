"""Sample Wuhan fleets: plausible devices for simulators, demos, benchmarks and tests.

:func:`sample_fleet` builds devices in proportion to the city's public figures
(:data:`devices.catalogue.WUHAN`): scale 1.0 stands for 500,000 smart gas meters, 30,000
restaurants, 940 construction sites, 1,000 public toilets, 2,375 lighting cabinets and 221
monitored bridges with ``WUHAN.bridge_sensors`` sensor devices each. Devices are spread over
the real districts (:data:`devices.catalogue.DISTRICTS`) by rough population weights
(2020 census, rounded) with plausible coordinates, Chinese asset names, responsible units and
the per-device ``attrs`` the default rules read.

Guarantees: the same arguments give the same devices (each kind draws from its own seeded
generator, so asking for fewer kinds does not change the devices of the others); every
``device_id`` matches :data:`devices.model.DEVICE_ID_RE` (ASCII: districts appear by their
pinyin slug, e.g. ``gas-jianghan-000123``); devices are returned ordered by kind (catalogue
order) then id.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from devices.catalogue import CENTRAL_DISTRICTS, DISTRICTS, FUNCTIONAL_ZONES, KINDS, WUHAN
from devices.model import Device, RolloutTarget

__all__ = ["sample_fleet", "sample_rollout", "allocate", "DISTRICT_INFO", "BRIDGE_SENSORS",
           "GAS_PROGRAMME"]

GAS_PROGRAMME = "smart-gas-meters-2021"

# One sensor device per point; each kind of point reports the bridge metrics named in the
# catalogue: strain_ue, deflection_mm, tilt_deg, accel_ms2, crack_mm, bearing_kn, temp_c and
# weigh-in-motion (gross_t, axles, speed_kmh).
BRIDGE_SENSORS: tuple[str, ...] = ("strain", "deflection", "tilt", "accel", "crack", "bearing", "temp", "wim")


@dataclass(frozen=True, slots=True)
class DistrictInfo:
    name: str
    slug: str  # pinyin, for device ids
    code: str  # administrative division code (functional zones: made-up 4201xx codes)
    lat: float  # rough centre of its built-up area
    lon: float
    spread: float  # degrees, standard deviation of device positions around the centre
    population: float  # 10,000 residents, rough (2020 census)
    roads: tuple[str, ...]


def _d(name, slug, code, lat, lon, spread, pop, roads) -> DistrictInfo:
    return DistrictInfo(name, slug, code, lat, lon, spread, pop, tuple(roads.split()))


DISTRICT_INFO: dict[str, DistrictInfo] = {d.name: d for d in (
    _d("江岸区", "jiangan", "420102", 30.620, 114.305, 0.020, 96.5,
       "解放大道 沿江大道 中山大道 黄浦大街 二七路 惠济路 台北路 后湖大道"),
    _d("江汉区", "jianghan", "420103", 30.598, 114.268, 0.015, 64.8,
       "江汉路 解放大道 新华路 建设大道 发展大道 青年路 唐家墩路 前进一路"),
    _d("硚口区", "qiaokou", "420104", 30.582, 114.228, 0.015, 66.6,
       "中山大道 解放大道 京汉大道 古田二路 长丰大道 汉正街 宝丰路 汉西路"),
    _d("汉阳区", "hanyang", "420105", 30.545, 114.215, 0.020, 83.7,
       "汉阳大道 鹦鹉大道 龙阳大道 墨水湖北路 江城大道 琴台大道 归元寺路 四新大道"),
    _d("武昌区", "wuchang", "420106", 30.553, 114.320, 0.018, 127.4,
       "中南路 武珞路 中北路 徐东大街 和平大道 积玉桥 解放路 首义路"),
    _d("青山区", "qingshan", "420107", 30.632, 114.390, 0.015, 52.9,
       "和平大道 建设一路 冶金大道 友谊大道 红钢城大街 工业路 吉林街 青化路"),
    _d("洪山区", "hongshan", "420111", 30.505, 114.340, 0.025, 130.0,
       "珞喻路 雄楚大道 鲁磨路 南湖大道 民族大道 白沙洲大道 书城路 卓刀泉路"),
    _d("东西湖区", "dongxihu", "420112", 30.660, 114.135, 0.030, 86.2,
       "金银湖路 东吴大道 径河路 临空港大道 金山大道 新城十二路 马池路 吴家山大街"),
    _d("汉南区", "hannan", "420113", 30.335, 114.085, 0.020, 14.0,
       "汉南大道 纱帽大街 兴城大道 通航大道"),
    _d("蔡甸区", "caidian", "420114", 30.580, 114.035, 0.030, 55.4,
       "蔡甸大街 知音湖大道 中法友谊路 奓山大街 索河大街 新天大道"),
    _d("江夏区", "jiangxia", "420115", 30.380, 114.320, 0.030, 97.5,
       "文化大道 纸坊大街 江夏大道 藏龙大道 庙山大道 阳光大道"),
    _d("黄陂区", "huangpi", "420116", 30.800, 114.350, 0.035, 115.2,
       "前川大道 百锦街 黄陂大道 盘龙大道 天阳大道 汉口北大道"),
    _d("新洲区", "xinzhou", "420117", 30.700, 114.560, 0.030, 86.1,
       "邾城大街 阳逻大道 新洲大道 平江路 港城大道 施岗大街"),
    _d("东湖新技术开发区", "donghugaoxin", "420191", 30.485, 114.420, 0.025, 110.0,
       "光谷大道 高新大道 关山大道 民族大道 光谷一路 高新二路 流芳大道 软件园路"),
    _d("武汉经开区", "jingkai", "420192", 30.480, 114.160, 0.025, 60.0,
       "东风大道 沌阳大道 车城大道 江城大道 神龙大道 兴城大道"),
    _d("东湖风景区", "donghufengjing", "420193", 30.560, 114.385, 0.010, 5.0,
       "东湖路 沿湖大道 梨园大道 磨山路 听涛路 鲁磨路"),
)}
assert tuple(DISTRICT_INFO) == DISTRICTS

# Where a kind is found, as a weight multiplier per district group.
_CENTRAL = set(CENTRAL_DISTRICTS)
_ZONES = set(FUNCTIONAL_ZONES)


def _weights(kind: str) -> list[float]:
    w = []
    for name, d in DISTRICT_INFO.items():
        if kind in ("fume", "toilet"):
            w.append(d.population * (1.5 if name in _CENTRAL else 1.0))
        elif kind == "noise":  # construction concentrates where the city grows
            w.append(d.population * (1.0 if name in _CENTRAL else 1.6))
        elif kind == "lighting":  # the 190,000 lamps are those of the central city
            w.append(d.population if name in _CENTRAL or name in _ZONES else 0.0)
        elif kind == "bridge":
            w.append(d.population * (2.0 if name in _CENTRAL else 1.0))
        else:
            w.append(d.population)
    return w


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into whole parts proportional to ``weights`` (largest remainder; ties
    to the earlier index). The parts sum to ``total`` exactly."""
    s = float(sum(weights))
    if total <= 0 or s <= 0:
        return [0] * len(weights)
    exact = [total * w / s for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _count(kind: str, scale: float, min_per_kind: int) -> int:
    return max(round(WUHAN.devices[kind] * scale), min_per_kind)


# scalar draws, for the few bridges

def _date(rng: random.Random, first: str, last: str) -> str:
    a, b = date.fromisoformat(first).toordinal(), date.fromisoformat(last).toordinal()
    return date.fromordinal(a + rng.randrange(b - a + 1)).isoformat()


def _position(rng: random.Random, d: DistrictInfo) -> tuple[float, float]:
    s = d.spread
    lat = min(max(rng.gauss(d.lat, s), d.lat - 3 * s), d.lat + 3 * s)
    lon = min(max(rng.gauss(d.lon, s * 1.15), d.lon - 3.5 * s), d.lon + 3.5 * s)
    # inside the city's extent (30.3-30.9 N, 113.9-114.6 E)
    return round(min(max(lat, 30.3), 30.9), 6), round(min(max(lon, 113.9), 114.6), 6)


def _by_district(kind: str, n: int) -> list[tuple[DistrictInfo, int]]:
    """(district, ordinal within district starting at 1) for ``n`` devices of ``kind``."""
    out = []
    for d, k in zip(DISTRICT_INFO.values(), allocate(n, _weights(kind)), strict=False):
        out.extend((d, i) for i in range(1, k + 1))
    return out


# --- bridges ------------------------------------------------------------------------------

# name, district, lat, lon, main span (m), prestressed concrete (else steel / RC)
_NAMED_BRIDGES: tuple[tuple[str, str, float, float, float, bool], ...] = (
    ("武汉长江大桥", "武昌区", 30.5494, 114.2879, 128, False),
    ("武汉长江二桥", "江岸区", 30.6083, 114.3233, 400, True),
    ("白沙洲长江大桥", "洪山区", 30.4876, 114.2699, 618, True),
    ("二七长江大桥", "江岸区", 30.6290, 114.3390, 616, True),
    ("鹦鹉洲长江大桥", "汉阳区", 30.5290, 114.2780, 850, False),
    ("杨泗港长江大桥", "汉阳区", 30.5060, 114.2650, 1700, False),
    ("天兴洲长江大桥", "青山区", 30.6700, 114.4050, 504, False),
    ("军山长江大桥", "武汉经开区", 30.4260, 114.1000, 460, True),
    ("阳逻长江大桥", "新洲区", 30.6310, 114.5530, 1280, False),
    ("沌口长江大桥", "武汉经开区", 30.4520, 114.1660, 760, False),
    ("青山长江大桥", "青山区", 30.6640, 114.4460, 938, False),
    ("晴川桥", "汉阳区", 30.5630, 114.2760, 280, False),
    ("江汉一桥", "汉阳区", 30.5640, 114.2700, 88, True),
    ("江汉二桥", "硚口区", 30.5740, 114.2560, 252, True),
    ("月湖桥", "汉阳区", 30.5650, 114.2540, 232, True),
    ("长丰桥", "硚口区", 30.5900, 114.2230, 230, True),
    ("知音桥", "硚口区", 30.5800, 114.2390, 200, True),
    ("古田桥", "硚口区", 30.6050, 114.1980, 160, True),
    ("汉江湾桥", "东西湖区", 30.6200, 114.1800, 400, True),
    ("蔡甸汉江大桥", "蔡甸区", 30.5900, 114.0400, 150, True),
)
_OVERPASS = ("立交桥", "高架桥", "跨线桥")


def _bridges(rng: random.Random, n_bridges: int) -> list[Device]:
    named = _NAMED_BRIDGES[:n_bridges]
    rest = n_bridges - len(named)
    plan: list[tuple[str, DistrictInfo, float, float, float, bool]] = [
        (name, DISTRICT_INFO[dist], lat, lon, span, pc) for name, dist, lat, lon, span, pc in named
    ]
    used = {p[0] for p in plan}
    for d, i in _by_district("bridge", rest):
        road = d.roads[(i - 1) % len(d.roads)]
        name = f"{road}{_OVERPASS[(i - 1) // len(d.roads) % 3]}"
        k = 2
        while name in used:  # numbered when a road has several
            name = f"{road}{k}号{_OVERPASS[(i - 1) // len(d.roads) % 3]}"
            k += 1
        used.add(name)
        lat, lon = _position(rng, d)
        plan.append((name, d, lat, lon, rng.choice((20, 25, 30, 35, 40, 50, 60)), rng.random() < 0.7))
    # single-column-pier bridges (9 of 221 in Wuhan): overpasses, where they are found
    n_scp = min(round(9 * n_bridges / WUHAN.devices["bridge"]), rest)
    scp = set(rng.sample(range(len(named), n_bridges), n_scp)) if n_scp else set()

    sensors = WUHAN.bridge_sensors
    out = []
    for b, (name, d, lat, lon, span, prestressed) in enumerate(plan, start=1):
        params = {
            "design_strain_ue": rng.choice((250, 300, 350, 400, 450)),
            "design_deflection_mm": round(span * 1000 / 600, 1),  # span/600, JTG 3362-2018
            "crack_limit_mm": 0.10 if prestressed else 0.20,  # CJJ 99-2017
            "rated_load_t": 49 if span >= 100 else rng.choice((30, 40, 49, 49, 49)),
            "main_span_m": span,
        }
        if b - 1 in scp:
            params["single_column_pier"] = True
        n_spans = 3 if span >= 100 else rng.randint(3, 12)
        installed = _date(rng, "2019-01-01", "2024-12-31")
        for s in range(1, sensors + 1):
            sensor = BRIDGE_SENSORS[(s - 1) % len(BRIDGE_SENSORS)]
            attrs = dict(params, sensor=sensor, span=rng.randint(1, n_spans))
            if sensor in ("crack", "temp"):  # they report every 10 min: offline after three missed
                attrs["offline_after_s"] = 1800
            if sensor == "tilt":
                attrs["baseline_tilt_deg"] = round(rng.uniform(-0.02, 0.02), 4)
            out.append(Device(
                device_id=f"bridge-{b:04d}-s{s}", kind="bridge", district=d.name,
                lat=round(lat + rng.uniform(-0.0008, 0.0008), 6),
                lon=round(lon + rng.uniform(-0.0008, 0.0008), 6),
                asset_id=f"BR-{b:04d}", asset_name=name, responsible_unit="市桥梁管理处",
                installed_at=installed, attrs=attrs,
            ))
    return out


# --- the other kinds (numerous: random draws are vectorised) --------------------------------

_COMMUNITY_A = ("幸福 常青 百步 金色 华锦 丽岛 水岸 东方 滨江 锦绣 "
                "阳光 翠苑 紫阳 桂园 南湖 后湖 沙湖 月湖 汉水 楚天").split()
_COMMUNITY_B = "花园 小区 家园 新村 雅苑 名都 城 公寓".split()
_SHOP_A = "老 小 胖子 阿英 德华 汉味 江城 楚味 巷子 邻家 王记 李记 刘记 陈记 周记".split()
_SHOP_B = "热干面馆 豆皮馆 汤包店 鸭脖店 小龙虾馆 烧烤店 排骨藕汤馆 面窝早点 火锅店 牛肉粉馆 酒楼 大排档".split()
_SITE = "住宅 商业综合体 地铁站 学校 医院 安置房 产业园 道路改造 管网改造 桥梁".split()
_TOILET = "公厕 公园公厕 广场公厕 市场公厕 地铁口公厕".split()


@dataclass(frozen=True, slots=True)
class _Base:
    """Per device of one kind: district, ordinal in it, position, installation date."""

    slots: list[tuple[DistrictInfo, int]]
    lat: list[float]
    lon: list[float]
    installed: list[str]


def _base(rng: np.random.Generator, kind: str, n: int, first: str, last: str) -> _Base:
    slots = _by_district(kind, n)
    ds = [d for d, _ in slots]
    c_lat = np.array([d.lat for d in ds], dtype=float)
    c_lon = np.array([d.lon for d in ds], dtype=float)
    sd = np.array([d.spread for d in ds], dtype=float)
    lat = np.clip(rng.normal(c_lat, sd), c_lat - 3 * sd, c_lat + 3 * sd)
    lon = np.clip(rng.normal(c_lon, sd * 1.15), c_lon - 3.5 * sd, c_lon + 3.5 * sd)
    lat = np.round(np.clip(lat, 30.3, 30.9), 6)  # inside the city's extent
    lon = np.round(np.clip(lon, 113.9, 114.6), 6)
    a, b = date.fromisoformat(first).toordinal(), date.fromisoformat(last).toordinal()
    iso = {o: date.fromordinal(o).isoformat() for o in range(a, b + 1)}
    days = rng.integers(a, b + 1, len(ds)).tolist()
    return _Base(slots, lat.tolist(), lon.tolist(), [iso[o] for o in days])


def _pick(rng: np.random.Generator, n: int) -> list[float]:
    """Uniform [0, 1) draws, to index lists of different lengths."""
    return rng.random(n).tolist()


def _gas(rng: np.random.Generator, n: int) -> list[Device]:
    b = _base(rng, "gas_meter", n, "2021-03-01", "2023-12-31")
    road, ca, cb = _pick(rng, n), _pick(rng, n), _pick(rng, n)
    lithium = (rng.random(n) < 0.7).tolist()
    building, unit = rng.integers(1, 31, n).tolist(), rng.integers(1, 5, n).tolist()
    floor, room = rng.integers(1, 34, n).tolist(), rng.integers(1, 7, n).tolist()
    out = []
    for j, (d, i) in enumerate(b.slots):
        community = _COMMUNITY_A[int(ca[j] * len(_COMMUNITY_A))] + _COMMUNITY_B[int(cb[j] * len(_COMMUNITY_B))]
        out.append(Device(
            device_id=f"gas-{d.slug}-{i:06d}", kind="gas_meter", district=d.name,
            lat=b.lat[j], lon=b.lon[j], asset_id=f"{d.code}{i:07d}",
            asset_name=f"{d.roads[int(road[j] * len(d.roads))]}{community}{building[j]}栋"
                       f"{unit[j]}单元{floor[j]}0{room[j]}室",
            responsible_unit="武汉市燃气集团", installed_at=b.installed[j],
            attrs={"model": "G4", "qmax_m3h": 6, "qmin_m3h": 0.04,
                   "battery": "lithium 3.6V" if lithium[j] else "4xAA 6.0V",
                   "battery_warn_v": 3.3 if lithium[j] else 4.8},
        ))
    return out


def _fume(rng: np.random.Generator, n: int) -> list[Device]:
    b = _base(rng, "fume", n, "2020-01-01", "2025-12-31")
    road, sa, sb = _pick(rng, n), _pick(rng, n), _pick(rng, n)
    current = rng.choice([0.4, 0.5, 0.6, 0.8, 1.0], n).tolist()
    heads = rng.choice([1, 2, 2, 3, 4, 6], n).tolist()  # GB 18483: small <3, medium 3-5, large >=6
    out = []
    for j, (d, i) in enumerate(b.slots):
        out.append(Device(
            device_id=f"fume-{d.slug}-{i:05d}", kind="fume", district=d.name,
            lat=b.lat[j], lon=b.lon[j], asset_id=f"RS-{d.code}-{i:05d}",
            asset_name=f"{_SHOP_A[int(sa[j] * len(_SHOP_A))]}{_SHOP_B[int(sb[j] * len(_SHOP_B))]}"
                       f"（{d.roads[int(road[j] * len(d.roads))]}店）",
            responsible_unit=f"{d.name}城管执法局", installed_at=b.installed[j],
            attrs={"limit_mgm3": 2.0, "rated_current_a": current[j], "cooking_heads": heads[j]},
        ))
    return out


def _noise(rng: np.random.Generator, n: int) -> list[Device]:
    b = _base(rng, "noise", n, "2023-01-01", "2026-06-30")
    road, site, phase = _pick(rng, n), _pick(rng, n), rng.integers(0, 4, n).tolist()
    out = []
    for j, (d, i) in enumerate(b.slots):
        out.append(Device(
            device_id=f"noise-{d.slug}-{i:04d}", kind="noise", district=d.name,
            lat=b.lat[j], lon=b.lon[j], asset_id=f"CS-{d.code}-{i:04d}",
            asset_name=f"{d.roads[int(road[j] * len(d.roads))]}{_SITE[int(site[j] * len(_SITE))]}"
                       f"项目{'一二三四'[phase[j]]}期工地",
            responsible_unit=f"{d.name}城管执法局", installed_at=b.installed[j], attrs={},
        ))
    return out


def _toilet(rng: np.random.Generator, n: int) -> list[Device]:
    b = _base(rng, "toilet", n, "2019-06-01", "2025-12-31")
    road, place, u = _pick(rng, n), _pick(rng, n), _pick(rng, n)
    out = []
    for j, (d, i) in enumerate(b.slots):
        # class I is commoner in the central city, class III outside it (GB/T 17217)
        p1, p2 = (0.3, 0.8) if d.name in _CENTRAL else (0.1, 0.6)
        cls = "I" if u[j] < p1 else "II" if u[j] < p2 else "III"
        out.append(Device(
            device_id=f"toilet-{d.slug}-{i:04d}", kind="toilet", district=d.name,
            lat=b.lat[j], lon=b.lon[j], asset_id=f"WC-{d.code}-{i:04d}",
            asset_name=f"{d.roads[int(road[j] * len(d.roads))]}{i}号{_TOILET[int(place[j] * len(_TOILET))]}",
            responsible_unit=f"{d.name}城管执法局", installed_at=b.installed[j], attrs={"class": cls},
        ))
    return out


def _lighting(rng: np.random.Generator, n: int) -> list[Device]:
    b = _base(rng, "lighting", n, "2018-01-01", "2025-12-31")
    road = _pick(rng, n)
    lamps = np.maximum(10, np.round(rng.normal(WUHAN.lamps_per_cabinet, 20, n))).astype(int).tolist()
    watts = rng.choice([60, 100, 150, 250], n).tolist()
    out = []
    for j, (d, i) in enumerate(b.slots):
        out.append(Device(
            device_id=f"light-{d.slug}-{i:04d}", kind="lighting", district=d.name,
            lat=b.lat[j], lon=b.lon[j], asset_id=f"LC-{d.code}-{i:04d}",
            asset_name=f"{d.roads[int(road[j] * len(d.roads))]}路灯控制柜{i}号",
            responsible_unit="市路灯管理处", installed_at=b.installed[j],
            attrs={"lamps": lamps[j], "lamp_w": watts[j]},
        ))
    return out


_BUILDERS = {"gas_meter": _gas, "fume": _fume, "noise": _noise, "toilet": _toilet, "lighting": _lighting}


def sample_fleet(scale: float, seed: int = 0, kinds: Iterable[str] | None = None,
                 min_per_kind: int = 1) -> list[Device]:
    """A sample Wuhan fleet at ``scale`` of the city's figures (1.0 = 500,000 gas meters).

    Each requested kind gets ``max(round(figure * scale), min_per_kind)`` devices, except
    bridges: that many *bridges* (at least ``ceil(min_per_kind / bridge_sensors)``), each
    with ``WUHAN.bridge_sensors`` sensor devices (``attrs.sensor`` in :data:`BRIDGE_SENSORS`).
    Raises ValueError on an unknown kind or a negative scale / minimum.
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a number >= 0, got {scale!r}")
    if min_per_kind < 0:
        raise ValueError(f"min_per_kind must be >= 0, got {min_per_kind!r}")
    wanted = KINDS if kinds is None else tuple(kinds)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(map(repr, unknown))} (known: {', '.join(KINDS)})")
    out: list[Device] = []
    for kind in KINDS:
        if kind not in wanted:
            continue
        key = f"citywatch-fleet:{seed}:{kind}"
        if kind == "bridge":
            n = max(round(WUHAN.devices["bridge"] * scale), -(-min_per_kind // WUHAN.bridge_sensors))
            devices = _bridges(random.Random(key), n)
        else:
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big"))
            devices = _BUILDERS[kind](rng, _count(kind, scale, min_per_kind))
        devices.sort(key=lambda d: d.device_id)
        out.extend(devices)
    return out


def sample_rollout(scale: float, programme: str = GAS_PROGRAMME, start: str = "2021-03-01",
                   deadline: str = "2023-12-31") -> list[RolloutTarget]:
    """Targets of the gas-meter rollout per district, summing to ``round(500,000 × scale)``,
    split as :func:`sample_fleet` splits its gas meters."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a number >= 0, got {scale!r}")
    total = round(WUHAN.devices["gas_meter"] * scale)
    return [
        RolloutTarget(programme, "gas_meter", name, k, start, deadline)
        for name, k in zip(DISTRICT_INFO, allocate(total, _weights("gas_meter")), strict=False)
    ]
