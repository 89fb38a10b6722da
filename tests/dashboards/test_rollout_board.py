"""The rollout board against a real InfluxDB holding a week of daily ``rollout`` snapshots (the
shape the report writes: tests/dashboards/rollout_sample.py ``snapshot_lines``): every panel's
query returns the shape its panel expects and the figures of the snapshot it reads, the variables
list the programme and its 13 districts (not the totals' ``_all``), and one district narrows
every per-district panel to it. Fast: its own small database, no simulated day."""

from __future__ import annotations

import httpx
import pytest

from dashboards.rollout import BOARD
from tests.dashboards.rollout_sample import PROGRAMME, WUHAN, sample_document, snapshot_lines
from tests.dashboards.test_queries import all_of, check_shape, regex_escape, substitute, targets

DB = "rolloutproof"
DAYS = 7
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def snapshots(influxd):
    doc = sample_document(seed=3)
    lines = snapshot_lines(doc, DAYS)
    httpx.post(f"{influxd.http}/query", params={"q": f'CREATE DATABASE "{DB}"'}, timeout=10).raise_for_status()
    r = httpx.post(f"{influxd.http}/write", params={"db": DB, "precision": "ms"},
                   content="\n".join(lines).encode(), timeout=30)
    assert r.status_code == 204, r.text
    stamps = sorted({int(line.rsplit(" ", 1)[1]) for line in lines})
    assert len(stamps) == DAYS
    return {"doc": doc, "http": influxd.http, "start": stamps[0], "end": stamps[-1] + DAY_MS - 1}


def run(snap, q: str, values: dict[str, str]) -> list[dict]:
    q = substitute(q, snap, values).replace("time(5m)", "time(1d)")  # the panels' minimum interval
    r = httpx.get(f"{snap['http']}/query", params={"db": DB, "q": q, "epoch": "ms"}, timeout=30)
    r.raise_for_status()
    res = r.json()["results"][0]
    assert "error" not in res, f"{res['error']}\n{q}"
    return res.get("series", [])


def panel(model, prefix: str):
    return next(p for p in model.panels if p.title.startswith(prefix))


def last_by(series: list[dict], tag: str) -> dict[str, float]:
    return {s["tags"][tag]: [v for v in s["values"] if v[1] is not None][-1][1] for s in series}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_rollout_panel_returns_its_shape(snapshots, lang):
    model = BOARD.build(lang)
    failures = []
    for title, t in targets(model):
        if title.startswith("annotation"):
            continue  # alert changes: the simulated day's query proof (test_queries.py) covers them
        problem = check_shape(run(snapshots, t.query, all_of(model)), t)
        if problem:
            failures.append(f"{title!r}: {problem}\n    {t.query}")
    assert not failures, "\n".join(failures)
    assert len(model.panels) == 9


def test_rollout_panels_show_the_snapshot_figures(snapshots):
    doc = snapshots["doc"]
    programme = doc["programmes"][0]
    model = BOARD.build("en")
    ALL = all_of(model)
    variables = {v.name: v.query for v in model.templating.list_val}
    listed = [v[1] for s in run(snapshots, variables["programme"], ALL) for v in s["values"]]
    assert listed == [PROGRAMME]
    districts = [v[1] for s in run(snapshots, variables["district"], ALL) for v in s["values"]]
    assert sorted(districts) == sorted(WUHAN)  # the totals' "_all" is not a district
    totals = programme["totals"]
    for prefix, field in (("Target", "target"), ("Commissioned", "commissioned")):
        (s,) = run(snapshots, panel(model, prefix).targets[0].query, ALL)
        assert s["tags"] == {"programme": PROGRAMME} and s["values"][0][1] == totals[field]
    (s,) = run(snapshots, panel(model, "Share of target").targets[0].query, ALL)  # the stat, first of the name
    assert s["values"][0][1] == pytest.approx(totals["commissioned_share"])
    versus = panel(model, "Commissioned (solid)")
    commissioned = last_by(run(snapshots, versus.targets[0].query, ALL), "district")
    target = last_by(run(snapshots, versus.targets[1].query, ALL), "district")
    assert commissioned == {d["district"]: d["commissioned"] for d in programme["districts"]}
    assert target == {d["district"]: d["target"] for d in programme["districts"]}
    series = run(snapshots, versus.targets[0].query, ALL)
    assert {len([v for v in s["values"] if v[1] is not None]) for s in series} == {DAYS}  # one a day
    table = run(snapshots, panel(model, "Latest snapshot").targets[0].query, ALL)
    rows = {s["tags"]["district"]: dict(zip(s["columns"], s["values"][0], strict=True)) for s in table}
    assert {d: r["target"] for d, r in rows.items()} == {d["district"]: d["target"] for d in programme["districts"]}


def test_one_district_narrows_the_panels(snapshots):
    model = BOARD.build("zh")
    one = {**all_of(model), "programme": regex_escape(PROGRAMME), "district": regex_escape("硚口区")}
    for p in model.panels:
        for t in p.targets:
            series = run(snapshots, t.query, one)
            assert series, p.title
            districts = {s.get("tags", {}).get("district") for s in series} - {None}
            assert districts <= {"硚口区"}, (p.title, districts)
