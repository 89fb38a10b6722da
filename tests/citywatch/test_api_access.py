"""Who may call what, on the app ``citywatch serve`` builds, served by a real uvicorn on loopback:
the role matrix of every route of the app (a route without a decision here fails), tokens from
the state DB (revoked ones refused), district scoping both ways, ``whoami``, the bearer scheme
in the OpenAPI document, and ``by`` recorded as the token's name."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from fastapi import WebSocket
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route
from starlette.websockets import WebSocketDisconnect

from citywatch.api.tokens import TokenStore

from .access_support import JIANGHAN, WUCHANG, WUCHANG_DEVICE, make_access_node
from .api_support import DEVICE, NOW, TOKENS, Served, make_node

ROLES = ("viewer", "operator", "admin")
PUBLIC = None
# The decision for every (method, path template) of the agreed API surface (issue 17): the least
# role, or PUBLIC. Path parameters are written {}. A route of the app missing here fails
# test_every_route_has_a_decision: whoever adds a route decides who may call it.
DECISIONS: dict[tuple[str, str], str | None] = {
    ("GET", "/api/v1/health"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC, ("GET", "/docs"): PUBLIC, ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/"): PUBLIC,  # the board's page
    ("GET", "/board/catalogue.json"): PUBLIC, ("GET", "/board/{}"): PUBLIC,  # its assets: no data in them
    ("GET", "/alerts/{}"): PUBLIC,  # the board's page for an alert: webhooks.md alert.url, opened from a link
    ("GET", "/api/v1/whoami"): "viewer",
    ("GET", "/metrics"): "viewer",
    ("GET", "/api/v1/devices"): "viewer", ("POST", "/api/v1/devices"): "admin",
    ("GET", "/api/v1/devices/{}"): "viewer", ("PATCH", "/api/v1/devices/{}"): "admin",
    ("PUT", "/api/v1/devices/{}"): "admin", ("DELETE", "/api/v1/devices/{}"): "admin",
    ("GET", "/api/v1/devices/{}/readings"): "viewer", ("GET", "/api/v1/devices/{}/live"): "viewer",
    ("GET", "/api/v1/quarantine"): "viewer",
    ("GET", "/api/v1/reports/rollout"): "viewer",
    ("GET", "/api/v1/alerts"): "viewer", ("GET", "/api/v1/alerts/{}"): "viewer",
    ("POST", "/api/v1/alerts/{}/ack"): "operator", ("POST", "/api/v1/alerts/{}/unack"): "operator",
    ("POST", "/api/v1/alerts/{}/resolve"): "operator", ("POST", "/api/v1/alerts/{}/assign"): "operator",
    ("POST", "/api/v1/alerts/{}/comments"): "operator", ("GET", "/api/v1/alerts/{}/comments"): "viewer",
    ("GET", "/api/v1/silences"): "viewer", ("POST", "/api/v1/silences"): "operator",
    ("DELETE", "/api/v1/silences/{}"): "operator",
    ("GET", "/api/v1/maintenance"): "viewer", ("POST", "/api/v1/maintenance"): "operator",
    ("DELETE", "/api/v1/maintenance/{}"): "operator",
    ("GET", "/api/v1/deliveries"): "viewer",
    ("GET", "/api/v1/stream"): "viewer", ("GET", "/api/v1/summary"): "viewer",
}
# what the role tests send with the right role: ids that name nothing, so that no call changes
# anything (a 404 or 422 is "not an authorisation answer", which is what is checked)
NO_ID = "no-such-id"


def template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def flat_routes(routes, prefix: str = ""):
    """``(prefix, route)`` of every route, into included routers (FastAPI 0.16x keeps an
    included router as one entry of ``app.routes``)."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes, prefix + (getattr(r.include_context, "prefix", "") or ""))
        else:
            yield prefix, r


def app_operations(app) -> list[tuple[str, str]]:
    """Every (method, path) the app answers: API routes, plain routes (docs) and mounts; a
    websocket route as a GET of its path (what the guard decides it as)."""
    ops = []
    for prefix, r in flat_routes(app.routes):
        if isinstance(r, Mount):
            ops.append(("GET", prefix + r.path))
        elif isinstance(r, APIRoute | Route):
            ops += [(m, prefix + r.path) for m in sorted(r.methods or ()) if m != "HEAD"]
        else:
            ops.append(("GET", prefix + getattr(r, "path", repr(r))))
    return ops


@pytest.fixture(scope="module")
def access(tmp_path_factory):
    a = make_access_node(tmp_path_factory.mktemp("access") / "node")
    yield a
    a.node.store.close()


@pytest.fixture(scope="module")
def app(access):
    return access.node.api_app()


@pytest.fixture(scope="module")
def served(app):
    s = Served(app)
    yield s
    s.close()


@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(base_url=served.url, timeout=10) as c:
        yield c


def call(http: httpx.Client, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    """The status of ``method path`` (a Mount: a path under it), reading no more than the head
    (a stream answers its status at once)."""
    url = re.sub(r"\{[^}]*\}", NO_ID, path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    with http.stream(method, url, json=body, headers=headers or {}) as r:
        return r.status_code


def test_every_route_has_a_decision(app):
    missing = [(m, p) for m, p in app_operations(app) if (m, template(p)) not in DECISIONS]
    assert not missing, f"routes without a role decision in DECISIONS: {missing}"


def test_the_guard_decides_as_the_table_says():
    """For the whole agreed surface, routes other engineers add included."""
    from citywatch.api.guard import required_role

    for (method, path), need in DECISIONS.items():
        for probe in [path.replace("{}", NO_ID)]:
            assert required_role(method, probe) == need, (method, probe)
            assert required_role("HEAD", probe) == DECISIONS.get(("GET", path), "viewer"), probe


def test_role_matrix_of_every_route(app, access, http):
    """401 without a token and with a revoked or malformed one, 403 below the route's role, an
    answer that is not 401/403 at the route's role and above; public routes answer anyone."""
    checked = 0
    for method, path in app_operations(app):
        need = DECISIONS[(method, template(path))]
        probe = path
        if need is PUBLIC:
            assert call(http, method, probe) not in (401, 403), (method, path)
            continue
        assert call(http, method, probe) == 401, (method, path)
        assert call(http, method, probe, {"Authorization": f"Bearer {access.revoked}"}) == 401, (method, path)
        assert call(http, method, probe, {"Authorization": "Bearer cw_0123456789abcdef_nope"}) == 401
        for role in ROLES:
            status = call(http, method, probe, access.auth(role))
            if ROLES.index(role) < ROLES.index(need):
                assert status == 403, (method, path, role, status)
            else:
                assert status not in (401, 403), (method, path, role, status)
        checked += 1
    assert checked >= 8


def test_a_viewer_cannot_acknowledge_nor_an_operator_write_the_registry(access, http):
    aid = access.alerts[JIANGHAN]
    r = http.post(f"/api/v1/alerts/{aid}/ack", json={"note": "x"}, headers=access.auth("viewer"))
    assert r.status_code == 403 and "needs operator" in r.text
    r = http.post("/api/v1/devices", json={"device_id": "noise-x-1", "kind": "noise", "district": JIANGHAN},
                  headers=access.auth("operator"))
    assert r.status_code == 403 and "needs admin" in r.text
    assert http.get(f"/api/v1/alerts/{aid}", headers=access.auth("viewer")).json()["state"] == "firing"


def test_whoami(access, http):
    assert http.get("/api/v1/whoami", headers=access.auth("jh-operator")).json() == {
        "name": "jh-operator", "role": "operator", "districts": [JIANGHAN]}
    assert http.get("/api/v1/whoami", headers=access.auth("admin")).json() == {
        "name": "admin", "role": "admin", "districts": None}


def test_openapi_declares_the_bearer_scheme_per_operation(app, http):
    doc = http.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "a token from `citywatch tokens create` (docs/SECURITY.md)"}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            need = DECISIONS[(method.upper(), template(path))]
            if need is PUBLIC:
                assert "security" not in op, (method, path)
            else:
                assert op["security"] == [{"HTTPBearer": []}] and op["x-required-role"] == need, (method, path)
                assert "401" in op["responses"] and "403" in op["responses"]
    assert http.get("/docs").status_code == 200  # Swagger UI shows Authorize for a declared scheme


# -- districts ---------------------------------------------------------------------------------

def ids(body: dict, key: str) -> set[str]:
    return {i[key] for i in body["items"]}


def test_devices_are_scoped_to_the_tokens_districts(access, http):
    jh, wc, everyone = access.auth("jh-operator"), access.auth("wc-viewer"), access.auth("viewer")
    all_ids = ids(http.get("/api/v1/devices", headers=everyone).json(), "device_id")
    assert all_ids == {DEVICE, WUCHANG_DEVICE}
    body = http.get("/api/v1/devices", headers=jh).json()
    assert ids(body, "device_id") == {DEVICE} and body["total"] == 1
    assert ids(http.get("/api/v1/devices", headers=wc).json(), "device_id") == {WUCHANG_DEVICE}
    # asking for the other district's devices: nothing, not an error that tells it exists
    body = http.get("/api/v1/devices", params={"district": WUCHANG}, headers=jh).json()
    assert body == {"items": [], "total": 0, "next": None}
    # single reads outside: 404 exactly as for a device that does not exist
    unknown = http.get("/api/v1/devices/noise-nowhere-9", headers=jh)
    outside = http.get(f"/api/v1/devices/{WUCHANG_DEVICE}", headers=jh)
    assert outside.status_code == unknown.status_code == 404
    assert outside.json()["detail"] == f"no device {WUCHANG_DEVICE!r}"
    r = http.get(f"/api/v1/devices/{DEVICE}/readings", params={"metric": "laeq_db", "start": 0}, headers=wc)
    assert r.status_code == 404
    r = http.get(f"/api/v1/devices/{DEVICE}/readings", params={"metric": "laeq_db", "start": 0, "end": NOW + 1},
                 headers=jh)
    assert r.status_code == 200 and len(r.json()["points"]) == 30
    assert http.get(f"/api/v1/devices/{WUCHANG_DEVICE}", headers=wc).status_code == 200


def test_alerts_are_scoped_both_ways(access, http):
    jh, wc, everyone = access.auth("jh-operator"), access.auth("wc-viewer"), access.auth("viewer")
    a_jh, a_wc = access.alerts[JIANGHAN], access.alerts[WUCHANG]
    assert ids(http.get("/api/v1/alerts", headers=everyone).json(), "id") >= {a_jh, a_wc}
    body = http.get("/api/v1/alerts", headers=jh).json()
    assert ids(body, "id") == {a_jh} and body["total"] == 1
    assert ids(http.get("/api/v1/alerts", headers=wc).json(), "id") == {a_wc}
    pending = http.get("/api/v1/alerts", params={"state": "pending"}, headers=jh).json()
    assert {i["district"] for i in pending["items"]} == {JIANGHAN} and pending["total"] == 1
    assert http.get("/api/v1/alerts", params={"state": "pending"}, headers=everyone).json()["total"] == 2
    assert http.get(f"/api/v1/alerts/{a_wc}", headers=jh).status_code == 404
    assert http.get(f"/api/v1/alerts/{a_jh}", headers=wc).status_code == 404
    assert http.get(f"/api/v1/alerts/{a_wc}", headers=wc).status_code == 200


def test_acting_outside_the_districts_is_404_and_changes_nothing(access, http):
    jh = access.auth("jh-operator")
    a_jh, a_wc = access.alerts[JIANGHAN], access.alerts[WUCHANG]
    r = http.post(f"/api/v1/alerts/{a_wc}/ack", json={"note": "not mine"}, headers=jh)
    assert r.status_code == 404 and r.json()["detail"] == f"no alert {a_wc!r}"
    assert http.get(f"/api/v1/alerts/{a_wc}", headers=access.auth("viewer")).json()["state"] == "firing"
    r = http.post(f"/api/v1/alerts/{a_jh}/ack", json={"note": "crew sent", "by": "someone-else"}, headers=jh)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "jh-operator"


def test_silences_of_a_limited_token_stay_in_its_districts(access, http):
    jh = access.auth("jh-operator")
    body = {"matchers": {"kind": "noise"}, "end": NOW + 3_600_000, "reason": "works"}
    r = http.post("/api/v1/silences", json=body, headers=jh)
    assert r.status_code == 403 and "matchers.district" in r.text
    r = http.post("/api/v1/silences", json={**body, "matchers": {"district": WUCHANG}}, headers=jh)
    assert r.status_code == 403
    r = http.post("/api/v1/silences", json={**body, "matchers": {"district": JIANGHAN}, "by": "x"}, headers=jh)
    assert r.status_code == 201 and r.json()["created_by"] == "jh-operator"
    r = http.post("/api/v1/silences", json=body, headers=access.auth("operator"))
    assert r.status_code == 201 and r.json()["created_by"] == "operator"


def test_quarantine_and_deliveries_are_scoped(access, http):
    jh, wc, everyone = access.auth("jh-operator"), access.auth("wc-viewer"), access.auth("viewer")
    q_all = http.get("/api/v1/quarantine", headers=everyone).json()
    assert {i["device_id"] for i in q_all["items"]} == {DEVICE, WUCHANG_DEVICE, "unknown-0001"}
    q_jh = http.get("/api/v1/quarantine", headers=jh).json()
    assert {i["device_id"] for i in q_jh["items"]} == {DEVICE} and q_jh["total"] == 3
    q_wc = http.get("/api/v1/quarantine", headers=wc).json()
    assert {i["device_id"] for i in q_wc["items"]} == {WUCHANG_DEVICE} and q_wc["total"] == 1
    d_all = http.get("/api/v1/deliveries", headers=everyone).json()
    alerts_of = {i["alert_id"] for i in d_all["items"]}
    assert {access.alerts[JIANGHAN], access.alerts[WUCHANG]} <= alerts_of
    d_wc = http.get("/api/v1/deliveries", headers=wc).json()
    assert {i["alert_id"] for i in d_wc["items"]} == {access.alerts[WUCHANG]} and d_wc["total"] >= 1


# -- tokens in the state DB, as a running server sees them -----------------------------------

def test_a_revoked_token_stops_working_within_a_second(access, http):
    import time

    store = TokenStore(access.node.state_path)  # another connection, as the command line has
    _, text = store.create("short-lived", "viewer")
    headers = {"Authorization": f"Bearer {text}"}
    assert http.get("/api/v1/whoami", headers=headers).status_code == 200  # a new token: at once
    store.revoke("short-lived")
    t0 = time.monotonic()
    while http.get("/api/v1/whoami", headers=headers).status_code == 200:
        assert time.monotonic() - t0 < 1.0, "a revoked token still worked after a second"
        time.sleep(0.02)


def test_last_use_is_recorded(access, http):
    import time

    store = TokenStore(access.node.state_path)
    _, text = store.create("used-once", "viewer")
    assert http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {text}"}).status_code == 200
    deadline = time.monotonic() + 5
    while (used := next(t for t in store.list() if t.name == "used-once").last_used_ms) is None:
        assert time.monotonic() < deadline, "last use was not written"
        time.sleep(0.05)
    assert used == NOW  # the node's clock


def test_plaintext_tokens_still_work_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="citywatch.api"):
        node = make_node(tmp_path / "plain")
        app = node.api_app()
    try:
        assert any("plaintext" in r.getMessage() for r in caplog.records)
        s = Served(app)
        try:
            r = httpx.get(s.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {TOKENS['operator']}"})
            assert r.json() == {"name": "operator-user", "role": "operator", "districts": None}
        finally:
            s.close()
    finally:
        node.store.close()


def test_open_mode_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="citywatch.api"):
        node = make_node(tmp_path / "open", tokens=False, open=True)
        node.api_app()
    node.store.close()
    assert any("the API is open" in r.getMessage() for r in caplog.records)


def test_a_websocket_needs_a_token_too(access):
    app = access.node.api_app()

    @app.websocket("/api/v1/ws-probe")
    async def probe(ws: WebSocket) -> None:  # WebSocket resolved from the module's names
        await ws.accept()
        await ws.send_json({"user": ws.scope["state"]["user"]})
        await ws.close()

    client = TestClient(app)
    for headers in ({}, {"Authorization": f"Bearer {access.revoked}"}):
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/v1/ws-probe",
                                                                                   headers=headers):
            pass
        assert refused.value.code == 1008
    with client.websocket_connect("/api/v1/ws-probe", headers=access.auth("wc-viewer")) as ws:
        assert ws.receive_json() == {"user": "wc-viewer"}
