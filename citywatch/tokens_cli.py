"""``citywatch tokens create|list|revoke``, and the access checks of ``serve`` and ``up``.

A token is printed once, on stdout alone (``TOKEN=$(citywatch tokens create ...)`` keeps it);
what was made goes to stderr. Only its hash is stored (:mod:`citywatch.api.tokens`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from citywatch.api.tokens import Token, TokenError, TokenStore
from citywatch.console import ConfigOpt, err, out, settings
from citywatch.console import fail as _fail
from citywatch.settings import Settings

app = typer.Typer(no_args_is_help=True, help="API tokens: create (shown once, stored hashed), list, revoke.")
RESERVED = frozenset({"anonymous"})  # what the open API records for a caller without a token
UP_TOKEN = "admin"  # the name of the token `citywatch up` makes at its first start




def open_store(s: Settings) -> TokenStore:
    from devices.db import parse_url

    return TokenStore(parse_url(s.state.url))


def known_districts(s: Settings) -> list[str]:
    from devices.db import parse_url
    from devices.registry import Registry

    reg = Registry.open(parse_url(s.state.url))
    try:
        return reg.districts()
    finally:
        reg.close()


def check_districts(wanted: list[str], known: list[str], allow_unknown: bool) -> list[str]:
    """The districts of ``wanted`` not in the registry; TokenError unless ``allow_unknown``."""
    unknown = [d for d in wanted if d not in known]
    if unknown and not allow_unknown:
        shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "") if known else "none: the registry is empty"
        raise TokenError(f"--districts: {', '.join(unknown)} not a district of any registered device (known: "
                         f"{shown}); import the devices first, or pass --allow-unknown-districts")
    return unknown


@app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="viewer (read), operator (act on alerts), admin (all).")],
    name: Annotated[str, typer.Option("--name", help="Unique; recorded as who acknowledged or silenced.")],
    districts: Annotated[str, typer.Option(
        "--districts", help="Comma-separated districts the token is limited to (default: all).")] = "",
    allow_unknown: Annotated[bool, typer.Option(
        "--allow-unknown-districts", help="Accept districts with no registered device yet (a warning).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a token; it is printed once on stdout and stored only hashed."""
    s = settings(config)
    wanted = [d.strip() for d in districts.replace("，", ",").split(",") if d.strip()] if districts else None
    try:
        if name.strip() in RESERVED:
            raise TokenError(f"--name: {name.strip()!r} is reserved (the open API's caller without a token)")
        unknown = check_districts(wanted, known_districts(s), allow_unknown) if wanted is not None else []
        token, text = open_store(s).create(name, role, wanted)
    except TokenError as e:
        _fail(str(e))
    if unknown:
        err.print(f"warning: no registered device in {', '.join(unknown)} yet", highlight=False)
    scope = f"districts {', '.join(token.districts)}" if token.districts else "all districts"
    err.print(f"created {token.role} token {token.name!r} ({scope}); it is shown once, keep it now:", highlight=False)
    print(text)


def _when(ms: int | None, tz: ZoneInfo) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


def _row(t: Token, tz: ZoneInfo) -> list[str]:
    return [t.id, t.name, t.role, ",".join(t.districts) if t.districts else "(all)",
            _when(t.created_ms, tz), _when(t.last_used_ms, tz), _when(t.revoked_ms, tz)]


@app.command("list")
def list_tokens(config: ConfigOpt = None) -> None:
    """Every token: id, name, role, districts, created, last used, revoked (never the secret).
    Last use is written at most once a minute by a running API."""
    s = settings(config)
    rows = [["id", "name", "role", "districts", "created", "last used", "revoked"]]
    rows += [_row(t, s.tz) for t in open_store(s).list()]
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip())


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@app.command("revoke")
def revoke(name_or_id: Annotated[str, typer.Argument(help="The token's name or id.")],
           config: ConfigOpt = None) -> None:
    """Revoke a token: a running API refuses it within a second."""
    s = settings(config)
    try:
        t = open_store(s).revoke(name_or_id)
    except TokenError as e:
        _fail(str(e))
    out.print(f"revoked {t.role} token {t.name!r} ({t.id})", highlight=False)


def closed_reason(s: Settings, store: TokenStore, config: Path | None) -> str | None:
    """Why ``serve`` must not start: no token anywhere and the API not declared open; else None."""
    if s.api.open or s.api.tokens or store.count_active():
        return None
    where = f" --config {config}" if config else ""
    return ("the API would be closed to everyone: no token exists. Create one with `citywatch tokens create "
            f"--role admin --name NAME{where}`, or set [api] open = true to serve it open")


def first_start_token(store: TokenStore) -> str | None:
    """At ``up``'s first start (no active token in the state DB), an admin token's text; None if
    one exists already."""
    if store.count_active():
        return None
    return store.create(UP_TOKEN, "admin")[1]
