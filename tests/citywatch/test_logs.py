"""Logs and ``--version`` (docs/OPERATIONS.md): one line per event when stderr is not a terminal,
never wrapped at 80 columns; JSON lines on request; rich's handler on a terminal. Each test runs
``citywatch`` (or a small Python program calling citywatch/logs.py) as a subprocess with real pipes
or a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.faults.harness import citywatch_cmd
from tests.support.process import free_port

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.+)$")
# a client id long enough that the broker's warning line is far over 80 columns
CLIENT_ID = "citywatch-log-test-" + "x" * 80


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    return {**env, **extra}


def _config(tmp_path: Path, broker_url: str) -> Path:
    p = tmp_path / "citywatch.toml"
    p.write_text(f'[mqtt]\nurl = "{broker_url}"\nclient_id = "{CLIENT_ID}"\n'
                 f'[store]\nurl = "duckdb:///{tmp_path}/readings.duckdb"\n'
                 f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n'
                 f'[api]\nlisten = "127.0.0.1:{free_port()}"\nopen = true\n'
                 f'[ingest]\nspool_dir = "{tmp_path}/spool"\n', encoding="utf-8")
    return p


class _Lines:
    """The complete lines a process has written so far on some of its pipes (read unbuffered: a
    select() on a buffered text stream can miss lines already in its buffer)."""

    def __init__(self, *streams) -> None:
        self.fds = {s.fileno(): s for s in streams}
        self.partial = {fd: b"" for fd in self.fds}
        self.lines = {s: [] for s in streams}
        self.eof: set[int] = set()

    def _take(self, fd: int, chunk: bytes) -> None:
        *complete, self.partial[fd] = (self.partial[fd] + chunk).split(b"\n")
        self.lines[self.fds[fd]] += [ln.decode() for ln in complete]

    def read(self, timeout: float) -> None:
        for fd in select.select([fd for fd in self.fds if fd not in self.eof], [], [], timeout)[0]:
            chunk = os.read(fd, 65536)
            self._take(fd, chunk)
            if not chunk:
                self.eof.add(fd)

    def drain(self) -> None:
        """Everything left, up to end of file (the process has exited)."""
        for fd in self.fds:
            while chunk := os.read(fd, 65536):
                self._take(fd, chunk)
            if self.partial[fd]:
                self._take(fd, b"\n")

    def until(self, done, timeout: float = 60.0) -> None:
        """Read until ``done(self.lines)`` or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(self.lines) and len(self.eof) < len(self.fds) and time.monotonic() < deadline:
            self.read(0.5)


def _serve_with_broker_down(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """``citywatch serve`` against a closed port: the API warning, then one warning per reconnect attempt."""
    cfg = _config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    proc = subprocess.Popen(citywatch_cmd() + ["serve", "--config", str(cfg), *args], cwd=tmp_path,
                            env=env or _env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = _Lines(proc.stderr)
    try:
        lines.until(lambda got: len(got[proc.stderr]) >= 3, timeout=30)
        return lines.lines[proc.stderr][:3]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_version_is_the_installed_packages():
    r = subprocess.run(citywatch_cmd() + ["--version"], capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"citywatch {version('citywatch')}\n"


def test_text_logs_one_unwrapped_line_per_event(tmp_path):
    started = datetime.now(UTC)
    lines = _serve_with_broker_down(tmp_path)
    assert len(lines) == 3, lines
    for line in lines:
        m = LINE.match(line)
        assert m, f"not TIME LEVEL LOGGER: message: {line!r}"
        ts = datetime.fromisoformat(m.group(1))
        assert started - timedelta(seconds=1) <= ts <= datetime.now(UTC)
    reconnects = [line for line in lines if " citywatch.mqtt" in line]
    assert reconnects and all(len(line) > 80 and "refused" in line for line in reconnects)


def test_json_lines_from_the_option_and_from_the_environment(tmp_path):
    for args, env in ((("--log-format", "json"), _env()), ((), _env(CITYWATCH_LOG_FORMAT="json"))):
        started = datetime.now(UTC)
        lines = _serve_with_broker_down(tmp_path, *args, env=env)
        assert len(lines) == 3, lines
        events = [json.loads(line) for line in lines]
        for e in events:
            assert set(e) == {"ts", "level", "logger", "msg"}
            assert e["ts"].endswith("Z")
            assert started - timedelta(seconds=1) <= datetime.fromisoformat(e["ts"]) <= datetime.now(UTC)
        assert events[0] == {**events[0], "level": "WARNING", "logger": "citywatch.api"}
        assert any(e["logger"].startswith("citywatch.mqtt") and "refused" in e["msg"] for e in events)


def test_a_bad_log_format_names_the_key(tmp_path):
    cfg = _config(tmp_path, "mqtt://127.0.0.1:1883")
    r = subprocess.run(citywatch_cmd() + ["serve", "--config", str(cfg), "--log-format", "xml"],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "log.format: Input should be 'text' or 'json'" in r.stderr


_TRACEBACK = """
import logging, sys
from citywatch import logs
logs.setup(sys.argv[1])
try:
    {}["a key that is not there " + "y" * 80]
except KeyError:
    logging.getLogger("citywatch.test").exception("a failure\\nover two lines")
logging.getLogger("citywatch.test").info("after")
"""


def _traceback_program(fmt: str, stderr) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _TRACEBACK, fmt], stderr=stderr, stdout=subprocess.DEVNULL,
                            env=_env(PYTHONPATH=str(Path(__file__).parents[2])))


def test_a_traceback_stays_on_its_records_line():
    proc = _traceback_program("text", subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert len(lines) == 2, lines
    m = LINE.match(lines[0])
    assert m and m.group(2, 3) == ("ERROR", "citywatch.test")
    unfolded = m.group(4).replace("\\n", "\n")
    assert unfolded.startswith("a failure\nover two lines\nTraceback (most recent call last):\n")
    assert unfolded.endswith("KeyError: 'a key that is not there " + "y" * 80 + "'")
    assert LINE.match(lines[1]).group(4) == "after"


def test_a_traceback_in_json():
    proc = _traceback_program("json", subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    first, second = (json.loads(line) for line in err.decode().splitlines())
    assert first["msg"] == "a failure\nover two lines" and first["level"] == "ERROR"
    assert first["exc"].startswith("Traceback (most recent call last):\n") and first["exc"].endswith("y" * 80 + "'")
    assert second["msg"] == "after" and "exc" not in second


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="no pseudo-terminals")
def test_a_terminal_gets_richs_handler():
    """On a terminal the text format is rich's: no RFC 3339 stamp, the traceback drawn in a box."""
    main, tty = pty.openpty()
    proc = _traceback_program("text", tty)
    os.close(tty)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the program exited and the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode(errors="replace"))
    assert "Traceback" in text and "a failure" in text and "after" in text
    assert not any(LINE.match(line) for line in text.splitlines())
    assert len(text.splitlines()) > 4  # a multi-line rendering: rich's, not the one-line formatter


def _serve_then_sigterm(tmp_path: Path, broker_url: str, *args: str) -> tuple[list[str], list[str]]:
    """``citywatch serve`` until it says it is serving (on stdout, or on stderr in JSON), then
    SIGTERM (taken from that line on): its stdout and stderr lines."""
    cfg = _config(tmp_path, broker_url)
    proc = subprocess.Popen(citywatch_cmd() + ["serve", "--config", str(cfg), *args], cwd=tmp_path, env=_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines = _Lines(proc.stdout, proc.stderr)
    try:
        lines.until(lambda got: any("citywatch serving" in ln for ls in got.values() for ln in ls))
        assert proc.poll() is None, f"serve exited: {lines.lines}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        lines.drain()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, lines.lines
    return lines.lines[proc.stdout], lines.lines[proc.stderr]


def test_serves_status_lines_are_not_wrapped_on_a_pipe(tmp_path, mosquitto):
    """stdout too goes to the journal under systemd: ``serve``'s status lines, longer than 80
    columns here, each stay one line."""
    out, _ = _serve_then_sigterm(tmp_path, mosquitto.url)
    assert len(out) == 2, out
    assert out[0].startswith("citywatch serving: API http://") and out[0].endswith(f"/{tmp_path}/readings.duckdb")
    assert len(out[0]) > 80
    assert out[1].startswith("stopped. readings received 0, stored 0, duplicates 0, spooled 0"), out


def test_json_mode_writes_nothing_but_json_lines(tmp_path, mosquitto):
    """With --log-format json the status lines are log records too: a log shipper reading the
    journal gets nothing but JSON objects."""
    out, err = _serve_then_sigterm(tmp_path, mosquitto.url, "--log-format", "json")
    assert out == []
    events = [json.loads(line) for line in err]
    status = [e["msg"] for e in events if e["logger"] == "citywatch" and e["level"] == "INFO"]
    assert status[0].startswith("citywatch serving: API http://") and status[-1].startswith("stopped. readings")


def test_uvicorns_records_take_the_same_form(tmp_path):
    """The API server's own records (here: its address taken) go through citywatch's handler."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        cfg = _config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
        r = subprocess.run(citywatch_cmd() + ["serve", "--config", str(cfg)], capture_output=True, text=True,
                           timeout=120, env=_env(CITYWATCH_API_LISTEN=listen), cwd=tmp_path)
    assert r.returncode == 1
    records = [LINE.match(line) for line in r.stderr.splitlines() if not line.startswith("error: ")]
    assert all(records), r.stderr
    assert any(m.group(2, 3) == ("ERROR", "uvicorn.error") and "address already in use" in m.group(4) for m in records)
    assert r.stderr.splitlines()[-1] == f"error: the API could not listen on {listen}"
