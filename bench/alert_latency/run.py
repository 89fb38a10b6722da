"""Alert latency: from publishing a reading that fires a rule to the receiver getting the webhook.

Issue 5's benchmark. Everything is real and on loopback: its own Mosquitto on a free port, a
stdlib HTTP receiver in this process (``examples/receiver.py``'s handler: it verifies each
signature and records when each notice arrived), and ``citywatch serve --config`` as a
subprocess (consumer, DuckDB store, rule engine, dispatch, API) with that one receiver on a
default route. The fleet is registered in the state DB before the node starts: 940 noise
stations (Wuhan's construction sites) send the background traffic; lighting cabinets, a fresh
one for every alert, send the alarms.

Two phases, each sending ``--alerts`` alarms at random intervals (uniform 50-250 ms):

* ``quiet``: nothing else on the broker;
* ``loaded``: ``--rate`` messages/s (default 10,000) of ordinary noise-station readings
  (3 metrics each, below every threshold), published at QoS 1 by ``--publishers`` separate
  processes paced on the wall clock, bounded in count and in time. They write MQTT packets
  on a plain socket (:class:`RawPublisher`): paho would need most of a core for 10,000/s.
  The alarms go through paho (``simulators.mqtt.Publisher``) like a device's.

An alarm is ``{"ts": now, "metrics": {"leakage_ma": 45}}`` on ``city/lighting/{id}/telemetry``
(rule ``lighting.leakage``: > 30 mA, critical, no ``for`` duration, so it fires on the first
reading). Latency = arrival of its ``firing`` webhook at the receiver minus the moment before
``publish``; both times read in this process. Afterwards the outbox rows of the state DB split
each latency into ``ingest`` (publish -> notice written in the rule engine's transaction:
broker, batching linger, store write, rules), ``pickup`` (-> the dispatcher's first attempt
starts) and ``http`` (-> the receiver has the request). Node figures (messages consumed,
batches, mean batch flush time) come from its ``/metrics``.

    python bench/alert_latency/run.py [--alerts 200] [--rate 10000] [--publishers 1]
                                      [--linger-ms MS] [--write-linger-ms MS] [--priority-wait-ms MS]
                                      [--warmup-s 5] [--phases quiet,loaded] [--topology all|split]
                                      [--publish-tick-ms 0] [--broker-autosave-s 60] [--profile] [--keep]

``--linger-ms``, ``--write-linger-ms``, ``--priority-wait-ms`` set the node's ``[ingest]`` keys of
those names (default: the settings' defaults). ``--phases loaded`` runs only the loaded phase.
Each phase also reports the broker's and the background publishers' CPU, how busy the whole box
was and the hypervisor's steal time (``/proc/stat``), and matches each alarm with the steal
during its flight: on a shared VM the tail follows it. ``--topology split`` runs a ``role =
"rules"`` node beside a ``role = "ingest"`` node instead of one ``role = "all"`` node.

``--profile`` runs the node under ``probe.py`` (the same command with timers around each stage
of a batch and of dispatch) and adds a table per phase of where the node's time goes.

Prints a table and the command line that reproduces it. Target (issue 5): p99 < 50 ms with
10,000 messages/s of background traffic. The machine's load average is printed with the
figures: other processes on a shared box inflate them.
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing as mp
import os
import queue
import random
import select
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from devices.fleet import sample_fleet  # noqa: E402
from devices.registry import Registry  # noqa: E402
from examples.receiver import make_handler  # noqa: E402
from simulators.mqtt import Publisher  # noqa: E402
from tests.support.mosquitto import Mosquitto, free_port  # noqa: E402

TARGET_P99_MS = 50.0
RULE = "lighting.leakage"
SECRET = "bench-secret-0123456789"
TOKEN = "bench-admin-token-0123456789"
GAP_MS = (50.0, 250.0)  # random interval between alarms


class BenchError(Exception):
    """The benchmark could not run (a part failed to start, or the node stopped)."""


# -- receiver ---------------------------------------------------------------------------------


class Receiver:
    """A real webhook receiver on loopback: verifies signatures, records first arrivals."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # device id -> unix time of its firing notice
        self.other = 0  # notices that are not firing notices of the benchmark's rule
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(SECRET, self._handle))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)

    def _handle(self, notice: dict) -> None:
        now = time.time()
        with self._changed:
            if notice.get("status") == "firing" and notice.get("alert", {}).get("rule") == RULE:
                self.arrivals.setdefault(notice["device"]["id"], now)
                self._changed.notify_all()
            else:
                self.other += 1

    def wait_for(self, device_ids: list[str], timeout_s: float) -> int:
        """Wait until every id has arrived or ``timeout_s`` passed; the number missing."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                missing = sum(1 for d in device_ids if d not in self.arrivals)
                left = deadline - time.monotonic()
                if missing == 0 or left <= 0:
                    return missing
                self._changed.wait(min(left, 0.5))

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- background traffic (separate processes) ---------------------------------------------------


class RawPublisher:
    """A minimal MQTT 3.1.1 QoS 1 publisher on a plain socket, for the background traffic.

    paho-mqtt spends ~100 us of Python per message: 10,000 messages/s would take most of a
    core of this machine away from the node being measured. This writes pre-encoded PUBLISH
    packets in one ``sendall`` per slice and counts PUBACKs, keeping at most ``window``
    unacknowledged (like a device's client with a bounded in-flight window). Raises BenchError
    on a refused connection, an unexpected packet or acknowledgements that stop coming.
    """

    def __init__(self, url: str, client_id: str, window: int = 2000, timeout_s: float = 10.0) -> None:
        from ingest.mqtt import BrokerAddress

        addr = BrokerAddress.parse(url)
        self.window = window
        self.timeout_s = timeout_s
        self.sent = self.acked = 0
        self._pid = 0
        self._buf = b""
        self.sock = socket.create_connection((addr.host, addr.port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        body = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", 60) + struct.pack("!H", len(cid)) + cid
        self.sock.sendall(b"\x10" + _varlen(len(body)) + body)
        connack = self._recv_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise BenchError(f"the broker refused the background publisher: CONNACK {connack!r}")

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise BenchError("the broker closed the background publisher's connection")
            data += chunk
        return data

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        """One QoS 1 PUBLISH (counted as sent when written with :meth:`write`)."""
        self._pid = self._pid % 65535 + 1
        rest = struct.pack("!H", len(topic)) + topic + struct.pack("!H", self._pid) + payload
        return b"\x32" + _varlen(len(rest)) + rest

    def write(self, packets: list[bytes]) -> None:
        self.sock.sendall(b"".join(packets))
        self.sent += len(packets)

    def read_acks(self, timeout_s: float) -> None:
        """Count the PUBACKs that arrive within ``timeout_s`` (0: those already there)."""
        ready, _, _ = select.select([self.sock], [], [], timeout_s)
        if not ready:
            return
        data = self._buf + self.sock.recv(1 << 16)
        if len(data) == len(self._buf):
            raise BenchError("the broker closed the background publisher's connection")
        whole = len(data) // 4 * 4
        for i in range(0, whole, 4):
            if data[i] != 0x40 or data[i + 1] != 2:
                raise BenchError(f"unexpected packet from the broker: {data[i:i + 4]!r}")
        self.acked += whole // 4
        self._buf = data[whole:]

    def room(self) -> int:
        """How many more messages may be sent now; waits for acknowledgements at a full window."""
        deadline = time.monotonic() + self.timeout_s
        while self.sent - self.acked >= self.window:
            if time.monotonic() > deadline:
                raise BenchError(f"the broker acknowledged nothing for {self.timeout_s:g} s")
            self.read_acks(0.05)
        return self.window - (self.sent - self.acked)

    def close(self) -> None:
        """Wait for every acknowledgement (up to the timeout), then disconnect."""
        deadline = time.monotonic() + self.timeout_s
        try:
            while self.acked < self.sent and time.monotonic() < deadline:
                self.read_acks(0.05)
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()


def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def background(url: str, device_ids: list[str], rate: float, max_s: float, index: int, ready, go, stop,
               results, tick_s: float = 0.0) -> None:
    """Publish ordinary noise readings at ``rate`` messages/s, paced on the wall clock, for at
    most ``max_s`` seconds (and ``rate * max_s`` messages) or until ``stop``; report
    ``(index, messages acknowledged, seconds, largest backlog, CPU seconds)`` on ``results``.

    With ``tick_s`` 0 (the default) it waits on the socket between writes, so that every batch of
    PUBACKs wakes it: ~6,000 writes of 1-2 messages a second, 35-39% of a core, half of it in the
    kernel. With ``tick_s`` > 0 it sleeps at least that long between writes instead, and reads the
    acknowledgements that came meanwhile without waiting: at 1 ms, a write of ~10 messages a
    millisecond at 18% of a core (measured in session 6: the alarms' p99 no better for it)."""
    rng = random.Random(index)
    laeq = [round(rng.uniform(38.0, 50.0), 1) for _ in range(1024)]
    lmax = [round(v + rng.uniform(3.0, 12.0), 1) for v in laeq]
    pm10 = [rng.randint(20, 110) for _ in range(1024)]
    topics = [f"city/noise/{d}/telemetry".encode() for d in device_ids]
    last_ts = [0] * len(device_ids)
    n = len(device_ids)
    limit = int(rate * max_s)
    pub = RawPublisher(url, client_id=f"bench-background-{index}")
    ready.set()
    go.wait()
    sent = backlog = 0
    t0 = time.monotonic()
    cpu0 = time.process_time()
    try:
        while sent < limit and not stop.is_set():
            elapsed = time.monotonic() - t0
            if elapsed >= max_s:
                break
            due = min(limit, int(elapsed * rate))
            if due <= sent:
                wait = max(0.0005, min(0.002, (sent + 1) / rate - elapsed))
                if tick_s > 0:
                    time.sleep(max(wait, tick_s))
                else:
                    pub.read_acks(wait)
                continue
            backlog = max(backlog, due - sent)
            pub.read_acks(0)
            upto = min(due, sent + 500, sent + pub.room())
            now_ms = int(time.time() * 1000)
            packets = []
            for i in range(sent, upto):
                d = i % n
                ts = last_ts[d] = max(now_ms, last_ts[d] + 1)  # (device, ts) unique: no duplicates
                k = i & 1023
                packets.append(pub.packet(topics[d], b'{"ts":%d,"metrics":{"laeq_db":%.1f,"lmax_db":%.1f,'
                                                     b'"pm10_ugm3":%d}}' % (ts, laeq[k], lmax[k], pm10[k])))
            pub.write(packets)
            sent = upto
        elapsed = time.monotonic() - t0
    finally:
        pub.close()
    results.put((index, pub.acked, elapsed, backlog, time.process_time() - cpu0))


# -- the node ---------------------------------------------------------------------------------


class NodeProcess:
    """``citywatch serve --config FILE`` as a subprocess, its output in ``{name}.log``.

    ``role`` is the node's top-level ``role`` (docs/CONFIGURATION.md): ``all`` alone, or one
    ``ingest`` and one ``rules`` node beside each other (``--topology split``), sharing the state
    DB. Each has its own DuckDB file (a DuckDB file is one process's; a rules node writes none).
    """

    def __init__(self, work: Path, broker_url: str, receiver_url: str, ingest: dict[str, float],
                 profile: bool = False, role: str = "all", name: str = "node") -> None:
        self.work = work
        self.role = role
        self.profile_out = work / f"probe-{name}.json" if profile else None
        self.api = f"127.0.0.1:{free_port()}"
        self.state_path = work / "state.db"
        self.config = work / f"{name}.toml"
        self.log = work / f"{name}.log"
        self.config.write_text(f"""\
role = "{role}"

[mqtt]
url = "{broker_url}"
client_id = "citywatch-bench-{name}"

[store]
url = "duckdb:///{work}/readings-{name}.duckdb"

[state]
url = "sqlite:///{self.state_path}"

[api]
listen = "{self.api}"
tokens = [{{ token = "{TOKEN}", role = "admin", name = "bench" }}]

[ingest]
{"".join(f"{k} = {v}{chr(10)}" for k, v in ingest.items())}spool_dir = "{work}/spool-{name}"

[[receivers]]
name = "bench"
url = "{receiver_url}"
secret = "{SECRET}"

[[routes]]
receivers = ["bench"]
""", encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=f"http://{self.api}", timeout=10,
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    def command(self) -> list[str]:
        if self.profile_out is not None:
            return [sys.executable, str(Path(__file__).with_name("probe.py")), str(self.profile_out),
                    "serve", "--config", str(self.config)]
        exe = shutil.which("citywatch")
        base = [exe] if exe else [sys.executable, "-c", "from citywatch.cli import main; main()"]
        return base + ["serve", "--config", str(self.config)]

    def start(self, timeout_s: float = 60.0) -> NodeProcess:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CITYWATCH_")}
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(self.command(), cwd=self.work, env=env, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"citywatch serve exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if self.http.get("/api/v1/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise BenchError(f"citywatch serve did not answer /api/v1/health in {timeout_s:g} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def scrape(self) -> dict[str, float]:
        """Totals of the node's own metrics (messages consumed, batches, flush seconds) and the
        CPU seconds the process has used."""
        text = self.http.get("/metrics").text
        cpu = psutil.Process(self.proc.pid).cpu_times()
        out = {"messages": 0.0, "flushes": 0.0, "flush_s": 0.0, "cpu_s": cpu.user + cpu.system}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == "citywatch_ingest_messages_total":
                    out["messages"] += s.value
                elif s.name == "citywatch_ingest_flush_seconds_count":
                    out["flushes"] += s.value
                elif s.name == "citywatch_ingest_flush_seconds_sum":
                    out["flush_s"] += s.value
        return out

    def stage_times(self, timeout_s: float = 10.0) -> dict:
        """With ``--profile``: the probe's stage timings since the last call (see probe.py)."""
        if self.profile_out is None or self.proc is None:
            return {}
        self.profile_out.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return json.loads(self.profile_out.read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):  # not yet (completely) written
                time.sleep(0.1)
        raise BenchError("the probe wrote no stage timings")

    def stop(self) -> None:
        self.http.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # drains buffered readings first
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- phases -----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    sent: dict[str, float] = field(default_factory=dict)  # device id -> publish time (unix s)
    missing: int = 0
    background_target: float = 0.0
    background_sent: int = 0
    background_s: float = 0.0
    background_backlog: int = 0
    consumed: float = 0.0  # messages the node consumed during the phase
    wall_s: float = 0.0
    flushes: float = 0.0
    flush_s: float = 0.0
    cpu_s: float = 0.0  # CPU seconds of the node process(es) during the phase
    cpu_s_by_role: dict[str, float] = field(default_factory=dict)  # --topology split: per node
    publisher_cpu_s: float = 0.0  # CPU seconds of the background publishers (all of them)
    broker_cpu_s: float = float("nan")  # CPU seconds of Mosquitto during the phase
    other_notices: int = 0  # webhooks that were not the alarms' firing notices
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    box_busy: float = float("nan")  # % of all CPUs busy during the phase (/proc/stat), any process
    box_steal: float = float("nan")  # % of all CPUs the hypervisor took (steal time)
    stages: dict = field(default_factory=dict)  # --profile: probe.py's stage timings
    trace: dict = field(default_factory=dict)  # --profile: device -> {step: unix time} (probe.trace)
    stolen_ms: dict = field(default_factory=dict)  # device -> CPU ms the hypervisor took during its flight
    outbox: dict = field(default_factory=dict)  # device -> (notice row written, first attempt)
    arrivals: dict = field(default_factory=dict)  # device -> its firing webhook's arrival (unix s)
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    split_ms: dict[str, np.ndarray] = field(default_factory=dict)


class StealSampler:
    """The hypervisor's steal time, sampled every ``interval_s`` from ``/proc/stat`` in a thread,
    so that each alarm's flight can be matched with the CPU time the host took from this VM
    meanwhile (:meth:`stolen_ms`). Counters are in clock ticks (``SC_CLK_TCK``, 10 ms on Linux):
    the match is coarse, a window widened to the samples around it."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.ms_per_tick = 1000.0 / os.sysconf("SC_CLK_TCK")
        self.times: list[float] = []
        self.steal: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-steal", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            c = cpu_times()
            if c is None:
                return
            self.times.append(time.time())
            self.steal.append(c[1])

    def start(self) -> StealSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def stolen_ms(self, t0: float, t1: float) -> float:
        """CPU milliseconds (all CPUs) the hypervisor took between the last sample at or before
        ``t0`` and the first at or after ``t1``; NaN when the samples do not cover the span."""
        i0 = bisect.bisect_right(self.times, t0) - 1
        i1 = bisect.bisect_left(self.times, t1)
        if i0 < 0 or i1 >= len(self.times):
            return float("nan")
        return (self.steal[i1] - self.steal[i0]) * self.ms_per_tick


def cpu_times() -> tuple[int, int, int] | None:
    """(busy, steal, total) jiffies of all CPUs since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    # guest time is already inside user; steal is time this VM wanted and did not get
    return user + nice + system + irq + softirq, steal, user + nice + system + idle + iowait + irq + softirq + steal


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; NaN when it cannot be read."""
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.Error, ValueError, TypeError):
        return float("nan")
    return t.user + t.system


def scrape(nodes: list[NodeProcess]) -> dict[str, float]:
    """The nodes' figures added up: messages, batches and flush seconds of the nodes that record
    (role ``all`` or ``ingest``; a rules node consumes the same messages again), CPU seconds of
    all, and per role (``cpu_s:<role>``)."""
    out = {"messages": 0.0, "flushes": 0.0, "flush_s": 0.0, "cpu_s": 0.0}
    for node in nodes:
        m = node.scrape()
        out["cpu_s"] += m["cpu_s"]
        out[f"cpu_s:{node.role}"] = m["cpu_s"]
        if node.role != "rules":
            for k in ("messages", "flushes", "flush_s"):
                out[k] += m[k]
    return out


def run_phase(name: str, *, alerter: Publisher, receiver: Receiver, nodes: list[NodeProcess], alarm_ids: list[str],
              rng: random.Random, broker_url: str, broker_pid: int | None, background_ids: list[str],
              rate: float, publishers: int, publish_tick_s: float, warmup_s: float) -> Phase:
    ph = Phase(name)
    node = nodes[0]  # the one that evaluates (role all or rules)
    ctx = mp.get_context("spawn")
    procs, stop, results = [], ctx.Event(), ctx.Queue()
    if rate > 0:
        go = ctx.Event()
        span_s = len(alarm_ids) * (GAP_MS[1] / 1000.0) + warmup_s + 15.0  # an upper bound on the phase
        parts = [background_ids[i::publishers] for i in range(publishers)]
        readies = []
        for i, part in enumerate(parts):
            ready = ctx.Event()
            p = ctx.Process(target=background, name=f"bench-background-{i}", daemon=True,
                            args=(broker_url, part, rate / publishers, span_s, i, ready, go, stop, results,
                                  publish_tick_s))
            p.start()
            procs.append(p)
            readies.append(ready)
        for ready, p in zip(readies, procs, strict=True):
            while not ready.wait(0.2):
                if not p.is_alive():
                    raise BenchError("a background publisher failed to start")
        ph.background_target = rate
    node.stage_times()  # start the probe's figures afresh
    other0 = receiver.other
    m0 = scrape(nodes)
    steal = StealSampler().start()
    c0 = cpu_times()
    b0 = process_cpu_s(broker_pid)
    t0 = time.monotonic()
    if procs:
        go.set()
        alerter.idle(warmup_s)
    ph.load = os.getloadavg()
    for dev in alarm_ids:
        alerter.idle(rng.uniform(*GAP_MS) / 1000.0)
        payload = b'{"ts":%d,"metrics":{"leakage_ma":45.0}}' % int(time.time() * 1000)
        ph.sent[dev] = time.time()
        alerter.publish(f"city/lighting/{dev}/telemetry", payload, 1)
    # serve the alerter's acks while waiting for the last webhooks
    waiter = threading.Thread(target=lambda: setattr(ph, "missing", receiver.wait_for(alarm_ids, 20.0)))
    waiter.start()
    while waiter.is_alive():
        alerter.idle(0.05)
    stop.set()
    for p in procs:
        p.join(30)
    for _ in procs:
        try:
            _, n, secs, backlog, pub_cpu_s = results.get(timeout=10)
        except queue.Empty:
            raise BenchError("a background publisher died without reporting (traceback above)") from None
        ph.background_sent += n
        ph.background_s = max(ph.background_s, secs)
        ph.background_backlog = max(ph.background_backlog, backlog)
        ph.publisher_cpu_s += pub_cpu_s
    m1 = scrape(nodes)
    probed = node.stage_times()
    ph.stages, ph.trace = probed.get("stages", {}), probed.get("alarms", {})
    ph.wall_s = time.monotonic() - t0
    c1 = cpu_times()
    steal.stop()
    ph.stolen_ms = {dev: steal.stolen_ms(t, receiver.arrivals.get(dev, t)) for dev, t in ph.sent.items()}
    b1 = process_cpu_s(broker_pid)
    ph.broker_cpu_s = b1 - b0
    if c0 is not None and c1 is not None and c1[2] > c0[2]:
        total = c1[2] - c0[2]
        ph.box_busy, ph.box_steal = 100 * (c1[0] - c0[0]) / total, 100 * (c1[1] - c0[1]) / total
    ph.consumed = m1["messages"] - m0["messages"]
    ph.flushes = m1["flushes"] - m0["flushes"]
    ph.flush_s = m1["flush_s"] - m0["flush_s"]
    ph.cpu_s = m1["cpu_s"] - m0["cpu_s"]
    if len(nodes) > 1:
        ph.cpu_s_by_role = {n.role: m1[f"cpu_s:{n.role}"] - m0[f"cpu_s:{n.role}"] for n in nodes}
    ph.other_notices = receiver.other - other0
    load_end = os.getloadavg()
    ph.load = (max(ph.load[0], load_end[0]), ph.load[1], ph.load[2])
    return ph


def split(ph: Phase, receiver: Receiver, state_path: Path) -> None:
    """Latencies, and their split from the outbox rows (written and first attempted when)."""
    conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT json_extract(body, '$.device.id'), created_at, first_attempt_at FROM dispatch_deliveries "
            "WHERE notice = 'firing' AND json_extract(body, '$.alert.rule') = ?", (RULE,)).fetchall()
    finally:
        conn.close()
    outbox = {dev: (created, first) for dev, created, first in rows}
    ph.outbox = outbox
    ph.arrivals = {dev: receiver.arrivals[dev] for dev in ph.sent if dev in receiver.arrivals}
    lat, ingest, pickup, http = [], [], [], []
    for dev, t_pub in ph.sent.items():
        t_arr = receiver.arrivals.get(dev)
        if t_arr is None:
            continue
        lat.append(t_arr - t_pub)
        if dev in outbox and outbox[dev][1] is not None:
            created, first = outbox[dev]
            ingest.append(created - t_pub)
            pickup.append(first - created)
            http.append(t_arr - first)
    ph.latency_ms = np.asarray(lat) * 1000.0
    parts = (("ingest", ingest), ("pickup", pickup), ("http", http))
    ph.split_ms = {k: np.asarray(v) * 1000.0 for k, v in parts}


# -- report -----------------------------------------------------------------------------------


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


TRACE_STEPS = (("received", "node received"), ("taken", "batch taken"), ("rules_start", "rules start"),
               ("created", "notice written"), ("rules_end", "rules end"), ("first", "first attempt"),
               ("arrived", "arrival"))


def slowest_alarms(ph: Phase, n: int = 8) -> None:
    """The slowest alarms of a phase, step by step (ms since the step before)."""
    print()
    print(f"Slowest alarms, phase {ph.name} (ms since the step before; probe.py's trace, outbox rows):")
    print()
    print("| total | " + " | ".join(label for _, label in TRACE_STEPS) + " |")
    print("| ---: | " + " | ".join("---:" for _ in TRACE_STEPS) + " |")
    slowest = sorted(ph.arrivals, key=lambda d: ph.arrivals[d] - ph.sent[d], reverse=True)
    for dev in slowest[:n]:
        created, first = ph.outbox.get(dev, (None, None))
        steps = {**ph.trace.get(dev, {}), "created": created, "first": first, "arrived": ph.arrivals[dev]}
        prev, cells = ph.sent[dev], []
        for key, _ in TRACE_STEPS:
            t = steps.get(key)
            cells.append("" if t is None else f"{(t - prev) * 1000:.1f}")
            prev = prev if t is None else t
        print(f"| {(ph.arrivals[dev] - ph.sent[dev]) * 1000:.1f} | " + " | ".join(cells) + " |")


def steal_report(ph: Phase) -> None:
    """The alarms whose flight the hypervisor took CPU time from this VM during, apart from the
    others (the match is coarse: /proc/stat counts 10 ms ticks), and the slowest alarms with it."""
    lat = {dev: (ph.arrivals[dev] - ph.sent[dev]) * 1000.0 for dev in ph.arrivals}
    stolen = {dev: ph.stolen_ms.get(dev, float("nan")) for dev in lat}
    known = [dev for dev in lat if not np.isnan(stolen[dev])]
    if not known:
        return
    hit = np.asarray([lat[d] for d in known if stolen[d] > 0])
    clear = np.asarray([lat[d] for d in known if stolen[d] == 0])
    print()
    print(f"{ph.name}: hypervisor steal during the flight of {len(hit)} of {len(known)} alarms "
          f"(p50 {pct(hit, 50):.1f}, p99 {pct(hit, 99):.1f} ms); the {len(clear)} others: "
          f"p50 {pct(clear, 50):.1f}, p99 {pct(clear, 99):.1f} ms.")
    worst = sorted(known, key=lat.get, reverse=True)[:8]
    print(f"{ph.name}: slowest alarms, ms (CPU ms stolen around each): "
          + ", ".join(f"{lat[d]:.1f} ({stolen[d]:.0f})" for d in worst) + ".")


def report(phases: list[Phase], args: argparse.Namespace, command: str) -> bool:
    print()
    print("| phase | background target msg/s | published msg/s | consumed msg/s | alerts | "
          "p50 ms | p95 ms | p99 ms | max ms | batches/s | mean flush ms | node CPU % | broker CPU % | "
          "publisher CPU % | box CPU % | steal % | load avg 1m |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: |")
    for ph in phases:
        lat = ph.latency_ms
        pub_rate = ph.background_sent / ph.background_s if ph.background_s else 0.0
        flush_ms = ph.flush_s / ph.flushes * 1000.0 if ph.flushes else float("nan")
        worst = lat.max() if len(lat) else float("nan")
        print(f"| {ph.name} | {ph.background_target:,.0f} | {pub_rate:,.0f} | "
              f"{ph.consumed / ph.wall_s:,.0f} | {len(lat)}/{len(ph.sent)} | {pct(lat, 50):.1f} | "
              f"{pct(lat, 95):.1f} | {pct(lat, 99):.1f} | {worst:.1f} | {ph.flushes / ph.wall_s:.1f} | "
              f"{flush_ms:.1f} | {100 * ph.cpu_s / ph.wall_s:.0f} | {100 * ph.broker_cpu_s / ph.wall_s:.0f} | "
              f"{100 * ph.publisher_cpu_s / ph.wall_s:.0f} | {ph.box_busy:.0f} | {ph.box_steal:.1f} | "
              f"{ph.load[0]:.2f} |")
    print()
    print("Where the time goes (ms; ingest = publish -> notice in the outbox, pickup = -> first attempt, "
          "http = -> arrival):")
    print()
    print("| phase | ingest p50 | ingest p99 | pickup p50 | pickup p99 | http p50 | http p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for ph in phases:
        s = ph.split_ms
        print(f"| {ph.name} | " + " | ".join(f"{pct(s[k], 50):.1f} | {pct(s[k], 99):.1f}"
                                             for k in ("ingest", "pickup", "http")) + " |")
    for ph in phases:
        steal_report(ph)
    for ph in phases:
        if ph.stages:
            print()
            print(f"Node stages, phase {ph.name} (probe.py; ms, 'messages per batch' in messages):")
            print()
            print("| stage | calls | total ms | p50 | p99 | max |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for stage, st in ph.stages.items():
                print(f"| {stage} | {st['calls']:,} | {st['total_ms']:,.0f} | {st['p50']:.2f} | "
                      f"{st['p99']:.2f} | {st['max']:.2f} |")
    for ph in phases:
        if ph.trace and ph.background_target:
            slowest_alarms(ph)
    loaded = [ph for ph in phases if ph.background_target > 0]
    ok = all(len(ph.latency_ms) == len(ph.sent) and pct(ph.latency_ms, 99) < TARGET_P99_MS for ph in loaded)
    print()
    for ph in phases:
        if ph.cpu_s_by_role:
            print(f"{ph.name}: node CPU by role: " + ", ".join(
                f"{role} {100 * cpu / ph.wall_s:.0f}%" for role, cpu in ph.cpu_s_by_role.items()) + ".")
        if ph.background_target:
            print(f"{ph.name}: background published {ph.background_sent:,} messages in "
                  f"{ph.background_s:.1f} s "
                  f"(largest publisher backlog {ph.background_backlog:,} messages); "
                  f"{ph.consumed:,.0f} consumed by the node in {ph.wall_s:.1f} s.")
            if ph.consumed < 0.95 * (ph.background_sent + len(ph.sent)):
                print(f"{ph.name}: the node consumed less than it was sent: it fell behind, so these "
                      "latencies measure the broker queue growing, not the alert path.")
        if ph.missing:
            print(f"{ph.name}: {ph.missing} alarm(s) had no webhook 20 s after the last alarm.")
        if ph.other_notices:
            print(f"{ph.name}: {ph.other_notices} other notice(s) arrived "
                  "(the background should raise none).")
    verdict = ("met" if ok else "MISSED") if loaded else "not measured (no loaded phase)"
    print(f"target p99 < {TARGET_P99_MS:g} ms at {args.rate:,.0f} msg/s background: {verdict}; "
          f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs.")
    print(f"reproduce: {command}")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--alerts", type=int, default=200, help="alarms per phase (default 200)")
    p.add_argument("--rate", type=float, default=10_000, help="background messages/s (default 10,000)")
    p.add_argument("--publishers", type=int, default=1, help="background publisher processes (default 1)")
    for key in ("linger_ms", "write_linger_ms", "priority_wait_ms"):
        p.add_argument("--" + key.replace("_", "-"), type=float, dest=key,
                       help=f"the node's [ingest] {key} (default: the settings' default)")
    p.add_argument("--publish-tick-ms", type=float, default=0.0,
                   help="the background publishers write at most once per this many ms (default 0: "
                        "whenever acknowledgements wake them)")
    p.add_argument("--broker-autosave-s", type=int, default=60,
                   help="Mosquitto's autosave_interval (default 60, as deploy/mosquitto.conf)")
    p.add_argument("--topology", choices=("all", "split"), default="all",
                   help="all: one node (role all, the default); split: a role rules node beside a "
                        "role ingest node, each with its own subscription")
    p.add_argument("--phases", default="quiet,loaded",
                   help="which phases to run, in order (default quiet,loaded)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="background traffic before the first alarm")
    p.add_argument("--seed", type=int, default=5, help="seed of the alarm intervals")
    p.add_argument("--profile", action="store_true",
                   help="run the node under probe.py and print where its time goes, per stage")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, state DB, store)")
    args = p.parse_args(argv)
    if args.alerts < 1 or args.rate < 0 or args.publishers < 1 or args.publish_tick_ms < 0:
        p.error("need --alerts >= 1, --rate >= 0, --publishers >= 1, --publish-tick-ms >= 0")
    wanted = [x.strip() for x in args.phases.split(",") if x.strip()]
    if not wanted or set(wanted) - {"quiet", "loaded"} or len(set(wanted)) != len(wanted):
        p.error("--phases: a comma-separated list of quiet and loaded, each at most once")
    command = "python bench/alert_latency/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    work = Path(tempfile.mkdtemp(prefix="citywatch-latency-"))
    noise = sample_fleet(1.0, kinds=["noise"])  # Wuhan's 940 construction sites
    lights = sample_fleet(0.0, kinds=["lighting"], min_per_kind=2 * args.alerts)
    registry = Registry.open(work / "state.db")
    registry.upsert(noise + lights)
    registry.close()
    alarm_ids = [d.device_id for d in lights]
    random.Random(args.seed).shuffle(alarm_ids)

    # deploy/mosquitto.conf saves every 60 s; the tests' 1 s save (each stops the broker while it
    # writes every queued message) measured loaded p99 169-177 ms against 97-137 ms with 60 s
    broker = Mosquitto(work / "mosquitto", autosave_interval_s=args.broker_autosave_s).start()
    receiver = Receiver().start()
    ingest = {k: v for k in ("linger_ms", "write_linger_ms", "priority_wait_ms")
              if (v := getattr(args, k)) is not None}
    if args.topology == "split":  # the evaluator first: it gets the probe, its API answers the bench
        nodes = [NodeProcess(work, broker.url, receiver.url, ingest, profile=args.profile, role="rules", name="rules"),
                 NodeProcess(work, broker.url, receiver.url, ingest, role="ingest", name="ingest")]
    else:
        nodes = [NodeProcess(work, broker.url, receiver.url, ingest, profile=args.profile)]
    alerter = None
    ok = False
    try:
        print(f"work dir {work}; broker {broker.url}; receiver {receiver.url}; node API "
              + ", ".join(f"http://{n.api} ({n.role})" for n in nodes), file=sys.stderr)
        for node in nodes:
            node.start()
        alerter = Publisher(broker.url, client_id="bench-alarms", max_inflight=100)
        rng = random.Random(args.seed)
        common = dict(alerter=alerter, receiver=receiver, nodes=nodes, rng=rng, broker_url=broker.url,
                      broker_pid=broker.proc.pid, background_ids=[d.device_id for d in noise],
                      publishers=args.publishers, publish_tick_s=args.publish_tick_ms / 1000.0,
                      warmup_s=args.warmup_s)
        phases = []
        plan = {"quiet": (alarm_ids[:args.alerts], 0.0), "loaded": (alarm_ids[args.alerts:], args.rate)}
        for name in wanted:
            ids, rate = plan[name]
            print(f"phase {name}: {len(ids)} alarms, background {rate:,.0f} msg/s ...", file=sys.stderr)
            phases.append(run_phase(name, alarm_ids=ids, rate=rate, **common))
            for node in nodes:
                if node.proc.poll() is not None:
                    raise BenchError(f"citywatch serve ({node.role}) stopped during the run:\n{node.tail()}")
        for ph in phases:
            split(ph, receiver, nodes[0].state_path)
        ok = report(phases, args, command)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if alerter is not None:
            alerter.close()
        for node in nodes:
            node.stop()
        receiver.stop()
        broker.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
