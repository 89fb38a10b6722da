"""Where ``citywatch serve`` and ``up`` send their log records: one line per event.

Three forms, chosen once at start by :func:`setup`:

- ``text`` on a terminal: rich's handler (colours, wrapped to the terminal's width);
- ``text`` elsewhere (systemd's journal, a pipe, a file): ``TIME LEVEL LOGGER: message``, never
  wrapped, the time in RFC 3339 UTC; a traceback stays on its record's line, its line breaks
  written as ``\\n`` (one journal entry per event; ``sed 's/\\\\n/\\n/g'`` unfolds it);
- ``json``: one JSON object per line for log shippers (Vector, Fluent Bit, Promtail): ``ts``
  (RFC 3339 UTC), ``level``, ``logger``, ``msg``, and ``exc`` (the traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

Format = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")


def _rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback and stack as text ("" without), as the standard formatter renders them."""
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class LineFormatter(logging.Formatter):
    """``2026-12-06T12:04:17.768Z WARNING citywatch.mqtt: message``; line breaks written as ``\\n``."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        exc = _exc_text(self, record)
        if exc:
            text = f"{text}\n{exc}"
        text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
        return f"{_rfc3339(record.created)} {record.levelname} {record.name}: {text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg`` and ``exc`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": _rfc3339(record.created), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        exc = _exc_text(self, record)
        if exc:
            event["exc"] = exc
        return json.dumps(event, ensure_ascii=False, default=str)


def handler(fmt: Format, stream: TextIO) -> logging.Handler:
    """The handler for ``fmt`` writing to ``stream``: rich's on a terminal for ``text``."""
    if fmt not in FORMATS:
        raise ValueError(f"log format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "text" and stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        return RichHandler(console=Console(file=stream), show_path=False, log_time_format="%H:%M:%S")
    h = logging.StreamHandler(stream)
    h.setFormatter(JsonFormatter() if fmt == "json" else LineFormatter())
    return h


def setup(fmt: Format = "text", verbose: bool = False, stream: TextIO | None = None) -> None:
    """Route every record of the process to one handler on ``stream`` (stderr) in ``fmt``."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler(fmt, stream or sys.stderr))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:  # one line per InfluxDB write or webhook is noise at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)
