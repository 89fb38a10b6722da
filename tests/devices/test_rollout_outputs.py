"""The rollout report's formats through the real ``citywatch`` executable and the real API app
(over HTTP on loopback), parsed back and compared with the document and the plain-Python reference."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time

import httpx
import pytest

from devices.registry import Registry
from devices.rollout import RolloutReport
from devices.rollout_formats import FIGURE_COLUMNS, LIST_COLUMNS
from devices.rollout_history import store_snapshot
from ingest.model import Reading, Readings
from ingest.stores.duckdb import DuckDBStore

from .rollout_programme import P, approx_doc, expected_document, generate, load, local_day, read

NOW = int(time.time() * 1000)  # the executable reads the clock: the programme is generated around it
TODAY = local_day(NOW).isoformat()


@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    """A state DB with the generated programme and a snapshot of an earlier day; a DuckDB store with
    the newest RSRP of a few meters; a config naming both. (SQLite: these tests are about the
    outputs; the report's figures and snapshots run on both engines in test_rollout*.py.)"""
    d = tmp_path_factory.mktemp("rollout")
    paths = generate(d, NOW)
    reg = Registry.open(d / "state.db")
    load(reg, paths)
    earlier = RolloutReport(reg, NOW - 5 * 86_400_000).to_dict()
    store_snapshot(reg.conn, earlier)
    weak = [r["device_id"] for r in read(paths["traffic"])][:40]
    store = DuckDBStore(d / "readings.duckdb")
    store.write(Readings.from_rows([Reading(x, "gas_meter", "rsrp_dbm", NOW - 3600_000, -121.0, "江汉区", "")
                                    for x in weak]))
    store.close()
    reg.close()
    cfg = d / "citywatch.toml"
    cfg.write_text(f'[state]\nurl = "sqlite:///{d}/state.db"\n[store]\nurl = "duckdb:///{d}/readings.duckdb"\n',
                   encoding="utf-8")
    return {"dir": d, "paths": paths, "config": cfg, "earlier": earlier}


def cli(programme, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["citywatch", "report", "rollout", "--config", str(programme["config"]), *args],
                       capture_output=True, timeout=120, env={**os.environ, "COLUMNS": "200"}, check=False)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def parse_csv(data: bytes) -> list[dict]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs
    text = data.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.DictReader(io.StringIO(text, newline="")))


def check_json(doc: dict, programme) -> None:
    assert doc["source"] == "live" and doc["as_of"] == TODAY
    [p] = [p for p in doc["programmes"] if p["programme"] == P]
    want = expected_document(programme["paths"], NOW)
    # the executable ran a moment after NOW: the figures that depend on the minute may move, the rest not
    for key in ("target", "planned", "installed", "commissioned"):
        assert p["totals"][key] == want["totals"][key], key
        assert [d[key] for d in p["districts"]] == [d[key] for d in want["districts"]], key
    assert [w["commissioned"] for w in p["totals"]["weekly"]] == [w["commissioned"] for w in want["totals"]["weekly"]]
    assert doc["exceptions"]["weak_signal"]["count"] > 0  # from the DuckDB store


def check_figures_csv(rows: list[dict], doc: dict) -> None:
    assert list(rows[0]) == list(FIGURE_COLUMNS)
    by_key = {(r["programme"], r["district"]): r for r in rows}
    for p in doc["programmes"]:
        for district, f in [("_all", p["totals"])] + [(d["district"], d) for d in p["districts"]]:
            r = by_key[(p["programme"], district)]
            assert int(r["target"]) == f["target"] and int(r["commissioned"]) == f["commissioned"]
            assert float(r["pace_per_week"]) == pytest.approx(f["pace_per_week"], rel=1e-5)
            assert r["forecast"] == (f["forecast"] or "") and r["on_track"] == {True: "true", False: "false",
                                                                                None: ""}[f["on_track"]]
    assert len(rows) == sum(1 + len(p["districts"]) for p in doc["programmes"])


def test_cli_json_csv_table_and_lists(programme, tmp_path):
    doc = json.loads(cli(programme, "--format", "json").stdout)
    check_json(doc, programme)
    out = tmp_path / "r.csv"
    cli(programme, "--format", "csv", "--out", str(out))
    check_figures_csv(parse_csv(out.read_bytes()), doc)
    table = cli(programme, "--programme", P).stdout.decode()
    assert "江汉区" in table and "total" in table and "never_heard" in table
    rows = parse_csv(cli(programme, "--list", "never_heard", "--format", "csv").stdout)
    assert list(rows[0]) == list(LIST_COLUMNS)
    assert len(rows) == doc["exceptions"]["never_heard"]["count"]
    assert all(r["responsible_unit"] == "武汉市燃气集团" and r["reason"] for r in rows)
    weak = json.loads(cli(programme, "--list", "weak_signal", "--format", "json").stdout)
    assert {r["reason"] for r in weak} == {"RSRP -121 dBm"} and len(weak) == doc["exceptions"]["weak_signal"]["count"]


def test_cli_as_of_reads_the_snapshot(programme):
    earlier = programme["earlier"]
    doc = json.loads(cli(programme, "--format", "json", "--as-of", earlier["as_of"]).stdout)
    assert doc == {**earlier, "source": "snapshot"}
    r = cli(programme, "--format", "json", "--as-of", "2020-01-01", check=False)
    assert r.returncode == 1 and b"--as-of: no rollout snapshot of 2020-01-01" in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "pdf"], "--format: expected table, json, csv, html, xlsx, got 'pdf'"),
    (["--programme", "nope"], "--programme: no rollout programme 'nope'"),
    (["--list", "lost"], "--list: unknown exception list 'lost'"),
    (["--as-of", "6/12/2026"], "--as-of: expected a date YYYY-MM-DD"),
    (["--format", "xlsx"], "--out: the xlsx format is written to a file"),
])
def test_cli_errors_name_the_option(programme, args, message):
    r = cli(programme, *args, check=False)
    assert r.returncode != 0 and message in r.stderr.decode().replace("\n", " ")


def test_cli_html_and_xlsx(programme, tmp_path):
    import openpyxl

    cli(programme, "--format", "html", "--out", str(tmp_path / "r.html"))
    assert "江汉区" in (tmp_path / "r.html").read_text(encoding="utf-8")
    cli(programme, "--format", "xlsx", "--out", str(tmp_path / "r.xlsx"))
    wb = openpyxl.load_workbook(tmp_path / "r.xlsx")
    assert len(wb.sheetnames) >= 2


# --- the API -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(programme):
    """The real application (citywatch/api/app.py) with the node's rollout service, served by uvicorn."""
    import threading
    from types import SimpleNamespace

    import uvicorn

    from citywatch import rollout
    from citywatch.api.app import create_app
    from citywatch.settings import load_settings
    from tests.support.process import free_port

    s = load_settings(programme["config"])
    store = DuckDBStore(programme["dir"] / "readings.duckdb")
    state = SimpleNamespace(settings=s, store=store, now=lambda: NOW, tokens=[{"token": "v", "role": "viewer"}],
                            rollout=rollout.service(s, latest=store.latest_values, clock=lambda: NOW))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer v"}, timeout=60) as c:
        yield c
    server.should_exit = True
    t.join(10)
    store.close()


def test_api_formats(api, programme):
    r = api.get("/api/v1/reports/rollout")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    [p] = [p for p in doc["programmes"] if p["programme"] == P]
    assert p == approx_doc(expected_document(programme["paths"], NOW))  # the API's clock is NOW
    r = api.get("/api/v1/reports/rollout", params={"format": "csv", "programme": P})
    assert r.headers["content-type"].startswith("text/csv; charset=utf-8")
    assert r.headers["content-disposition"] == f'attachment; filename="rollout-{TODAY}.csv"'
    check_figures_csv(parse_csv(r.content), {**doc, "programmes": [p]})
    r = api.get("/api/v1/reports/rollout", params={"format": "csv", "list": "silent"})
    rows = parse_csv(r.content)
    assert len(rows) == doc["exceptions"]["silent"]["count"] and list(rows[0]) == list(LIST_COLUMNS)
    r = api.get("/api/v1/reports/rollout", params={"as_of": programme["earlier"]["as_of"]})
    assert r.json() == {**programme["earlier"], "source": "snapshot"}


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"format": "pdf"}, 400, "format: expected one of json, csv, html, xlsx, got 'pdf'"),
    ({"programme": "nope"}, 404, "programme: no rollout programme 'nope'"),
    ({"as_of": "yesterday"}, 400, "as_of: expected a date YYYY-MM-DD, got 'yesterday'"),
    ({"as_of": "2020-01-01"}, 404, "as_of: no rollout snapshot of 2020-01-01"),
    ({"list": "lost"}, 400, "list: unknown exception list 'lost'"),
    ({"list": "silent", "format": "html"}, 400, "list: an exception list is exported as csv or json"),
    ({"list": "silent", "as_of": "2026-01-01"}, 400, "list: exception lists are live only"),
    ({"language": "fr", "format": "html"}, 400, "language: expected zh or en"),
])
def test_api_bad_parameters_are_named(api, params, status, message):
    r = api.get("/api/v1/reports/rollout", params=params)
    assert r.status_code == status and message in r.json()["detail"]


def test_api_needs_a_token(api):
    assert httpx.get(str(api.base_url) + "/api/v1/reports/rollout").status_code == 401


def test_a_store_that_does_not_answer_leaves_out_the_readings_lists(programme, caplog):
    from citywatch import rollout
    from citywatch.settings import load_settings

    def down(metric):
        raise OSError("connection refused")

    svc = rollout.service(load_settings(programme["config"]), latest=down, clock=lambda: NOW)
    doc = svc.document(programme=P)
    assert set(doc["exceptions"]) == {"never_heard", "silent", "overdue_planned"}
    assert "without the weak_signal list: the readings store did not answer: connection refused" in caplog.text
    from devices.rollout_service import ReportError

    with pytest.raises(ReportError, match="list: the readings store did not answer"):
        svc.export("csv", list_name="weak_signal")


def test_api_html_and_xlsx(api):
    import openpyxl

    doc = api.get("/api/v1/reports/rollout", params={"programme": P}).json()
    r = api.get("/api/v1/reports/rollout", params={"format": "html", "programme": P, "language": "en"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert all(d["district"] in r.text for d in doc["programmes"][0]["districts"])
    r = api.get("/api/v1/reports/rollout", params={"format": "xlsx", "programme": P})
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert r.headers["content-disposition"] == f'attachment; filename="rollout-{TODAY}.xlsx"'
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert len(wb.sheetnames) >= 1 + len(doc["programmes"][0]["districts"])
    cells = {str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
    assert all(d["district"] in cells or any(d["district"] in s for s in wb.sheetnames)
               for d in doc["programmes"][0]["districts"])


def test_a_caller_limited_to_districts_sees_those_only(programme):
    from citywatch import rollout
    from citywatch.settings import load_settings
    from devices.rollout_service import ReportError

    svc = rollout.service(load_settings(programme["config"]), clock=lambda: NOW)
    mine = frozenset({"江汉区", "武昌区"})
    doc = json.loads(svc.export("json", programme=P, districts=mine).body)
    [p] = doc["programmes"]
    assert [d["district"] for d in p["districts"]] == sorted(mine)
    want = {d["district"]: d for d in expected_document(programme["paths"], NOW)["districts"]}
    assert p["totals"]["target"] == sum(want[d]["target"] for d in mine)
    assert p["totals"]["commissioned"] == sum(want[d]["commissioned"] for d in mine)
    rows = parse_csv(svc.export("csv", list_name="silent", districts=mine).body)
    assert rows and {r["district"] for r in rows} <= mine
    with pytest.raises(ReportError, match="as_of: the daily snapshots cover every district"):
        svc.export("json", as_of=programme["earlier"]["as_of"], districts=mine)
