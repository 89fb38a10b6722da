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
quarantines an unknown metric). Cost: windows of one length are stacked and transformed by one
``numpy.fft.rfft`` call per batch (``bench/ingest``: docs/PERFORMANCE.md "Waveform features").
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
    z = np.fft.rfft(centred * _hann(n), nfft, axis=1)
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


def add_window_features(builder: ReadingsBuilder) -> dict[str, int]:
    """Add the derived readings of every ``accel_ms2`` window ``builder`` holds (three per window,
    at the window's start, with its device's tags); returns the readings added per kind. Windows
    shorter than :data:`MIN_SAMPLES` are skipped.

    Cost per window is kept to a few numpy passes: one stack and one FFT per window length, and
    the readings of one device and metric go in as windows over the device's regularly spaced
    window starts (one accelerometer's windows come a second apart), so that they are a few long
    runs for the stores and the rule engine, not three short runs per window."""
    tags = builder._win_tags
    if not tags or not ENABLED:
        return {}
    values = builder._win_values
    picked = [i for i, t in enumerate(tags) if t[2] == SOURCE and len(values[i]) >= MIN_SAMPLES]
    if not picked:
        return {}
    lengths = np.fromiter((len(values[i]) for i in picked), np.int64, len(picked))
    if lengths.min() == lengths.max():
        groups = [np.arange(len(picked))]
    else:
        groups = [np.flatnonzero(lengths == n) for n in np.unique(lengths).tolist()]
    feats = np.empty((len(picked), len(_NAMES)), np.float64)
    win_interval = builder._win_interval
    for g in groups:
        rows = [picked[j] for j in g.tolist()]
        feats[g] = window_features(np.stack([values[i] for i in rows]),
                                   np.array([win_interval[i] for i in rows], np.float64))
    starts = np.array([builder._win_ts[i] for i in picked], np.int64)
    by_device: dict[tuple, list[int]] = {}
    for j, i in enumerate(picked):
        t = tags[i]
        by_device.setdefault((t[0], t[1], t[3], t[4]), []).append(j)
    added: dict[str, int] = {}
    new_tags, new_ts, new_interval, new_values = [], [], [], []
    for (device_id, kind, district, asset_id), js in by_device.items():
        j = np.array(js, np.int64)
        ts = starts[j]
        if len(j) > 1 and (np.diff(ts) <= 0).any():
            o = np.argsort(ts, kind="stable")
            j, ts = j[o], ts[o]
        # chunks of evenly spaced window starts: each becomes one window per derived metric
        steps = np.diff(ts)
        cut = np.flatnonzero(steps[1:] != steps[:-1]) + 2 if len(steps) > 1 else np.empty(0, np.int64)
        bounds = [0, *cut.tolist(), len(j)]
        for m, name in enumerate(_NAMES):
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                new_tags.append((device_id, kind, name, district, asset_id))
                new_ts.append(int(ts[a]))
                new_interval.append(float(ts[a + 1] - ts[a]) if b - a > 1 else 0.0)
                new_values.append(feats[j[a:b], m])
        added[kind] = added.get(kind, 0) + len(_NAMES) * len(j)
    builder.add_windows(new_tags, new_ts, new_interval, new_values)
    return added


def build_with_features(builder: ReadingsBuilder, per_kind: dict[str, int]) -> Readings:
    """``builder.build()`` with the derived readings of its waveform windows, which are added to
    ``per_kind`` (readings accepted per kind: the pipeline counts them as received, so that
    received = stored + duplicates still holds)."""
    for kind, n in add_window_features(builder).items():
        per_kind[kind] = per_kind.get(kind, 0) + n
    return builder.build()


assert all(name in DERIVED["bridge"] for name in _NAMES)
