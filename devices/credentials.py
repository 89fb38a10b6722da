"""Device identity for the broker: per-device MQTT secrets from the registry (device-protocol.md:
a device's MQTT username is its ``device_id``; it may publish only below
``city/{kind}/{its id}/``), stored hashed, and the files Mosquitto needs.

- A secret is 24 random bytes, URL-safe base64 (32 characters). It is shown once, in the
  installers' ``credentials.csv``; the state DB keeps only its hash.
- The hash kept is exactly the line Mosquitto reads (``mosquitto_passwd``'s ``$7$`` format:
  PBKDF2-HMAC-SHA512, ``$7$<iterations>$<salt base64>$<hash base64>``), so the password file is
  regenerated from the state DB for every active account without knowing a password.
- The salt is 12 random URL-safe ASCII characters (Mosquitto reads 12 bytes of salt), so the
  same hash also serves EMQX's built-in database (PBKDF2 with the salt as text, the hash in hex):
  ``--emqx`` writes its user import file and ACL file from the same rows (docs/SECURITY.md).
- ``passwd``: every device that is not ``retired`` and has a secret, and the consumer accounts.
  ``acl``: a device may publish only ``city/{its kind}/{its id}/#`` and read nothing; a consumer
  may only read ``city/#`` (and its shared subscription) and publish nothing. A retired device
  has neither: its secret is revoked (deleted) when the files are next generated.

Tables (state DB): ``device_credentials(device_id, hash, created_at, rotated_at)`` and
``consumer_credentials(username, hash, created_at, rotated_at)``; times in ms since the epoch.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices import db
from devices.db import DBError, write_transaction
from devices.errors import RegistryError
from devices.model import DEVICE_ID_RE
from devices.registry import Registry

__all__ = [
    "CREDENTIALS_CSV", "CONSUMER_CSV", "CredentialsError", "Issued", "Outcome", "PASSWD", "ACL",
    "mosquitto_hash", "new_secret", "verify", "generate", "passwd_lines", "acl_lines", "emqx_user",
]

# mosquitto_passwd 2.0's own figures. The iteration count is low for a KDF, but what it protects
# is a 192-bit random secret (no dictionary to try), and Mosquitto pays it on every CONNECT in its
# one thread: at 101 iterations one check took 0.14 ms here (hashlib, the same OpenSSL), so a
# reconnect storm of 100,000 devices costs about 14 s of the broker's CPU, ten times that at 1,010.
ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
SECRET_BYTES = 24

CREDENTIALS_CSV = "credentials.csv"
EMQX_USERS = "emqx-users.csv"
EMQX_ACL = "emqx-acl.conf"
CONSUMER_CSV = "consumer.csv"
PASSWD = "passwd"
ACL = "acl"

CSV_COLUMNS = ("device_id", "kind", "district", "asset_id", "username", "password")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_credentials (
    device_id  TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumer_credentials (
    username   TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
) WITHOUT ROWID
"""


class CredentialsError(RegistryError):
    """A credentials request that cannot be carried out; the message says what to change."""


# --- the hash ------------------------------------------------------------------------------------

def new_secret() -> str:
    """A fresh device or consumer secret: 24 random bytes, URL-safe base64 (no ``:``)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``password`` hashed as ``mosquitto_passwd`` 2.0 does by default (``-H sha512-pbkdf2``):
    ``$7$<iterations>$<salt base64>$<PBKDF2-HMAC-SHA512 base64>``."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    salt = secrets.token_urlsafe(SALT_BYTES * 3 // 4).encode("ascii") if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a Mosquitto password-file hash: ``$7$`` (PBKDF2-SHA512) or
    ``$6$`` (salted SHA-512, Mosquitto 1.6's). Raises ValueError on a hash it cannot read."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[:2] == ["", "7"]:
            iterations = int(parts[2])
            if iterations < 1:
                raise ValueError
            salt, want = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(want))
        elif len(parts) == 4 and parts[:2] == ["", "6"]:
            salt, want = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
            got = hashlib.sha512(password.encode() + salt).digest()
        else:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ValueError(f"not a Mosquitto $7$ or $6$ password hash: {hashed[:20]!r}...") from None
    return hmac.compare_digest(got, want)


def emqx_user(username: str, hashed: str) -> tuple[str, str, str, str]:
    """A ``$7$`` hash made here as a row of EMQX's user import file (``user_id, password_hash,
    salt, is_superuser``) for its built-in database with ``password_hash_algorithm {name =
    pbkdf2, mac_fun = sha512, iterations = 101, dk_length = 64}``: the same PBKDF2, the salt as
    text, the hash in hex. Raises ValueError for a hash with a binary salt (``mosquitto_passwd``'s)
    or other iterations."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[:3] != ["", "7", str(ITERATIONS)]:
        raise ValueError(f"{username}: not a $7${ITERATIONS}$ hash")
    try:
        salt = base64.b64decode(parts[3], validate=True).decode("ascii")
        digest = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"{username}: the salt is not text; rotate the secret to make an EMQX hash") from None
    return username, digest.hex(), salt, "false"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- the state DB --------------------------------------------------------------------------------

def _ensure_schema(conn: Any) -> None:
    db.migrate(conn, "credentials", [_SCHEMA])


@dataclass(frozen=True, slots=True)
class Issued:
    """A secret just generated: its only appearance in clear. ``kind`` is ``consumer`` for a
    consumer account."""

    username: str
    password: str
    kind: str
    district: str = ""
    asset_id: str = ""
    rotated: bool = False


@dataclass(slots=True)
class Outcome:
    """What :func:`generate` did. ``csv`` / ``consumer_csv`` are None when nothing new was
    issued of that sort (no file written)."""

    issued: list[Issued] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # asked for, already had a secret
    revoked: int = 0  # secrets of retired or unregistered devices deleted
    devices: int = 0  # device accounts in passwd
    consumers: list[str] = field(default_factory=list)  # consumer accounts in passwd
    csv: Path | None = None
    consumer_csv: Path | None = None
    passwd: Path | None = None
    acl: Path | None = None


def _check_username(name: str) -> None:
    if not DEVICE_ID_RE.match(name):
        raise CredentialsError(
            f"consumer username {name!r}: expected letters, digits, '_', '.', '-' (at most 64, "
            "starting with a letter or digit), as for a device id")


def _selected_devices(conn: Any, device_ids: Sequence[str] | None, all_new: bool,
                      rotate: bool) -> tuple[list[tuple[str, str, str, str, bool]], list[str]]:
    """The devices to issue a secret to, as (device_id, kind, district, asset_id, has_one),
    and the asked-for ones skipped because they have a secret already."""
    if all_new:
        rows = conn.execute(
            "SELECT d.device_id, d.kind, d.district, d.asset_id FROM devices d"
            " LEFT JOIN device_credentials c USING (device_id)"
            " WHERE d.status != 'retired' AND c.device_id IS NULL ORDER BY d.device_id").fetchall()
        return [(*tuple(r), False) for r in rows], []
    if not device_ids:
        return [], []
    wanted = list(dict.fromkeys(device_ids))
    found: dict[str, tuple] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for r in conn.execute(
                "SELECT d.device_id, d.kind, d.district, d.asset_id, d.status, c.device_id IS NOT NULL"
                " FROM devices d LEFT JOIN device_credentials c USING (device_id)"
                f" WHERE d.device_id IN ({','.join('?' * len(chunk))})", chunk):
            found[r[0]] = tuple(r)
    unknown = [d for d in wanted if d not in found]
    retired = [d for d in wanted if d in found and found[d][4] == "retired"]
    problems = []
    if unknown:
        problems.append(f"not in the registry: {', '.join(unknown[:20])}"
                        + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
    if retired:
        problems.append(f"retired (a retired device gets no secret): {', '.join(retired[:20])}"
                        + (f" and {len(retired) - 20} more" if len(retired) > 20 else ""))
    if problems:
        raise CredentialsError("--devices: " + "; ".join(problems) + "; nothing changed")
    chosen, skipped = [], []
    for d in wanted:
        dev_id, kind, district, asset_id, _, has = found[d]
        if has and not rotate:
            skipped.append(d)
        else:
            chosen.append((dev_id, kind, district, asset_id, bool(has)))
    return chosen, skipped


def passwd_lines(conn: Any) -> Iterator[str]:
    """The Mosquitto password file, one ``user:hash`` line each, sorted by username: consumers,
    then every device that is not retired and has a secret."""
    for name, h in conn.execute("SELECT username, hash FROM consumer_credentials ORDER BY username"):
        yield f"{name}:{h}\n"
    for dev_id, h in conn.execute(
            "SELECT c.device_id, c.hash FROM device_credentials c JOIN devices d USING (device_id)"
            " WHERE d.status != 'retired' ORDER BY c.device_id"):
        yield f"{dev_id}:{h}\n"


def acl_lines(conn: Any, shared_group: str, by_id_only: bool = False) -> Iterator[str]:
    """The Mosquitto ACL: consumers read ``city/#`` (and ``$share/<group>/city/#``), devices
    write ``city/{kind}/{id}/#``; nothing else is allowed to anyone.

    ``by_id_only``: instead of two lines per device, one pattern for all,
    ``pattern write city/+/%u/#`` (own id, any kind; the decoder quarantines a kind that is not
    the registered one). Mosquitto 2.0.11 loads per-user ACL lines in quadratic time (measured in
    docs/SECURITY.md: 40,000 devices 8.7 s, 100,000 about 150 s, the broker serving nothing
    meanwhile); a pattern costs nothing to load."""
    yield ("# Generated by `citywatch devices credentials` from the registry; regenerate, do not edit.\n"
           + ("# A device (username = device_id) may publish only below city/+/{its id}/ (the decoder\n"
              "# rejects a kind that is not its registered one) and read nothing; a consumer may only\n"
              "# read city/#. No lines for anonymous clients.\n" if by_id_only else
              "# A device (username = device_id) may publish only below city/{its kind}/{its id}/ and\n"
              "# read nothing; a consumer may only read city/#. No lines for anonymous clients.\n"))
    for (name,) in conn.execute("SELECT username FROM consumer_credentials ORDER BY username"):
        yield f"\nuser {name}\ntopic read city/#\ntopic read $share/{shared_group}/city/#\n"
    if by_id_only:
        yield "\npattern write city/+/%u/#\n"
        return
    for dev_id, kind in conn.execute(
            "SELECT c.device_id, d.kind FROM device_credentials c JOIN devices d USING (device_id)"
            " WHERE d.status != 'retired' ORDER BY c.device_id"):
        yield f"\nuser {dev_id}\ntopic write city/{kind}/{dev_id}/#\n"


def _accounts(conn: Any) -> Iterator[tuple[str, str, str | None]]:
    """(username, hash, kind) of every active account; kind None for a consumer."""
    for name, h in conn.execute("SELECT username, hash FROM consumer_credentials ORDER BY username"):
        yield name, h, None
    yield from conn.execute(
        "SELECT c.device_id, c.hash, d.kind FROM device_credentials c JOIN devices d USING (device_id)"
        " WHERE d.status != 'retired' ORDER BY c.device_id")


def emqx_users_lines(conn: Any) -> Iterator[str]:
    """EMQX's user import file (CSV) for its built-in database, from the same hashes."""
    yield "user_id,password_hash,salt,is_superuser\n"
    for name, h, _ in _accounts(conn):
        yield ",".join(emqx_user(name, h)) + "\n"


def emqx_acl_lines(conn: Any, shared_group: str) -> Iterator[str]:
    """EMQX's ACL file with the rules of :func:`acl_lines`, then ``{deny, all}``."""
    yield ("%% Generated by `citywatch devices credentials --emqx` from the registry; regenerate, do not edit.\n"
           "%% A device may publish only below city/{its kind}/{its id}/; a consumer may only subscribe.\n")
    for name, _, kind in _accounts(conn):
        if kind is None:
            yield f'{{allow, {{user, "{name}"}}, subscribe, ["city/#", "$share/{shared_group}/city/#"]}}.\n'
        else:
            yield f'{{allow, {{user, "{name}"}}, publish, ["city/{kind}/{name}/#"]}}.\n'
    yield "{deny, all}.\n"


def _write_atomic(path: Path, lines: Iterable[str]) -> int:
    """Write ``lines`` to ``path`` through a temporary file and a rename (mode 0600); returns
    the line count."""
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:
            for line in lines:
                f.write(line)
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def _new_secret_file(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Write a CSV of secrets to a temporary file beside ``path`` (0600, created exclusively);
    :func:`generate` renames it into place once the hashes are committed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def generate(registry: Registry, out_dir: Path, *, now_ms: int, device_ids: Sequence[str] | None = None,
             all_new: bool = False, rotate: bool = False, consumers: Sequence[str] = ("citywatch",),
             consumer_password: str = "", rotate_consumers: bool = False, shared_group: str = "citywatch",
             acl_by_id_only: bool = False, emqx: bool = False, secret: Callable[[], str] = new_secret) -> Outcome:
    """Issue secrets and write ``out_dir``'s files; one transaction in the state DB.

    - ``device_ids``: issue a secret to each of these that has none (with ``rotate``: replace
      theirs too). Each must be registered and not retired, else nothing changes.
    - ``all_new``: issue a secret to every device that is not retired and has none.
    - ``consumers``: each gets an account if it has none: ``consumer_password`` when given
      (the ``[mqtt] password`` a node already uses; not written out), else a new secret. With
      ``rotate_consumers`` they get a new secret.
    - Secrets of retired (or unregistered) devices are revoked.

    Writes ``credentials.csv`` (devices, only those issued now) and ``consumer.csv`` (consumers
    issued now) with mode 0600, refusing to overwrite an existing one (it holds secrets shown
    once); and ``passwd`` and ``acl`` for every active account (``acl_by_id_only``: see
    :func:`acl_lines`; with ``emqx``, also
    ``emqx-users.csv`` and ``emqx-acl.conf``). Raises :class:`CredentialsError`.
    """
    if device_ids and all_new:
        raise CredentialsError("give --devices or --all-new, not both")
    if rotate and not device_ids:
        raise CredentialsError("--rotate replaces the secrets of the devices named by --devices ID,...")
    if not consumers:
        raise CredentialsError("no consumer account named")
    for name in consumers:
        _check_username(name)
    _check_username(shared_group)
    out_dir = Path(out_dir)
    out = Outcome(csv=out_dir / CREDENTIALS_CSV, consumer_csv=out_dir / CONSUMER_CSV,
                  passwd=out_dir / PASSWD, acl=out_dir / ACL)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CredentialsError(f"--out {out_dir}: {e.strerror or e}") from None

    conn = registry.conn
    temps: list[Path] = []
    try:
        _ensure_schema(conn)
        with write_transaction(conn):
            clash = [c for c in consumers
                     if conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (c,)).fetchone()]
            if clash:
                raise CredentialsError(f"consumer username {clash[0]!r} is a registered device id: "
                                       "choose another (--consumer NAME)")
            chosen, out.skipped = _selected_devices(conn, device_ids, all_new, rotate)
            out.revoked = conn.execute(
                "DELETE FROM device_credentials WHERE device_id NOT IN"
                " (SELECT device_id FROM devices WHERE status != 'retired')").rowcount
            for dev_id, kind, district, asset_id, has in chosen:
                pw = secret()
                out.issued.append(Issued(dev_id, pw, kind, district, asset_id, rotated=has))
            conn.executemany(
                "INSERT INTO device_credentials (device_id, hash, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash, rotated_at = excluded.created_at",
                [(i.username, mosquitto_hash(i.password), now_ms) for i in out.issued])

            consumer_issued: list[Issued] = []
            for name in dict.fromkeys(consumers):
                has = conn.execute("SELECT 1 FROM consumer_credentials WHERE username = ?", (name,)).fetchone()
                if has and not rotate_consumers:
                    continue
                if consumer_password and not has:
                    pw, shown = consumer_password, False
                else:
                    pw, shown = secret(), True
                conn.execute(
                    "INSERT INTO consumer_credentials (username, hash, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (username) DO UPDATE SET hash = excluded.hash, rotated_at = excluded.created_at",
                    (name, mosquitto_hash(pw), now_ms))
                if shown:
                    consumer_issued.append(Issued(name, pw, "consumer", rotated=bool(has)))

            for path, items in ((out.csv, out.issued), (out.consumer_csv, consumer_issued)):
                if items and path.exists():
                    raise CredentialsError(
                        f"{path} exists and holds secrets shown only once: hand it over and move it away, "
                        "then run again (nothing changed)")
            if out.issued:
                temps.append(_new_secret_file(out.csv, CSV_COLUMNS, (
                    (i.username, i.kind, i.district, i.asset_id, i.username, i.password) for i in out.issued)))
            else:
                out.csv = None
            if consumer_issued:
                temps.append(_new_secret_file(out.consumer_csv, ("username", "password"),
                                              ((i.username, i.password) for i in consumer_issued)))
            else:
                out.consumer_csv = None
            out.issued.extend(consumer_issued)
        # committed: the secrets files take their place, then the broker's files
        for tmp in temps:
            os.replace(tmp, tmp.with_name(tmp.name[1:-len(".tmp")]))
        temps.clear()
        _write_atomic(out.passwd, passwd_lines(conn))
        _write_atomic(out.acl, acl_lines(conn, shared_group, acl_by_id_only))
        if emqx:
            try:
                _write_atomic(out_dir / EMQX_USERS, emqx_users_lines(conn))
            except ValueError as e:
                raise CredentialsError(f"--emqx: {e}") from None
            _write_atomic(out_dir / EMQX_ACL, emqx_acl_lines(conn, shared_group))
        out.consumers = [r[0] for r in conn.execute("SELECT username FROM consumer_credentials ORDER BY username")]
        out.devices = conn.execute(
            "SELECT count(*) FROM device_credentials c JOIN devices d USING (device_id)"
            " WHERE d.status != 'retired'").fetchone()[0]
    except DBError as e:
        raise CredentialsError(f"state database: {e}") from None
    except OSError as e:
        raise CredentialsError(f"{e.filename or out_dir}: {e.strerror or e}") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return out
