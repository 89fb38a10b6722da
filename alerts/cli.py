"""``citywatch rules ...``: the rule-file commands (the lead mounts ``app`` as ``rules``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import RuleError
from .rules import check_file

# Set by the command-line application that mounts ``app``: loads and validates a config file
# (exiting with its one-line reason when it is wrong).
config_from_file: Callable[[Path], object] | None = None

app = typer.Typer(help="Alert rules: validate rule files and show what they define.",
                  no_args_is_help=True)


@app.callback()
def _rules() -> None:
    """Alert rules: validate rule files and show what they define."""


@app.command("check")
def check(file: Path = typer.Argument(..., help="A YAML rule file (see alerts/pack/default.yaml)."),
          config: Path | None = typer.Option(None, "--config", "-c",
                                             help="TOML config file (accepted like every subcommand's; "
                                                  "a rule file is checked on its own).")) -> None:
    """Validate FILE and print its rules; exit 1 with the reason if it is wrong.

    Rules that override a built-in rule by id are checked merged over that rule. ``--config`` is
    accepted (operator.md gives it to every subcommand) and, when given, must be a valid config.
    """
    if config is not None and config_from_file is not None:
        config_from_file(config)  # a bad config exits 2 naming the key, as for every subcommand
    try:
        rules = check_file(file)
    except RuleError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    table = Table(title=f"{file}: {len(rules)} rule(s)", show_lines=False)
    for col in ("id", "kind", "severity", "condition", "source", "enabled"):
        table.add_column(col, overflow="fold")
    for r in rules:
        table.add_row(r.id, r.kind, "/".join(r.severities), r.describe_condition(), r.source,
                      "yes" if r.enabled else "no")
    Console().print(table)
