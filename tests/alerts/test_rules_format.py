"""The rule file format: loading, validation errors, overrides, `rules check`."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from alerts.cli import app
from alerts.errors import RuleError
from alerts.rules import RulePack, check_file, parse_duration

from .helpers import Harness, M, at, batch, series

GOOD = """
    version: 1
    rules:
      - id: noise.site_limit
        kind: noise
        description: A stricter day limit near a hospital.
        source: (est.) district agreement
        metric: laeq_db
        op: ">"
        threshold: {attr: day_limit_db, default: 65}
        severity: major
        for: 2m
        during: "08:00-18:00"
        summary: "Noise {value:.1f} dB(A) over the site limit {threshold:g} dB(A)"
"""


def write(tmp_path, text, name="rules.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_durations():
    assert parse_duration("10s") == 10_000 and parse_duration("1h30m") == 5_400_000
    assert parse_duration(90) == 90_000 and parse_duration("500ms") == 500
    for bad in ("5 min", "", "10", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_operator_file_adds_rules(tmp_path):
    pack = RulePack.load([write(tmp_path, GOOD)])
    r = pack.get("noise.site_limit")
    assert (r.origin, r.params.for_ms, str(r.params.during)) == (str(tmp_path / "rules.yaml"), 2 * M, "08:00-18:00")
    assert len(pack.rules) == 34


def test_operator_file_overrides_and_disables_builtins(tmp_path):
    f = write(tmp_path, """
        rules:
          - {id: fume.concentration, threshold: {attr: limit_mgm3, default: 1.0}}
          - {id: toilet.consumables, enabled: false}
    """)
    pack = RulePack.load([f])
    assert "toilet.consumables" not in [r.id for r in pack.active]
    fc = pack.get("fume.concentration")
    assert fc.levels[0].threshold[0].default == 1.0 and fc.params.for_ms == 9 * M  # other fields kept
    h = Harness(pack=pack)
    t0 = at("2026-11-29 12:00:00")
    h.feed(series("fume-0001", "fume", "fume_mgm3", t0, 3 * M, [1.5] * 3)
           + series("toilet-0001", "toilet", "consumables_pct", t0, M, [5]))
    assert [a.rule for a in h.alerts() if a.state == "firing"] == ["fume.concentration"]


@pytest.mark.parametrize("change,field,words", [
    ("op: \">\"", "op", "expected one of"),
    ("metric: laeq_db", "metric", "noise has no metric"),
    ("for: 2m", "for", "expected a duration"),
    ("during: \"08:00-18:00\"", "during", "local-time window"),
    ("severity: major", "severity", "expected one of info, warning, major, critical"),
    ("threshold: {attr: day_limit_db, default: 65}", "threshold", "needs a 'default'"),
    ("summary: \"Noise {value:.1f} dB(A) over the site limit {threshold:g} dB(A)\"", "summary", "unknown field"),
    ("kind: noise", "kind", "expected one of bridge"),
])
def test_errors_name_file_rule_and_field(tmp_path, change, field, words):
    broken = {
        "op": 'op: "≥"', "metric": "metric: laeq", "for": "for: 2 minutes",
        "during": 'during: "8-18"', "severity": "severity: red",
        "threshold": "threshold: {attr: day_limit_db}", "summary": 'summary: "Noise {level}"',
        "kind": "kind: tram",
    }[field]
    f = write(tmp_path, GOOD.replace(change, broken))
    with pytest.raises(RuleError) as e:
        RulePack.load([f])
    msg = str(e.value)
    assert (e.value.file, e.value.rule, e.value.field) == (str(f), "noise.site_limit", field)
    assert str(f) in msg and "noise.site_limit" in msg and words in msg


def test_structural_errors(tmp_path):
    cases = {
        "rules: {}": "expected a mapping with a 'rules' list",
        "rules: [1, 2]": "needs an id",
        "rules:\n  - id: a.b\n  - id: a.b\n": "defined twice",
        "rules: [\n": "not valid YAML",
        "colour: red\nrules: []": "unknown top-level key",
    }
    for text, words in cases.items():
        with pytest.raises(RuleError, match=words):
            RulePack.load([write(tmp_path, text, "x.yaml")], builtin=False)
    with pytest.raises(RuleError, match="cannot read"):
        RulePack.load([tmp_path / "missing.yaml"])
    levels_down = GOOD.replace("threshold: {attr: day_limit_db, default: 65}\n        severity: major",
                               "levels: {warning: 70, major: 65}")
    with pytest.raises(RuleError, match="must rise with severity"):
        RulePack.load([write(tmp_path, levels_down)])


def test_check_file_accepts_partial_overrides(tmp_path):
    f = write(tmp_path, "rules:\n  - {id: gas.offline, absent: 2d}\n")
    [r] = check_file(f)
    assert r.params.absent_ms == 2 * 24 * 3600_000 and r.kind == "gas_meter"


def test_rules_check_cli(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(write(tmp_path, GOOD))], env={"COLUMNS": "250"})
    assert ok.exit_code == 0 and "noise.site_limit" in ok.output and "major" in ok.output
    builtin = runner.invoke(app, ["check", "alerts/pack/default.yaml"], env={"COLUMNS": "250"})
    assert builtin.exit_code == 0 and "noise.night_laeq" in builtin.output
    bad = runner.invoke(app, ["check", str(write(tmp_path, GOOD.replace("for: 2m", "for: soon"), "b.yaml"))])
    assert bad.exit_code == 1
    assert "b.yaml" in bad.output and "noise.site_limit" in bad.output and "'for'" in bad.output


def test_a_rule_on_a_metric_several_kinds_share_reads_only_its_kind(tmp_path):
    f = write(tmp_path, """
        rules:
          - id: toilet.frost
            kind: toilet
            description: Frost risk for the water pipes.
            source: (est.)
            metric: temp_c
            op: "<"
            threshold: 2
            severity: warning
            summary: "Toilet at {value:.1f} °C: frost risk"
    """)
    h = Harness(pack=RulePack.load([f]))
    t0 = at("2026-12-20 03:00:00")
    h.feed(series("gas_meter-0001", "gas_meter", "temp_c", t0, M, [-3])
           + series("toilet-0001", "toilet", "temp_c", t0, M, [1.5])
           + series("bridge-0001", "bridge", "temp_c", t0, M, [-5]))
    [a] = h.alerts("toilet.frost")
    assert a.device_id == "toilet-0001" and a.summary == "Toilet at 1.5 °C: frost risk"


def test_event_rule_cleared_by_another_event(tmp_path):
    f = write(tmp_path, """
        rules:
          - id: gas.valve_shut
            kind: gas_meter
            description: The meter closed its valve.
            source: (est.)
            event: valve_closed
            severity: major
            clear: {event: valve_opened}
            summary: "Gas valve closed"
    """)
    from ingest.model import Event
    h = Harness(pack=RulePack.load([f]))
    t0 = at("2026-11-29 08:00:00")
    h.feed([], [Event("gas_meter-0001", "gas_meter", t0, "valve_closed"),
                Event("gas_meter-0001", "gas_meter", t0 + 5 * M, "valve_closed")])
    [a] = h.alerts("gas.valve_shut")
    assert a.state == "firing"
    h.engine.tick(t0 + 48 * 3600_000, {})  # no `after`: only the clear event resolves it
    assert h.state.get(a.id).state == "firing"
    h.feed([], [Event("gas_meter-0001", "gas_meter", t0 + 2 * 3600_000, "valve_opened")])
    a = h.state.get(a.id)
    assert a.state == "resolved" and a.ended_ms == t0 + 2 * 3600_000


def test_during_windows_follow_the_configured_zone():
    from alerts.engine import RuleEngine
    from alerts.store import AlertState
    from devices.sqlite import connect

    state = AlertState(connect(":memory:"))
    engine = RuleEngine(RulePack.load(), state, tz="UTC")
    # 23:00 in Shanghai is 15:00 UTC: day time for an engine configured with UTC
    engine.process(batch(series("noise-0001", "noise", "laeq_db", at("2026-11-29 23:00:00"), M, [75] * 6)))
    got = {a.rule for a in state.list_alerts(None, 10)[0]}
    assert got == {"noise.day_laeq"}
    assert state.list_alerts(None, 10)[0][0].to_api(state.tz)["started_at"].endswith("+00:00")


def test_a_mistyped_override_is_reported(tmp_path):
    f = write(tmp_path, "rules:\n  - {id: fume.concentraton, enabled: false}\n")
    for load in (lambda: RulePack.load([f]), lambda: check_file(f)):
        with pytest.raises(RuleError, match="no built-in or earlier rule has this id") as e:
            load()
        assert (e.value.rule, e.value.field) == ("fume.concentraton", "id")


def test_absence_per_device_from_attrs(tmp_path):
    f = write(tmp_path, "rules:\n  - {id: noise.offline, absent: {attr: offline_after_s, default: 20m}}\n")
    r = RulePack.load([f]).get("noise.offline")
    assert (r.params.absent_attr, r.params.absent_ms) == ("offline_after_s", 20 * M)
    for bad, field in (("{attr: offline_after_s}", "absent"), ("{attr: x, default: soon}", "absent.default")):
        f = write(tmp_path, f"rules:\n  - {{id: noise.offline, absent: {bad}}}\n")
        with pytest.raises(RuleError) as e:
            RulePack.load([f])
        assert (e.value.rule, e.value.field) == ("noise.offline", field)
