"""One read of the registry's devices as numpy columns, for the rollout report.

Measured over 500,000 meters (bench/rollout): SQLite's ``GROUP BY kind, district`` sorts the
table each time (1.2-1.8 s per aggregate), while one scan that returns integers only (the
target a device counts for, its status, dates as ordinals, times in ms, all computed by SQLite)
takes well under a second; every figure and exception count is then a mask or a sort of these
arrays. Device ids cost about as much again to bring into Python: only the exception lists' rows
need them (``with_ids``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from devices import db

__all__ = ["DeviceScan"]

# julianday() of a date minus this is Python's date.toordinal() (0001-01-01 is 1)
_ORDINAL_OFFSET = 1721424.5

# the scan's words in each dialect (the same columns and values)
_SQLITE = {
    "sep": "char(31)", "planned": "status = 'planned'", "installed": "status = 'installed'",
    "day": f"coalesce(CAST(julianday(installed_at) - {_ORDINAL_OFFSET} AS INTEGER), -1)",
    # +kind: a full scan in key order; through the kind index, every row was a second lookup (2x slower)
    "kind": "+kind",
}
_PG = {
    "sep": "chr(31)", "planned": "(status = 'planned')::int", "installed": "(status = 'installed')::int",
    "day": "coalesce(installed_at::date - DATE '0001-01-01' + 1, -1)", "kind": "kind",
}


class DeviceScan:
    """The devices (not retired) of the kinds of ``keys`` = ``[(kind, district), ...]``.

    Columns, one entry per device: ``key`` (index into ``keys``, -1 for a district outside
    them), ``planned``/``installed`` (status masks), ``installed_day`` (date ordinal of
    ``installed_at``, -1 when unset), ``commissioned_at``/``last_seen`` (int64 ms, -1 when
    unset; ``has_commissioned``/``has_last_seen``), and ``ids`` (device ids) with ``with_ids``.
    """

    def __init__(self, conn: Any, keys: Sequence[tuple[str, str]], *, with_ids: bool = False,
                 attr: str | None = None) -> None:
        self.keys = list(keys)
        kinds = sorted({k for k, _ in self.keys})
        whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(self.keys)))
        words = _PG if db.is_postgres(conn) else _SQLITE
        code = f"CASE kind || {words['sep']} || district {whens} ELSE -1 END" if self.keys else "-1"
        attr_sql, attr_args = _attr_column(conn, attr) if attr else ("", [])
        sql = (f"SELECT {'device_id, ' if with_ids else ''}{attr_sql}{code}, {words['planned']}, {words['installed']}, "
               f"{words['day']}, coalesce(commissioned_at, -1), coalesce(last_seen, -1) "
               f"FROM devices WHERE status != 'retired' AND {words['kind']} IN ({','.join('?' * len(kinds))})")
        args = attr_args + [f"{k}\x1f{d}" for k, d in self.keys] + kinds
        rows = db.tuple_cursor(conn).execute(sql, args).fetchall() if kinds else []
        self.ids: tuple[str, ...] | None = None
        self.attr: np.ndarray | None = None
        self._index: dict[str, int] | None = None
        skip = int(with_ids) + int(bool(attr))
        if skip:  # mixed columns: one object array, then each column converted (2x faster than slicing rows)
            o = np.array(rows, dtype=object).reshape(-1, skip + 6)
            del rows
            if with_ids:
                self.ids = tuple(o[:, 0].tolist())
            if attr:
                self.attr = np.array(o[:, skip - 1].tolist(), dtype=np.float64)  # None -> NaN
            a = o[:, skip:].astype(np.int64)
        else:
            a = np.array(rows, dtype=np.int64).reshape(-1, 6)
            del rows
        self.key = np.ascontiguousarray(a[:, 0])
        self.planned, self.installed = a[:, 1] == 1, a[:, 2] == 1
        self.installed_day = np.ascontiguousarray(a[:, 3])
        self.commissioned_at, self.last_seen = np.ascontiguousarray(a[:, 4]), np.ascontiguousarray(a[:, 5])
        self.has_commissioned, self.has_last_seen = self.commissioned_at >= 0, self.last_seen >= 0

    def __len__(self) -> int:
        return len(self.key)

    def index_of(self, device_ids) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the known ones among ``device_ids`` (with_ids): ``(positions, which of the given)``."""
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.ids)}
        pos = np.fromiter((self._index.get(d, -1) for d in device_ids), np.int64)
        found = np.flatnonzero(pos >= 0)
        return pos[found], found


def _attr_column(conn: Any, attr: str) -> tuple[str, list]:
    """A numeric attribute of ``attrs`` as a column (NULL when absent): a CASE over the distinct
    attrs texts when they are few (device models; plain string comparisons in SQLite), else
    json_extract on every row (parsing each row's JSON: about 1 s per 500,000)."""
    texts = [r[0] for r in conn.execute("SELECT DISTINCT attrs FROM devices LIMIT 65")]
    if len(texts) > 64:
        if db.is_postgres(conn):
            return ("CASE WHEN jsonb_typeof(attrs::jsonb -> ?) = 'number' THEN (attrs::jsonb ->> ?)::float8 END, ",
                    [attr, attr])
        return "json_extract(attrs, ?), ", [f"$.{attr}"]
    whens, args = [], []
    for text in texts:
        v = json.loads(text).get(attr)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            whens.append(f"WHEN ? THEN {float(v)!r}")
            args.append(text)
    return (f"CASE attrs {' '.join(whens)} ELSE NULL END, " if whens else "NULL, "), args
