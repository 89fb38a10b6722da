"""The embedded store: readings in one DuckDB file (``duckdb:///path.duckdb``).

Schema (one table per concern, created on open if missing):

- ``readings(device_id, kind, metric, ts BIGINT ms, value DOUBLE, district, asset_id)``,
  no index and no key: DuckDB appends whole Arrow batches at millions of rows per second, and a
  primary key would cost it about 7x (measured: ~400k rows/s with one, ~3M rows/s without).
- ``segments(device_id, metric, first_ts, last_ts, n)``: one row per *run* written — a maximal
  stretch of consecutive batch rows with the same device, metric (and tags). A waveform window
  of 100 samples is one run; a single reading is a run of one. ``segments`` is what makes
  writes idempotent without a key per reading.

Idempotence (the exact guarantee): a reading with the same ``(device_id, metric, ts)`` as one
already stored — or as an earlier row of the same batch — is never stored again, for single
readings and series alike. How, cheaply: each run of a batch is checked against ``segments``
for a time overlap on the same (device_id, metric), and against the other runs of the batch.
A run that overlaps nothing and whose timestamps strictly increase cannot hold a duplicate
and is appended as is (the fast path: one join of a few rows per run, no per-reading lookup).
Only overlapping runs (a redelivery, a late or re-sent window) take the exact path: an
anti-join against ``readings`` restricted to the run's time range, first row of the batch wins.
So the cost of idempotence is paid per run, and per reading only for suspicious runs.

Other guarantees (of :mod:`ingest.stores.base`): ``write`` returns after ``COMMIT``, which
DuckDB makes durable through its write-ahead log; it is serialised by one lock; readers run
in parallel on their own cursor per thread (``con.cursor()``); ``query`` orders by time.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.model import Readings
from ingest.stores.base import Query, StoreError, StoreUnavailable

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS readings (
        device_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, metric VARCHAR NOT NULL,
        ts BIGINT NOT NULL, value DOUBLE NOT NULL, district VARCHAR NOT NULL,
        asset_id VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS segments (
        device_id VARCHAR NOT NULL, metric VARCHAR NOT NULL,
        first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL, n INTEGER NOT NULL)""",
)

_READING_COLS = "device_id, kind, metric, ts, value, district, asset_id"

# Runs of the batch that overlap (same device and metric, intersecting time span) a stored
# segment or another run of the same batch. $2/$3 bound the stored segments scanned (zone maps).
_OVERLAPS = """
SELECT DISTINCT b.run FROM _cw_segs b JOIN segments s
  ON s.device_id = b.device_id AND s.metric = b.metric
 AND s.first_ts <= b.last_ts AND s.last_ts >= b.first_ts
WHERE s.first_ts <= $hi AND s.last_ts >= $lo
UNION
SELECT b1.run FROM _cw_segs b1 JOIN _cw_segs b2
  ON b1.device_id = b2.device_id AND b1.metric = b2.metric AND b1.run <> b2.run
 AND b2.first_ts <= b1.last_ts AND b2.last_ts >= b1.first_ts
"""

# The exact path: rows not already stored, first occurrence in the batch wins.
_INSERT_EXACT = f"""
INSERT INTO readings
SELECT {_READING_COLS} FROM _cw_suspect s
WHERE NOT EXISTS (
    SELECT 1 FROM readings r
    WHERE r.ts >= $lo AND r.ts <= $hi
      AND r.device_id = s.device_id AND r.metric = s.metric AND r.ts = s.ts)
QUALIFY row_number() OVER (PARTITION BY device_id, metric, ts ORDER BY pos) = 1
"""


def parse_url(url: str) -> str:
    """``duckdb:////abs/path.duckdb``, ``duckdb:///relative.duckdb`` or ``duckdb://:memory:``.

    Returns the path DuckDB opens (``:memory:`` for an in-memory database); ValueError naming
    the problem otherwise. Follows SQLAlchemy's convention like ``sqlite://`` (operator.md).
    """
    if url in ("duckdb://", "duckdb://:memory:", "duckdb:///:memory:"):
        return ":memory:"
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(
            f"expected duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb "
            f"or duckdb://:memory:, got {url!r}")
    return url[len(prefix):]


class DuckDBStore:
    """Readings in DuckDB; see the module docstring for the schema and the guarantees."""

    def __init__(self, path: str | Path = ":memory:", *, url: str | None = None) -> None:
        path = str(path)
        self.url = url or ("duckdb://:memory:" if path == ":memory:" else f"duckdb:///{path}")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(path)
        except duckdb.IOException as e:  # locked by another process, unreadable, ...
            raise StoreUnavailable(f"cannot open DuckDB store {path!r}: {e}") from None
        for ddl in _SCHEMA:
            self._con.execute(ddl)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> "DuckDBStore":
        return cls(parse_url(url), url=url)

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: Readings) -> int:
        """Append ``batch`` durably; returns how many readings were new (duplicates dropped)."""
        n = len(batch)
        if n == 0:
            return 0
        table, segs, nonmonotonic, run_of_row = _to_arrow(batch)
        lo, hi = int(batch.ts.min()), int(batch.ts.max())
        with self._lock:
            con = self._live()
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    con.register("_cw_segs", segs)
                    overlapping = [r for (r,) in con.execute(_OVERLAPS, {"lo": lo, "hi": hi}).fetchall()]
                    suspect_run = nonmonotonic
                    if overlapping:
                        suspect_run = suspect_run.copy()
                        suspect_run[np.asarray(overlapping, dtype=np.int64)] = True
                    new = self._append(con, table, suspect_run, run_of_row)
                    con.execute("INSERT INTO segments SELECT device_id, metric, first_ts, last_ts, n "
                                "FROM _cw_segs")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                finally:
                    con.unregister("_cw_segs")
            except duckdb.Error as e:
                raise StoreUnavailable(f"DuckDB store {self.url} refused a write: {e}") from None
        return new

    def _append(self, con: duckdb.DuckDBPyConnection, table: pa.Table, suspect_run: np.ndarray,
                run_of_row: np.ndarray) -> int:
        """Insert the clean rows as they are and the suspect rows through the exact path."""
        if not suspect_run.any():
            con.register("_cw_clean", table)
            try:
                con.execute(f"INSERT INTO readings SELECT {_READING_COLS} FROM _cw_clean")
            finally:
                con.unregister("_cw_clean")
            return table.num_rows
        suspect_row = suspect_run[run_of_row]
        clean = table.filter(pa.array(~suspect_row))
        suspect = table.filter(pa.array(suspect_row)).append_column(
            "pos", pa.array(np.flatnonzero(suspect_row)))
        ts = suspect.column("ts")
        bounds = {"lo": pc.min(ts).as_py(), "hi": pc.max(ts).as_py()}
        con.register("_cw_clean", clean)
        con.register("_cw_suspect", suspect)
        try:
            if clean.num_rows:
                con.execute(f"INSERT INTO readings SELECT {_READING_COLS} FROM _cw_clean")
            added = con.execute(_INSERT_EXACT, bounds).fetchone()[0]
        finally:
            con.unregister("_cw_clean")
            con.unregister("_cw_suspect")
        return clean.num_rows + int(added)

    # -- reading -----------------------------------------------------------------------------

    def query(self, q: Query) -> list[tuple[int, float]]:
        """Points of one device and metric in ``[q.start, q.end)`` by time, at most ``q.limit``.

        With ``q.step_ms``: the mean per step, steps aligned to the epoch (like InfluxDB's
        ``GROUP BY time``), each point at its step's start, empty steps left out.
        """
        if q.limit <= 0 or q.end <= q.start:
            return []
        params = {"d": q.device_id, "m": q.metric, "a": q.start, "b": q.end, "lim": q.limit}
        if q.step_ms is None:
            sql = ("SELECT ts, value FROM readings WHERE device_id = $d AND metric = $m "
                   "AND ts >= $a AND ts < $b ORDER BY ts LIMIT $lim")
        else:
            if q.step_ms <= 0:
                raise ValueError(f"step_ms must be positive, got {q.step_ms}")
            params["s"] = q.step_ms
            sql = ("SELECT ts - (((ts % $s) + $s) % $s) AS t, avg(value) FROM readings "
                   "WHERE device_id = $d AND metric = $m AND ts >= $a AND ts < $b "
                   "GROUP BY t ORDER BY t LIMIT $lim")
        rows = self._reader().execute(sql, params).fetchall()
        return [(int(t), float(v)) for t, v in rows]

    def latest(self, device_ids: list[str] | None = None) -> dict[tuple[str, str], tuple[int, float]]:
        """The newest reading of each (device_id, metric), for all devices or the ones given."""
        sql = "SELECT device_id, metric, max(ts), arg_max(value, ts) FROM readings"
        params: list = []
        if device_ids is not None:
            if not device_ids:
                return {}
            sql += " WHERE list_contains($1, device_id)"
            params = [list(device_ids)]
        sql += " GROUP BY device_id, metric"
        rows = self._reader().execute(sql, params).fetchall()
        return {(d, m): (int(t), float(v)) for d, m, t, v in rows}

    def count(self) -> int:
        """Number of readings stored."""
        return int(self._reader().execute("SELECT count(*) FROM readings").fetchone()[0])

    def ping(self) -> bool:
        try:
            self._reader().execute("SELECT 1").fetchone()
            return True
        except (duckdb.Error, StoreError):
            return False

    def close(self) -> None:
        """Close every cursor and the database (a checkpoint folds the WAL into the file)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
            self._con.close()

    def _live(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreError(f"DuckDB store {self.url} is closed")
        return self._con

    def _reader(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (a DuckDB connection on the same database)."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            with self._lock:
                cur = self._live().cursor()
                self._cursors.append(cur)
            self._local.cur = cur
        elif self._closed:
            raise StoreError(f"DuckDB store {self.url} is closed")
        return cur

    def __enter__(self) -> "DuckDBStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _to_arrow(batch: Readings) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """The batch as an Arrow table, its runs as a table, which runs are not strictly increasing
    in ts, and the run index of every row.

    A run is a maximal stretch of consecutive rows whose string columns are all equal; the
    string columns are dictionary-encoded per run, so a waveform of a million samples converts
    one string per run instead of one per sample.
    """
    n = len(batch)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    strs = (batch.device_id, batch.metric, batch.kind, batch.district, batch.asset_id)
    for col in strs:
        change[1:] |= col[1:] != col[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n))
    nruns = len(starts)
    run_of_row = np.repeat(np.arange(nruns, dtype=np.int32), lengths)
    ts = np.ascontiguousarray(batch.ts, dtype=np.int64)
    nonmono = np.zeros(nruns, dtype=bool)
    back = np.flatnonzero((np.diff(ts) <= 0) & ~change[1:]) + 1
    nonmono[run_of_row[back]] = True

    indices = pa.array(run_of_row)

    def dict_col(col: np.ndarray) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(indices, pa.array(col[starts].tolist(), pa.string()))

    table = pa.table({
        "device_id": dict_col(batch.device_id), "kind": dict_col(batch.kind),
        "metric": dict_col(batch.metric), "ts": pa.array(ts),
        "value": pa.array(np.ascontiguousarray(batch.value, dtype=np.float64)),
        "district": dict_col(batch.district), "asset_id": dict_col(batch.asset_id),
    })
    segs = pa.table({
        "run": pa.array(np.arange(nruns, dtype=np.int64)),
        "device_id": pa.array(batch.device_id[starts].tolist(), pa.string()),
        "metric": pa.array(batch.metric[starts].tolist(), pa.string()),
        "first_ts": pa.array(np.minimum.reduceat(ts, starts)),
        "last_ts": pa.array(np.maximum.reduceat(ts, starts)),
        "n": pa.array(lengths.astype(np.int32)),
    })
    return table, segs, nonmono, run_of_row
