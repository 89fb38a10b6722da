"""The ``citywatch`` command (operator.md "Command line").

Each subcommand takes ``--config PATH`` after its name. Exit status 0 on success, non-zero with
a one-line reason on failure.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from citywatch.console import ConfigOpt, err, out, settings
from citywatch.console import fail as _fail
from citywatch.settings import Settings
from citywatch.tokens_cli import app as tokens_app
from citywatch.tokens_cli import closed_reason, first_start_token, open_store

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="citywatch: city infrastructure telemetry, rules and alerts.")
devices_app = typer.Typer(no_args_is_help=True, help="The device registry (registry.md CSV).")
rollout_app = typer.Typer(no_args_is_help=True, help="Rollout programmes (rollout.csv).")
app.add_typer(devices_app, name="devices")
app.add_typer(rollout_app, name="rollout")
app.add_typer(tokens_app, name="tokens")
from citywatch.rollout import report_app  # noqa: E402  (the rollout report: citywatch/rollout.py)

app.add_typer(report_app, name="report")



def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"citywatch {version('citywatch')}", highlight=False)
        except PackageNotFoundError:
            _fail("citywatch is not installed (pip install .): its version is in the package metadata")
        raise typer.Exit()


@app.callback()
def _main(show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the installed version and exit.")] = False) -> None:
    """citywatch: city infrastructure telemetry, rules and alerts."""


VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v")]
LogFormatOpt = Annotated[str | None, typer.Option(
    "--log-format", help="text or json (one JSON object per line); default: the log.format setting.")]


def _settings_and_logging(config: Path | None, verbose: bool, log_format: str | None) -> Settings:
    """The settings (``--log-format`` over ``[log] format``), then the process's log handler (citywatch/logs.py)."""
    from citywatch import logs

    s = settings(config, **({"log__format": log_format} if log_format else {}))
    logs.setup(s.log.format, verbose)
    return s


def _stop_on_signal() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.command()
def up(config: ConfigOpt = None, verbose: VerboseOpt = False, log_format: LogFormatOpt = None) -> None:
    """Everything on one machine: embedded broker, sample Wuhan fleet and its simulators with fault
    scenarios on a schedule, consumer, embedded store, rules, dispatch to a built-in webhook
    receiver, API."""
    from citywatch import demo
    from citywatch.broker import EmbeddedBroker
    from citywatch.runner import Node
    from devices.fleet import sample_fleet

    s, webhooks = demo.with_receiver(_settings_and_logging(config, verbose, log_format))
    broker = EmbeddedBroker("127.0.0.1", s.up.broker_port)
    try:
        broker.start()
    except RuntimeError as e:
        _fail(f"{e} (set [up] broker_port, or 0 for any free port)")
    node = Node(s, broker_url=broker.url, mqtt_protocol=4)
    node.demo_webhooks = webhooks
    node.open()
    token = first_start_token(open_store(s))
    fleet = sample_fleet(s.up.fleet_scale, seed=s.up.seed, min_per_kind=s.up.devices_per_kind)
    node.registry.upsert(fleet)
    quiet = _sample_programme(s, node.registry, fleet)
    try:
        node.start()
    except Exception as e:
        node.stop()
        broker.stop()
        _fail(str(e))
    stop = _stop_on_signal()
    publishing = [d for d in fleet if d.device_id not in quiet]  # not the rollout's planned, unheard, silent
    sims = demo.Simulators(s, broker.url, demo.simulation(s, publishing, int(time.time() * 1000)))
    sims.start()
    demo.show_backfill(out, sims, lambda: node.totals()["stored"], s.tz, stop)
    if not stop.is_set():  # Ctrl-C during the backfill: straight to stopping
        _print_up(s, broker, fleet, node, webhooks is not None, token)
        if quiet:
            out.print(f"the rollout report of the sample programme (docs/ROLLOUT.md): citywatch report rollout, or "
                      f"curl -H \"Authorization: Bearer {token or '$CITYWATCH_TOKEN'}\" -o rollout.html "
                      f"'http://{s.api.listen}/api/v1/reports/rollout?format=html'", highlight=False, soft_wrap=True)
    while not stop.wait(0.5):
        pass
    out.print("stopping: draining buffered readings...")
    sims.close()
    node.stop()
    broker.stop()
    _print_totals(node)


def _sample_programme(s: Settings, registry, fleet) -> frozenset[str]:
    """The demo's rollout programme over the fleet's gas meters; the meters the simulators must
    leave quiet (planned, never heard, silent)."""
    if not s.up.rollout_sample:
        return frozenset()
    from devices.rollout_sample import sample_programme

    programme = sample_programme(fleet, int(time.time() * 1000), seed=s.up.seed, tz=s.timezone)
    programme.load(registry)
    return programme.quiet


def _print_up(s: Settings, broker, fleet, node, receiver: bool, token: str | None) -> None:
    from citywatch import demo

    out.print(f"citywatch is up: [bold]http://{s.api.listen}/[/] (API docs /docs, health /api/v1/health); "
              f"broker {broker.url}; {len(fleet)} simulated devices; data in "
              f"{Path(str(node.state_path)).parent}. Ctrl-C stops.", highlight=False)
    _print_up_token(token, s.api.listen)
    tips = demo.tips(s, broker.url, receiver=receiver, token=token or "$CITYWATCH_TOKEN")
    out.print("try:\n  " + "\n  ".join(escape(t) for t in tips), highlight=False, soft_wrap=True)


@app.command()
def serve(config: ConfigOpt = None, verbose: VerboseOpt = False, log_format: LogFormatOpt = None) -> None:
    """Production: consume from the configured broker into the configured store, evaluate rules,
    dispatch, serve the API. No simulators, no embedded broker."""
    from citywatch.runner import Node

    s = _settings_and_logging(config, verbose, log_format)
    reason = closed_reason(s, open_store(s), config)
    if reason:
        _fail(reason)
    node = Node(s)
    try:
        node.start()
    except Exception as e:
        node.stop()
        _fail(str(e))
    stop = _stop_on_signal()  # before the line below: SIGTERM from then on drains instead of killing
    _status(s, f"citywatch serving: API http://{s.api.listen}; broker {s.mqtt.url}; store {s.store.url}")
    while not stop.wait(0.5):
        pass
    node.stop()
    _print_totals(node, s)


def _print_up_token(token: str | None, listen: str) -> None:
    if token:
        out.print(f"admin token (shown once, stored hashed; keep it now): [bold]{token}[/]\n"
                  f"  log in to the board at http://{listen}/ with it, or try: "
                  f"curl -H 'Authorization: Bearer {token}' http://{listen}/api/v1/whoami",
                  highlight=False, soft_wrap=True)
    else:
        out.print("an API token exists already (citywatch tokens list); make another with "
                  "`citywatch tokens create --role admin --name NAME`", highlight=False)


def _print_totals(node, s: Settings | None = None) -> None:
    t = node.totals()
    _status(s, f"stopped. readings received {t['received']}, stored {t['stored']}, duplicates {t['duplicates']}, "
               f"spooled {t['spooled']}; messages quarantined {t['quarantined']}")


def _status(s: Settings | None, message: str) -> None:
    """A status line: a log record with ``[log] format = "json"`` (nothing but JSON lines for a log
    shipper), else a line on stdout."""
    if s is not None and s.log.format == "json":
        logging.getLogger("citywatch").info(message)
    else:
        out.print(message, highlight=False)


def _registry(s: Settings):
    from devices.db import parse_url
    from devices.registry import Registry

    return Registry.open(parse_url(s.state.url))


def _registry_of_config(config: Path | None, create: bool):
    """``(registry, where)`` of the config's state DB for ``simulate``; None if that DB is a file
    not on this machine and ``create`` is false (a PostgreSQL one is reached where it is)."""
    from devices.db import is_shared, parse_url

    s = settings(config)
    path = parse_url(s.state.url)
    if path == ":memory:" or (not create and not is_shared(path) and not Path(path).exists()):
        return None
    return _registry(s), s.state.url


def _csv(action, file: Path, config: Path | None, done: str) -> None:
    """Run a registry CSV import or export; a bad file or row is one clear error, exit 1."""
    from devices.errors import RegistryError

    try:
        n = action(_registry(settings(config)), file)
    except (RegistryError, OSError) as e:
        _fail(str(e))
    out.print(done.format(n=n, file=file), highlight=False)


@devices_app.command("import")
def devices_import(file: Path, config: ConfigOpt = None) -> None:
    """Import devices.csv (upsert by device_id, all-or-nothing)."""
    from devices.csvio import import_devices

    _csv(import_devices, file, config, "imported {n} devices from {file}")


@devices_app.command("export")
def devices_export(file: Path, config: ConfigOpt = None) -> None:
    """Export the registry as devices.csv."""
    from devices.csvio import export_devices

    _csv(export_devices, file, config, "exported {n} devices to {file}")


@devices_app.command("credentials")
def devices_credentials(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for credentials.csv, consumer.csv, passwd, acl.")],
    config: ConfigOpt = None,
    devices: Annotated[str, typer.Option("--devices", help="Comma-separated device ids to issue a secret to.")] = "",
    all_new: Annotated[bool, typer.Option("--all-new", help="Every registered device without a secret.")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace the secrets of the --devices named.")] = False,
    consumer: Annotated[list[str] | None, typer.Option(
        "--consumer", help="Consumer account(s) (default: mqtt.username, else citywatch); repeatable.")] = None,
    rotate_consumer: Annotated[bool, typer.Option("--rotate-consumer", help="New secrets for the consumers.")] = False,
    shared_group: Annotated[str, typer.Option(
        "--shared-group", help="Shared-subscription group in the ACL (mqtt.shared_group, else citywatch).")] = "",
    acl_by_id: Annotated[bool, typer.Option(
        "--acl-by-id", help="One ACL pattern city/+/%u/# for all devices (large fleets; docs/SECURITY.md).")] = False,
    emqx: Annotated[bool, typer.Option("--emqx", help="Also emqx-users.csv and emqx-acl.conf for EMQX.")] = False,
) -> None:
    """Per-device MQTT secrets (shown once in credentials.csv, stored hashed) and Mosquitto's passwd and acl."""
    from devices.credentials import CredentialsError, generate

    s = settings(config)
    names = consumer or [s.mqtt.username or "citywatch"]
    ids = [d.strip() for d in devices.split(",") if d.strip()]
    try:
        reg = _registry(s)
        try:
            o = generate(reg, out_dir, now_ms=int(time.time() * 1000), device_ids=ids, all_new=all_new,
                         rotate=rotate, consumers=names,
                         consumer_password=s.mqtt.password if s.mqtt.username in names else "",
                         rotate_consumers=rotate_consumer,
                         shared_group=shared_group or s.mqtt.shared_group or "citywatch",
                         acl_by_id_only=acl_by_id, emqx=emqx)
        finally:
            reg.close()
    except CredentialsError as e:
        _fail(str(e))
    issued = [i for i in o.issued if i.kind != "consumer"]
    rotated = sum(i.rotated for i in issued)
    out.print(f"issued {len(issued) - rotated} new and {rotated} rotated device secrets"
              + (f" -> {o.csv} (shown once: hand it to the installers, then delete it)" if o.csv else ""),
              highlight=False)
    if o.consumer_csv:
        out.print(f"consumer secret(s) -> {o.consumer_csv} (shown once: put it in [mqtt] password)", highlight=False)
    if o.skipped:
        out.print(f"skipped {len(o.skipped)} that already have a secret (--rotate to replace): "
                  + ", ".join(o.skipped[:10]) + (" ..." if len(o.skipped) > 10 else ""), highlight=False)
    if o.revoked:
        out.print(f"revoked the secrets of {o.revoked} retired or unregistered devices", highlight=False)
    out.print(f"wrote {o.passwd} and {o.acl}: {o.devices} devices, consumers {', '.join(o.consumers)}; "
              "install them for Mosquitto and send it SIGHUP (docs/SECURITY.md)", highlight=False)
    if o.devices > 20_000 and not acl_by_id:
        err.print(f"warning: Mosquitto 2.0.11 loads {o.devices} per-device ACL entries in quadratic time, serving "
                  "nobody meanwhile (40,000: 9 s); consider --acl-by-id (docs/SECURITY.md)", highlight=False)


@rollout_app.command("import")
def rollout_import(file: Path, config: ConfigOpt = None) -> None:
    """Import rollout.csv (programme targets per district)."""
    from devices.csvio import import_rollout

    _csv(import_rollout, file, config, "imported {n} rollout targets from {file}")


def _mount_domain_commands() -> None:
    import alerts.cli
    import simulators.cli
    from alerts.cli import app as rules_app
    from simulators.cli import app as sim_app

    simulators.cli.broker_from_config = lambda config: settings(config).mqtt.url
    simulators.cli.tls_from_config = lambda config: settings(config).mqtt.model_dump(
        include={"ca_file", "cert_file", "key_file", "server_name"})

    alerts.cli.config_from_file = settings
    simulators.cli.registry_from_config = _registry_of_config
    app.add_typer(rules_app, name="rules", help="Rule files: check them.")
    from dashboards.cli import app as dashboards_app

    app.add_typer(dashboards_app, name="dashboards", help="Grafana boards: build, push.")
    for cmd in sim_app.registered_commands:
        app.registered_commands.append(cmd)


_mount_domain_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
