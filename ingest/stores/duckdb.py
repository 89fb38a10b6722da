"""The embedded store: readings in one DuckDB file (``duckdb:///path.duckdb``).

Schema (created on open if missing):

- ``series(sid, device_id, metric)``: one row per (device, metric), the unit of idempotence;
- ``tags(tid, kind, district, asset_id)``: the tag combinations seen;
- ``samples(sid INTEGER, tid INTEGER, ts BIGINT ms, value DOUBLE)``: the readings, no index and
  no key. Numbers only, so DuckDB appends Arrow batches at millions of rows per second and its
  write-ahead log stays small (measured: strings per row cost 5-10x, a primary key ~7x);
- ``segments(sid, first_ts, last_ts, n)``: per batch written, one row per series in it: the
  time span its readings cover and their count;
- the view ``readings(device_id, kind, metric, ts, value, district, asset_id)`` for people and
  dashboards (ad-hoc SQL, Grafana's DuckDB source).

Idempotence (the exact guarantee): a reading with the same ``(device_id, metric, ts)`` as one
already stored — or as an earlier row of the same batch — is never stored again, for single
readings and series alike. How, cheaply: the time span of each series of a batch is checked
against the recorded ``segments`` of that series (one join over one row per series, not per
reading), and the batch is checked for a series repeating a timestamp (one numpy sort). A
series with neither cannot hold a duplicate and is appended as it is. Only the other series (a
redelivery, a late or re-sent message) take the exact path: an anti-join against ``samples``
restricted to their time span; within a batch the first occurrence wins. So the cost of
idempotence is per series and batch, and per reading only where a duplicate is possible.

Other guarantees (of :mod:`ingest.stores.base`): ``write`` returns after ``COMMIT``, durable
through DuckDB's write-ahead log; writes are serialised by one lock; readers run in parallel,
each thread on its own cursor (``con.cursor()``); ``query`` orders by time. Batches of 100,000
readings or more are much cheaper per reading than small ones (DuckDB then writes compressed
row groups straight to the file instead of logging every row).
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qs

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.model import Readings
from ingest.stores.base import Query, StoreError, StoreUnavailable, Written
from ingest.stores.runs import run_breaks

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS series (
        sid INTEGER PRIMARY KEY, device_id VARCHAR NOT NULL, metric VARCHAR NOT NULL,
        UNIQUE (device_id, metric))""",
    """CREATE TABLE IF NOT EXISTS tags (
        tid INTEGER PRIMARY KEY, kind VARCHAR NOT NULL, district VARCHAR NOT NULL,
        asset_id VARCHAR NOT NULL, UNIQUE (kind, district, asset_id))""",
    """CREATE TABLE IF NOT EXISTS samples (
        sid INTEGER NOT NULL, tid INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS segments (
        sid INTEGER NOT NULL, first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL,
        n INTEGER NOT NULL)""",
    """CREATE VIEW IF NOT EXISTS readings AS
        SELECT x.device_id, t.kind, x.metric, s.ts, s.value, t.district, t.asset_id
        FROM samples s JOIN series x USING (sid) JOIN tags t USING (tid)""",
)

# Series of the batch whose time span overlaps a stored segment of the same series.
# $lo/$hi bound the stored segments scanned (DuckDB's zone maps skip the older row groups).
_OVERLAPS = """
SELECT DISTINCT b.sid FROM _cw_segs b JOIN segments s
  ON s.sid = b.sid AND s.first_ts <= b.last_ts AND s.last_ts >= b.first_ts
WHERE s.first_ts <= $hi AND s.last_ts >= $lo
"""

# The exact path: rows not already stored; within the batch the first occurrence wins.
_INSERT_EXACT = """
INSERT INTO samples
SELECT sid, tid, ts, value FROM _cw_suspect s
WHERE NOT EXISTS (
    SELECT 1 FROM samples r WHERE r.ts >= $lo AND r.ts <= $hi AND r.sid = s.sid AND r.ts = s.ts)
QUALIFY row_number() OVER (PARTITION BY sid, ts ORDER BY pos) = 1
RETURNING tid
"""

_SID = "(SELECT sid FROM series WHERE device_id = $d AND metric = $m)"


DEFAULT_MEMORY_LIMIT = "128MB"  # keeps a consumer near 300 MB RSS; see __init__
# One thread: with DuckDB's default (one per core) each of the writer's small statements cost
# more CPU; measured on 2 cores, a write of 1,500 messages (4,500 readings) took 19.5 ms of CPU
# with 2 threads and 12.8 ms with 1, every statement cheaper. ``?threads=N`` for long scans.
DEFAULT_THREADS = 1
_OPTIONS = ("memory_limit", "threads")


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """``duckdb:////abs/path.duckdb``, ``duckdb:///relative.duckdb`` or ``duckdb://:memory:``,
    optionally with ``?memory_limit=512MB&threads=2`` (DuckDB settings).

    Returns the path DuckDB opens (``:memory:`` for an in-memory database) and the options;
    ValueError naming the problem otherwise. Follows SQLAlchemy's convention like ``sqlite://``
    (operator.md).
    """
    base, _, query = url.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in {url!r} (known: {', '.join(_OPTIONS)})")
    if base in ("duckdb://", "duckdb://:memory:", "duckdb:///:memory:"):
        return ":memory:", options
    prefix = "duckdb:///"
    if not base.startswith(prefix) or len(base) == len(prefix):
        raise ValueError(
            f"expected duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb "
            f"or duckdb://:memory:, got {url!r}")
    return base[len(prefix):], options


class DuckDBStore:
    """Readings in DuckDB; see the module docstring for the schema and the guarantees.

    ``DuckDBStore(path)`` opens (or creates, with its parent directory) the database file;
    ``":memory:"`` keeps it in memory. A file can be open in one process at a time (DuckDB's
    lock): a second process gets :class:`StoreUnavailable` naming the file.
    """

    def __init__(self, path: str | Path = ":memory:", *, url: str | None = None,
                 memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | str | None = DEFAULT_THREADS) -> None:
        path = str(path)
        self.url = url or ("duckdb://:memory:" if path == ":memory:" else f"duckdb:///{path}")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(path)
        except duckdb.Error as e:  # locked by another process, unreadable, not a DuckDB file
            raise StoreUnavailable(f"cannot open DuckDB store {path!r}: {e}") from None
        try:
            # DuckDB's buffer pool defaults to 80% of RAM and keeps every block written; bounded,
            # it evicts written blocks instead (measured: RSS flat at ~275 MB over 60M samples
            # with 128MB, growing past 700 MB without).
            self._con.execute("SET memory_limit = $v", {"v": memory_limit})
            if threads is not None:
                self._con.execute("SET threads = $v", {"v": int(threads)})
        except (duckdb.Error, ValueError) as e:
            self._con.close()
            raise ValueError(f"bad DuckDB setting for {self.url} (memory_limit={memory_limit!r}, "
                             f"threads={threads!r}): {e}") from None
        for ddl in _SCHEMA:
            self._con.execute(ddl)
        # Ids of the committed series and tag combinations (only the writer changes them).
        self._sids: dict[tuple[str, str], int] = {
            (d, m): sid for sid, d, m in self._con.execute("SELECT sid, device_id, metric FROM series").fetchall()}
        self._tids: dict[tuple[str, str, str], int] = {
            (k, di, a): tid for tid, k, di, a in
            self._con.execute("SELECT tid, kind, district, asset_id FROM tags").fetchall()}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> DuckDBStore:
        path, options = parse_url(url)
        return cls(path, url=url, **options)

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: Readings) -> int:
        """Append ``batch`` durably; returns how many readings were new (duplicates dropped).

        Raises :class:`StoreUnavailable` when DuckDB refuses the write (disk full, I/O error);
        the transaction is then rolled back and nothing of the batch is stored.
        """
        if len(batch) == 0:
            return Written(0)
        runs = _Runs(batch)
        with self._lock:
            con = self._live()
            new_sids, sid_of_run = _ids(self._sids, runs.keys(batch.device_id, batch.metric))
            new_tids, tid_of_run = _ids(self._tids, runs.keys(batch.kind, batch.district, batch.asset_id))
            sid = sid_of_run[runs.run_of_row]
            span = _Spans(sid_of_run, runs)
            table = pa.table({
                "sid": pa.array(sid), "tid": pa.array(tid_of_run[runs.run_of_row]),
                "ts": pa.array(runs.ts), "value": pa.array(np.ascontiguousarray(batch.value, np.float64)),
            })
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    _insert_ids(con, "series", ("sid", "device_id", "metric"), new_sids)
                    _insert_ids(con, "tags", ("tid", "kind", "district", "asset_id"), new_tids)
                    con.register("_cw_segs", span.table)
                    overlapping = con.execute(_OVERLAPS, {"lo": span.lo, "hi": span.hi}).fetchnumpy()["sid"]
                    suspect = np.union1d(span.repeating, np.asarray(overlapping, dtype=np.int32))
                    suspect_row = np.isin(sid, suspect) if len(suspect) else None
                    new, dup_tids = self._append(con, table, suspect_row)
                    con.execute("INSERT INTO segments SELECT sid, first_ts, last_ts, n FROM _cw_segs")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                finally:
                    con.unregister("_cw_segs")
            except duckdb.Error as e:
                raise StoreUnavailable(f"DuckDB store {self.url} refused a write: {e}") from None
            self._sids.update(new_sids)
            self._tids.update(new_tids)
            dups: dict[str, int] = {}
            if dup_tids:
                kind_of_tid = {tid: key[0] for key, tid in self._tids.items()}
                for tid, n in dup_tids.items():
                    dups[kind_of_tid[tid]] = dups.get(kind_of_tid[tid], 0) + n
        return Written(new, dups)

    @staticmethod
    def _append(con: duckdb.DuckDBPyConnection, table: pa.Table,
                suspect_row: np.ndarray | None) -> tuple[int, dict[int, int]]:
        """Insert the clean rows as they are and the suspect rows through the exact path; return
        the rows added and, per tag id, the suspect rows dropped as duplicates."""
        if suspect_row is None:
            clean, suspect = table, None
        else:
            clean = table.filter(pa.array(~suspect_row))
            suspect = table.filter(pa.array(suspect_row)).append_column(
                "pos", pa.array(np.flatnonzero(suspect_row)))
        added, dropped = 0, {}
        if clean.num_rows:
            con.register("_cw_clean", clean)
            try:
                con.execute("INSERT INTO samples SELECT sid, tid, ts, value FROM _cw_clean")
            finally:
                con.unregister("_cw_clean")
            added += clean.num_rows
        if suspect is not None:
            ts = suspect.column("ts")
            con.register("_cw_suspect", suspect)
            try:
                bounds = {"lo": pc.min(ts).as_py(), "hi": pc.max(ts).as_py()}
                inserted = con.execute(_INSERT_EXACT, bounds).fetchnumpy()["tid"]
            finally:
                con.unregister("_cw_suspect")
            added += len(inserted)
            tids, offered = np.unique(suspect.column("tid").to_numpy(), return_counts=True)
            kept = dict(zip(*np.unique(np.asarray(inserted), return_counts=True), strict=True))
            dropped = {int(t): int(n) - int(kept.get(t, 0)) for t, n in zip(tids, offered, strict=True)
                       if n > kept.get(t, 0)}
        return added, dropped

    # -- reading -----------------------------------------------------------------------------

    def query(self, q: Query) -> list[tuple[int, float]]:
        """Points of one device and metric in ``[q.start, q.end)`` by time, at most ``q.limit``.

        With ``q.step_ms``: the mean per step, steps aligned to the epoch (like InfluxDB's
        ``GROUP BY time``), each point at its step's start, empty steps left out.
        """
        if q.limit <= 0 or q.end <= q.start:
            return []
        params = {"d": q.device_id, "m": q.metric, "a": q.start, "b": q.end, "lim": q.limit}
        order = "DESC" if q.newest_first else "ASC"
        if q.step_ms is None:
            sql = (f"SELECT ts, value FROM samples WHERE sid = {_SID} "
                   f"AND ts >= $a AND ts < $b ORDER BY ts {order} LIMIT $lim")
        else:
            if q.step_ms <= 0:
                raise ValueError(f"step_ms must be positive, got {q.step_ms}")
            params["s"] = q.step_ms
            sql = (f"SELECT ts - (((ts % $s) + $s) % $s) AS t, avg(value) FROM samples "
                   f"WHERE sid = {_SID} AND ts >= $a AND ts < $b GROUP BY t ORDER BY t {order} LIMIT $lim")
        rows = self._reader().execute(sql, params).fetchall()
        return [(int(t), float(v)) for t, v in rows]

    def latest(self, device_ids: list[str] | None = None) -> dict[tuple[str, str], tuple[int, float]]:
        """The newest reading of each (device_id, metric), for all devices or the ones given."""
        where, params = "", {}
        if device_ids is not None:
            if not device_ids:
                return {}
            where, params = "WHERE list_contains($ids, x.device_id)", {"ids": list(device_ids)}
        return {(d, m): (t, v) for d, m, t, v in self._newest(where, params)}

    def latest_values(self, metric: str) -> dict[str, tuple[int, float]]:
        """``device_id -> (ts_ms, value)`` of the newest reading of ``metric`` of every device."""
        return {d: (t, v) for d, _, t, v in self._newest("WHERE x.metric = $m", {"m": metric})}

    def _newest(self, where: str, params: dict) -> list[tuple[str, str, int, float]]:
        """The newest sample of each series selected by ``where`` (over ``series x``).

        The newest ts of each series comes from ``segments``; only samples from the oldest of
        those on are read (zone maps skip the rest).
        """
        sql = f"""
            WITH l AS (SELECT x.sid, x.device_id, x.metric, max(g.last_ts) AS ts
                       FROM series x JOIN segments g USING (sid) {where}
                       GROUP BY x.sid, x.device_id, x.metric)
            SELECT l.device_id, l.metric, l.ts, s.value FROM l JOIN samples s
                ON s.sid = l.sid AND s.ts = l.ts
            WHERE s.ts >= (SELECT min(ts) FROM l)"""
        return [(d, m, int(t), float(v)) for d, m, t, v in self._reader().execute(sql, params).fetchall()]

    def count(self) -> int:
        """Number of readings stored."""
        return int(self._reader().execute("SELECT count(*) FROM samples").fetchone()[0])

    def ping(self) -> bool:
        try:
            self._reader().execute("SELECT 1").fetchone()
            return True
        except (duckdb.Error, StoreError):
            return False

    def close(self) -> None:
        """Close every cursor and the database (DuckDB checkpoints the WAL into the file)."""
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
        if cur is None or self._closed:
            with self._lock:
                cur = self._live().cursor()
                self._cursors.append(cur)
            self._local.cur = cur
        return cur

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Runs:
    """The runs of a batch: maximal stretches of consecutive rows whose string columns are all
    the same, so that strings are looked up once per run (a waveform window is one run); per
    run its time span and whether its timestamps strictly increase."""

    __slots__ = ("first_ts", "increasing", "last_ts", "lengths", "run_of_row", "starts", "ts")

    def __init__(self, batch: Readings) -> None:
        size = len(batch)
        change = run_breaks(batch.device_id, batch.metric, batch.kind, batch.district, batch.asset_id)
        self.starts = np.flatnonzero(change)
        self.lengths = np.diff(np.append(self.starts, size))
        self.run_of_row = np.repeat(np.arange(len(self.starts), dtype=np.int64), self.lengths)
        self.ts = np.ascontiguousarray(batch.ts, dtype=np.int64)
        self.first_ts = np.minimum.reduceat(self.ts, self.starts)
        self.last_ts = np.maximum.reduceat(self.ts, self.starts)
        self.increasing = np.ones(len(self.starts), dtype=bool)
        self.increasing[self.run_of_row[np.flatnonzero((np.diff(self.ts) <= 0) & ~change[1:]) + 1]] = False

    def keys(self, *cols: np.ndarray) -> list[tuple[str, ...]]:
        """The values of ``cols`` at the start of every run, as tuples."""
        return list(zip(*(c[self.starts].tolist() for c in cols), strict=False))


class _Spans:
    """Per series of a batch: its time span and row count (``table``, the segments to record),
    the series that may repeat a reading within the batch (``repeating``: a run whose ts do not
    strictly increase, or two runs of the series overlapping in time) and the overall span."""

    __slots__ = ("hi", "lo", "repeating", "table")

    def __init__(self, sid_of_run: np.ndarray, runs: _Runs) -> None:
        order = np.lexsort((runs.first_ts, sid_of_run))
        s, f, last = sid_of_run[order], runs.first_ts[order], runs.last_ts[order]
        self.lo, self.hi = int(f.min()), int(last.max())
        new_group = np.concatenate(([True], s[1:] != s[:-1]))
        group = np.cumsum(new_group) - 1
        # the largest last_ts so far within each group: shift group g by g*width so that a
        # running maximum over the whole array never carries one group's value into the next
        width = self.hi - self.lo + 1
        if (int(group[-1]) + 1) * width < 2**62:
            shift = group * width
            reach = np.maximum.accumulate(last - self.lo + shift) - shift + self.lo
        else:  # a batch spanning an absurd range: one group at a time
            reach = np.concatenate([np.maximum.accumulate(x) for x in np.split(last, np.flatnonzero(new_group)[1:])])
        overlaps = np.concatenate(([False], ~new_group[1:] & (f[1:] <= reach[:-1])))
        self.repeating = np.union1d(s[overlaps], sid_of_run[~runs.increasing])
        starts = np.flatnonzero(new_group)
        ends = np.append(starts[1:], len(s)) - 1
        self.table = pa.table({
            "sid": pa.array(s[starts]), "first_ts": pa.array(f[starts]), "last_ts": pa.array(reach[ends]),
            "n": pa.array(np.add.reduceat(runs.lengths[order], starts).astype(np.int32)),
        })


def _ids(known: dict[tuple, int], keys: list[tuple]) -> tuple[dict[tuple, int], np.ndarray]:
    """Ids of ``keys`` (int32 array), allocating new ids after the known ones; returns the new
    (key -> id) entries too, which the caller inserts and adds to ``known`` once committed."""
    ids = list(map(known.get, keys))  # the common case, at C speed: every key known
    new: dict[tuple, int] = {}
    if None in ids:
        next_id = len(known) + 1
        for i, v in enumerate(ids):
            if v is None:
                k = keys[i]
                v = new.get(k)
                if v is None:
                    v = new[k] = next_id + len(new)
                ids[i] = v
    return new, np.array(ids, dtype=np.int32)


def _insert_ids(con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...],
                new: dict[tuple, int]) -> None:
    """Insert new (key -> id) rows into ``table`` as one Arrow batch."""
    if not new:
        return
    keys = list(new)
    data = {columns[0]: pa.array(list(new.values()), pa.int32())}
    for j, name in enumerate(columns[1:]):
        data[name] = pa.array([k[j] for k in keys], pa.string())
    con.register("_cw_ids", pa.table(data))
    try:
        con.execute(f"INSERT INTO {table} SELECT {', '.join(columns)} FROM _cw_ids")
    finally:
        con.unregister("_cw_ids")


STORE = DuckDBStore  # what ingest.stores.base.open_store opens for duckdb:// URLs
