"""``citywatch dashboards build|push`` (operator.md): wiring only, the work is in
dashboards/provisioning.py and dashboards/push.py. Nothing here imports the SDK at import time,
so ``citywatch`` works without the ``dashboards`` extra."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(no_args_is_help=True, help="Grafana boards: build them and their provisioning files, push them.")
err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 1) -> None:
    err.print("[bold red]error:[/] " + escape(message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(config: Path | None):
    from citywatch.settings import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as e:
        _fail(f"configuration: {e}", 2)


@app.command("build")
def build_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    dashboards_path: Annotated[str | None, typer.Option(
        "--dashboards-path", help="Where Grafana will read the JSON (default: OUT/dashboards).")] = None,
) -> None:
    """Write every board's JSON and Grafana's provisioning files into --out."""
    s = _settings(config)
    from dashboards import MissingSDK

    try:
        from dashboards.provisioning import build

        files = build(out_dir, s, dashboards_path=dashboards_path)
    except MissingSDK as e:
        _fail(str(e))
    except ImportError as e:
        from dashboards import INSTALL_HINT

        _fail(f"{e.name or e} is not installed: {INSTALL_HINT}")
    except (ValueError, OSError) as e:
        _fail(str(e))
    out.print(f"wrote {len(files)} files into {escape(str(out_dir))} (language {s.dashboards.language})",
              highlight=False)


@app.command("push")
def push_cmd(
    url: Annotated[str, typer.Option("--url", help="Grafana's base URL, e.g. http://grafana:3000")],
    token: Annotated[str, typer.Option("--token", help="A Grafana service-account token (or $GRAFANA_TOKEN).",
                                       envvar="GRAFANA_TOKEN")] = "",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The build directory (built first if empty).")] = Path(
        "grafana"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
) -> None:
    """Upload the boards to Grafana: the folder, then each board overwritten by uid."""
    s = _settings(config)
    from dashboards import MissingSDK

    try:
        from dashboards.provisioning import build
        from dashboards.push import PushError, push

        if not (out_dir / "dashboards").is_dir():
            build(out_dir, s)
        uids = push(out_dir, url, token or os.environ.get("GRAFANA_TOKEN", ""), lang=s.dashboards.language)
    except MissingSDK as e:
        _fail(str(e))
    except ImportError as e:
        from dashboards import INSTALL_HINT

        _fail(f"{e.name or e} is not installed: {INSTALL_HINT}")
    except PushError as e:
        _fail(str(e))
    except (ValueError, OSError) as e:
        _fail(str(e))
    out.print(f"pushed {len(uids)} dashboards to {escape(url)}: {', '.join(uids)}", highlight=False)
