"""Derived waveform features: RMS, peak and dominant frequency of each acceleration window.

A bridge accelerometer sends one ``series`` window a second (``accel_ms2``, 100 samples at 10 ms).
For each window the pipeline also stores three readings of the same device at the window's
start time (the catalogue's derived metrics, :data:`devices.catalogue.DERIVED`):

- ``accel_rms_ms2``: the root mean square of the samples (m/s²), mean removed;
- ``accel_peak_ms2``: the largest absolute sample (m/s²), mean removed;
- ``accel_freq_hz``: the frequency of the largest bin of the real FFT of the window without its
  mean (the DC bin excluded), from the window's sampling interval: bin k is
  ``k / (n * interval_s)`` Hz (1 Hz apart for a one-second window). The window is Hann-tapered
  first and the peak refined between bins by a parabola through the log magnitudes of the peak
  bin and its two neighbours (Gaussian interpolation, exact for a Gaussian peak and close for a
  Hann one), so a drift of the natural frequency smaller than a bin still shows.

Devices cannot send these metrics: they are not in their kind's ``metrics`` (the decoder
quarantines an unknown metric). Cost: windows of one length are stacked and transformed by one
``numpy.fft.rfft`` call per batch (``bench/ingest``: docs/PERFORMANCE.md "Waveform features").
"""

from __future__ import annotations

import functools

import numpy as np

from devices.catalogue import DERIVED
from ingest.model import ReadingsBuilder

SOURCE = "accel_ms2"
RMS, PEAK, FREQ = "accel_rms_ms2", "accel_peak_ms2", "accel_freq_hz"
_NAMES = (RMS, PEAK, FREQ)
MIN_SAMPLES = 8  # shorter windows carry no meaningful spectrum
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
    rms = np.sqrt(np.mean(centred * centred, axis=1))
    peak = np.max(np.abs(centred), axis=1)
    spectrum = np.abs(np.fft.rfft(centred * _hann(n), axis=1))
    spectrum[:, 0] = 0.0
    k = np.argmax(spectrum, axis=1)
    # the peak between bins: a parabola through the log magnitudes of the bin and its neighbours
    rows = np.arange(v.shape[0])
    m = spectrum.shape[1]
    log = np.log(spectrum + 1e-30)
    a = log[rows, np.clip(k - 1, 0, m - 1)]
    b = log[rows, k]
    c = log[rows, np.clip(k + 1, 0, m - 1)]
    den = a - 2 * b + c
    inner = (k > 1) & (k < m - 1) & (den < 0)
    shift = np.where(inner, 0.5 * (a - c) / np.where(den == 0, -1.0, den), 0.0)
    interval_s = np.broadcast_to(np.asarray(interval_ms, np.float64) / 1000.0, (v.shape[0],))
    freq = (k + np.clip(shift, -0.5, 0.5)) / (n * interval_s)
    return np.column_stack((rms, peak, freq))


def add_window_features(builder: ReadingsBuilder) -> dict[str, int]:
    """Append the derived readings of every ``accel_ms2`` window ``builder`` holds; returns the
    readings added per kind (the pipeline counts them as received, so that received = stored +
    duplicates still holds). Windows shorter than :data:`MIN_SAMPLES` are skipped."""
    tags = builder._win_tags
    added: dict[str, int] = {}
    if not tags or not ENABLED:
        return added
    picked: dict[int, list[int]] = {}
    values = builder._win_values
    for i, t in enumerate(tags):
        if t[2] == SOURCE:
            n = len(values[i])
            if n >= MIN_SAMPLES:
                picked.setdefault(n, []).append(i)
    for rows in picked.values():
        feats = window_features(np.stack([values[i] for i in rows]),
                                np.array([builder._win_interval[i] for i in rows], np.float64))
        for i, (rms, peak, freq) in zip(rows, feats.tolist(), strict=True):
            device_id, kind, _metric, district, asset_id = tags[i]
            builder.add_message(device_id, kind, builder._win_ts[i], _NAMES, (rms, peak, freq), district, asset_id)
            added[kind] = added.get(kind, 0) + len(_NAMES)
    return added


assert all(name in DERIVED["bridge"] for name in _NAMES)
