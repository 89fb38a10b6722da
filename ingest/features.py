"""Derived waveform features: RMS, peak and dominant frequency of each acceleration window.

A bridge accelerometer sends one ``series`` window a second (``accel_ms2``, 100 samples at 10 ms).
For each window the pipeline also stores three readings of the same device at the window's
start time (the catalogue's derived metrics, :data:`devices.catalogue.DERIVED`):

- ``accel_rms_ms2``: the root mean square of the samples (m/s²), mean removed;
- ``accel_peak_ms2``: the largest absolute sample (m/s²), mean removed;
- ``accel_freq_hz``: the frequency of the largest bin of the real FFT of the window without its
  mean (the DC bin excluded), from the window's sampling interval: bin k is
  ``k / (n * interval_s)`` Hz (1 Hz apart for a one-second window). The window is Hann-tapered
  and zero-padded to twice its length, and the peak refined between bins by a parabola through
  the log power of the peak bin and its two neighbours (Gaussian interpolation, exact for a
  Gaussian peak and close for a Hann one), so a drift of the natural frequency smaller than a
  bin shows in the mean of many windows. A one-second window holds about one cycle of a 1 Hz
  mode: single windows scatter by about ±0.15 Hz there (±0.04 Hz at 2.4 Hz).

Devices cannot send these metrics: they are not in their kind's ``metrics`` (the decoder
quarantines an unknown metric). Where: the rules stage keeps the batch's windows (:func:`waveform_windows`) and, once it
has released the priority gate, computes the readings (:func:`derive`); the write stage's merge
appends them ordered by device and metric, so that each is one run of the write
(:func:`merge_batches`, :func:`add_derived`). Cost: docs/PERFORMANCE.md "Waveform features".
"""

from __future__ import annotations

import functools

import numpy as np

from devices.catalogue import DERIVED
from ingest.model import Readings, ReadingsBuilder

SOURCE = "accel_ms2"
RMS, PEAK, FREQ = "accel_rms_ms2", "accel_peak_ms2", "accel_freq_hz"
_NAMES = (RMS, PEAK, FREQ)
MIN_SAMPLES = 8  # shorter windows carry no meaningful spectrum
PAD = 2  # FFT length / window length
ENABLED = True  # [ingest] waveform_features (citywatch/runner.py sets it for the process)


@functools.cache
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


def window_features(values: np.ndarray, interval_ms: np.ndarray | float) -> np.ndarray:
    """``(rms, peak, freq_hz)`` per row of ``values`` (windows × samples, one length).

    ``interval_ms``: the sampling interval of each window (or one for all).
    """
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[None, :]
    n = v.shape[1]
    centred = v - v.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.einsum("ij,ij->i", centred, centred) / n)
    peak = np.maximum(centred.max(axis=1), -centred.min(axis=1))
    # Hann taper, zero-padded to twice the length (bins half as far apart, the same resolution)
    nfft = PAD * n
    z = np.fft.rfft((centred * _hann(n)).astype(np.float32), nfft, axis=1)  # float32: half the FFT's work
    power = z.real * z.real + z.imag * z.imag
    k = np.argmax(power[:, 1:], axis=1) + 1  # not the DC bin
    # the peak between bins: a parabola through the log power of the bin and its neighbours
    rows = np.arange(v.shape[0])
    m = power.shape[1]
    a = np.log(power[rows, k - 1] + 1e-60)
    b = np.log(power[rows, k] + 1e-60)
    c = np.log(power[rows, np.minimum(k + 1, m - 1)] + 1e-60)
    den = a - 2 * b + c
    inner = (k < m - 1) & (den < 0)
    shift = np.where(inner, 0.5 * (a - c) / np.where(den == 0, -1.0, den), 0.0)
    interval_s = np.broadcast_to(np.asarray(interval_ms, np.float64) / 1000.0, (v.shape[0],))
    freq = (k + np.clip(shift, -0.5, 0.5)) / (nfft * interval_s)
    return np.column_stack((rms, peak, freq))


def waveform_windows(builder: ReadingsBuilder) -> list[tuple]:
    """What the features need of a batch's waveform windows, taken before the batch is built (no
    copy: the builder's lists, which it does not reuse). The rules stage calls this; the work
    waits for the write stage (:func:`add_derived`), off the alert path."""
    if not ENABLED or not builder._win_tags:
        return []
    return [(builder._win_tags, builder._win_ts, builder._win_interval, builder._win_values)]


def window_readings(windows: list[tuple]) -> Readings | None:
    """The derived readings of every ``accel_ms2`` window of ``windows`` (three per window, at the
    window's start, with its device's tags), or None. Windows shorter than :data:`MIN_SAMPLES`
    are skipped. Rows are ordered by device, metric and arrival, so that the readings of one
    device and metric are one run for the stores, not three short runs per window."""
    tags, starts, intervals, values = [], [], [], []
    for w_tags, w_ts, w_int, w_val in windows:
        idx = [i for i, t in enumerate(w_tags) if t[2] == SOURCE]
        if len(idx) == len(w_tags):  # the usual case: every window of the batch is an accelerometer's
            tags += w_tags
            starts += w_ts
            intervals += w_int
            values += w_val
        else:
            tags += [w_tags[i] for i in idx]
            starts += [w_ts[i] for i in idx]
            intervals += [w_int[i] for i in idx]
            values += [w_val[i] for i in idx]
    if any(len(v) < MIN_SAMPLES for v in values):
        keep = [j for j, v in enumerate(values) if len(v) >= MIN_SAMPLES]
        tags, starts = [tags[j] for j in keep], [starts[j] for j in keep]
        intervals, values = [intervals[j] for j in keep], [values[j] for j in keep]
    n = len(tags)
    if not n:
        return None
    lengths = np.fromiter(map(len, values), np.int64, n)
    interval = np.array(intervals, np.float64)
    if lengths.min() == lengths.max():
        feats = window_features(np.stack(values), interval)
    else:
        feats = np.empty((n, len(_NAMES)), np.float64)
        for size in np.unique(lengths).tolist():
            g = np.flatnonzero(lengths == size)
            feats[g] = window_features(np.stack([values[j] for j in g.tolist()]), interval[g])
    tag_rows = np.empty((n, 5), dtype=object)
    tag_rows[:] = tags
    order = np.argsort(tag_rows[:, 0], kind="stable")  # by device, arrival order kept
    k = len(_NAMES)
    dev = tag_rows[order, 0]
    breaks = np.flatnonzero(np.concatenate(([True], dev[1:] != dev[:-1])))
    sizes = np.diff(np.append(breaks, n))
    group = np.repeat(np.arange(len(breaks)), sizes)
    pos = np.arange(n) - breaks[group]  # position within its device's windows
    # the index of each derived row: device group start * k + metric * size + position
    rows = np.empty(n * k, np.int64)
    metric_idx = np.empty(n * k, np.int64)
    for m in range(k):
        dest = breaks[group] * k + m * sizes[group] + pos
        rows[dest] = order
        metric_idx[dest] = m
    cols = [tag_rows[rows, j] for j in range(5)]
    metric = np.array(_NAMES, dtype=object)[metric_idx]
    ts = np.array(starts, np.int64)[rows]
    return Readings(cols[0], cols[1], metric, ts, feats[rows, metric_idx], cols[3], cols[4])


class Appended:
    """Derived readings computed for a pending write; ``in_batch``: already appended to its
    batch (by :func:`merge_batches`), else still to append (:func:`add_derived`)."""

    __slots__ = ("in_batch", "readings")

    def __init__(self, readings: Readings, in_batch: bool = False) -> None:
        self.readings = readings
        self.in_batch = in_batch


def derive(windows: list) -> list:
    """The rules stage, after the priority gate: the derived readings of the raw windows, kept
    beside the batch (:class:`Appended`) until the write stage appends them."""
    raw = [w for w in windows if not isinstance(w, Appended)]
    if not raw:
        return windows
    derived = window_readings(raw)
    return [w for w in windows if isinstance(w, Appended)] + ([Appended(derived)] if derived is not None else [])


def _by_run(readings: list[Readings]) -> Readings | None:
    """Derived readings of several batches as one, ordered by device and metric (stable: arrival
    order kept), so that each device and metric is one run of the merged write."""
    if not readings:
        return None
    d = readings[0] if len(readings) == 1 else Readings.concat(readings)
    if len(readings) > 1:
        _, dev = np.unique(d.device_id, return_inverse=True)
        met = np.zeros(len(d), np.int64)
        for m, name in enumerate(_NAMES[1:], start=1):
            met[d.metric == name] = m
        d = d.take(np.argsort(dev.astype(np.int64) * len(_NAMES) + met, kind="stable"))
    return d


def merge_batches(parts: list) -> tuple[Readings, list]:
    """The batches of ``parts`` (pending writes, in order) and the derived readings of their
    windows, concatenated once (the write stage's merge: no second copy of the batch)."""
    windows = [w for p in parts for w in p.windows if not isinstance(w, Appended)]
    derived = window_readings(windows) if windows else None
    appended = [w.readings for p in parts for w in p.windows if isinstance(w, Appended) and not w.in_batch]
    merged = _by_run([*appended, *([derived] if derived is not None else [])])
    batch = Readings.concat([p.batch for p in parts] + ([merged] if merged is not None else []))
    return batch, ([Appended(merged, in_batch=True)] if merged is not None else [])


def add_derived(pipeline, p) -> Readings:
    """``p.batch`` with the derived readings of ``p.windows`` (then forgotten, so a retried write
    does not add them twice), counted as received and in flight like the readings they come from
    (received = stored + duplicates, and the pipeline's backpressure count, still hold). Called
    by the write stage, off the alert path: the rules do not read derived metrics."""
    windows, p.windows = p.windows, []
    batch = p.batch
    raw = [w for w in windows if not isinstance(w, Appended)]
    done = [w.readings for w in windows if isinstance(w, Appended) and w.in_batch]
    pending = [w.readings for w in windows if isinstance(w, Appended) and not w.in_batch]
    if raw:
        derived = window_readings(raw)
        pending += [derived] if derived is not None else []
    if pending:
        merged = _by_run(pending)
        batch = Readings.concat([batch, merged])
        done.append(merged)
    for d in done:
        with pipeline._cond:
            pipeline._inflight_readings += len(d)
        for kind, n in zip(*np.unique(d.kind.astype(str), return_counts=True), strict=True):
            pipeline.metrics.received.labels(str(kind)).inc(int(n))
    return batch


assert all(name in DERIVED["bridge"] for name in _NAMES)
