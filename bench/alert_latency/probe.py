"""``citywatch`` with timers around the stages of the alert path (``run.py --profile``).

Runs the ordinary command line (``python bench/alert_latency/probe.py OUT.json serve --config
FILE``) after wrapping, at class level, the calls one batch goes through: decoding on the
MQTT thread (``Pipeline.submit_many``, which ``submit`` calls too), the batch's age when the
rules stage takes it (linger plus any wait), the rule engine and the dispatcher's wake-up
(rules stage), then in the write stage ``Pipeline._write``: the store write, quarantine,
device events and the acknowledgements (and the registry's ``mark_seen``, once a second); in
the dispatcher the outbox scan and each webhook request. The rule engine, the store write and
``mark_seen`` also record their thread's CPU time: wall minus CPU is time spent waiting.
It also traces each alarm (a lighting cabinet's message) through the node: when the MQTT
thread hands it over, when the rules stage takes its batch, when the rule engine call that
evaluates it starts and ends (``trace``); run.py adds the outbox rows' times and the webhook's
arrival and prints the slowest alarms step by step.
Figures go to ``OUT.json`` on SIGUSR1 (then start afresh) and at exit: ``stages`` (per stage
calls, total, p50, p99, max in ms; ``messages per batch`` in messages) and ``alarms`` (device
-> step -> unix time). Nothing else changes, so the figures describe the real node plus the
small cost of the timers.
"""

from __future__ import annotations

import atexit
import functools
import json
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import gc  # noqa: E402

import numpy as np  # noqa: E402

_lock = threading.Lock()
_times: dict[str, list[float]] = {}
# the alarms' path through the node: lighting device id -> {step: unix time} (see trace())
_trace: dict[str, dict[str, float]] = {}
ALARM_KIND = "lighting"  # run.py's alarms come from lighting cabinets, the background from noise


def _record(stage: str, seconds: float) -> None:
    with _lock:
        _times.setdefault(stage, []).append(seconds)


def _timed(cls: type, name: str, stage: str, is_async: bool = False, cpu: bool = False) -> None:
    """Wrap ``cls.name``: its wall time as ``stage``; with ``cpu`` also the calling thread's CPU
    time (``stage (thread CPU)``): wall minus CPU is waiting (the GIL, a lock, the disk)."""
    fn = getattr(cls, name)
    if cpu:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                _record(stage, time.perf_counter() - t0)
                _record(f"{stage} (thread CPU)", time.thread_time() - c0)
    elif is_async:
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _record(stage, time.perf_counter() - t0)
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _record(stage, time.perf_counter() - t0)
    setattr(cls, name, wrapper)


def _mark(devices, step: str) -> None:
    """Record the first time each alarm device reached ``step`` (unix time, the bench's clock)."""
    now = time.time()
    with _lock:
        for dev in devices:
            _trace.setdefault(dev, {}).setdefault(step, now)


def _alarm_devices(batch) -> list[str]:
    if not len(batch):
        return []
    return np.unique(batch.device_id[batch.kind == ALARM_KIND]).tolist()


def trace() -> None:
    """Time stamps along each alarm's path: ``received`` (the MQTT thread hands its message to
    the pipeline), ``taken`` (the rules stage takes its batch), ``rules_start``/``rules_end``
    (the rule engine call evaluating it, commit included; the outbox row is written inside)."""
    from alerts.engine import RuleEngine
    from ingest.pipeline import Pipeline

    submit_many, take, process = Pipeline.submit_many, Pipeline._take, RuleEngine.process

    def traced_submit_many(self, messages, *args, **kwargs):
        _mark([t.split("/")[2] for t, _, _ in messages if f"/{ALARM_KIND}/" in t], "received")
        return submit_many(self, messages, *args, **kwargs)

    def traced_take(self):
        p = take(self)
        if p.messages:
            _mark([d for d in p.seen if d in _trace], "taken")  # the alarms traced at "received"
        return p

    def traced_process(self, batch, *args, **kwargs):
        devices = _alarm_devices(batch)
        _mark(devices, "rules_start")
        try:
            return process(self, batch, *args, **kwargs)
        finally:
            _mark(devices, "rules_end")

    Pipeline.submit_many, Pipeline._take, RuleEngine.process = traced_submit_many, traced_take, traced_process


def install() -> None:
    """Wrap the stages (before the node is built)."""
    from alerts.dispatch.dispatcher import Dispatcher
    from alerts.dispatch.webhook import WebhookNotifier
    from alerts.engine import RuleEngine
    from devices.registry import Registry
    from ingest.events import EventLog
    from ingest.pipeline import Pipeline
    from ingest.quarantine import Quarantine
    from ingest.stores.duckdb import DuckDBStore

    take = Pipeline._take

    def timed_take(self):
        p = take(self)
        if p.messages:
            _record("batch age when taken (linger + wait)", time.monotonic() - p.first_at)
            _record("messages per batch", p.messages)
        return p

    Pipeline._take = timed_take

    gc_started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:  # the collector holds the GIL throughout
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            _record(f"gc: generation {info['generation']} collection", time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)
    _timed(Pipeline, "submit_many", "decode (MQTT thread, per socket read)")
    _timed(Pipeline, "_write", "flush total (_write)")
    _timed(DuckDBStore, "write", "flush: store write (DuckDB)", cpu=True)
    _timed(Quarantine, "add", "flush: quarantine")
    _timed(EventLog, "add", "flush: events")
    _timed(Registry, "mark_seen", "flush: registry mark_seen", cpu=True)
    _timed(RuleEngine, "process", "rules stage: process + commit", cpu=True)
    _timed(Dispatcher, "wake", "rules stage: dispatcher wake")
    _timed(RuleEngine, "tick", "rules tick: absence rules (engine lock)", cpu=True)
    _timed(Dispatcher, "_scan", "dispatch: outbox scan")
    _timed(WebhookNotifier, "send", "dispatch: webhook request", is_async=True)
    trace()  # innermost: its times exclude the timers' own cost


def dump(path: Path) -> None:
    """Write the figures so far to ``path`` and start afresh (one file per phase)."""
    out: dict = {}
    with _lock:
        items = {k: np.asarray(v) for k, v in _times.items()}
        _times.clear()
        alarms = dict(_trace)
        _trace.clear()
    for stage, a in sorted(items.items()):
        scale = 1.0 if stage == "messages per batch" else 1000.0
        out[stage] = {"calls": int(len(a)), "total_ms": float(a.sum() * scale),
                      "p50": float(np.percentile(a, 50) * scale), "p99": float(np.percentile(a, 99) * scale),
                      "max": float(a.max() * scale)}
    out = {"stages": out, "alarms": alarms}
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")


def main() -> None:
    out = Path(sys.argv[1])
    install()
    atexit.register(dump, out)
    signal.signal(signal.SIGUSR1, lambda signum, frame: dump(out))  # run.py: end of a phase
    from citywatch.cli import main as cli_main

    sys.argv = ["citywatch", *sys.argv[2:]]
    cli_main()


if __name__ == "__main__":
    main()
