"""``citywatch up``'s demo, wired from the packages: the sample fleet's simulators with fault
scenarios on a schedule, a progress line while the hour of history backfills, the built-in webhook
receiver as the dispatch target, and what to try once it is live.

- The schedule (simulators.schedule.rotation) is planned for the whole run up front, as an
  endless iterable the simulation consumes in its own thread: one fault every
  ``[up] scenario_every`` from half a minute after going live (or sooner, at a shorter interval),
  each kind in turn; the seed fixes which fault hits which device when. The backfilled history
  has none.
- The receiver (alerts.dispatch.receiver) gets a fresh secret at each start; it is the dispatch
  target only when the config names no ``[[receivers]]``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from citywatch.settings import Settings
from devices.durations import parse_duration_ms
from devices.model import Device
from simulators.engine import Simulation

log = logging.getLogger("citywatch")

FIRST_FAULT_AFTER_MS = 30_000
LIVE_MS = 365 * 86_400_000


def webhook_url(s: Settings) -> str:
    """Where this node's API takes the demo webhooks (a wildcard listen address: loopback)."""
    from alerts.dispatch.receiver import PATH

    host = s.api.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{s.api.port}{PATH}"


def with_receiver(s: Settings) -> tuple[Settings, object | None]:
    """``s`` with the built-in receiver as its dispatch target, and the receiver's log; ``s``
    unchanged and None when the config names receivers of its own."""
    if s.receivers:
        return s, None
    from alerts.dispatch.receiver import WebhookLog, demo_dispatch

    secret = secrets.token_urlsafe(24)
    receivers, routes = demo_dispatch(webhook_url(s), secret)
    return s.model_copy(update={"receivers": receivers, "routes": routes}), \
        WebhookLog(secret, keep=s.up.webhook_log, tz=s.timezone)


def simulation(s: Settings, fleet: Sequence[Device], now_ms: int) -> Simulation:
    """The sample fleet from ``backfill_s`` before ``now_ms``, with the fault schedule after it."""
    from simulators.schedule import rotation

    live_ms = now_ms - now_ms % 1000
    every = parse_duration_ms(s.up.scenario_every)
    schedule = rotation([d.kind for d in fleet], first_ms=live_ms + min(every, FIRST_FAULT_AFTER_MS),
                        every_ms=every, seed=s.up.seed) if every else ()
    return Simulation(fleet, seed=s.up.seed, start_ms=live_ms - int(s.up.backfill_s * 1000), gas_mode=s.up.gas_mode,
                      schedule=schedule)


class Simulators:
    """The sample fleet's publisher in a thread: the backfill at full speed, then live for ever."""

    def __init__(self, s: Settings, broker_url: str, sim: Simulation) -> None:
        self.sim = sim
        self.speed = s.up.speed
        self.broker_url = broker_url
        self.backfill_ms = int(s.up.backfill_s * 1000)
        self.live = threading.Event()  # the backfill is over (or the publisher stopped)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="citywatch-simulators", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        from simulators.publish import run as publish

        try:
            if self.backfill_ms > 0:
                publish(self.broker_url, self.sim, duration_ms=self.backfill_ms, speed=None, stop=self.stop,
                        client_id="citywatch-up-simulators")
            self.live.set()
            publish(self.broker_url, self.sim, duration_ms=LIVE_MS, speed=self.speed, stop=self.stop,
                    client_id="citywatch-up-simulators")
        except Exception:
            log.exception("simulators stopped")
        finally:
            self.live.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def show_backfill(console: Console, sims: Simulators, stored: Callable[[], int], tz, stop: threading.Event) -> None:
    """A progress line (messages published, simulated time reached, readings stored) until the
    simulators are live or ``stop`` is set; then one line saying what was loaded."""
    sim, total = sims.sim, max(sims.backfill_ms, 1)
    t0 = time.monotonic()
    columns = (TextColumn("[bold]backfilling the last {task.fields[span]}"), BarColumn(),
               TextColumn("{task.fields[msgs]:,} messages published, simulated {task.fields[clock]}, "
                          "{task.fields[stored]:,} readings stored"), TimeElapsedColumn())

    def fields() -> dict:
        reached = min(sim.now, sim.start_ms + total)
        return {"completed": reached - sim.start_ms, "msgs": sim.messages_out, "stored": stored(),
                "clock": datetime.fromtimestamp(reached / 1000, tz).strftime("%H:%M:%S")}

    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("backfill", total=total, span=_span(total), **fields())
        while not (sims.live.wait(0.25) or stop.is_set()):
            progress.update(task, **fields())
        progress.update(task, **fields())
    console.print(f"backfilled {sim.messages_out:,} messages ({sim.readings_out:,} readings, {stored():,} stored so "
                  f"far) in {time.monotonic() - t0:.1f} s; live now", highlight=False, soft_wrap=True)


def _span(ms: int) -> str:
    return f"{ms / 3_600_000:g} h" if ms >= 3_600_000 else f"{ms / 60_000:g} min"


def tips(s: Settings, broker_url: str, *, receiver: bool, token: str | None = None) -> list[str]:
    """What to try, one line each: the board, alerts, webhooks, the rollout report, a fault by hand."""
    base = f"http://{s.api.listen}"
    auth = f'-H "Authorization: Bearer {token}" ' if token else ""
    every = parse_duration_ms(s.up.scenario_every)
    lines = [f"the board           {base}/",
             f"open alerts         curl {auth}'{base}/api/v1/alerts'"]
    if receiver:
        lines.append(f"webhooks received   curl {auth}{base}/api/v1/demo/webhooks   (signed by dispatch, "
                     "verified by the built-in receiver)")
    lines += ["the rollout report  citywatch report rollout",
              # a fault that one reading raises: the running simulators publish the same devices
              "a fault by hand     citywatch devices export fleet.csv && citywatch simulate --fleet fleet.csv "
              f"--kinds bridge --scenario overloaded-truck@10s --duration 30s --broker {broker_url}"]
    lines.append(f"scheduled faults    one every {s.up.scenario_every}, each kind in turn ([up] scenario_every)"
                 if every else "scheduled faults    none ([up] scenario_every = \"0\")")
    return lines
