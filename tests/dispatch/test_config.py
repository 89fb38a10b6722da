"""Receivers and routes: validation names the key, routing picks the first matching route."""

from __future__ import annotations

import pytest

from alerts.dispatch import DispatchConfig, DispatchConfigError, parse_duration

from .conftest import make_notice

RECV = [
    {"name": "jianghan", "url": "https://dispatch.example/hooks/citywatch", "secret": "s1"},
    {"name": "city-duty", "url": "http://127.0.0.1:9000/", "secret": "s2", "timeout": "2s",
     "max_concurrency": 2, "headers": {"Authorization": "Bearer x"}},
    {"name": "fallback", "url": "http://fallback.example/", "secret": "s3"},
]


def error_of(receivers, routes) -> str:
    with pytest.raises(DispatchConfigError) as exc:
        DispatchConfig.from_raw(receivers, routes)
    return str(exc.value)


@pytest.mark.parametrize("routes, message", [
    ([{"match": {}, "receivers": ["jianghan"]}, {"match": {}, "receivers": ["x"]}],
     "routes[1].receivers: unknown receiver 'x'"),
    ([{"match": {"colour": "red"}, "receivers": ["jianghan"]}],
     "routes[0].match.colour: unknown matcher (known: kind, district, severity, rule, responsible_unit)"),
    ([{"receivers": ["jianghan"], "escalate_to": ["city-duty"], "escalate_after": "5x"}],
     "routes[0].escalate_after: bad duration '5x'"),
    ([{"receivers": ["jianghan"], "escalate_to": ["nobody"], "escalate_after": "5m"}],
     "routes[0].escalate_to: unknown receiver 'nobody'"),
    ([{"receivers": ["jianghan"], "escalate_to": ["city-duty"]}],
     "routes[0].escalate_after: required with escalate_to"),
    ([{"receivers": ["jianghan"], "escalate_after": "5m"}],
     "routes[0].escalate_to: required with escalate_after"),
    ([{"match": {"severity": "critcal"}, "receivers": ["jianghan"]}],
     "routes[0].match.severity: unknown severity 'critcal' (known: info, warning, major, critical)"),
    ([{"match": {"kind": ["noise", "tram"]}, "receivers": ["jianghan"]}],
     "routes[0].match.kind: unknown kind 'tram'"),
    ([{"match": {"district": []}, "receivers": ["jianghan"]}],
     "routes[0].match.district: expected a non-empty string or list of strings"),
    ([{"match": {}}], "routes[0].receivers: required, a list of receiver names"),
    ([{"match": {}, "receivers": ["jianghan"], "escalate": "x"}],
     "routes[0].escalate: unknown key (known: match, receivers, escalate_to, escalate_after)"),
    (["not a table"], "routes[0]: expected a table, got str"),
])
def test_route_errors_name_the_key(routes, message):
    assert error_of(RECV, routes).startswith(message)


@pytest.mark.parametrize("receiver, message", [
    ({"name": "a", "url": "ftp://x/", "secret": "s"}, "receivers[0].url: not an http(s) URL: 'ftp://x/'"),
    ({"name": "a", "url": "http://", "secret": "s"}, "receivers[0].url: not an http(s) URL"),
    ({"name": "a", "url": "http://h:99999/", "secret": "s"}, "receivers[0].url: not an http(s) URL"),
    ({"name": "a", "secret": "s"}, "receivers[0].url: not an http(s) URL: None"),
    ({"name": "", "url": "http://h/", "secret": "s"}, "receivers[0].name: required"),
    ({"name": "a", "url": "http://h/"}, "receivers[0].secret: required"),
    ({"name": "a", "url": "http://h/", "secret": "s", "timeout": "soon"},
     "receivers[0].timeout: bad duration 'soon'"),
    ({"name": "a", "url": "http://h/", "secret": "s", "timeout": 0},
     "receivers[0].timeout: must be more than 0"),
    ({"name": "a", "url": "http://h/", "secret": "s", "max_concurrency": 0},
     "receivers[0].max_concurrency: expected an integer >= 1"),
    ({"name": "a", "url": "http://h/", "secret": "s", "headers": {"X-Citywatch-Signature": "x"}},
     "receivers[0].headers.X-Citywatch-Signature: set by citywatch"),
    ({"name": "a", "url": "http://h/", "secret": "s", "tls": True}, "receivers[0].tls: unknown key"),
])
def test_receiver_errors_name_the_key(receiver, message):
    assert error_of([receiver], []).startswith(message)


def test_duplicate_receiver_names_the_second():
    dup = [RECV[0], dict(RECV[2], name="jianghan")]
    assert error_of(dup, []) == "receivers[1].name: duplicate receiver 'jianghan'"


def test_valid_config_is_parsed():
    cfg = DispatchConfig.from_raw(RECV, [
        {"match": {"district": "江汉区", "severity": ["major", "critical"]}, "receivers": ["jianghan"],
         "escalate_to": ["city-duty"], "escalate_after": "10m"},
        {"match": {}, "receivers": ["fallback"]},
    ])
    duty = cfg.receivers["city-duty"]
    assert (duty.timeout_s, duty.max_concurrency) == (2.0, 2)
    assert dict(duty.headers) == {"Authorization": "Bearer x"}
    assert cfg.routes[0].escalate_after_s == 600.0
    assert cfg.routes[0].escalate_to == ("city-duty",)
    assert "s1" not in repr(cfg.receivers["jianghan"])  # secrets stay out of logs


@pytest.mark.parametrize("text, seconds", [
    (30, 30.0), (2.5, 2.5), ("30", 30.0), ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0),
    ("1d", 86400.0), ("1h30m", 5400.0), ("250ms", 0.25),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "m", "10 m", "-5", "1h-5m", True, None, float("nan"), "inf"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_first_matching_route_wins_and_empty_match_is_default():
    cfg = DispatchConfig.from_raw(RECV, [
        {"match": {"district": "江汉区", "severity": ["major", "critical"]}, "receivers": ["jianghan"]},
        {"match": {"kind": "noise", "responsible_unit": "江汉区城管执法局"}, "receivers": ["city-duty"]},
        {"match": {"rule": "gas.leak"}, "receivers": ["jianghan", "city-duty"]},
        {"match": {}, "receivers": ["fallback"]},
    ])

    def pick(**kw):
        n = make_notice(**kw)
        return cfg.route_for(n.alert, n.device).receivers

    assert pick(severity="critical") == ("jianghan",)
    assert pick(severity="warning") == ("city-duty",)  # route 0 needs major/critical
    assert pick(severity="critical", district="武昌区") == ("city-duty",)
    assert pick(kind="gas_meter", rule="gas.leak", district="武昌区") == ("jianghan", "city-duty")
    assert pick(kind="toilet", rule="toilet.nh3", district="武昌区") == ("fallback",)


def test_no_route_matches():
    cfg = DispatchConfig.from_raw(RECV, [{"match": {"kind": "bridge"}, "receivers": ["jianghan"]}])
    n = make_notice(kind="noise")
    assert cfg.route_for(n.alert, n.device) is None
