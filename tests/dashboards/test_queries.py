"""The boards proven query by query against a real InfluxDB holding a simulated day.

A simulated day of the five slow kinds (gas meters, fume, noise, toilets, lighting: 00:00-24:00
local, with their fault scenarios) and 40 minutes of one monitored bridge (8 sensors, one of
them a 100 Hz accelerometer, with the overload, pier-tilt and strain scenarios; a day of
waveforms is 8.6 M samples per accelerometer, too much for a test) go through the real ingest
path (decoder -> pipeline -> InfluxDB store, rule engine -> alert state -> the alert history
writer into the store: tests/dashboards/harness.py) into the session's influxd.

Then every query of every panel and annotation of every board (both languages) runs with its
variables substituted as Grafana does: ``$timeFilter`` -> ``time >= START ms and time <= END ms``
(the simulated day), ``${__from}``/``${__to}`` -> START/END (epoch ms), ``$__interval`` -> ``5m``,
``$district``/``$asset``/``$device`` -> the variable's "All" value ``.*`` (pass 1: every panel
must return data of its shape), then real values read with the board's own chained variable
queries, regex-escaped and as a multi-value
``(a|b)`` (pass 2: every query must run). A panel with a broken or empty query fails the test
naming the board and the panel. Prometheus panels: their metric names must be in the real
``/metrics`` of a node.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from dashboards import boards
from dashboards.common import annotation_query
from dashboards.influxql import InfluxQuery
from tests.dashboards.harness import simulated_day

INTERVAL = "5m"
DB = "dashproof"


@pytest.fixture(scope="module")
def day(influxd, tmp_path_factory):
    t0 = time.monotonic()
    out = simulated_day(f"influxdb://127.0.0.1:{influxd.port}/{DB}", tmp_path_factory.mktemp("dashproof"))
    print(f"simulated day: {out['messages']} messages, {len(out['fired'])} rules fired, "
          f"{time.monotonic() - t0:.1f} s")
    return {**out, "http": influxd.http}


def influxql(day, q: str) -> list[dict]:
    r = httpx.get(f"{day['http']}/query", params={"db": DB, "q": q, "epoch": "ms"}, timeout=30)
    r.raise_for_status()
    res = r.json()["results"][0]
    if "error" in res:
        raise AssertionError(res["error"])
    return res.get("series", [])


def regex_escape(value: str) -> str:
    """Grafana's escaping of a variable value inside an InfluxQL regex."""
    return re.sub(r"([\\^$*+?.()|{}\[\]/])", r"\\\1", value)


def substitute(q: str, day, values: dict[str, str]) -> str:
    """``q`` as Grafana sends it: only the board's own variables (``values``) are known."""
    q = q.replace("$timeFilter", f"time >= {day['start']}ms and time <= {day['end']}ms")
    for name, ms in (("__from", day["start"]), ("__to", day["end"])):  # Grafana's range ends, epoch ms
        q = q.replace(f"${{{name}}}", str(ms)).replace(f"${name}", str(ms))
    q = q.replace("$__interval", INTERVAL)
    for name in sorted(values, key=len, reverse=True):
        q = q.replace(f"${name}", values[name])
    assert not re.search(r"\$(?!tag_)[A-Za-z_{]|\[\[", q), f"a variable left unsubstituted in {q}"
    return q


def targets(board_model):
    """(panel title, InfluxQuery or PromQL expr) of every panel and annotation."""
    out = []
    for p in board_model.panels or []:
        for t in p.targets or []:
            out.append((p.title, t))
    for a in (board_model.annotations.list_val if board_model.annotations else None) or []:
        q = annotation_query(a)
        if q is not None:
            out.append((f"annotation {a.name}", q))
    return out


def check_shape(rows: list[dict], q: InfluxQuery) -> str | None:
    """None when ``rows`` (InfluxDB series) have the shape the panel expects, else the problem."""
    if not rows:
        return "no data"
    values = [v for s in rows for v in s.get("values", [])]
    if not values:
        return "no rows"
    if q.shape == "series":
        if not any(any(x is not None for x in v[1:]) for v in values):
            return "only null values"
    elif q.shape == "value":
        if any(len(s.get("values", [])) != 1 for s in rows):
            return f"a stat expects one value per series, got {[len(s['values']) for s in rows]}"
    return None


def all_of(model) -> dict[str, str]:
    """The board's variables at their default, "All" (all_value ``.*``)."""
    return {v.name: v.all_value for v in (model.templating.list_val if model.templating else None) or []}


@pytest.mark.slow
def test_every_panel_returns_data_of_its_shape(day):
    # the scenarios raised alerts of every kind, so each alert table has rows
    kinds_fired = {r.split(".")[0] for r in day["fired"]}
    assert {"bridge", "gas", "fume", "noise", "toilet", "lighting"} <= kinds_fired, day["fired"]
    failures, checked = [], 0
    for board in boards():
        for lang in ("zh", "en"):
            model = board.build(lang)
            for title, t in targets(model):
                if not isinstance(t, InfluxQuery):
                    continue
                q = substitute(t.query, day, all_of(model))
                try:
                    problem = check_shape(influxql(day, q), t)
                except AssertionError as e:
                    problem = f"InfluxDB refused it: {e}"
                checked += 1
                if problem:
                    failures.append(f"{board.uid} / {title!r} ({lang}): {problem}\n    {q}")
    assert not failures, f"{len(failures)} of {checked} panel queries failed:\n" + "\n".join(failures)
    assert checked > 100


@pytest.mark.slow
def test_variables_chain_and_real_values_give_valid_queries(day):
    failures = []
    for board in boards():
        model = board.build("en")
        variables = {v.name: v.query for v in (model.templating.list_val if model.templating else None) or []}
        ALL = all_of(model)
        chosen: dict[str, str] = dict(ALL)
        multi: dict[str, str] = dict(ALL)
        for name in ("programme", "district", "asset", "device"):  # each narrowed by the ones above, as in Grafana
            if name not in variables:
                continue
            found = influxql(day, substitute(variables[name], day, chosen))
            values = sorted(v[1] for s in found for v in s["values"])
            if not values:
                failures.append(f"{board.uid}: variable {name} lists nothing under {chosen}")
                continue
            chosen[name] = regex_escape(values[0])
            multi[name] = "(" + "|".join(regex_escape(v) for v in values[:2]) + ")"
        if "asset" in variables:  # the chain narrows: one district lists fewer assets than all
            all_assets = influxql(day, substitute(variables["asset"], day, ALL))
            one = influxql(day, substitute(variables["asset"], day, {**ALL, "district": chosen["district"]}))
            assert sum(len(s["values"]) for s in one) <= sum(len(s["values"]) for s in all_assets)
        for title, t in targets(model):
            if not isinstance(t, InfluxQuery):
                continue
            for values in (chosen, multi):
                try:
                    influxql(day, substitute(t.query, day, values))
                except AssertionError as e:
                    failures.append(f"{board.uid} / {title!r} with {values}: {e}")
    assert not failures, "\n".join(failures)


def test_prometheus_panels_use_metrics_the_node_exposes(tmp_path):
    from fastapi.testclient import TestClient

    from citywatch.runner import Node
    from citywatch.settings import load_settings

    s = load_settings(env={}, store={"url": f"duckdb:///{tmp_path}/r.duckdb"},
                      state={"url": f"sqlite:///{tmp_path}/state.db"}, ingest={"spool_dir": str(tmp_path / "spool")},
                      api={"open": True})
    node = Node(s)
    node.open()
    try:
        text = TestClient(node.api_app()).get("/metrics").text
    finally:
        node.store.close()
    families = set(re.findall(r"^# TYPE (\w+) (\w+)", text, re.M))
    exposed = {name for name, _ in families}
    for name, kind in families:
        exposed |= {f"{name}_total", f"{name}_created"} if kind == "counter" else set()
        exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set()
    used = {}
    for board in boards():
        for title, t in targets(board.build("en")):
            if isinstance(t, InfluxQuery):
                continue
            for name in re.findall(r"\b(citywatch_\w+)", t.expr):
                used.setdefault(name, f"{board.uid} / {title!r}")
    assert len(used) >= 10
    missing = {n: where for n, where in used.items() if n not in exposed}
    assert not missing, f"metrics not in the node's /metrics: {missing}"
