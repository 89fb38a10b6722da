"""Registry writes through the app ``citywatch serve`` builds (admin): create, change, retire; the
CSV import's validation with errors naming the field; and the decoder's lookup (a connection of
its own, as the running node's) seeing each change."""

from __future__ import annotations

import pytest

from devices.registry import Registry
from devices.sqlite import connect
from ingest.lookup import DeviceLookup

from .api_support import DEVICE, auth

NEW = {"device_id": "bridge-hanyang-0007", "kind": "bridge", "district": "汉阳区", "lat": 30.55, "lon": 114.28,
       "asset_id": "长江大桥", "asset_name": "长江大桥 桥墩3", "responsible_unit": "市桥梁管理处",
       "installed_at": "2026-03-02", "attrs": {"sensor": "crack", "offline_after_s": 1800}}


@pytest.fixture
def lookup(node):
    clock = {"t": 0.0}
    lk = DeviceLookup(Registry(connect(node.state_path)), recheck_s=0.5, clock=lambda: clock["t"])

    def ask(device_id: str):
        clock["t"] += 0.5  # the lookup's recheck interval has passed
        return lk(device_id)
    return ask


def test_create_change_retire_and_the_lookup_follows(client, lookup):
    assert lookup(NEW["device_id"]) is None
    r = client.post("/api/v1/devices", json=NEW, headers=auth("admin"))
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["status"] == "installed" and d["attrs"] == NEW["attrs"] and d["online"] is False
    assert lookup(NEW["device_id"]) == ("bridge", "汉阳区", "长江大桥")
    assert client.post("/api/v1/devices", json=NEW, headers=auth("admin")).status_code == 409

    url = f"/api/v1/devices/{NEW['device_id']}"
    r = client.patch(url, json={"district": "武昌区", "attrs": {"sensor": "temp"}}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["district"] == "武昌区" and r.json()["attrs"] == {"sensor": "temp"}
    assert r.json()["asset_name"] == "长江大桥 桥墩3"  # absent fields kept
    assert lookup(NEW["device_id"]) == ("bridge", "武昌区", "长江大桥")  # a hit, refreshed all the same

    r = client.delete(url, headers=auth("admin"))
    assert r.status_code == 200 and r.json()["status"] == "retired"
    assert lookup(NEW["device_id"]) is None  # its messages now go to the quarantine
    assert client.get(url, headers=auth("viewer")).json()["status"] == "retired"  # kept, with its history
    assert client.delete("/api/v1/devices/nope-1", headers=auth("admin")).status_code == 404
    assert client.patch("/api/v1/devices/nope-1", json={"district": "x"}, headers=auth("admin")).status_code == 404


@pytest.mark.parametrize("method, path, body, field", [
    ("post", "/api/v1/devices", {**NEW, "kind": "bridg"}, "kind"),
    ("post", "/api/v1/devices", {**NEW, "device_id": "bad id!"}, "device_id"),
    ("post", "/api/v1/devices", {**NEW, "lat": 91.0}, "lat"),
    ("post", "/api/v1/devices", {**NEW, "lon": None}, "lon"),  # lat without lon
    ("post", "/api/v1/devices", {**NEW, "installed_at": "2026-02-30"}, "installed_at"),
    ("post", "/api/v1/devices", {**NEW, "status": "broken"}, "status"),
    ("post", "/api/v1/devices", {**NEW, "attrs": [1, 2]}, "attrs"),
    ("post", "/api/v1/devices", {**NEW, "district": " "}, "district"),
    ("post", "/api/v1/devices", {k: v for k, v in NEW.items() if k != "district"}, "district"),
    ("post", "/api/v1/devices", {**NEW, "colour": "red"}, "colour"),
    ("patch", f"/api/v1/devices/{DEVICE}", {"kind": None}, "kind"),
    ("patch", f"/api/v1/devices/{DEVICE}", {"asset_id": None}, "asset_id"),
    ("patch", f"/api/v1/devices/{DEVICE}", {"device_id": "other"}, "device_id"),
    ("patch", f"/api/v1/devices/{DEVICE}", {"last_seen": 5}, "last_seen"),
    ("patch", f"/api/v1/devices/{DEVICE}", {"lon": None}, "lon"),  # it has a lat
])
def test_validation_names_the_field(client, method, path, body, field):
    r = getattr(client, method)(path, json=body, headers=auth("admin"))
    assert r.status_code == 422, (body, r.text)
    assert any(field in [str(x) for x in e["loc"]] for e in r.json()["detail"]), r.text


def test_registry_writes_need_admin(client):
    for role in ("viewer", "operator"):
        assert client.post("/api/v1/devices", json=NEW, headers=auth(role)).status_code == 403
        assert client.delete(f"/api/v1/devices/{DEVICE}", headers=auth(role)).status_code == 403
    assert client.patch(f"/api/v1/devices/{DEVICE}", json={"asset_name": "x"}).status_code == 401
