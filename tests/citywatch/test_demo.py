"""``citywatch up``'s demo wiring (citywatch/demo.py): the built-in receiver is the dispatch target
only when the config names none; the schedule starts after the backfill; the progress line and
what to try."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from citywatch import demo
from citywatch.settings import ConfigError, load_settings
from devices.fleet import sample_fleet
from simulators.schedule import choose

NOW = 1_796_548_000_000  # 2026-12-06T09:06:40Z


def _settings(**kw):
    return load_settings(env={}, api={"listen": "0.0.0.0:18080"}, **kw)


def test_the_receiver_is_the_target_when_the_config_has_none():
    s, log = demo.with_receiver(_settings())
    assert log is not None
    config = s.dispatch_config()
    urls = {r.url for r in config.receivers.values()}
    assert urls == {"http://127.0.0.1:18080/api/v1/demo/webhook"}
    secrets = {r.secret for r in config.receivers.values()}
    assert len(secrets) == 1 and log.verify({}, b"") is not None  # a secret drawn at start
    assert demo.with_receiver(_settings())[0].receivers[0]["secret"] != s.receivers[0]["secret"]


def test_a_configured_receiver_is_left_alone():
    own = [{"name": "jianghan", "url": "https://dispatch.example/hook", "secret": "k"}]
    s, log = demo.with_receiver(_settings(receivers=own, routes=[{"match": {}, "receivers": ["jianghan"]}]))
    assert log is None and s.receivers == own


def test_the_schedule_starts_after_the_backfill():
    s = _settings(up={"backfill_s": 600, "scenario_every": "3m", "seed": 6})
    fleet = sample_fleet(0.0005, seed=2021, min_per_kind=3, kinds=["lighting", "gas_meter"])
    sim = demo.simulation(s, fleet, NOW)
    assert sim.start_ms == NOW - 600_000
    for _ in sim.messages(NOW + 7 * 60_000):
        pass
    got = [(i.name, i.start_ms) for i in sim.injections]
    # seed 6 over two kinds starts with the first in catalogue order (gas meters)
    assert got[0] == ("gas-over-flow", NOW + 30_000) and got[1] == ("cabinet-door-open", NOW + 210_000)
    assert choose("gas_meter", NOW).startswith("gas-over-flow")
    none = demo.simulation(_settings(up={"scenario_every": "0"}), fleet, NOW)
    for _ in none.messages(NOW + 10 * 60_000):
        pass
    assert none.injections == []


def test_scenario_every_is_checked_by_name():
    with pytest.raises(ConfigError, match=r"up\.scenario_every"):
        _settings(up={"scenario_every": "soon"})


def test_backfill_progress_ends_with_what_was_loaded():
    s = _settings(up={"backfill_s": 120})
    fleet = sample_fleet(0, seed=2021, min_per_kind=1, kinds=["noise"])
    sims = demo.Simulators(s, "mqtt://127.0.0.1:1", demo.simulation(s, fleet, NOW))
    for _ in sims.sim.messages(NOW):  # as the publisher would, without a broker
        pass
    sims.live.set()
    buf = io.StringIO()
    demo.show_backfill(Console(file=buf, width=200), sims, lambda: 1234, s.tz, threading.Event())
    text = buf.getvalue()
    assert f"backfilled {sims.sim.messages_out:,} messages ({sims.sim.readings_out:,} readings, 1,234 stored" in text


def test_tips_name_the_board_the_webhooks_and_a_fault_by_hand():
    s = _settings()
    lines = demo.tips(s, "mqtt://127.0.0.1:1883", receiver=True)
    text = "\n".join(lines)
    assert "http://0.0.0.0:18080/" in text and "/api/v1/demo/webhooks" in text
    assert "citywatch report rollout" in text and "--broker mqtt://127.0.0.1:1883" in text
    assert "/api/v1/demo/webhooks" not in "\n".join(demo.tips(s, "mqtt://x:1", receiver=False))
