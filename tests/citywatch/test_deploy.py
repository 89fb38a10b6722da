"""deploy/ (docs/OPERATIONS.md) cannot go stale unnoticed: the example config loads with the real
settings loader and names every key they accept; the systemd units pass ``systemd-analyze verify``
and keep their hardening; the docker-compose file and the Dockerfile have the structure the
docs promise. Docker cannot run here: its files are checked, not run."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from alerts.dispatch.config import _RECEIVER_KEYS, _ROUTE_KEYS
from citywatch.cli import app
from citywatch.settings import Settings, load_settings
from tests.support.certs import CA

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
UNITS = {"citywatch.service": "all", "citywatch-ingest.service": "ingest", "citywatch-rules.service": "rules",
         "citywatch-dispatch.service": "dispatch", "citywatch-api.service": "api"}


def _settings_keys() -> set[str]:
    """Every key the settings accept: ``timezone``, ``mqtt.url``, ..., ``receivers[].name``, ..."""
    keys: set[str] = set()
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.update(f"{name}.{k}" for k in ann.model_fields)
        else:
            keys.add(name)
    keys.update(f"receivers[].{k}" for k in _RECEIVER_KEYS)
    keys.update(f"routes[].{k}" for k in _ROUTE_KEYS)
    return keys


def _file_keys(data: dict) -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys.update(f"{name}.{k}" for k in value)
        elif name in ("receivers", "routes"):
            keys.add(name)
            keys.update(f"{name}[].{k}" for table in value for k in table)
        else:
            keys.add(name)
    return keys


def test_example_config_loads_and_names_every_key(tmp_path):
    text = (DEPLOY / "citywatch.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert _file_keys(data) == _settings_keys(), "deploy/citywatch.toml: keys missing or unknown"
    assert data["state"]["url"].startswith("postgresql://")
    # the TLS files it names, made here (the settings check that they are a CA, a certificate and its key)
    ca = CA(tmp_path / "tls", "nodes")
    node = ca.issue("node-1", server=False)
    for name, real in (("ca.crt", ca.cert), ("node.crt", node.cert), ("node.key", node.key)):
        assert f'"/etc/citywatch/tls/{name}"' in text
        text = text.replace(f'"/etc/citywatch/tls/{name}"', f'"{real}"')
    path = tmp_path / "citywatch.toml"
    path.write_text(text, encoding="utf-8")
    s = load_settings(path, env={})
    assert s.store.url == data["store"]["url"] and len(s.dispatch_config().routes) == len(data["routes"])
    assert s.mqtt.url.endswith(":8884") and s.mqtt.tls_options().cert_file == node.cert  # the nodes' listener


def _comment_of(lines: list[str], i: int) -> str:
    """Line ``i``'s own comment, then the comment block above it (past other keys and table
    headers) in reading order, as one line of text."""
    j = i - 1
    while j >= 0 and lines[j] and not lines[j].startswith("#"):
        j -= 1
    block = []
    while j >= 0 and lines[j].startswith("#"):
        block.insert(0, lines[j].lstrip("# "))
        j -= 1
    return " ".join([lines[i].partition(" #")[2], *block])


_STATED = re.compile(r'[Dd]efault:? ("[^"]*"|\[[^\]]*\]|-?\d+(?:\.\d+)?|true|false)')


def _real_default(header: str, key: str):
    section = header.strip("[]")
    field = Settings.model_fields[section].annotation.model_fields[key] if section else Settings.model_fields[key]
    return field.get_default(call_default_factory=True)


def test_example_config_states_every_keys_real_default():
    """Every optional key's comment (its own, or the block above it) gives its default; for the
    settings' keys, the default stated is the settings' own. The second receiver and route repeat
    keys documented at the first."""
    required = {"[[receivers]] name", "[[receivers]] url", "[[receivers]] secret", "[[routes]] match",
                "[[routes]] receivers"}
    lines = (DEPLOY / "citywatch.toml").read_text(encoding="utf-8").splitlines()
    header, seen, checked = "", set(), 0
    for i, line in enumerate(lines):
        if line.startswith("["):
            header = "repeated" if line in seen and line.startswith("[[") else line
            seen.add(line)
        key = re.match(r"^([a-z_]+) = ", line)
        if not key or header == "repeated" or f"{header} {key.group(1)}" in required:
            continue
        comment = _comment_of(lines, i)
        assert "default" in comment.lower(), f"deploy/citywatch.toml:{i + 1}: no default for {line!r}"
        if header.startswith("[["):
            continue
        stated = _STATED.search(comment)
        assert stated, f"deploy/citywatch.toml:{i + 1}: no default value in {comment!r}"
        value = tomllib.loads(f"v = {stated.group(1)}")["v"]
        assert value == _real_default(header, key.group(1)), f"deploy/citywatch.toml:{i + 1}: {line!r}"
        checked += 1
    assert checked == len(_settings_keys()) - len(_RECEIVER_KEYS) - len(_ROUTE_KEYS) - 2  # receivers, routes


def _unit(name: str) -> configparser.ConfigParser:
    p = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    p.optionxform = str  # keys are case-sensitive
    p.read_string((DEPLOY / "systemd" / name).read_text(encoding="utf-8"))
    return p


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_runs_serve_hardened_as_its_role(name):
    u = _unit(name)
    svc = u["Service"]
    assert svc["ExecStart"] == "/opt/citywatch/bin/citywatch serve --config /etc/citywatch/citywatch.toml"
    lines = (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines()
    roles = f"Environment=CITYWATCH_ROLE={UNITS[name]}"
    assert [ln for ln in lines if ln.startswith("Environment=CITYWATCH_ROLE")] == [roles]
    required = {"User": "citywatch", "StateDirectory": "citywatch", "WorkingDirectory": "/var/lib/citywatch",
                "ProtectSystem": "strict", "NoNewPrivileges": "yes", "Restart": "on-failure",
                "RestartPreventExitStatus": "2", "StandardOutput": "journal", "StandardError": "journal",
                "KillSignal": "SIGTERM", "PrivateTmp": "yes", "ProtectHome": "yes"}
    assert {k: svc.get(k) for k in required} == required
    assert float(svc["RestartSec"]) > 0 and svc["SyslogIdentifier"] == name.removesuffix(".service")
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_units_differ_only_in_their_role():
    def normalised(name: str) -> list[str]:
        role = UNITS[name]
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        lines = [ln for ln in text.splitlines() if not ln.startswith(("#", "Description=", "Conflicts="))]
        return [ln.replace(f"citywatch-{role}", "citywatch").replace(f"ROLE={role}", "ROLE=all") for ln in lines]

    base = normalised("citywatch.service")
    for name in UNITS:
        assert normalised(name) == base, f"{name} differs from citywatch.service beyond its role"
        if name != "citywatch.service":
            assert _unit(name)["Unit"]["Conflicts"] == "citywatch.service"


def test_serve_takes_what_the_units_give_it():
    """The verb and the option in ExecStart exist (operator.md "Command line")."""
    from typer.main import get_command

    serve = get_command(app).commands["serve"]
    assert "--config" in {o for p in serve.params for o in p.opts}


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here: the INI checks above only")
def test_units_pass_systemd_analyze_verify(tmp_path):
    """``systemd-analyze verify`` also checks that ExecStart is executable: the units' /opt path is
    replaced by this machine's citywatch for it."""
    exe = shutil.which("citywatch")
    if exe is None:
        pytest.skip("no citywatch executable on PATH")
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("/opt/citywatch/bin/citywatch", str(Path(exe).resolve())))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in UNITS)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_services_pinned_healthy_and_ordered():
    services = _compose()["services"]
    assert set(services) == {"mosquitto", "influxdb", "postgres", "citywatch-1", "citywatch-2"}
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: image {image} not pinned"
        assert svc["healthcheck"]["test"][0] == "CMD", name
    assert services["influxdb"]["image"].startswith("influxdb:1.")
    for node in ("citywatch-1", "citywatch-2"):
        svc = services[node]
        assert svc["depends_on"] == {s: {"condition": "service_healthy"} for s in ("mosquitto", "influxdb", "postgres")}
        env = svc["environment"]
        assert env["CITYWATCH_ROLE"] == "all" and env["CITYWATCH_STATE_URL"].startswith("postgresql://")
        assert env["CITYWATCH_STORE_URL"].startswith("influxdb://influxdb:8086/")
        assert "./citywatch.toml:/etc/citywatch/citywatch.toml:ro" in svc["volumes"]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


COMPOSE_VALUES = {"CITYWATCH_DB_PASSWORD": "a-password", "CITYWATCH_ADMIN_TOKEN": "0123456789abcdef"}


def _compose_interpolated() -> dict:
    """docker-compose.yml with its variables interpolated as compose does (``${VAR:?message}``
    must be set, ``$$`` is ``$``), from COMPOSE_VALUES."""
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    text = re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: COMPOSE_VALUES[m.group(1)], text).replace("$$", "$")
    return yaml.safe_load(text)


def test_compose_file_matches_the_compose_specs_schema():
    """compose_spec.json: the Compose specification's JSON schema as docker-compose 1.29.2 ships it
    (compose/config/compose_spec.json of its wheel, sha256 0dc04bd3...2bac, Apache-2.0)."""
    import json

    import jsonschema

    schema = json.loads((Path(__file__).parent / "compose_spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    assert [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_compose_interpolated())] == []


def test_compose_mounts_exist_and_nodes_settings_load(tmp_path):
    """Every file mounted exists, every named volume is declared, and each node's environment over
    deploy/citywatch.toml passes the real settings loader (the tokens' JSON included)."""
    compose = _compose_interpolated()
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"docker-compose.yml mounts {source}: no such file"
            else:
                assert source in compose["volumes"], f"named volume {source} not declared"
    path = tmp_path / "citywatch.toml"
    path.write_text((DEPLOY / "citywatch.toml").read_text(encoding="utf-8"))
    for node in ("citywatch-1", "citywatch-2"):
        env = dict(compose["services"][node]["environment"])
        assert env["CITYWATCH_ROLE"] == "all" and env["CITYWATCH_STATE_URL"].startswith("postgresql:")
        s = load_settings(path, env=env)
        assert s.api.listen == "0.0.0.0:8080" and s.mqtt.url == "mqtt://mosquitto:1883"
        assert s.api.tokens == [{"token": COMPOSE_VALUES["CITYWATCH_ADMIN_TOKEN"], "role": "admin", "name": "compose"}]


def test_dockerfile_installs_every_package_and_serves():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM (\S+)$", text, re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+", base), f"base image {base} not pinned"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in text, f"deploy/Dockerfile does not copy the package {package}"
    assert 'ENTRYPOINT ["citywatch"]' in text and 'CMD ["serve", "--config", "/etc/citywatch/citywatch.toml"]' in text
    assert "USER citywatch" in text and "HEALTHCHECK" in text
