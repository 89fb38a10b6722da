"""``citywatch tokens create|list|revoke`` and ``serve``'s refusal through the real executable;
a running API seeing what the command line did in another process; ``up``'s first-start token."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest
from typer.testing import CliRunner

from citywatch.api.tokens import TokenStore, split
from citywatch.cli import app
from citywatch.settings import load_settings
from citywatch.tokens_cli import closed_reason, first_start_token

from .access_support import JIANGHAN
from .api_support import Served, seeded_node
from .test_up_smoke import citywatch_cmd


def run(*args: str, config) -> subprocess.CompletedProcess:
    """The real executable (about a second or more each on a busy machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    return subprocess.run(citywatch_cmd() + [*args, "--config", str(config)], capture_output=True, text=True,
                          env=env, timeout=60)


def invoke(*args: str, config) -> tuple[int, str, str]:
    """The same command in this process: ``(exit code, stdout, stdout and stderr)``."""
    r = CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.output


@pytest.fixture
def node(tmp_path):
    with seeded_node(tmp_path / "node", tokens=False) as n:  # devices in 江汉区 and 武昌区
        (tmp_path / "citywatch.toml").write_text(f'[state]\nurl = "sqlite:///{n.state_path}"\n', encoding="utf-8")
        yield n


@pytest.fixture
def served(node):
    s = Served(node.api_app())
    yield s
    s.close()


def test_create_list_revoke_through_the_executable(node, served, tmp_path):
    config = tmp_path / "citywatch.toml"
    r = run("tokens", "create", "--role", "operator", "--name", "江汉值班", "--districts", JIANGHAN, config=config)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()  # the token alone on stdout
    assert split(token) is not None and "shown once" in r.stderr and "江汉值班" in r.stderr
    # a running API (this process) knows it at once, with its districts
    who = httpx.get(served.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert who == {"name": "江汉值班", "role": "operator", "districts": [JIANGHAN]}

    listed = run("tokens", "list", config=config)
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["id", "name", "role", "districts", "created", "last", "used", "revoked"]
    assert row.split()[1:4] == ["江汉值班", "operator", JIANGHAN] and row.split()[-1] == "-"
    assert split(token)[1] not in listed.stdout and split(token)[0] == row.split()[0]
    stored = node.registry.conn.execute("SELECT hash FROM api_tokens").fetchone()[0]
    assert split(token)[1] not in stored and len(stored) == 64  # only the hash

    r = run("tokens", "revoke", "江汉值班", config=config)
    assert r.returncode == 0 and "revoked operator token '江汉值班'" in r.stdout
    t0 = time.monotonic()
    while httpx.get(served.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
        assert time.monotonic() - t0 < 1.0, "the revoked token still worked a second after the command"
        time.sleep(0.02)
    listed = run("tokens", "list", config=config).stdout.splitlines()[1]
    assert listed.split()[-1] != "-"  # revoked, with its time


@pytest.mark.parametrize("args, message", [
    (["--role", "root", "--name", "x"], "--role: one of viewer, operator, admin, got 'root'"),
    (["--role", "viewer", "--name", "x", "--districts", "江岸区,武昌区"],
     "--districts: 江岸区 not a district of any registered device (known: 武昌区, 江汉区)"),
    (["--role", "viewer", "--name", "anonymous"], "--name: 'anonymous' is reserved"),
    (["--role", "viewer", "--name", " "], "--name: 1 to 200 characters"),
])
def test_create_refuses_bad_input_naming_it(node, tmp_path, args, message):
    code, out, both = invoke("tokens", "create", *args, config=tmp_path / "citywatch.toml")
    assert code == 1 and message in " ".join(both.split()), both
    assert out == ""


def test_names_are_unique_among_active_tokens_and_unknown_districts_need_a_flag(node, tmp_path):
    config = tmp_path / "citywatch.toml"
    assert invoke("tokens", "create", "--role", "viewer", "--name", "duty", config=config)[0] == 0
    code, _, both = invoke("tokens", "create", "--role", "viewer", "--name", "duty", config=config)
    assert code == 1 and "a token named 'duty' exists" in both
    code, _, both = invoke("tokens", "create", "--role", "viewer", "--name", "hongshan", "--districts", "洪山区",
                           "--allow-unknown-districts", config=config)
    assert code == 0 and "warning: no registered device in 洪山区" in both
    assert invoke("tokens", "revoke", "duty", config=config)[0] == 0
    code, _, both = invoke("tokens", "revoke", "duty", config=config)
    assert code == 1 and "already revoked" in both
    assert invoke("tokens", "create", "--role", "admin", "--name", "duty", config=config)[0] == 0
    code, _, both = invoke("tokens", "revoke", "nobody", config=config)
    assert code == 1 and "no token named 'nobody'" in both


def test_serve_refuses_to_start_closed_without_a_token(tmp_path):
    config = tmp_path / "citywatch.toml"
    config.write_text(f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n[mqtt]\nurl = "mqtt://127.0.0.1:9"\n',
                      encoding="utf-8")
    t0 = time.monotonic()
    r = run("serve", config=config)
    assert r.returncode == 1, r
    assert "no token exists" in r.stderr and f"citywatch tokens create --role admin --name NAME --config {config}" \
        in " ".join(r.stderr.split())
    assert len(r.stderr.strip().splitlines()) <= 3 and time.monotonic() - t0 < 30  # a reason, not a traceback


def test_closed_reason_accepts_a_stored_or_plaintext_token_or_open(tmp_path):
    def settings(**api):
        return load_settings(env={}, state={"url": f"sqlite:///{tmp_path}/state.db"}, api=api)

    store = TokenStore(tmp_path / "state.db")
    assert "no token exists" in closed_reason(settings(), store, None)
    assert closed_reason(settings(open=True), store, None) is None
    assert closed_reason(settings(tokens=[{"token": "x" * 16, "role": "admin", "name": "a"}]), store, None) is None
    store.create("ops", "viewer")
    assert closed_reason(settings(), store, None) is None
    store.revoke("ops")
    assert closed_reason(settings(), store, None) is not None  # a revoked token is none


def test_up_makes_an_admin_token_at_its_first_start_only(node, served):
    store = TokenStore(node.state_path)
    token = first_start_token(store)
    assert token is not None
    who = httpx.get(served.url + "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert who == {"name": "admin", "role": "admin", "districts": None}
    assert first_start_token(store) is None  # the next start: one exists
    store.revoke("admin")
    assert first_start_token(store) is not None  # none active: a new one (same name, reused)
