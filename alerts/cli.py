"""``citywatch rules ...``: the rule-file commands (the lead mounts ``app`` as ``rules``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import RuleError
from .rules import check_file

app = typer.Typer(help="Alert rules: validate rule files and show what they define.",
                  no_args_is_help=True)


@app.callback()
def _rules() -> None:
    """Alert rules: validate rule files and show what they define."""


@app.command("check")
def check(file: Path = typer.Argument(..., help="A YAML rule file (see alerts/pack/default.yaml).")) -> None:
    """Validate FILE and print its rules; exit 1 with the reason if it is wrong.

    Rules that override a built-in rule by id are checked merged over that rule.
    """
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
