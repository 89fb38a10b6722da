"""Runs of equal rows in a batch's columns, found with numpy: both stores write a batch run by
run (one series, one tag set), looking strings up once per run."""

from __future__ import annotations

import ctypes

import numpy as np

__all__ = ["run_breaks"]


def run_breaks(*cols: np.ndarray) -> np.ndarray:
    """Boolean per row: True where a run of rows equal in all ``cols`` starts (always row 0).

    May start extra runs where two equal strings are distinct objects (see :func:`_differs`);
    callers use runs to look strings up once per run, so an extra run costs one more lookup.
    """
    n = len(cols[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for col in cols:
            change[1:] |= _differs(col)
    return change


def _differs(col: np.ndarray) -> np.ndarray:
    """``col[1:] != col[:-1]`` for an object column of str, possibly with extra True where two
    equal strings are distinct objects (harmless: a run split in two is looked up twice).

    Compares the object pointers, which is a plain integer comparison: 20x faster than comparing
    the strings, and exact for the columns ReadingsBuilder fills with one object per series.
    """
    if col.dtype != object or not col.flags.c_contiguous or len(col) == 0:
        return col[1:] != col[:-1]
    ptr = np.ctypeslib.as_array((ctypes.c_ssize_t * len(col)).from_address(col.ctypes.data))
    return ptr[1:] != ptr[:-1]
