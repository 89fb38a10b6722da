"""Schema-driven fuzz: every operation of the app's OpenAPI document, with generated (valid and
invalid) parameters and bodies, with and without a valid token, against the app
``citywatch serve`` builds over a real state DB and store. No answer may be a 5xx."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ingest.model import Reading, Readings

from .api_support import DEVICE, NOW, TOKENS, make_node

# per operation and token: the two runs take ~25 s on a shared 2-core machine; more for a deeper run
MAX_EXAMPLES = int(os.environ.get("CITYWATCH_FUZZ_EXAMPLES", "25"))

pytestmark = pytest.mark.slow


SEEDED: dict[str, str] = {}  # path parameter -> an id that exists (an alert, a silence, a window)


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory):
    node = make_node(tmp_path_factory.mktemp("fuzz") / "node")
    # an alert that fired (noise.night_laeq: over 55 dB(A) for 5 min at night), a silence, a window
    node.engine.process(Readings.from_rows([Reading(DEVICE, "noise", "laeq_db", NOW - i * 60_000, 70.0, "江汉区",
                                                    "site-1") for i in range(7, 0, -1)]))
    (alert,), _ = node.api_alerts.list_alerts("firing", 10)
    silence = node.api_alerts.add_silence({"kind": "toilet"}, NOW, NOW + 3_600_000, "fuzz", "fuzz")
    window = node.api_alerts.add_maintenance({"kind": "bridge"}, NOW, 3_600_000, "monthly", "fuzz", "fuzz",
                                             now_ms=NOW)
    SEEDED.update(alert_id=alert.id, silence_id=silence.id, window_id=window.id)
    yield node
    node.store.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_node):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_node.api_app())


schema = schemathesis.pytest.from_fixture("api_schema")


def _call(case, headers: dict[str, str]):
    params = case.path_parameters or {}
    # the generated ids name nothing: aim half the cases at the seeded device (with a metric it
    # has, so that the readings' time and step parsing is reached), alert, silence and window
    if hash(repr(case.query) + repr(case.body)) % 2:
        if "device_id" in params:
            params["device_id"] = DEVICE
            if case.query is not None and "metric" in case.query:
                case.query["metric"] = "laeq_db"
        params.update((k, v) for k, v in SEEDED.items() if k in params)
    response = case.call(headers=headers)
    assert response.status_code < 500, (case.method, case.formatted_path, case.query, case.body,
                                        response.status_code, response.text[:500])
    return response


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_with_an_admin_token(case):
    _call(case, {"Authorization": f"Bearer {TOKENS['admin']}"})


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_no_data_without_a_token(case):
    response = _call(case, {})
    if case.path != "/api/v1/health":
        assert response.status_code == 401
