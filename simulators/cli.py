"""``citywatch simulate``, ``record`` and ``replay`` (operator.md). The lead mounts ``app``'s
commands on the ``citywatch`` CLI; ``python -m simulators.cli`` runs them alone."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from devices.catalogue import KINDS

from .errors import SimulatorError
from .mqtt import DEFAULT_BROKER, BrokerURL
from .timeutil import parse_duration_ms, parse_time_ms

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Simulated devices, and recording and replaying broker traffic.")

BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="MQTT broker URL, mqtt://host:port or mqtts://; default: [mqtt] url of the config")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="citywatch config file (TOML)")]
SpeedOpt = Annotated[str, typer.Option("--speed", help="simulated seconds per real second, or 'max'")]


# Set by the composition layer (citywatch.cli) to read ``[mqtt] url`` from a config file and
# the environment; alone (``python -m simulators.cli``) the default broker is used.
broker_from_config: Callable[[Path | None], str] | None = None
# Likewise ``[mqtt]`` ca_file, cert_file, key_file, server_name, as a dict: used with an mqtts:// broker.
tls_from_config: Callable[[Path | None], dict[str, str]] | None = None
# Likewise the registry of the config's state DB (``[state] url``), as ``(registry, where)``; with
# ``create=False`` None when that DB does not exist on this machine (a node elsewhere).
registry_from_config: Callable[[Path | None, bool], tuple[Any, str] | None] | None = None


def _broker(explicit: str | None, config: Path | None) -> str | BrokerURL:
    url = explicit or (broker_from_config(config) if broker_from_config is not None else DEFAULT_BROKER)
    tls = tls_from_config(config) if tls_from_config is not None else {}
    if not any(tls.values()):
        return url
    try:
        b = BrokerURL.parse(url)
        return b.with_tls(**tls) if b.tls else url
    except SimulatorError as e:
        _fail(str(e))


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        _fail(f"--speed must be a number > 0 or 'max', not {text!r}")
    return v


def _stop_on_signals() -> threading.Event:
    """A stop event set by Ctrl-C or SIGTERM, so runs end cleanly with everything acknowledged."""
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stop


def build_fleet(*, kinds: list[str], devices: int | None, scale: float | None, fleet_file: Path | None,
                seed: int) -> list:
    """The fleet the options name: a registry CSV, a scale of the Wuhan figures, or N per kind
    (the sample Wuhan fleet's devices, so their ids match a registry loaded from it)."""
    given = [x is not None for x in (devices, scale, fleet_file)]
    if sum(given) > 1:
        raise SimulatorError("give only one of --devices, --scale and --fleet")
    if fleet_file is not None:
        from devices.csvio import read_devices
        fleet = [d for d in read_devices(fleet_file) if d.kind in kinds]
    else:
        from devices.fleet import sample_fleet
        if scale is not None:
            fleet = sample_fleet(scale, seed=seed, kinds=kinds)
        else:
            fleet = sample_fleet(0, seed=seed, kinds=kinds, min_per_kind=5 if devices is None else devices)
    if not fleet:
        raise SimulatorError("the fleet is empty (check --kinds and the fleet options)")
    return fleet


@app.command()
def simulate(
    kinds: Annotated[str, typer.Option("--kinds", help="comma-separated kinds")] = ",".join(KINDS),
    devices: Annotated[int | None, typer.Option(
        "--devices", min=1, help="devices per kind (bridges: whole bridges of 8 sensors)")] = None,
    fleet: Annotated[Path | None, typer.Option("--fleet", help="registry CSV (devices.csv) to simulate")] = None,
    scale: Annotated[float | None, typer.Option(
        "--scale", min=0.0, help="fraction of the Wuhan figures (1.0 = 500,000 gas meters)")] = None,
    scenario: Annotated[list[str] | None, typer.Option(
        "--scenario", help="NAME or NAME@WHEN,key=value,... (repeatable); --list-scenarios shows them")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    start: Annotated[str | None, typer.Option(
        "--start", help="simulated start (epoch ms or ISO 8601); default now")] = None,
    duration: Annotated[str, typer.Option("--duration", help="simulated duration, e.g. 90s, 2h, 1d")] = "1h",
    speed: SpeedOpt = "1",
    broker: BrokerOpt = None,
    processes: Annotated[int, typer.Option("--processes", min=1, help="publishing processes")] = 1,
    gas_mode: Annotated[str, typer.Option("--gas-mode", help="daily (24 hourly readings a day) or hourly")] = "daily",
    list_scenarios: Annotated[bool, typer.Option("--list-scenarios", help="list the scenarios and exit")] = False,
    register: Annotated[bool, typer.Option(
        "--register", help="first import the simulated fleet into the configured registry (upsert by "
                           "device_id), so that a serve node on this state DB accepts its messages")] = False,
    config: ConfigOpt = None,
) -> None:
    """Publish simulated devices to an MQTT broker. Same seed, start and options: the same
    messages in the same order. Ingest rejects readings over 5 minutes in its future, so to run
    faster than real time start in the past (e.g. --start 2026-11-28T00:00+08:00 --speed max)."""
    broker = _broker(broker, config)
    from .scenarios import SCENARIOS, parse_spec

    if list_scenarios:
        for sc in SCENARIOS.values():
            rules = ", ".join(sc.rules) or "(quarantine)"
            typer.echo(f"{sc.name:28} {sc.kind or 'any':10} at {sc.default_at:6} {sc.description} -> {rules}")
        return
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in kind_list if k not in KINDS]
    if bad:
        _fail(f"--kinds: unknown kind(s) {', '.join(bad)} (known: {', '.join(KINDS)})")
    if gas_mode not in ("daily", "hourly"):
        _fail(f"--gas-mode must be daily or hourly, not {gas_mode!r}")
    try:
        duration_ms = parse_duration_ms(duration)
        start_ms = parse_time_ms(start) if start else int(time.time() * 1000)
    except ValueError as e:
        _fail(str(e))
    sp = _speed(speed)
    from .engine import Simulation
    from .publish import run, run_parallel

    try:
        for s in scenario or []:
            parse_spec(s)
        devs = build_fleet(kinds=kind_list, devices=devices, scale=scale, fleet_file=fleet, seed=seed)
        _registered(devs, config, register)
        stop = _stop_on_signals()
        if processes > 1:
            stats = run_parallel(broker, devs, processes=processes, seed=seed, start_ms=start_ms,
                                 scenarios=scenario or [], duration_ms=duration_ms, speed=sp, stop=stop,
                                 gas_mode=gas_mode)
        else:
            sim = Simulation(devs, seed=seed, start_ms=start_ms, scenarios=scenario or [], gas_mode=gas_mode)
            for inj in sim.injections:
                typer.echo(f"scenario {inj.name}: {', '.join(inj.device_ids[:5])}"
                           f"{' ...' if len(inj.device_ids) > 5 else ''} from {inj.start_ms} to {inj.end_ms}", err=True)
            stats = run(broker, sim, duration_ms=duration_ms, speed=sp, stop=stop, progress=sys.stderr.isatty())
    except SimulatorError as e:
        _fail(str(e))
    except (OSError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"published {stats.messages:,} messages ({stats.readings:,} readings) from {len(devs):,} devices "
               f"in {stats.elapsed_s:.1f} s: {stats.messages_per_s:,.0f} msg/s, {stats.readings_per_s:,.0f} readings/s")


def _registered(devs: list, config: Path | None, register: bool) -> None:
    """``--register``: upsert the fleet into the configured registry. Otherwise, when that
    registry is on this machine, warn (with the fix) if simulated devices are not in it: a node
    would quarantine their messages as ``unregistered``, silently for whoever watches the broker."""
    found = registry_from_config(config, register) if registry_from_config is not None else None
    if found is None:
        if register:
            _fail("--register needs the configured registry ([state] url of --config) on this machine")
        return
    reg, where = found
    try:
        if register:
            typer.echo(f"registered {reg.upsert(devs):,} simulated devices in {where}", err=True)
            return
        known = reg.snapshot()
        missing = [d.device_id for d in devs if d.device_id not in known]
    finally:
        reg.close()
    if missing:
        typer.echo(f"warning: {len(missing):,} of {len(devs):,} simulated devices (e.g. {missing[0]}) are not in "
                   f"the registry {where}: ingest will quarantine their messages as 'unregistered'. Fix: run "
                   "again with --register, or import them with `citywatch devices import FILE`.", err=True)


@app.command()
def record(
    out: Annotated[Path, typer.Option("--out", help="recording file to write (.cwrec, gzip)")],
    broker: BrokerOpt = None,
    topic: Annotated[list[str] | None, typer.Option("--topic", help="topic filter, repeatable")] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="stop after this long, e.g. 10m")] = None,
    count: Annotated[int | None, typer.Option("--count", min=1, help="stop after this many messages")] = None,
    config: ConfigOpt = None,
) -> None:
    """Record traffic from a broker to a file (until --duration, --count or Ctrl-C)."""
    broker = _broker(broker, config)
    from .record import record as do_record

    try:
        dur = parse_duration_ms(duration) / 1000.0 if duration else None
    except ValueError as e:
        _fail(str(e))
    stop = _stop_on_signals()
    try:
        n = do_record(broker, out, topics=tuple(topic or ("city/#",)), duration_s=dur, count=count, stop=stop,
                      progress=sys.stderr.isatty())
    except (SimulatorError, OSError) as e:
        _fail(str(e))
    typer.echo(f"recorded {n:,} messages to {out}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="a recording made by citywatch record")],
    speed: SpeedOpt = "1",
    shift_to_now: Annotated[bool, typer.Option("--shift-to-now", help="move payload timestamps to now")] = False,
    broker: BrokerOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Publish a recording again with its original timing scaled by --speed."""
    broker = _broker(broker, config)
    from .record import replay as do_replay

    sp = _speed(speed)
    stop = _stop_on_signals()
    try:
        n = do_replay(broker, file, speed=sp, shift_to_now=shift_to_now, stop=stop, progress=sys.stderr.isatty())
    except (SimulatorError, OSError) as e:
        _fail(str(e))
    typer.echo(f"replayed {n:,} messages from {file}")


if __name__ == "__main__":
    app()
