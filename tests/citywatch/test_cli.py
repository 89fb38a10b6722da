"""The command line: exit status and a one-line reason (operator.md)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from citywatch.cli import app

runner = CliRunner()


def config(tmp_path) -> str:
    p = tmp_path / "citywatch.toml"
    p.write_text(f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n', encoding="utf-8")
    return str(p)


def test_devices_import_export_round_trip(tmp_path):
    good = tmp_path / "devices.csv"
    good.write_text("device_id,kind,district,asset_name\nnoise-1,noise,江汉区,汉口江滩工地\n", encoding="utf-8")
    r = runner.invoke(app, ["devices", "import", str(good), "--config", config(tmp_path)])
    assert r.exit_code == 0 and "imported 1 devices" in r.output
    out = tmp_path / "out.csv"
    r = runner.invoke(app, ["devices", "export", str(out), "--config", config(tmp_path)])
    assert r.exit_code == 0 and "汉口江滩工地" in out.read_text(encoding="utf-8-sig")


def test_bad_csv_names_line_and_column(tmp_path):
    bad = tmp_path / "devices.csv"
    bad.write_text("device_id,kind,district\nok-1,noise,江汉区\nbad-1,bridg,江汉区\n", encoding="utf-8")
    r = runner.invoke(app, ["devices", "import", str(bad), "--config", config(tmp_path)])
    assert r.exit_code == 1
    assert "line 3, column kind: unknown kind 'bridg'" in r.output


def test_bad_config_exits_2_naming_the_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[mqtt]\nurll = 'x'\n", encoding="utf-8")
    r = runner.invoke(app, ["serve", "--config", str(p)])
    assert r.exit_code == 2 and "mqtt.urll: unknown key" in r.output


def test_rules_check_takes_config_like_every_subcommand(tmp_path):
    """operator.md gives ``--config`` to every subcommand; ``rules check`` refused it."""
    pack = Path(__file__).parents[2] / "alerts" / "pack" / "default.yaml"
    r = runner.invoke(app, ["rules", "check", str(pack), "--config", config(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "default.yaml: 33 rule(s)" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nurll = 'x'\n", encoding="utf-8")
    r = runner.invoke(app, ["rules", "check", str(pack), "--config", str(bad)])
    assert r.exit_code == 2 and "mqtt.urll: unknown key" in r.output


def test_every_command_has_help():
    for args in (["up"], ["serve"], ["devices", "import"], ["devices", "export"], ["rollout", "import"],
                 ["simulate"], ["record"], ["replay"], ["rules", "check"],
                 ["tokens", "create"], ["tokens", "list"], ["tokens", "revoke"]):
        r = runner.invoke(app, [*args, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output, args


def test_simulate_into_a_registry_lacking_the_fleet_prints_the_fix_and_register_imports(tmp_path, mosquitto):
    """``simulate`` into a serve node's registry that lacks the fleet: its messages would be
    quarantined as unregistered, silently. It warns with the fix; ``--register`` imports the fleet."""
    from devices.registry import Registry
    from devices.sqlite import connect

    cfg = config(tmp_path)
    args = ["simulate", "--kinds", "noise", "--devices", "2", "--duration", "1m", "--speed", "max",
            "--start", "2026-11-29T08:00+08:00", "--broker", mosquitto.url, "--config", cfg]
    Registry(connect(tmp_path / "state.db")).close()  # the node's state DB exists, without the fleet
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "2 of 2 simulated devices" in r.output and "--register" in r.output
    r = runner.invoke(app, [*args, "--register"])
    assert r.exit_code == 0 and "registered 2 simulated devices" in r.output, r.output
    assert len(Registry(connect(tmp_path / "state.db")).snapshot()) == 2
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "warning" not in r.output, r.output
