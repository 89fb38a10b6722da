"""Retention and downsampling of the InfluxDB 1.x database, set up by the store when it opens.

``[store] raw_retention`` (e.g. ``30d``) is the duration of the retention policy (RP) the store
writes into: the URL's ``?rp=`` (created when missing), else the database's default RP
(``autogen`` unless changed). ``[store] downsample = true`` adds two RPs of
``[store] aggregate_retention`` (default ``3650d``), filled by continuous queries (CQs) for the
bridges and by the store itself for the other kinds:

======================  ==================  ==========================  =========================
CQ (name + hash)        from the raw RP     into                        runs
======================  ==================  ==========================  =========================
``citywatch_1s_*``      ``bridge``          ``citywatch_1s``, 1 s       every 1 min, last 2 min
``citywatch_1m_fast_*`` ``bridge``          ``citywatch_1m``, 1 min     every 5 min, last 10 min
======================  ==================  ==========================  =========================

Each aggregate point is ``mean``, ``min`` and ``max`` of every numeric field of its interval
(fields ``mean_strain_ue``, ``min_strain_ue``, ``max_strain_ue``, ...), with the raw point's
tags (``GROUP BY time(...), *``), in a measurement of the same name (``citywatch_1s.bridge``).
Only the bridges send faster than once a second (catalogue.md: acceleration at 50-200 Hz,
dynamic strain at 20 Hz), so only they are aggregated. The other kinds (``SLOW_KINDS``) report at
most about once a minute: their 1 min aggregate would be the reading itself, and a 1 min CQ over
them costs influxd per series and interval, not per reading (measured: 26 h of 20,000 hourly gas
meters took 159 s, which scales to over an hour per hourly run for 500,000; docs/PERFORMANCE.md).
So the store writes their readings, as they are, into ``citywatch_1m`` too (before the raw
RP, so that a retried batch writes both): kept ``aggregate_retention`` like the bridges' 1 min
aggregates, at the cost of a second write of a small share of the lines. Readings written later
than a CQ's next run still reaches (a spool replayed after an outage, a device's backlog) are
noted by :class:`LateReadings` and aggregated by the store with the CQ's own query, for their
devices and intervals, once the writes have moved past an interval (or it waited 10 s, or the
store closes); a failure there is logged, and :func:`backfill` (``InfluxDBStore.backfill_aggregates``)
runs the queries over any past span. An influxd that was down runs no CQ; readings it took
before (not late when written) and whose intervals no run reached are not caught up: backfill
that span. The ``alerts`` and ``rollout`` measurements (``InfluxDBStore.write_lines``) are
copied into ``citywatch_1m`` like the slow kinds.

Idempotent: what exists with the wanted duration is left alone; an RP whose duration differs is
``ALTER``ed (with InfluxDB's default shard duration for the new duration); a CQ's name ends in
a hash of its statement, so a CQ is replaced (dropped, created) only when its statement changes,
and a ``citywatch_*`` CQ that is no longer wanted (``downsample = false``) is dropped; its RP
and the data in it are kept. Needs an admin user (1.x): a server or user that refuses (a
clustered or managed InfluxDB, 2.x, 3.x) is logged as a warning by the store, which goes on
writing; docs/CONFIGURATION.md says what to set up there instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from devices.catalogue import KINDS
from devices.durations import parse_duration_ms
from ingest.stores.base import StoreError, StoreUnavailable
from ingest.stores.influxql import quote_ident as _ident
from ingest.stores.influxql import quote_str

AGG_1S, AGG_1M = "citywatch_1s", "citywatch_1m"  # the aggregate RPs
CQ_PREFIX = "citywatch_"
FAST_KINDS = ("bridge",)  # faster than 1 Hz (catalogue.md); the other kinds report at most once a minute
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS

Select = Callable[..., Iterator[tuple[int, dict]]]  # InfluxDBStore._select


@dataclass(frozen=True, slots=True)
class Downsampling:
    """One CQ: ``mean``/``min``/``max`` of ``kinds`` per ``interval`` into the RP ``into``,
    run every ``every`` over the last ``window`` (``RESAMPLE EVERY ... FOR ...``)."""

    name: str
    kinds: tuple[str, ...]
    interval: str
    into: str
    every: str
    window: str

    @property
    def interval_ms(self) -> int:
        return parse_duration_ms(self.interval)

    @property
    def reach_ms(self) -> int:
        """How late a reading may come and still be aggregated by the next run (window - period)."""
        return parse_duration_ms(self.window) - parse_duration_ms(self.every)

    def select(self, db: str, raw_rp: str, where: str = "") -> str:
        """The CQ's ``SELECT ... INTO`` (with ``where``: for one past interval, :func:`backfill`)."""
        kinds = "|".join(self.kinds)
        return (f"SELECT mean(*), min(*), max(*) INTO {_ident(db)}.{_ident(self.into)}.:MEASUREMENT "
                f"FROM {_ident(db)}.{_ident(raw_rp)}./^({kinds})$/ {where + ' ' if where else ''}"
                f"GROUP BY time({self.interval}), *")

    def create(self, db: str, raw_rp: str) -> tuple[str, str]:
        """(CQ name, ``CREATE CONTINUOUS QUERY`` statement); the name ends in the statement's hash."""
        body = (f"RESAMPLE EVERY {self.every} FOR {self.window} BEGIN {self.select(db, raw_rp)} END")
        name = f"{CQ_PREFIX}{self.name}_{hashlib.sha256(body.encode()).hexdigest()[:8]}"
        return name, f"CREATE CONTINUOUS QUERY {_ident(name)} ON {_ident(db)} {body}"


DOWNSAMPLINGS = (
    # each raw bridge point is read twice (window = 2 x every): what a run costs is in
    # docs/PERFORMANCE.md (bench/stores/downsample_cost.py)
    Downsampling("1s", FAST_KINDS, "1s", AGG_1S, "1m", "2m"),
    Downsampling("1m_fast", FAST_KINDS, "1m", AGG_1M, "5m", "10m"),
)
SLOW_KINDS = tuple(k for k in KINDS if k not in FAST_KINDS)  # copied into AGG_1M as they are


def parse_retention(value: str) -> int:
    """An RP duration in ms (0: infinite, ``inf``); ValueError naming the value. InfluxDB's
    shortest is 1 h; whole minutes, as InfluxQL takes one number and unit."""
    if value.strip().lower() in ("inf", "infinite"):
        return 0
    ms = parse_duration_ms(value)
    if ms < _HOUR_MS or ms % 60_000:
        raise ValueError(f"{value!r}: a retention is whole minutes, at least 1h (InfluxDB's shortest), or 'inf'")
    return ms


@dataclass(frozen=True, slots=True)
class Retention:
    """What ``[store] raw_retention``, ``downsample`` and ``aggregate_retention`` ask for;
    checked on creation (ValueError naming the key)."""

    raw: str = ""  # "" leaves the write RP as it is
    downsample: bool = False
    aggregates: str = "3650d"

    def __post_init__(self) -> None:
        try:
            if self.raw:
                parse_retention(self.raw)
        except ValueError as e:
            raise ValueError(f"raw_retention: {e}") from None
        try:
            parse_retention(self.aggregates)
        except ValueError as e:
            raise ValueError(f"aggregate_retention: {e}") from None

    @property
    def managed(self) -> bool:
        return bool(self.raw) or self.downsample


def plan(select: Select, db: str, rp: str | None, want: Retention) -> list[str]:
    """The statements that bring the database's RPs and CQs to ``want`` (none when all is as
    wanted); reads only. Raises the store's errors (StoreError when refused)."""
    policies = _policies(select, db)
    raw_rp = rp or _default(policies)
    statements = [_rp_statement(db, raw_rp, parse_retention(want.raw), policies)] if want.raw else []
    if want.downsample:
        statements += [_rp_statement(db, name, parse_retention(want.aggregates), policies) for name in (AGG_1S, AGG_1M)]
    wanted = dict(d.create(db, raw_rp) for d in DOWNSAMPLINGS) if want.downsample else {}
    existing = _continuous_queries(select, db)
    statements += [f"DROP CONTINUOUS QUERY {_ident(n)} ON {_ident(db)}" for n in sorted(existing - set(wanted))]
    statements += [create for name, create in wanted.items() if name not in existing]
    return [st for st in statements if st]


def apply(select: Select, db: str, rp: str | None, want: Retention) -> list[str]:
    """Run :func:`plan`'s statements; returns them. On a refusal, :class:`Refused` says which
    statements were not run."""
    statements = plan(select, db, rp, want)
    for i, statement in enumerate(statements):
        try:
            _run(select, [statement])
        except StoreUnavailable:
            raise
        except StoreError as e:
            raise Refused(f"{e}; not run: {'; '.join(statements[i:])}") from None
    return statements


class Refused(StoreError):
    """The server refused a statement of the set-up (not an admin; a managed InfluxDB)."""


def backfill(select: Select, db: str, raw_rp: str, start_ms: int, end_ms: int) -> list[str]:
    """Run every CQ's ``SELECT ... INTO`` over ``[start_ms, end_ms)`` (readings that came later
    than a CQ's window; tests); returns the statements run. Aggregate points are overwritten."""
    where = f"WHERE time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
    statements = [d.select(db, raw_rp, where) for d in DOWNSAMPLINGS]
    _run(select, statements)
    return statements


class LateReadings:
    """The intervals of readings that came too late for the CQs (older, when written, than what
    a CQ's next run still covers: its window minus its period; a spool replayed after an
    outage, a device's backlog), per CQ, with their devices, until they are aggregated.

    An interval is due once a later late reading shows the writes have moved past its end (a
    replay comes in time order: each interval is then read once, when complete), or when it has
    waited ``max_wait_ms`` (the clock's), or on :meth:`due` with ``everything``.
    """

    def __init__(self, max_wait_ms: int = 10_000) -> None:
        self.max_wait_ms = max_wait_ms
        self._pending: dict[Downsampling, dict[int, set[str]]] = {d: {} for d in DOWNSAMPLINGS}
        self._reached: dict[Downsampling, int] = {}  # newest late ts seen, per CQ
        self._since: dict[Downsampling, int] = {}  # when the oldest pending interval was added

    def add(self, kind: np.ndarray, device_id: np.ndarray, ts: np.ndarray, now_ms: int) -> None:
        """Note the late ones of just-written readings (columns of equal length)."""
        ts = np.asarray(ts, dtype=np.int64)
        late = ts < now_ms - min(d.reach_ms for d in DOWNSAMPLINGS)
        if not late.any():
            return
        for d in DOWNSAMPLINGS:
            rows = np.flatnonzero(late & (ts < now_ms - d.reach_ms) & np.isin(kind, d.kinds))
            if len(rows) == 0:
                continue
            pending = self._pending[d]
            starts = ts[rows] // d.interval_ms * d.interval_ms
            for start in np.unique(starts).tolist():
                pending.setdefault(start, set()).update(device_id[rows[starts == start]].tolist())
            self._reached[d] = max(self._reached.get(d, starts.max()), int(ts[rows].max()))
            self._since.setdefault(d, now_ms)

    def due(self, db: str, raw_rp: str, now_ms: int, *, everything: bool = False) -> list[str]:
        """The CQ queries for the intervals now due (and forgets them): per run of intervals of
        at most 2 min, per 100 of their devices, so that each reads a bounded share of the data
        (at Wuhan's scale all the bridges' minute is some 10 M points, longer than a timeout)."""
        statements = []
        for d, pending in self._pending.items():
            waited = now_ms - self._since.get(d, now_ms) >= self.max_wait_ms
            ready = sorted(s for s in pending if everything or waited or s + d.interval_ms <= self._reached[d])
            for run in _runs(ready, d.interval_ms):
                devices = sorted(set().union(*(pending.pop(s) for s in run)))
                for i in range(0, len(devices), _DEVICES_PER_QUERY):
                    only = " OR ".join(f'"device_id" = {quote_str(x)}' for x in devices[i:i + _DEVICES_PER_QUERY])
                    where = f"WHERE time >= {run[0]}ms AND time < {run[-1] + d.interval_ms}ms AND ({only})"
                    statements.append(d.select(db, raw_rp, where))
            if not pending:
                self._since.pop(d, None)
            elif ready:
                self._since[d] = now_ms
        return statements

    def __bool__(self) -> bool:
        return any(self._pending.values())


_DEVICES_PER_QUERY = 100
_RUN_MS = 120_000  # the longest span of one catch-up query


def _runs(starts: list[int], interval_ms: int) -> list[list[int]]:
    """Interval starts in runs, split where ten intervals hold none and where a run would span
    more than ``_RUN_MS`` (one interval at least)."""
    runs: list[list[int]] = []
    for s in starts:
        if runs and s - runs[-1][-1] <= 10 * interval_ms and s + interval_ms - runs[-1][0] <= _RUN_MS:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def default_rp(select: Select, db: str) -> str:
    """The name of the database's default RP (where writes without ``rp`` go)."""
    return _default(_policies(select, db))


def _default(policies: dict[str, tuple[int, bool]]) -> str:
    return next((name for name, (_, default) in policies.items() if default), "autogen")


def shard_duration_ms(duration_ms: int) -> int:
    """InfluxDB's default shard group duration for an RP of ``duration_ms`` (0: infinite)."""
    if duration_ms and duration_ms < 2 * _DAY_MS:
        return _HOUR_MS
    if duration_ms and duration_ms <= 180 * _DAY_MS:
        return _DAY_MS
    return 7 * _DAY_MS


def _rp_statement(db: str, name: str, duration_ms: int, policies: dict) -> str:
    """``CREATE``/``ALTER RETENTION POLICY`` for ``duration_ms``; "" when it has that already."""
    have = policies.get(name)
    if have is not None and have[0] == duration_ms:
        return ""
    verb = "ALTER" if have is not None else "CREATE"
    replication = "REPLICATION 1 " if verb == "CREATE" else ""
    return (f"{verb} RETENTION POLICY {_ident(name)} ON {_ident(db)} DURATION {_literal(duration_ms)} "
            f"{replication}SHARD DURATION {_literal(shard_duration_ms(duration_ms))}")


def _literal(ms: int) -> str:
    """An InfluxQL duration literal (one number, one unit) of whole minutes; 0: ``INF``."""
    if not ms:
        return "INF"
    for unit, size in (("d", _DAY_MS), ("h", _HOUR_MS)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms // 60_000}m"


def _policies(select: Select, db: str) -> dict[str, tuple[int, bool]]:
    """``name -> (duration ms (0: infinite), is default)`` of the database's RPs."""
    out = {}
    for _, series in select([f"SHOW RETENTION POLICIES ON {_ident(db)}"]):
        cols = series["columns"]
        for row in series.get("values", []):
            r = dict(zip(cols, row, strict=False))
            out[r["name"]] = (parse_duration_ms(r["duration"]), bool(r.get("default")))
    return out


def _continuous_queries(select: Select, db: str) -> set[str]:
    """Names of the database's CQs that citywatch made (``citywatch_*``)."""
    names = set()
    for _, series in select(["SHOW CONTINUOUS QUERIES"]):
        if series.get("name") == db:
            names.update(row[0] for row in series.get("values", []) if row[0].startswith(CQ_PREFIX))
    return names


def _run(select: Select, statements: list[str]) -> None:
    if statements:
        for _ in select(statements, post=True):
            pass
