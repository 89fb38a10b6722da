"""What every ``citywatch`` subcommand shares: the consoles, ``--config``, the one-line failure
(operator.md: exit status non-zero with a one-line reason) and loading the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from citywatch.settings import ConfigError, Settings, load_settings

err = Console(stderr=True)
out = Console()
for _c in (err, out):  # not on a terminal (a pipe, the journal): one line per message, never wrapped at 80 columns
    _c.soft_wrap = not _c.is_terminal

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print("[bold red]error:[/] " + escape(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings(config: Path | None, **overrides) -> Settings:
    """The settings, or exit 2 with the bad key named."""
    try:
        return load_settings(config, **overrides)
    except ConfigError as e:
        fail(f"configuration: {e}", 2)
        raise  # unreachable
