"""The panels that need more than the readings, proven against a real influxd: messages go
through the real ingest path (decoder -> pipeline with its derived context readings,
ingest/context.py -> InfluxDB store; tests/dashboards/harness.py) and the boards' own queries run
with Grafana's variables substituted (tests/dashboards/test_queries.py ``substitute``).

- Bridges: two strain sensors with different design values in ``attrs`` (300 and 450 µε, the
  second changed to 500 in the registry while traffic flows) and one without (the rule pack's
  default, 300) get different design lines and ratios, each what the rule judges against.
- Lighting: the sun's elevation stored beside each cabinet report is astral's (an independent
  computation) at the cabinet's position, or at its district's centre when it has none, and the
  lamps panel returns both series over a day.
- Gas: the "silent for more than a day" table is a filter: meters last heard 25 h, 2 and 3 days
  before the end of the range are listed, meters heard 1 h and 23 h before are not.
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from dashboards import boards
from devices.fleet import DISTRICT_INFO
from devices.model import Device
from tests.dashboards.harness import InfluxIngest
from tests.dashboards.test_queries import substitute

DB = "context_panels"
MIN, H, D = 60_000, 3_600_000, 86_400_000
NOW = (int(datetime.now().timestamp() * 1000) // H) * H  # the end of the range: on the hour
BRIDGE_T0 = NOW - 2 * H
CHANGE_AT = BRIDGE_T0 + 10 * MIN  # br-s450's design value becomes 500 here
DAY0 = int(datetime(2026, 6, 21, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)  # the lighting day
ALL = {"district": ".*", "asset": ".*", "device": ".*"}


def strain(device_id: str, design: float | None, span: int) -> Device:
    attrs = {"sensor": "strain", "span": span} | ({"design_strain_ue": design} if design else {})
    return Device(device_id, "bridge", district="江岸区", asset_id="BR-T", attrs=attrs)


DEVICES = [
    strain("br-s300", 300, 1), strain("br-s450", 450, 2), strain("br-sdef", None, 3),
    Device("br-d40", "bridge", district="江岸区", asset_id="BR-T",
           attrs={"sensor": "deflection", "design_deflection_mm": 40}),
    Device("lt-pos", "lighting", district="江岸区", asset_id="LC-1", lat=30.59, lon=114.30),
    Device("lt-nopos", "lighting", district="洪山区", asset_id="LC-2"),
    *[Device(f"gm-{name}", "gas_meter", district=district, asset_id="")
      for name, district in (("1h", "江岸区"), ("23h", "江岸区"), ("25h", "江岸区"), ("2d", "洪山区"),
                             ("3d", "江岸区"))],
]
SILENT_AGES = {"gm-1h": H, "gm-23h": 23 * H, "gm-25h": 25 * H, "gm-2d": 2 * D, "gm-3d": 3 * D}


def send(ing: InfluxIngest, device: Device, ts: int, metrics: dict) -> None:
    payload = json.dumps({"ts": ts, "metrics": metrics}).encode()
    ing.send(f"city/{device.kind}/{device.device_id}/telemetry", payload, ts + 5)


@pytest.fixture(scope="module")
def db(influxd, tmp_path_factory):
    http = influxd.http
    httpx.post(f"{http}/query", params={"q": f"DROP DATABASE {DB}"})
    ing = InfluxIngest(tmp_path_factory.mktemp("context"), f"influxdb://127.0.0.1:{influxd.port}/{DB}", DEVICES)
    by_id = {d.device_id: d for d in DEVICES}
    # bridges: 20 minutes, a reading every 10 s; br-s450's design value changes half-way
    for ts in range(BRIDGE_T0, BRIDGE_T0 + 20 * MIN, 10_000):
        if ts == CHANGE_AT:
            ing.pipeline.flush()
            ing.registry.upsert([strain("br-s450", 500, 2)])
        for dev in ("br-s300", "br-s450", "br-sdef"):
            send(ing, by_id[dev], ts, {"strain_ue": 270.0})
        send(ing, by_id["br-d40"], ts, {"deflection_mm": 30.0})
    # lighting: a day of reports every 30 minutes
    for ts in range(DAY0, DAY0 + D, 30 * MIN):
        for dev in ("lt-pos", "lt-nopos"):
            send(ing, by_id[dev], ts, {"lamp_on": 1, "voltage_v": 220.0})
    # gas meters: hourly readings for a day, the last one ``age`` before NOW
    for dev, age in SILENT_AGES.items():
        for k in range(24, -1, -1):
            send(ing, by_id[dev], NOW - age - k * H, {"volume_m3": 100.0 + (24 - k) * 0.1})
    ing.pipeline.flush()
    ing.close()
    return http


def query(http: str, q: str) -> list[dict]:
    r = httpx.get(f"{http}/query", params={"db": DB, "q": q, "epoch": "ms"}, timeout=30)
    r.raise_for_status()
    res = r.json()["results"][0]
    assert "error" not in res, f"{res['error']}\n{q}"
    return res.get("series", [])


def panel_queries(uid: str, title: str) -> list:
    board = next(b for b in boards() if b.uid == uid).build("en")
    panel = next(p for p in board.panels if p.title == title)
    return list(panel.targets)


def run(http: str, q, start: int, end: int, interval: str = "1m", values: dict | None = None) -> dict[str, list]:
    """``device_id`` (or "") -> [(time, value)] of a panel query over [start, end]."""
    sql = substitute(q.query.replace("$__interval", interval), {"start": start, "end": end}, values or ALL)
    return {(s.get("tags") or {}).get("device_id", ""): [(v[0], v[1]) for v in s["values"] if v[1] is not None]
            for s in query(http, sql)}


def values(series: list) -> set[float]:
    return {round(v, 6) for _, v in series}


def test_two_sensors_with_different_design_values_get_different_lines(db):
    reading, line = panel_queries("citywatch-bridges", "Strain")
    (ratio,) = panel_queries("citywatch-bridges", "Strain / design value")
    end = BRIDGE_T0 + 20 * MIN
    lines = run(db, line, BRIDGE_T0, end)
    assert values(lines["br-s300"]) == {300.0}
    assert values(lines["br-sdef"]) == {300.0}  # no attr: the pack's default, as the rule uses
    before = [v for t, v in lines["br-s450"] if t < CHANGE_AT]
    after = [v for t, v in lines["br-s450"] if t >= CHANGE_AT]
    assert set(before) == {450.0} and set(after) == {500.0}  # the registry change applies from then on
    ratios = run(db, ratio, BRIDGE_T0, end)
    assert values(ratios["br-s300"]) == {0.9} and values(ratios["br-sdef"]) == {0.9}
    assert {round(v, 6) for t, v in ratios["br-s450"] if t < CHANGE_AT} == {0.6}
    assert {round(v, 6) for t, v in ratios["br-s450"] if t >= CHANGE_AT} == {0.54}
    assert values(run(db, reading, BRIDGE_T0, end)["br-s450"]) == {270.0}
    # deflection: its own design value and ratio
    _, dline = panel_queries("citywatch-bridges", "Deflection")
    (dratio,) = panel_queries("citywatch-bridges", "Deflection / design value")
    assert values(run(db, dline, BRIDGE_T0, end)["br-d40"]) == {40.0}
    assert values(run(db, dratio, BRIDGE_T0, end)["br-d40"]) == {0.75}
    # a variable narrows the lines to one sensor
    one = run(db, line, BRIDGE_T0, end, values={**ALL, "device": "br\\-s300"})
    assert set(one) == {"br-s300"}


def test_sun_elevation_is_astrals_at_the_cabinet_or_its_district(db):
    astral = pytest.importorskip("astral")
    from astral.sun import elevation

    rows = query(db, f'SELECT "sun_elevation_deg" FROM "lighting" WHERE time >= {DAY0}ms AND time < {DAY0 + D}ms '
                     'GROUP BY "device_id"')
    got = {s["tags"]["device_id"]: s["values"] for s in rows}
    assert {k: len(v) for k, v in got.items()} == {"lt-pos": 48, "lt-nopos": 48}
    hongshan = DISTRICT_INFO["洪山区"]
    for dev, (lat, lon) in (("lt-pos", (30.59, 114.30)), ("lt-nopos", (hongshan.lat, hongshan.lon))):
        obs = astral.Observer(latitude=lat, longitude=lon)
        for ts, elev in got[dev]:
            ref = elevation(obs, datetime.fromtimestamp(ts / 1000, ZoneInfo("UTC")), with_refraction=False)
            assert abs(elev - ref) < 0.05, (dev, ts, elev, ref)
    lamps, sun = panel_queries("citywatch-lighting", "Lamps on against the sun")
    on = run(db, lamps, DAY0, DAY0 + D, "30m")[""]
    elev = run(db, sun, DAY0, DAY0 + D, "30m")[""]
    assert len(on) == 48 and len(elev) == 48
    assert min(v for _, v in elev) < -30 and max(v for _, v in elev) > 70  # midsummer at 30.6° N: 82.8° at noon


def test_meters_silent_for_more_than_a_day_are_filtered_not_sorted(db):
    (q,) = panel_queries("citywatch-gas", "Meters silent for more than a day")
    start = NOW - 6 * H  # the range's start does not matter: the meters are judged at its end
    rows = query(db, substitute(q.query, {"start": start, "end": NOW}, ALL))
    assert len(rows) == 1
    cols = rows[0]["columns"]
    listed = {r[cols.index("device_id")]: r[0] for r in rows[0]["values"]}
    assert listed == {dev: NOW - age for dev, age in SILENT_AGES.items() if age > D}
    # with a district chosen, only its meters
    rows = query(db, substitute(q.query, {"start": start, "end": NOW}, {**ALL, "district": "洪山区"}))
    assert {r[cols.index("device_id")] for r in rows[0]["values"]} == {"gm-2d"}
    # as of a day earlier, the meter last heard 25 h before NOW had reported within the day
    earlier = NOW - D
    rows = query(db, substitute(q.query, {"start": earlier - 6 * H, "end": earlier}, ALL))
    assert {r[cols.index("device_id")] for r in rows[0]["values"]} == {"gm-3d"}
