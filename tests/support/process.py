"""What the test servers (Mosquitto, influxd) share: a free loopback port, start-and-wait, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server started from ``command()``, ready when ``ready()`` is true; ``log`` is its log file."""

    name = "server"
    log: Path
    proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def _start(self, timeout: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if not _wait(self.ready, timeout, lambda: self.proc.poll() is not None):
            code = self.proc.poll()
            self.stop(kill=True)
            raise RuntimeError(f"{self.name} {'exited with ' + str(code) if code is not None else 'not ready'}"
                               f" within {timeout} s: {self.log_tail()}")

    stop_signal = signal.SIGTERM  # what asks the server to stop (PostgreSQL: SIGINT, see there)

    def stop(self, kill: bool = False) -> None:
        """``stop_signal`` (SIGKILL with ``kill``), then SIGKILL to the group after 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else self.stop_signal)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


def _wait(ready: Callable[[], bool], timeout: float, failed: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if failed():
            return False
        if ready():
            return True
        time.sleep(0.05)
    return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def interrupt(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Ctrl-C ``proc`` (SIGINT: a citywatch process drains and stops) and wait for it; SIGKILL
    if it has not ended within ``timeout`` (its return code then tells the test)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(procs) -> float:
    """User + system CPU seconds of ``procs`` (psutil.Process) and all their children; a process
    already gone counts nothing (benchmarks: what each server and node spent over a run)."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total
