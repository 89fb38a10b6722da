"""Record a broker's traffic to a compact file, and replay it with its original timing.

File format (``.cwrec``): a gzip stream holding the magic line ``CWREC1\\n`` and then one
record per message, in the order received::

    >q  receive time, ms since the Unix epoch (wall clock of the recorder)
    >H  topic length      >I  payload length      >B  qos      >B  retain (0/1)
    topic (UTF-8)  payload (raw bytes)

Replay publishes the records in file order, spacing them by their receive times divided by
``speed`` (None: no spacing). With ``shift_to_now`` every ``"ts"`` in the JSON payloads (epoch
ms integers or RFC 3339 strings, top level and inside ``readings``) moves by the offset between
the first record's receive time and now, so an old incident replays as live traffic; all other
bytes are kept as recorded.
"""

from __future__ import annotations

import gzip
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from .errors import RecordingError
from .mqtt import BrokerURL, Pacer, Publisher, connect
from .publish import _Progress

MAGIC = b"CWREC1\n"
_HEAD = struct.Struct(">qHIBB")


class Recording:
    """One recorded message."""

    __slots__ = ("received_ms", "topic", "payload", "qos", "retain")

    def __init__(self, received_ms: int, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.received_ms, self.topic, self.payload, self.qos, self.retain = received_ms, topic, payload, qos, retain

    def __repr__(self) -> str:
        return f"Recording({self.received_ms}, {self.topic!r}, {len(self.payload)} bytes, qos={self.qos})"


class Writer:
    """Appends records to a new recording file (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self._f = gzip.open(path, "wb", compresslevel=5)
        self._f.write(MAGIC)
        self._lock = threading.Lock()
        self.count = 0

    def write(self, received_ms: int, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        t = topic.encode()
        with self._lock:
            self._f.write(_HEAD.pack(received_ms, len(t), len(payload), qos, 1 if retain else 0))
            self._f.write(t)
            self._f.write(payload)
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read(path: str | Path) -> Iterator[Recording]:
    """The records of a recording file in order; RecordingError if it is not one or is cut short."""
    try:
        f = gzip.open(path, "rb")
        magic = f.read(len(MAGIC))
    except FileNotFoundError:
        raise RecordingError(f"no recording at {path}") from None
    except (OSError, EOFError) as e:
        raise RecordingError(f"{path} is not a citywatch recording (not gzip: {e})") from None
    with f:
        if magic != MAGIC:
            raise RecordingError(f"{path} is not a citywatch recording (bad magic)")
        n = 0
        while True:
            try:
                head = f.read(_HEAD.size)
                if not head:
                    return
                if len(head) < _HEAD.size:
                    raise EOFError
                ms, tl, pl, qos, retain = _HEAD.unpack(head)
                topic = f.read(tl)
                payload = f.read(pl)
                if len(topic) < tl or len(payload) < pl:
                    raise EOFError
            except (EOFError, OSError, gzip.BadGzipFile):
                raise RecordingError(f"{path} is truncated after {n} records") from None
            n += 1
            yield Recording(ms, topic.decode(), payload, qos, bool(retain))


def record(broker_url: str | BrokerURL, out_path: str | Path, *, topics: Sequence[str] = ("city/#",),
           duration_s: float | None = None, count: int | None = None, stop: threading.Event | None = None,
           progress: bool = False, client_id: str | None = None,
           clock: Callable[[], float] = time.time, subscribed: threading.Event | None = None) -> int:
    """Subscribe to ``topics`` (QoS 1) and write every message received to ``out_path`` until
    ``duration_s`` has passed, ``count`` messages are written, or ``stop`` is set (without any,
    until ``stop`` is set: pass one). ``subscribed`` is set once the broker has acknowledged the
    subscription (every message published after that is recorded). Returns the number of
    messages written."""
    stop = stop or threading.Event()
    writer = Writer(out_path)
    enough = threading.Event()

    def on_message(c, userdata, msg) -> None:
        if enough.is_set():
            return
        writer.write(int(clock() * 1000), msg.topic, msg.payload, msg.qos, bool(msg.retain))
        if count is not None and writer.count >= count:
            enough.set()

    client = connect(broker_url, client_id, on_message=on_message)
    if subscribed is not None:
        client.on_subscribe = lambda *args: subscribed.set()
    bar = _Progress(progress, "record", int((duration_s or 0) * 1000) or (count or 0))
    try:
        client.subscribe([(t, 1) for t in topics])
        t0 = time.monotonic()
        while not (stop.is_set() or enough.is_set()):
            if duration_s is not None and time.monotonic() - t0 >= duration_s:
                break
            enough.wait(0.1)
            bar.update(int((time.monotonic() - t0) * 1000) if duration_s else writer.count, writer.count)
    finally:
        enough.set()
        client.disconnect()
        client.loop_stop()
        writer.close()
        bar.close(0, writer.count)
    return writer.count


_TS_INT = re.compile(rb'("ts"\s*:\s*)(-?\d+)(?=\s*[,}])')
_TS_STR = re.compile(rb'("ts"\s*:\s*")([^"]+)(")')


def shift_ts(payload: bytes, offset_ms: int) -> bytes:
    """``payload`` with every ``"ts"`` value moved by ``offset_ms``; other bytes unchanged.
    Non-JSON payloads (status words, broken input) come back as they were."""
    if not payload.startswith((b"{", b"[")) or b'"ts"' not in payload:
        return payload
    out = _TS_INT.sub(lambda m: m.group(1) + str(int(m.group(2)) + offset_ms).encode(), payload)

    def iso(m: re.Match) -> bytes:
        try:
            dt = datetime.fromisoformat(m.group(2).decode().replace("Z", "+00:00"))
        except ValueError:
            return m.group(0)
        return m.group(1) + (dt + timedelta(milliseconds=offset_ms)).isoformat(timespec="milliseconds").encode() \
            + m.group(3)

    return _TS_STR.sub(iso, out)


def replay(broker_url: str | BrokerURL, path: str | Path, *, speed: float | None, shift_to_now: bool = False,
           progress: bool = False, stop: threading.Event | None = None, client_id: str | None = None,
           clock: Callable[[], float] = time.time) -> int:
    """Publish a recording again, in order, with its original QoS and retain flags and its
    timing scaled by ``speed`` (None: as fast as possible). Returns the messages published."""
    records = read(path)
    first = next(records, None)
    if first is None:
        return 0
    offset = int(clock() * 1000) - first.received_ms if shift_to_now else 0
    pub = Publisher(broker_url, client_id=client_id)
    pacer = Pacer(first.received_ms, speed, stop, idle=pub.idle)
    bar = _Progress(progress, "replay", sum(1 for _ in read(path)) if progress else 0)
    n = 0
    try:
        with pub:
            for rec in _chain(first, records):
                if not pacer.wait(rec.received_ms):
                    break
                payload = shift_ts(rec.payload, offset) if offset else rec.payload
                pub.publish(rec.topic, payload, rec.qos, rec.retain)
                n += 1
                if n % 1000 == 0:
                    bar.update(n, n)
    finally:
        bar.close(n, n)
    return n


def _chain(first: Recording, rest: Iterator[Recording]) -> Iterator[Recording]:
    yield first
    yield from rest
