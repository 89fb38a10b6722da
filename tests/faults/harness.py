"""Shared pieces of the fault tests: the consumer as a real ``citywatch serve`` subprocess, a
QoS 1 publisher that republishes what the broker did not acknowledge, and the stream itself.

Everything runs for real on loopback: Mosquitto (persistence on), influxd, the consumer process,
its SQLite state DB and its DuckDB file. Every wait is bounded and fails with what it saw.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from devices.catalogue import DISTRICTS
from devices.model import Device
from devices.registry import Registry
from tests.support.mosquitto import free_port

KIND = "noise"
METRIC = "laeq_db"


def citywatch_cmd() -> list[str]:
    exe = shutil.which("citywatch")
    return [exe] if exe else [sys.executable, "-m", "citywatch.cli"]


# -- the stream --------------------------------------------------------------------------------

def device_ids(n: int) -> list[str]:
    return [f"fault-nz-{i:04d}" for i in range(n)]


def register_devices(state_db: Path, ids: list[str]) -> None:
    """Register ``ids`` as noise stations in the state DB (before the consumer starts)."""
    reg = Registry.open(state_db)
    try:
        reg.upsert(Device(d, KIND, DISTRICTS[i % len(DISTRICTS)], asset_id=f"site-{i % 17}")
                   for i, d in enumerate(ids))
    finally:
        reg.close()


def stream(ids: list[str], n: int, start_ms: int) -> list[tuple[str, bytes]]:
    """``n`` single-reading telemetry messages, distinct (device, ts, metric): message ``i`` is
    device ``i % len(ids)`` at ``start_ms + (i // len(ids)) * 1000``."""
    out = []
    for i in range(n):
        dev = ids[i % len(ids)]
        ts = start_ms + (i // len(ids)) * 1000
        payload = {"ts": ts, "seq": i // len(ids), "metrics": {METRIC: round(40.0 + (i % 500) / 10, 1)}}
        out.append((f"city/{KIND}/{dev}/telemetry", json.dumps(payload).encode()))
    return out


# -- the publisher -----------------------------------------------------------------------------

@dataclass
class PublishReport:
    published: int = 0
    republished: int = 0  # publishes repeated because the broker had not acknowledged them
    seconds: float = 0.0


class Publisher:
    """QoS 1 publisher (paho) that guarantees every message was PUBACKed by the broker.

    Messages go out in windows; each one's ``wait_for_publish`` is awaited, and any whose
    publish failed (broker down: ``MQTT_ERR_NO_CONN``) or was not acknowledged in time is
    published again. A repeat may reach the consumer twice: the stores are idempotent.
    """

    def __init__(self, port: int, client_id: str = "fault-publisher", window: int = 2000):
        self.window = window
        self.connected = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        c.max_inflight_messages_set(window)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.1, 1)
        c.on_connect = lambda *a: self.connected.set()
        c.on_disconnect = lambda *a: self.connected.clear()
        c.connect_async("127.0.0.1", port, keepalive=10)
        c.loop_start()
        if not self.connected.wait(10):
            c.loop_stop()
            raise RuntimeError(f"publisher could not connect to 127.0.0.1:{port}")
        self.client = c

    def publish(self, messages: list[tuple[str, bytes]], rate: float | None = None,
                deadline_s: float = 180.0, report: PublishReport | None = None) -> PublishReport:
        """Publish all ``messages`` (at about ``rate`` messages/s if given) until each is PUBACKed."""
        r = report or PublishReport()
        t0 = time.monotonic()
        deadline = t0 + deadline_s
        for lo in range(0, len(messages), self.window):
            todo = messages[lo:lo + self.window]
            first = True
            while todo:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(todo)} messages still not PUBACKed after {deadline_s} s")
                if not first:
                    self.connected.wait(1.0)
                    r.republished += len(todo)
                infos = [(m, self.client.publish(m[0], m[1], qos=1)) for m in todo]
                todo = []
                for m, info in infos:
                    try:
                        info.wait_for_publish(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
                        ok = info.is_published()
                    except (RuntimeError, ValueError):
                        ok = False
                    if not ok:
                        todo.append(m)
                first = False
            r.published += len(messages[lo:lo + self.window])
            if rate:
                ahead = r.published / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        r.seconds = time.monotonic() - t0
        return r

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Background(threading.Thread):
    """Runs ``fn`` in a thread; ``result()`` re-raises its exception in the test."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self._call = (fn, args, kwargs)
        self.value = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        fn, args, kwargs = self._call
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def result(self, timeout: float):
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"background task still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


# -- the consumer ------------------------------------------------------------------------------

def launch_serve(config: Path, cwd: Path, log: Path, header: str = "", env: dict | None = None) -> subprocess.Popen:
    """``citywatch serve --config CONFIG`` in ``cwd``, output appended to ``log``; the
    environment without CITYWATCH_* variables, plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")} | (env or {})
    with log.open("a") as out:
        out.write(header)
        out.flush()
        return subprocess.Popen(citywatch_cmd() + ["serve", "--config", str(config)], cwd=cwd, env=environ,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def sigkill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)


def terminate(proc: subprocess.Popen, timeout: float, name: str, tail) -> int:
    """SIGTERM and wait for the exit status; SIGKILL and AssertionError (with ``tail()``) if it
    does not end within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        sigkill(proc)
        raise AssertionError(f"{name} did not stop within {timeout} s:\n{tail()}") from None


def await_api(proc: subprocess.Popen, base: str, timeout: float, name: str, tail) -> None:
    """Wait until ``base``'s /health answers; SIGKILL and RuntimeError (with ``tail()``) if the
    process exits or does not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail()}")
        try:
            httpx.get(f"{base}/api/v1/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"{name} did not answer within {timeout} s:\n{tail()}")


_TOTALS = re.compile(r"stopped\. readings received (\d+), stored (\d+), duplicates (\d+), spooled (\d+)")


class Serve:
    """``citywatch serve --config <tmp>/citywatch.toml`` with a fixed client id, as a subprocess."""

    def __init__(self, workdir: Path, broker_port: int, store_url: str, *, client_id: str = "cw-fault",
                 ingest: dict | None = None, mqtt: dict | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_db = self.dir / "state.db"
        self.api_port = free_port()
        self.log = self.dir / "serve.log"
        ingest_cfg = {"spool_dir": str(self.dir / "spool"), "linger_ms": 20, **(ingest or {})}
        lines = [
            "[mqtt]", f'url = "mqtt://127.0.0.1:{broker_port}"', f'client_id = "{client_id}"',
            *(f"{k} = {json.dumps(v)}" for k, v in (mqtt or {}).items()),
            "[store]", f'url = "{store_url}"',
            "[state]", f'url = "sqlite:///{self.state_db}"',
            "[api]", f'listen = "127.0.0.1:{self.api_port}"', "open = true",
            "[rules]", "tick_s = 3600",
            "[ingest]", *(f"{k} = {json.dumps(v)}" for k, v in ingest_cfg.items()),
        ]
        self.config = self.dir / "citywatch.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 60.0) -> Serve:
        """Start and wait until the API answers (the consumer is connected by then)."""
        self.proc = launch_serve(self.config, self.dir, self.log, f"--- start {self.starts}\n")
        self.starts += 1
        await_api(self.proc, self.base, timeout, "citywatch serve", self.tail)
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no acknowledgement, no clean close of the store."""
        sigkill(self.proc)
        self.proc = None

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM (drains and acknowledges); returns the totals line it printed."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        code = terminate(proc, timeout, "citywatch serve", self.tail)
        text = self.log.read_text(errors="replace")
        found = _TOTALS.findall(text)
        assert code == 0 and found, f"exit {code}:\n{self.tail()}"
        keys = ("received", "stored", "duplicates", "spooled")
        return dict(zip(keys, map(int, found[-1]), strict=True))

    def metrics(self) -> dict[str, float]:
        """``/metrics`` summed over labels: {sample name: value}."""
        text = httpx.get(f"{self.base}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def wait_metrics(self, predicate, timeout: float, what: str) -> dict[str, float]:
        """Poll ``/metrics`` until ``predicate(m)``; AssertionError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        m: dict[str, float] = {}
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"consumer died:\n{self.tail()}"
            try:
                m = self.metrics()
            except httpx.TransportError:
                m = {}
            if m and predicate(m):
                return m
            time.sleep(0.2)
        interesting = {k: v for k, v in m.items()
                       if k.startswith("citywatch_ingest") and k.endswith("_total")}
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; metrics {interesting}\n"
                             f"{self.tail()}")

    def rss(self) -> int:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def subscribed(serve: Serve, pub: Publisher, timeout: float = 20.0) -> None:
    """Wait until the consumer's subscription is live: probe messages from an unregistered
    device (quarantined, never stored) until the consumer counts one."""
    probe = ("city/noise/fault-probe/telemetry", b'{"ts": 0, "metrics": {"laeq_db": 50}}')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.client.publish(*probe, qos=1)
        try:
            if serve.metrics().get("citywatch_ingest_messages_total", 0) > 0:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the consumer received no probe within {timeout} s:\n{serve.tail()}")


def done(m: dict[str, float]) -> int:
    """Readings this consumer process has made durable (stored, duplicate or spooled)."""
    return int(m.get("citywatch_ingest_readings_stored_total", 0)
               + m.get("citywatch_ingest_readings_duplicate_total", 0)
               + m.get("citywatch_ingest_readings_spooled_total", 0))


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` s; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
                self.samples += 1
            except psutil.Error:
                return
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join(5)
        return self.peak


def timings_line(name: str, **figures) -> str:
    """One line of figures printed by each test (``pytest -s`` shows them; the report quotes them)."""
    return f"[faults] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
