"""Device credentials: the Mosquitto hash format, the state-DB tables, the files written, the CLI.

What Mosquitto itself makes of the files is in tests/security/test_broker_identity.py.
"""

from __future__ import annotations

import base64
import csv
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citywatch.cli import app
from devices.credentials import (
    CredentialsError,
    generate,
    mosquitto_hash,
    new_secret,
    passwd_lines,
    verify,
)
from devices.db import DBError
from devices.model import Device

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
NOW = 1_764_403_200_000


@pytest.fixture
def fleet(registry):
    registry.upsert([
        Device("bridge-0001-s1", "bridge", "武昌区", asset_id="BR-0001"),
        Device("noise-0001", "noise", "江汉区", asset_id="SITE-7"),
        Device("gas-0001", "gas_meter", "江汉区", status="planned"),
        Device("toilet-0001", "toilet", "江岸区", status="retired"),
    ])
    return registry


def read_csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def stored(registry, table: str = "device_credentials") -> dict[str, tuple]:
    key = "device_id" if table == "device_credentials" else "username"
    return {r[0]: tuple(r[1:]) for r in registry.conn.execute(
        f"SELECT {key}, hash, created_at, rotated_at FROM {table}")}


# --- the hash -------------------------------------------------------------------------------------

def mosquitto_passwd(tmp_path, user: str, password: str, *algorithm: str) -> str:
    p = tmp_path / "pw"
    subprocess.run([MOSQUITTO_PASSWD, *algorithm, "-c", "-b", str(p), user, password], check=True)
    name, hashed = p.read_text().strip().split(":", 1)
    assert name == user
    return hashed


def test_known_answer_from_mosquitto_passwd(tmp_path):
    """A hash made by Mosquitto's own tool (PBKDF2-SHA512, its default) checks out here."""
    hashed = mosquitto_passwd(tmp_path, "alice", "correct horse 电池")
    assert hashed.startswith("$7$101$")
    assert verify("correct horse 电池", hashed)
    assert not verify("correct horse 电", hashed)


def test_known_answer_sha512_of_mosquitto_1_6(tmp_path):
    hashed = mosquitto_passwd(tmp_path, "bob", "s3cret", "-H", "sha512")
    assert hashed.startswith("$6$")
    assert verify("s3cret", hashed) and not verify("s3creT", hashed)


def test_own_hash_format():
    salt = bytes(range(12))
    h = mosquitto_hash("pw", salt=salt)
    _, seven, iterations, salt_b64, digest_b64 = h.split("$")
    assert (seven, iterations, salt_b64, len(digest_b64)) == ("7", "101", "AAECAwQFBgcICQoL", 88)
    assert verify("pw", h) and not verify("pW", h)
    assert mosquitto_hash("pw", salt=salt) == h  # the salt is all that varies
    assert mosquitto_hash("pw") != mosquitto_hash("pw")
    own_salt = base64.b64decode(mosquitto_hash("pw").split("$")[3])
    assert len(own_salt) == 12 and own_salt.decode("ascii").isprintable()  # text: EMQX takes it too


@pytest.mark.parametrize("bad", ["", "plain", "$7$x$AA==$AA==", "$7$0$AA==$AA==", "$7$101$!!$AA==", "$5$a$b"])
def test_unreadable_hash_is_an_error(bad):
    with pytest.raises(ValueError, match="not a Mosquitto"):
        verify("pw", bad)


def test_secret_shape():
    s = new_secret()
    assert len(s) == 32 and ":" not in s and s != new_secret()


# --- generate -------------------------------------------------------------------------------------

def test_all_new_issues_once_and_stores_only_hashes(fleet, tmp_path, state_target):
    out = generate(fleet, tmp_path / "out", now_ms=NOW, all_new=True)
    rows = read_csv(out.csv)
    assert [r["device_id"] for r in rows] == ["bridge-0001-s1", "gas-0001", "noise-0001"]  # not the retired one
    assert rows[0] | {"password": ""} == {"device_id": "bridge-0001-s1", "kind": "bridge", "district": "武昌区",
                                          "asset_id": "BR-0001", "username": "bridge-0001-s1", "password": ""}
    assert stat.S_IMODE(out.csv.stat().st_mode) == 0o600
    db = stored(fleet)
    for r in rows:
        h, created, rotated = db[r["device_id"]]
        assert verify(r["password"], h) and (created, rotated) == (NOW, None)
        assert r["password"] not in h
    if isinstance(state_target, Path):  # SQLite: the file's bytes (PostgreSQL: the rows above)
        raw = state_target.read_bytes() + Path(f"{state_target}-wal").read_bytes()
        assert not any(r["password"].encode() in raw for r in rows)  # no secret in the state DB
    consumer = read_csv(out.consumer_csv)
    assert [c["username"] for c in consumer] == ["citywatch"]
    assert verify(consumer[0]["password"], stored(fleet, "consumer_credentials")["citywatch"][0])


def test_passwd_and_acl(fleet, tmp_path):
    out = generate(fleet, tmp_path / "out", now_ms=NOW, all_new=True, consumers=["citywatch", "rules-1"],
                   shared_group="ingest")
    db = stored(fleet)
    cons = stored(fleet, "consumer_credentials")
    assert out.passwd.read_text().splitlines() == [
        f"citywatch:{cons['citywatch'][0]}", f"rules-1:{cons['rules-1'][0]}",
        f"bridge-0001-s1:{db['bridge-0001-s1'][0]}", f"gas-0001:{db['gas-0001'][0]}",
        f"noise-0001:{db['noise-0001'][0]}"]
    acl = [line for line in out.acl.read_text().splitlines() if line and not line.startswith("#")]
    assert acl == [
        "user citywatch", "topic read city/#", "topic read $share/ingest/city/#",
        "user rules-1", "topic read city/#", "topic read $share/ingest/city/#",
        "user bridge-0001-s1", "topic write city/bridge/bridge-0001-s1/#",
        "user gas-0001", "topic write city/gas_meter/gas-0001/#",
        "user noise-0001", "topic write city/noise/noise-0001/#"]
    assert (out.devices, out.consumers) == (3, ["citywatch", "rules-1"])


def test_regenerated_from_the_db_is_identical_and_shows_no_secret_again(fleet, tmp_path):
    first = generate(fleet, tmp_path / "out", now_ms=NOW, all_new=True)
    passwd, acl, shown = first.passwd.read_bytes(), first.acl.read_bytes(), first.csv.read_bytes()
    again = generate(fleet, tmp_path / "out", now_ms=NOW + 1, all_new=True)
    assert (again.issued, again.csv, again.consumer_csv) == ([], None, None)
    assert again.passwd.read_bytes() == passwd and again.acl.read_bytes() == acl
    assert first.csv.read_bytes() == shown  # untouched
    assert list(passwd_lines(fleet.conn)) == passwd.decode().splitlines(keepends=True)


def test_named_devices_and_rotation(fleet, tmp_path):
    first = generate(fleet, tmp_path / "a", now_ms=NOW, device_ids=["noise-0001"])
    old = read_csv(first.csv)[0]["password"]
    same = generate(fleet, tmp_path / "b", now_ms=NOW, device_ids=["noise-0001", "gas-0001"])
    assert same.skipped == ["noise-0001"] and [i.username for i in same.issued] == ["gas-0001"]
    rot = generate(fleet, tmp_path / "c", now_ms=NOW + 5, device_ids=["noise-0001"], rotate=True)
    new = read_csv(rot.csv)
    assert [(r["device_id"], r["password"] != old) for r in new] == [("noise-0001", True)]
    h, created, rotated = stored(fleet)["noise-0001"]
    assert verify(new[0]["password"], h) and not verify(old, h) and (created, rotated) == (NOW, NOW + 5)
    assert rot.issued[0].rotated


def test_existing_csv_is_never_overwritten(fleet, tmp_path):
    out = generate(fleet, tmp_path, now_ms=NOW, device_ids=["noise-0001"])
    before, hashes = out.csv.read_bytes(), stored(fleet)
    with pytest.raises(CredentialsError, match="credentials.csv exists"):
        generate(fleet, tmp_path, now_ms=NOW, device_ids=["gas-0001"])
    assert out.csv.read_bytes() == before and stored(fleet) == hashes  # nothing changed
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_retiring_revokes(fleet, tmp_path):
    generate(fleet, tmp_path / "a", now_ms=NOW, all_new=True)
    fleet.upsert([Device("noise-0001", "noise", "江汉区", status="retired")])
    out = generate(fleet, tmp_path / "b", now_ms=NOW)
    assert out.revoked == 1 and "noise-0001" not in stored(fleet)
    assert "noise-0001" not in out.passwd.read_text() and "noise-0001" not in out.acl.read_text()
    # brought back, it needs a new secret: the old one is gone
    fleet.upsert([Device("noise-0001", "noise", "江汉区")])
    assert [i.username for i in generate(fleet, tmp_path / "c", now_ms=NOW, all_new=True).issued] == ["noise-0001"]


@pytest.mark.parametrize("kwargs, message", [
    ({"device_ids": ["nope-1", "noise-0001"]}, "--devices: not in the registry: nope-1"),
    ({"device_ids": ["toilet-0001"]}, "retired .*toilet-0001"),
    ({"device_ids": ["noise-0001"], "all_new": True}, "not both"),
    ({"rotate": True, "all_new": True}, "--rotate replaces the secrets of the devices named by --devices"),
    ({"consumers": ["noise-0001"]}, "consumer username 'noise-0001' is a registered device id"),
    ({"consumers": ["bad:name"]}, "consumer username 'bad:name'"),
])
def test_bad_requests_change_nothing(fleet, tmp_path, kwargs, message):
    with pytest.raises(CredentialsError, match=message):
        generate(fleet, tmp_path / "out", now_ms=NOW, **kwargs)
    assert not (tmp_path / "out" / "passwd").exists() and not (tmp_path / "out" / "credentials.csv").exists()
    try:
        assert stored(fleet) == {} and stored(fleet, "consumer_credentials") == {}
    except DBError:
        pass  # refused before the tables were created


def test_consumer_with_its_configured_password_and_rotation(fleet, tmp_path):
    out = generate(fleet, tmp_path / "a", now_ms=NOW, consumers=["ingest-1"], consumer_password="from-config")
    assert out.consumer_csv is None and out.issued == []  # the operator has it already
    assert verify("from-config", stored(fleet, "consumer_credentials")["ingest-1"][0])
    rot = generate(fleet, tmp_path / "b", now_ms=NOW, consumers=["ingest-1"], consumer_password="from-config",
                   rotate_consumers=True)
    new = read_csv(rot.consumer_csv)[0]["password"]
    assert new != "from-config" and verify(new, stored(fleet, "consumer_credentials")["ingest-1"][0])


# --- the command ----------------------------------------------------------------------------------

def test_cli(tmp_path):
    cfg = tmp_path / "citywatch.toml"
    cfg.write_text(f'role = "ingest"\n[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
                   '[mqtt]\nusername = "ingest-a"\npassword = "pw-a"\nshared_group = "ingest"\n', encoding="utf-8")
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,kind,district\nnoise-1,noise,江汉区\nnoise-2,noise,江汉区\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["devices", "import", str(devices), "--config", str(cfg)]).exit_code == 0
    out = tmp_path / "out"
    r = runner.invoke(app, ["devices", "credentials", "--out", str(out), "--all-new", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "issued 2 new and 0 rotated device secrets" in r.output and "consumers ingest-a" in r.output
    assert [row["device_id"] for row in read_csv(out / "credentials.csv")] == ["noise-1", "noise-2"]
    assert not (out / "consumer.csv").exists()  # [mqtt] password is the consumer's
    assert "$share/ingest/city/#" in (out / "acl").read_text()
    r = runner.invoke(app, ["devices", "credentials", "--out", str(out), "--devices", "noise-1,noise-9",
                            "--config", str(cfg)])
    assert r.exit_code == 1 and "not in the registry: noise-9" in r.output


# --- EMQX -----------------------------------------------------------------------------------------

def emqx_check(password: str, salt: str, password_hash: str) -> bool:
    """What EMQX's built-in database does with pbkdf2/sha512/101/64: PBKDF2 over the salt as
    text, compared in hex (emqx_authn_password_hashing, emqx_passwd)."""
    import hashlib
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt.encode(), 101, 64).hex() == password_hash.lower()


def test_emqx_files_from_the_same_hashes(fleet, tmp_path):
    out = generate(fleet, tmp_path, now_ms=NOW, all_new=True, emqx=True)
    secrets_ = {r["username"]: r["password"] for r in read_csv(out.csv)} | {
        r["username"]: r["password"] for r in read_csv(out.consumer_csv)}
    users = read_csv(tmp_path / "emqx-users.csv")
    assert [u["user_id"] for u in users] == ["citywatch", "bridge-0001-s1", "gas-0001", "noise-0001"]
    for u in users:
        assert len(u["salt"]) == 12 and u["is_superuser"] == "false"
        assert emqx_check(secrets_[u["user_id"]], u["salt"], u["password_hash"])
        assert not emqx_check(secrets_[u["user_id"]] + "x", u["salt"], u["password_hash"])
    assert (tmp_path / "emqx-acl.conf").read_text().splitlines()[2:] == [
        '{allow, {user, "citywatch"}, subscribe, ["city/#", "$share/citywatch/city/#"]}.',
        '{allow, {user, "bridge-0001-s1"}, publish, ["city/bridge/bridge-0001-s1/#"]}.',
        '{allow, {user, "gas-0001"}, publish, ["city/gas_meter/gas-0001/#"]}.',
        '{allow, {user, "noise-0001"}, publish, ["city/noise/noise-0001/#"]}.',
        "{deny, all}."]


def test_emqx_refuses_a_binary_salt():
    from devices.credentials import emqx_user
    with pytest.raises(ValueError, match="not text"):
        emqx_user("alice", mosquitto_hash("pw", salt=bytes(range(200, 212))))  # as mosquitto_passwd's may be


def test_acl_by_id_only_is_one_pattern(fleet, tmp_path):
    out = generate(fleet, tmp_path, now_ms=NOW, all_new=True, acl_by_id_only=True)
    acl = [line for line in out.acl.read_text().splitlines() if line and not line.startswith("#")]
    assert acl == ["user citywatch", "topic read city/#", "topic read $share/citywatch/city/#",
                   "pattern write city/+/%u/#"]
    assert len(out.passwd.read_text().splitlines()) == 4  # the accounts are the same
