"""The disk spool: batches kept on local disk while the store is unavailable, drained in order.

Layout of the spool directory:

- ``<seq>-<created_ms>.seg``: one batch per file; ``seq`` (zero-padded, increasing, never
  reused) gives the order, ``created_ms`` the age. A file appears under its final name only
  once complete: it is written as ``.tmp``, fsync'd, renamed, and the directory fsync'd, so
  :meth:`Spool.append` returning means the batch survives a crash or power loss.
- ``corrupt/``: segments that failed their check (bad magic, length or CRC32: a torn or
  damaged file) or whose data the store refused (:class:`StoreRejected`); moved aside with a
  log line, never deleted, never blocking.

A segment file: ``b"CWSPOOL1"``, header length (u32), body length (u64), CRC32 of header+body
(u32), all little-endian; then a JSON header (``seq``, ``created_ms``, ``rows``, the string
columns once per run of equal consecutive rows) and the body: run lengths (i64), ``ts`` (i64)
and ``value`` (f64) as raw arrays. A waveform of a million samples is a few strings and 16 MB.

Guarantees: :meth:`Spool.drain` writes segments to the store oldest first and deletes each
only after the store's ``write`` returned (so a crash in between re-sends it: stores are
idempotent); it holds one segment in memory at a time; it stops at the first
:class:`StoreUnavailable`, keeping that segment and the rest for the next call. One appender
and one drainer may run in separate threads.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from ingest.model import Readings
from ingest.stores.base import Store, StoreError, StoreRejected

log = logging.getLogger(__name__)

MAGIC = b"CWSPOOL1"
_PREFIX = struct.Struct("<8sIQI")  # magic, header length, body length, crc32(header + body)
_NAME = re.compile(r"^(\d{16})-(\d+)\.seg$")
_STR_COLUMNS = ("device_id", "kind", "metric", "district", "asset_id")
HIGH_WATER = 0.9  # full() from this fraction of max_bytes


class SpoolError(Exception):
    """Base of the spool errors."""


class SpoolFull(SpoolError):
    """The spool is full (see :meth:`Spool.append`): keep the batch, do not acknowledge it."""


class CorruptSegment(SpoolError):
    """A segment file failed its check (torn write, damaged disk, not a spool file)."""


class _Header(msgspec.Struct, frozen=True):
    seq: int
    created_ms: int
    rows: int
    strings: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class _Segment:
    seq: int
    created_ms: int
    size: int
    path: Path


def encode(batch: Readings, seq: int, created_ms: int) -> bytes:
    """One segment file's bytes for ``batch``."""
    n = len(batch)
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    cols = [getattr(batch, c) for c in _STR_COLUMNS]
    for col in cols:
        change[1:] |= col[1:] != col[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n)).astype("<i8")
    header = msgspec.json.encode(_Header(seq, created_ms, n, {
        name: [str(s) for s in col[starts].tolist()] for name, col in zip(_STR_COLUMNS, cols, strict=False)}))
    body = lengths.tobytes() + np.asarray(batch.ts, "<i8").tobytes() + np.asarray(batch.value, "<f8").tobytes()
    crc = zlib.crc32(body, zlib.crc32(header))
    return _PREFIX.pack(MAGIC, len(header), len(body), crc) + header + body


def decode(data: bytes) -> tuple[int, Readings]:
    """(seq, batch) of a segment file's bytes; :class:`CorruptSegment` saying what is wrong."""
    if len(data) < _PREFIX.size:
        raise CorruptSegment(f"truncated: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix")
    magic, hlen, blen, crc = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CorruptSegment(f"not a spool segment (magic {magic!r})")
    if len(data) != _PREFIX.size + hlen + blen:
        raise CorruptSegment(f"truncated or padded: {len(data)} bytes, expected {_PREFIX.size + hlen + blen}")
    header_b = data[_PREFIX.size:_PREFIX.size + hlen]
    body = data[_PREFIX.size + hlen:]
    if zlib.crc32(body, zlib.crc32(header_b)) != crc:
        raise CorruptSegment("CRC32 mismatch")
    try:
        h = msgspec.json.decode(header_b, type=_Header)
    except msgspec.DecodeError as e:
        raise CorruptSegment(f"bad header: {e}") from None
    runs = len(h.strings.get("device_id", []))
    if sorted(h.strings) != sorted(_STR_COLUMNS) or any(len(v) != runs for v in h.strings.values()) \
            or blen != 8 * runs + 16 * h.rows:
        raise CorruptSegment("header does not match the body")
    lengths = np.frombuffer(body, "<i8", runs)
    if int(lengths.sum()) != h.rows or (lengths <= 0).any():
        raise CorruptSegment("run lengths do not add up to the row count")
    ts = np.frombuffer(body, "<i8", h.rows, 8 * runs).astype(np.int64)
    value = np.frombuffer(body, "<f8", h.rows, 8 * runs + 8 * h.rows).astype(np.float64)

    def column(name: str) -> np.ndarray:
        values = np.empty(runs, dtype=object)
        values[:] = h.strings[name]
        return np.repeat(values, lengths)

    return h.seq, Readings(column("device_id"), column("kind"), column("metric"), ts, value,
                           column("district"), column("asset_id"))


class Spool:
    """Batches on disk under ``directory``, at most ``max_bytes`` of segment files.

    ``clock_ms`` gives the creation time written with each segment (wall clock by default).
    """

    def __init__(self, directory: str | Path, max_bytes: int, *,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be positive, got {max_bytes}")
        self.dir = Path(directory)
        self.corrupt_dir = self.dir / "corrupt"
        self.max_bytes = max_bytes
        self._clock_ms = clock_ms
        self.dir.mkdir(parents=True, exist_ok=True)
        self.corrupt_dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._segments: list[_Segment] = []
        for tmp in self.dir.glob("*.tmp"):  # an append that never returned: not acknowledged
            tmp.unlink()
        last = 0
        for path in self.dir.iterdir():
            m = _NAME.match(path.name)
            if m and path.is_file():
                self._segments.append(_Segment(int(m[1]), int(m[2]), path.stat().st_size, path))
        for path in self.corrupt_dir.iterdir():
            m = _NAME.match(path.name)
            if m:
                last = max(last, int(m[1]))
        self._segments.sort(key=lambda s: s.seq)
        self._next = max([last] + [s.seq for s in self._segments]) + 1
        self._bytes = sum(s.size for s in self._segments)
        self.corrupt = 0  # segments moved aside by this object
        self.drained_batches = 0  # written to a store by this object (for metrics)
        self.drained_readings = 0
        self.drained_by_kind: dict[str, int] = {}  # readings drained, per kind (cumulative)

    def append(self, batch: Readings) -> None:
        """Write ``batch`` as the newest segment; durable (file and directory fsync'd) on return.

        ``max_bytes`` is a high-water mark, not a hard cap: the append is refused with
        :class:`SpoolFull` once :meth:`full` is true, so a caller that checks ``full()`` first is
        never refused, and the spool exceeds ``max_bytes`` by at most one batch. OSError if the
        disk refuses. In both cases the batch is not spooled.
        """
        if len(batch) == 0:
            return
        created = int(self._clock_ms())
        with self._lock:
            seq = self._next
            data = encode(batch, seq, created)
            if self._bytes >= HIGH_WATER * self.max_bytes:
                raise SpoolFull(f"spool {self.dir} is full: {self._bytes} bytes waiting, its limit is "
                                f"{self.max_bytes} (refusing from {HIGH_WATER:.0%}); the store must drain it")
            path = self.dir / f"{seq:016d}-{created}.seg"
            tmp = path.with_name(path.name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                _fsync_dir(self.dir)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._next = seq + 1
            self._segments.append(_Segment(seq, created, len(data), path))
            self._bytes += len(data)

    def depth(self) -> tuple[int, int]:
        """(batches, bytes) waiting in the spool."""
        with self._lock:
            return len(self._segments), self._bytes

    def oldest_age_ms(self, now_ms: int) -> int:
        """Age of the oldest waiting batch at ``now_ms`` (0 when the spool is empty)."""
        with self._lock:
            return max(0, now_ms - self._segments[0].created_ms) if self._segments else 0

    def full(self) -> bool:
        """True from 90% of ``max_bytes``: time to stop acknowledging (backpressure)."""
        with self._lock:
            return self._bytes >= HIGH_WATER * self.max_bytes

    def drain(self, store: Store, max_batches: int | None = None) -> int:
        """Write waiting batches to ``store``, oldest first; returns how many batches were
        written (readings: :attr:`drained_readings`, cumulative). ``max_batches`` bounds the
        segments handled in this call, written or set aside.

        Stops early (returning the count so far) when the store raises
        :class:`StoreUnavailable` or another :class:`StoreError` (bad credentials): that batch
        and the later ones stay for the next call. A batch the store rejects as bad data
        (:class:`StoreRejected`) is moved to ``corrupt/`` and draining goes on.
        """
        done = handled = 0
        with self._drain_lock:
            while max_batches is None or handled < max_batches:
                handled += 1
                with self._lock:
                    if not self._segments:
                        break
                    seg = self._segments[0]
                try:
                    data = seg.path.read_bytes()
                except FileNotFoundError:
                    log.error("spool segment %s vanished (deleted by hand?); skipping it", seg.path.name)
                    self._forget(seg)
                    continue
                try:
                    seq, batch = decode(data)
                    if seq != seg.seq:
                        raise CorruptSegment(f"holds sequence number {seq}, its name says {seg.seq}")
                except CorruptSegment as e:
                    self._move_aside(seg, f"is corrupt ({e})")
                    continue
                try:
                    store.write(batch)
                except StoreRejected as e:
                    self._move_aside(seg, f"was rejected by the store ({e})")
                    continue
                except StoreError as e:  # unavailable, or misconfigured: keep it for later
                    log.warning("spool drain stopped: %s (%d batches waiting)", e, len(self._segments))
                    break
                seg.path.unlink()
                self._forget(seg)
                done += 1
                self.drained_batches += 1
                self.drained_readings += len(batch)
                for kind, n in zip(*np.unique(batch.kind.astype(str), return_counts=True), strict=True):
                    self.drained_by_kind[str(kind)] = self.drained_by_kind.get(str(kind), 0) + int(n)
        return done

    def _move_aside(self, seg: _Segment, why: str) -> None:
        target = self.corrupt_dir / seg.path.name
        os.replace(seg.path, target)
        _fsync_dir(self.dir)
        self._forget(seg)
        self.corrupt += 1
        log.error("spool segment %s %s; moved to %s", seg.path.name, why, target)

    def _forget(self, seg: _Segment) -> None:
        with self._lock:
            self._segments.remove(seg)
            self._bytes -= seg.size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
