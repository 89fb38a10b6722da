"""Publishing a simulation to an MQTT broker, paced by its simulated clock.

:func:`run` publishes one :class:`~simulators.engine.Simulation` from this process;
:func:`run_parallel` splits a fleet over several processes (devices partitioned by a hash of
their id) when one process cannot keep up. Each publisher keeps at most ``max_inflight``
messages unacknowledged (QoS 1 PUBACKs), so a slow broker slows the simulation down instead
of filling memory.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from devices.model import Device

from .engine import Simulation
from .mqtt import BrokerURL, Pacer, Publisher


@dataclass(frozen=True, slots=True)
class PublishStats:
    """What a run published: messages, readings in them, wall-clock and simulated time."""

    messages: int
    readings: int
    elapsed_s: float
    sim_ms: int  # simulated time covered

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __add__(self, other: PublishStats) -> PublishStats:
        return PublishStats(self.messages + other.messages, self.readings + other.readings,
                            max(self.elapsed_s, other.elapsed_s), max(self.sim_ms, other.sim_ms))


def run(broker_url: str | BrokerURL, sim: Simulation, *, duration_ms: int, speed: float | None,
        stop: threading.Event | None = None, progress: bool = False, client_id: str | None = None,
        max_inflight: int = 1000) -> PublishStats:
    """Publish ``duration_ms`` of simulated time from where ``sim`` stands, at ``speed``
    simulated seconds per real second (None: as fast as the broker takes them).

    Returns when done or when ``stop`` is set; every published message has then been
    acknowledged by the broker. Raises BrokerError when the broker is unreachable or stops
    acknowledging.
    """
    # from where the stream stands, not from sim.now (the end of the minute already generated):
    # a second run would otherwise publish up to a minute of messages ahead of the wall clock
    t_start = sim.reached
    until = t_start + int(duration_ms)
    pub = Publisher(broker_url, client_id=client_id, max_inflight=max_inflight)
    pacer = Pacer(t_start, speed, stop, idle=pub.idle)
    m0, r0 = sim.messages_out, sim.readings_out
    wall0 = time.monotonic()
    bar = _Progress(progress, "simulate", until - t_start)
    last = 0
    try:
        with pub:
            for msg in sim.messages(until):
                if not pacer.wait(msg.sim_ts):
                    break
                pub.publish(msg.topic, msg.payload, msg.qos, msg.retain)
                done = msg.sim_ts - t_start
                if done - last >= 1000:
                    bar.update(done, sim.messages_out - m0)
                    last = done
    finally:
        bar.close(min(sim.now, until) - t_start, sim.messages_out - m0)
    return PublishStats(sim.messages_out - m0, sim.readings_out - r0, time.monotonic() - wall0,
                        min(sim.now, until) - t_start)


def partition(fleet: Sequence[Device], parts: int) -> list[list[Device]]:
    """Split a fleet into ``parts`` by a stable hash (CRC-32) of the device id."""
    out: list[list[Device]] = [[] for _ in range(parts)]
    for d in fleet:
        out[zlib.crc32(d.device_id.encode()) % parts].append(d)
    return out


def _worker(args) -> PublishStats:
    broker_url, part, i, seed, start_ms, scenarios, duration_ms, speed, client_id, gas_mode, stop = args
    sim = Simulation(part, seed=seed + i, start_ms=start_ms, scenarios=scenarios, gas_mode=gas_mode)
    return run(broker_url, sim, duration_ms=duration_ms, speed=speed, stop=stop,
               client_id=f"{client_id}-{i}" if client_id else None)


def run_parallel(broker_url: str | BrokerURL, fleet: Sequence[Device], *, processes: int, seed: int, start_ms: int,
                 scenarios: Sequence[str] = (), duration_ms: int, speed: float | None,
                 stop: threading.Event | None = None, client_id: str | None = None,
                 gas_mode: str = "daily") -> PublishStats:
    """Publish a fleet from ``processes`` processes, devices partitioned by :func:`partition`.

    Part ``i`` runs with seed ``seed + i``; the scenarios run in part 0 (which must hold the
    devices they need). The combined stream is deterministic per part, but the interleaving
    of parts at the broker is not. Stats: messages and readings summed, the longest elapsed.
    """
    if processes <= 1:
        sim = Simulation(fleet, seed=seed, start_ms=start_ms, scenarios=scenarios, gas_mode=gas_mode)
        return run(broker_url, sim, duration_ms=duration_ms, speed=speed, stop=stop, client_id=client_id)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        mstop = manager.Event()
        parts = partition(fleet, processes)
        jobs = [(broker_url, part, i, seed, start_ms, list(scenarios) if i == 0 else [], duration_ms, speed,
                 client_id, gas_mode, mstop) for i, part in enumerate(parts) if part]
        with ProcessPoolExecutor(len(jobs), mp_context=ctx) as pool:
            futures = [pool.submit(_worker, j) for j in jobs]
            while not all(f.done() for f in futures):
                if stop is not None and stop.wait(0.2):
                    mstop.set()
                elif stop is None:
                    time.sleep(0.2)
            results = [f.result() for f in futures]
    total = results[0]
    for r in results[1:]:
        total = total + r
    return total


class _Progress:
    """A rich progress bar over simulated time, or nothing."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self._p = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                           TextColumn("{task.fields[msgs]} msgs"), TextColumn("{task.fields[rate]}"),
                           TimeElapsedColumn(), TimeRemainingColumn())
        self._p.start()
        self._t0 = time.monotonic()
        self._task = self._p.add_task(label, total=max(total, 1), msgs=0, rate="")

    def update(self, done: int, msgs: int) -> None:
        if self._p is not None:
            el = time.monotonic() - self._t0
            self._p.update(self._task, completed=done, msgs=msgs, rate=f"{msgs / el:,.0f} msg/s" if el > 0 else "")

    def close(self, done: int, msgs: int) -> None:
        if self._p is not None:
            self.update(done, msgs)
            self._p.stop()
