"""Value types of the ingest path: a columnar batch of readings, events, rejections.

A :class:`Readings` batch is columnar (one numpy array per column) because every consumer of
readings works on arrays: the stores insert whole columns, the rule engine evaluates per
(kind, metric) with numpy. A batch is immutable once built; build one with
:class:`ReadingsBuilder` (append per message, concatenate once).

Columns:
- ``device_id``, ``kind``, ``metric``, ``district``, ``asset_id``: object arrays of ``str``
  (``asset_id`` may be ``""``),
- ``ts``: int64 milliseconds since the Unix epoch (event time),
- ``value``: float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

_STR_COLUMNS = ("device_id", "kind", "metric", "district", "asset_id")
COLUMNS = ("device_id", "kind", "metric", "ts", "value", "district", "asset_id")


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading, for the edges (tests, the API); the hot path uses :class:`Readings`."""

    device_id: str
    kind: str
    metric: str
    ts: int
    value: float
    district: str = ""
    asset_id: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class Readings:
    device_id: np.ndarray
    kind: np.ndarray
    metric: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    district: np.ndarray
    asset_id: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name in COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name} has {len(getattr(self, name))} rows, ts has {n}")

    @classmethod
    def empty(cls) -> Readings:
        e = np.empty(0, dtype=object)
        return cls(e, e, e, np.empty(0, np.int64), np.empty(0, np.float64), e, e)

    @classmethod
    def from_rows(cls, rows: list[Reading] | list[tuple]) -> Readings:
        """From ``Reading`` values or tuples in COLUMNS order."""
        if not rows:
            return cls.empty()
        cols = list(zip(*(
            (r.device_id, r.kind, r.metric, r.ts, r.value, r.district, r.asset_id)
            if isinstance(r, Reading) else tuple(r) for r in rows
        ), strict=False))
        return cls(
            np.array(cols[0], dtype=object), np.array(cols[1], dtype=object),
            np.array(cols[2], dtype=object), np.array(cols[3], dtype=np.int64),
            np.array(cols[4], dtype=np.float64), np.array(cols[5], dtype=object),
            np.array(cols[6], dtype=object),
        )

    @classmethod
    def concat(cls, parts: list[Readings]) -> Readings:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, c) for p in parts]) for c in COLUMNS))

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[Reading]:
        for i in range(len(self)):
            yield self.row(i)

    def row(self, i: int) -> Reading:
        return Reading(
            str(self.device_id[i]), str(self.kind[i]), str(self.metric[i]), int(self.ts[i]),
            float(self.value[i]), str(self.district[i]), str(self.asset_id[i]),
        )

    def __getitem__(self, rows: slice) -> Readings:
        """The rows of a slice, as a batch."""
        if not isinstance(rows, slice):
            raise TypeError("Readings take a slice; use row(i) for one reading")
        return self.take(rows)

    def take(self, index: np.ndarray | slice) -> Readings:
        """The rows selected by a boolean mask or an index array."""
        return Readings(*(getattr(self, c)[index] for c in COLUMNS))

    def columns(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in COLUMNS}


class ReadingsBuilder:
    """Appends readings per message and builds one :class:`Readings` batch.

    Four ways in: :meth:`add_message` the metrics of one message at one ts (the common
    telemetry message), :meth:`add` one reading, :meth:`add_series` many samples of one metric
    with their timestamps, and :meth:`add_window` a waveform window (samples at a fixed interval
    from a start time, whose timestamps are made in :meth:`build` for the whole batch at once).
    A message's readings are consecutive rows of the batch, in the order given, and share one
    device id object (the rule engine and the stores look a device up once per run of rows).
    """

    __slots__ = ("_msgs", "_series_tags", "_series_ts", "_series_values", "_win_tags", "_win_ts",
                 "_win_interval", "_win_values", "_n")

    def __init__(self) -> None:
        # one tuple per message: (device_id, kind, ts, district, asset_id, metrics, values),
        # expanded into columns once in build() (a tuple per message, not one per reading)
        self._msgs: list[tuple] = []
        # series are kept as (tags, ts array, value array) and expanded once in build(): the
        # per-row string columns of a waveform are made by one np.repeat, not per message
        self._series_tags: list[tuple[str, str, str, str, str]] = []
        self._series_ts: list[np.ndarray] = []
        self._series_values: list[np.ndarray] = []
        self._win_tags: list[tuple[str, str, str, str, str]] = []
        self._win_ts: list[int] = []
        self._win_interval: list[float] = []
        self._win_values: list[np.ndarray] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, device_id: str, kind: str, metric: str, ts: int, value: float,
            district: str = "", asset_id: str = "") -> None:
        self._msgs.append((device_id, kind, ts, district, asset_id, (metric,), (value,)))
        self._n += 1

    def add_message(self, device_id: str, kind: str, ts: int, metrics: Sequence[str],
                    values: Sequence[float], district: str = "", asset_id: str = "") -> None:
        """Readings ``metrics[i] = values[i]``, all at ``ts`` (the sequences are kept, not copied)."""
        n = len(metrics)
        if len(values) != n:
            raise ValueError(f"message of {device_id}: {n} metrics, {len(values)} values")
        if n:
            self._msgs.append((device_id, kind, ts, district, asset_id, metrics, values))
            self._n += n

    def extend(self, other: ReadingsBuilder) -> None:
        """Append everything ``other`` holds, after what this one holds (``other`` is left as is)."""
        self._msgs.extend(other._msgs)
        self._series_tags.extend(other._series_tags)
        self._series_ts.extend(other._series_ts)
        self._series_values.extend(other._series_values)
        self._win_tags.extend(other._win_tags)
        self._win_ts.extend(other._win_ts)
        self._win_interval.extend(other._win_interval)
        self._win_values.extend(other._win_values)
        self._n += other._n

    def add_series(self, device_id: str, kind: str, metric: str, ts: np.ndarray,
                   value: np.ndarray, district: str = "", asset_id: str = "") -> None:
        n = len(ts)
        if n == 0:
            return
        if len(value) != n:
            raise ValueError(f"series of {metric}: {n} timestamps, {len(value)} values")
        self._series_tags.append((device_id, kind, metric, district, asset_id))
        self._series_ts.append(np.asarray(ts, np.int64))
        self._series_values.append(np.asarray(value, np.float64))
        self._n += n

    def add_window(self, device_id: str, kind: str, metric: str, ts: int, interval_ms: float,
                   value: np.ndarray, district: str = "", asset_id: str = "") -> None:
        """Samples ``value[i]`` at ``ts + round(i * interval_ms)`` (device-protocol.md "series")."""
        if len(value) == 0:
            return
        self._win_tags.append((device_id, kind, metric, district, asset_id))
        self._win_ts.append(ts)
        self._win_interval.append(interval_ms)
        self._win_values.append(value)
        self._n += len(value)

    def add_windows(self, tags: list[tuple[str, str, str, str, str]], ts: list[int], interval_ms: list[float],
                    values: list[np.ndarray]) -> None:
        """Many windows at once: ``tags[i]`` is ``(device_id, kind, metric, district, asset_id)``.
        (ingest/features.py adds its derived readings as one-sample windows: they join the batch's
        window part, so :meth:`build` copies nothing more than it did.)"""
        self._win_tags.extend(tags)
        self._win_ts.extend(ts)
        self._win_interval.extend(interval_ms)
        self._win_values.extend(values)
        self._n += sum(map(len, values))

    @staticmethod
    def window_times(ts: np.ndarray, interval_ms: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The sample times of windows (``ts``, ``interval_ms``, ``lengths`` per window), concatenated."""
        starts = np.cumsum(lengths) - lengths
        i = np.arange(int(lengths.sum()), dtype=np.float64) - np.repeat(starts, lengths)
        return np.repeat(ts, lengths) + np.round(i * np.repeat(interval_ms, lengths)).astype(np.int64)

    def build(self) -> Readings:
        parts = []
        if self._msgs:
            parts.append(self._expand_messages(self._msgs))
        if self._series_tags:
            lengths = np.fromiter((len(t) for t in self._series_ts), np.int64, len(self._series_ts))
            parts.append(self._expand(self._series_tags, lengths, np.concatenate(self._series_ts),
                                      np.concatenate(self._series_values)))
        if self._win_tags:
            lengths = np.fromiter((len(v) for v in self._win_values), np.int64, len(self._win_values))
            times = self.window_times(np.array(self._win_ts, np.int64), np.array(self._win_interval, np.float64),
                                      lengths)
            parts.append(self._expand(self._win_tags, lengths, times, np.concatenate(self._win_values)))
        return Readings.concat(parts)

    @staticmethod
    def _expand_messages(msgs: list[tuple]) -> Readings:
        dev, kind, ts, district, asset, metrics, values = zip(*msgs, strict=True)
        counts = np.fromiter(map(len, metrics), np.int64, len(msgs))
        total = int(counts.sum())

        def repeated(col: tuple) -> np.ndarray:
            a = np.empty(len(col), dtype=object)
            a[:] = col
            return np.repeat(a, counts)

        metric = np.empty(total, dtype=object)
        metric[:] = list(chain.from_iterable(metrics))
        return Readings(repeated(dev), repeated(kind), metric,
                        np.repeat(np.fromiter(ts, np.int64, len(ts)), counts),
                        np.fromiter(chain.from_iterable(values), np.float64, total),
                        repeated(district), repeated(asset))

    @staticmethod
    def _expand(tags_list: list[tuple], lengths: np.ndarray, ts: np.ndarray, values: np.ndarray) -> Readings:
        """Readings of runs: the five tags of run j repeated ``lengths[j]`` times (one np.repeat
        per column, not a tuple per sample)."""
        tags = np.empty((len(tags_list), 5), dtype=object)
        tags[:] = tags_list
        cols = [np.repeat(tags[:, j], lengths) for j in range(5)]
        return Readings(cols[0], cols[1], cols[2], ts, np.asarray(values, np.float64), cols[3], cols[4])


@dataclass(frozen=True, slots=True)
class Event:
    """A discrete event from a device (``city/{kind}/{id}/event``)."""

    device_id: str
    kind: str
    ts: int
    type: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    district: str = ""
    asset_id: str = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected message (or a rejected part of one), bound for the quarantine."""

    topic: str
    payload: bytes  # raw payload, truncated to 4 KiB by the quarantine
    received_at: int  # ms since epoch, wall clock of the consumer
    reason: str
    device_id: str = ""
    kind: str = ""
