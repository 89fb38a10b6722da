"""The production store: InfluxDB over its v1 HTTP API (``influxdb://host:port/db``).

URL: ``influxdb://[user:password@]host:port/database[?rp=POLICY&precision=ms&tls=1&timeout=S&auth=token]``
(user and password percent-encoded; ``tls=1`` for https; ``timeout`` in seconds, default 10).
Credentials go as HTTP Basic (1.x users; 2.x/3.x take any user name and the token as the
password); with ``auth=token`` the password is sent as ``Authorization: Token PASSWORD`` instead
(2.x/3.x tokens, and 1.8+ where the token is ``user:password``; 1.6 knows only Basic).

Retention and downsampling (``[store] raw_retention``, ``downsample``, ``aggregate_retention``):
set up when the database is, by ingest/stores/influx_retention.py; refused there (not an admin,
a managed InfluxDB), the store logs a warning and goes on writing. With downsampling in place,
``write`` also copies the readings of the kinds that are not aggregated (all but ``bridge``)
into ``citywatch_1m`` (before the write RP: a retried batch writes both), ``write_lines`` its
lines likewise, and bridge readings too late for the CQs are aggregated by the store itself.

Data model: measurement = device kind; tags ``device_id``, ``district``, ``asset_id`` (an empty
value is left out); one field per metric, always a float; one line per (device, ts) carrying
every metric of that timestamp. InfluxDB keeps one value per (series, ts, field), so a reading
written twice is stored once by the server itself. So that ``write`` also returns the number of
*new* readings (and re-sends nothing stored), the store keeps the newest stored ts of every
(device, metric) — loaded per kind with ``last()`` on first use, then kept up to date by its
writes — and asks InfluxDB which readings exist only for the rows at or before that mark
(redeliveries, late data): one query per kind and time cluster, for those devices only.
Guarantees: a reading with the same (device_id, metric, ts) *and the same tags* is stored
once; a device whose district or asset changed between two deliveries of a reading is a new
series to InfluxDB. The count of new readings is exact for one writer; with several writers
into one database (several consumer processes) a reading first written by another process
after this one loaded its marks is counted new again (and harmlessly overwritten).

Writes: line protocol, gzip-compressed bodies of at most 5,000 lines, one keep-alive
``httpx.Client``; ``write`` returns when InfluxDB answered 204 for every body (1.x with
``wal-fsync-delay = 0s`` has fsync'd its WAL by then). Connection errors, timeouts, 429 and 5xx
raise :class:`StoreUnavailable` (retry later; bodies already sent may be stored, which is
harmless as writes are idempotent); data InfluxDB refuses (400/422 on ``/write``: a type
conflict, a value line protocol cannot carry) raises :class:`StoreRejected` (set the batch
aside, retrying will not help); other 4xx (credentials, a missing database) raise
:class:`StoreError` naming InfluxDB's reason (fix the configuration). Escaping follows
what InfluxDB 1.x parses: commas and spaces in measurements; commas, equals signs and spaces in
tag keys, tag values and field keys. A backslash is written as it is (1.x does not unescape
``\\\\``); a value with a newline, or a backslash at its end or before one of those characters,
cannot be represented and raises :class:`StoreRejected`.

Reads: InfluxQL over ``/query`` (``epoch=ms``, chunked so no server row limit truncates a
result); every identifier is double-quoted and every string literal single-quoted with its
quotes and backslashes escaped, so no device id can change a query. ``Query`` carries no kind:
the store remembers device -> kind from its writes and otherwise asks every measurement
(``FROM /.*/``). ``count()`` sums ``count(*)`` over every field of every measurement (one
reading = one field value).

The database is created on open (``CREATE DATABASE``, a no-op when it exists); if the server
is down then, opening still succeeds and creation is retried before the next write.

Other InfluxDB versions:

- **2.x**: serves the same ``/write`` and ``/query`` (v1 compatibility API). Create a bucket and
  a DBRP mapping from a database name to it (``influx v1 dbrp create --db citywatch --rp autogen
  --bucket-id ID --default``), then use ``influxdb://citywatch:TOKEN@host:8086/citywatch``: any
  user name, an API token with read/write access to the bucket as the password.
  ``CREATE DATABASE`` is refused there; the store then relies on the mapping.
- **3.x** (Core/Enterprise, Cloud Serverless/Dedicated): also serves v1 ``/write`` and
  ``/query`` (InfluxQL); the database is the bucket/database name, the token goes as the
  password: ``influxdb://citywatch:TOKEN@host:8181/citywatch`` (add ``tls=1`` for https).

Tested against InfluxDB 1.6.7 (Debian's ``influxd``, see tests/support/influxd.py); the
statements used (``SELECT`` with ``mean``/``last``/``count``, ``GROUP BY time``/tag,
``SHOW FIELD KEYS``) are in the InfluxQL of 2.x and 3.x according to their documentation.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import numpy as np

from ingest.model import Readings
from ingest.stores.base import Query, StoreError, StoreRejected, StoreUnavailable, Written, count_kinds
from ingest.stores.influx_retention import AGG_1M, SLOW_KINDS, LateReadings, Retention, apply, backfill, default_rp
from ingest.stores.influxql import quote_ident, quote_str
from ingest.stores.runs import run_breaks

log = logging.getLogger(__name__)

LINES_PER_BODY = 5_000
_NOT_READINGS = ("alerts", "rollout")  # measurements written beside the readings (alert changes, rollout snapshots)
_CLUSTER_GAP_MS = 60_000  # timestamps further apart than this are looked up separately
_BEYOND_RETENTION = re.compile(r"partial write: points beyond retention policy dropped=(\d+)")
_SLOW_PREFIXES = tuple(f"{k}{sep}" for k in SLOW_KINDS for sep in ", ")  # their lines (copied into AGG_1M)
_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_SPECIAL = (",", "=", " ")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _escape(value: str, table: dict) -> str:
    if "\n" in value or "\r" in value:
        raise StoreRejected(f"{value!r} holds a line break, which InfluxDB line protocol cannot carry")
    if "\\" in value and (value.endswith("\\") or any(f"\\{c}" in value for c in _SPECIAL)):
        raise StoreRejected(f"{value!r} has a backslash at its end or before ',', '=' or ' ', "
                         "which InfluxDB line protocol cannot carry")
    return value.translate(table)


def parse_url(url: str) -> dict:
    """The parts of an ``influxdb://`` URL; ValueError naming the problem."""
    parts = urlsplit(url)
    if parts.scheme != "influxdb":
        raise ValueError(f"expected influxdb://host:port/database, got {url!r}")
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database or "/" in database:
        raise ValueError(f"expected influxdb://[user:password@]host:port/database, got {url!r}")
    try:
        port = parts.port or 8086
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    opts = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(opts) - {"rp", "precision", "tls", "timeout", "auth"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} in {redact(url)!r} "
                         "(known: rp, precision, tls, timeout, auth)")
    if opts.get("auth", "basic") not in ("basic", "token"):
        raise ValueError(f"auth={opts['auth']!r} in {redact(url)!r}: expected auth=basic (the default) or auth=token")
    if opts.get("auth") == "token" and not parts.password:
        raise ValueError(f"auth=token in {redact(url)!r} needs the token as the password: influxdb://:TOKEN@host/db")
    if opts.get("precision", "ms") != "ms":
        raise ValueError(f"precision={opts['precision']!r} in {url!r}: citywatch writes milliseconds, "
                         "use precision=ms or leave it out")
    try:
        timeout = float(opts.get("timeout", 10))
    except ValueError:
        raise ValueError(f"timeout={opts['timeout']!r} in {url!r} is not a number of seconds") from None
    scheme = "https" if opts.get("tls", "0").lower() in ("1", "true", "yes") else "http"
    return {
        "base": f"{scheme}://{parts.hostname}:{port}" if ":" not in parts.hostname
        else f"{scheme}://[{parts.hostname}]:{port}",
        "database": database, "rp": opts.get("rp") or None, "timeout": timeout,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "token": opts.get("auth") == "token",
    }


def redact(url: str) -> str:
    """``url`` with its password (an InfluxDB 2.x/3.x token) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


class InfluxDBStore:
    """Readings in InfluxDB (1.x, or 2.x/3.x through their v1 API); see the module docstring."""

    def __init__(self, url: str, *, retention: Retention | None = None,
                 clock: Callable[[], int] = _wall_ms) -> None:
        """``retention``: RPs and CQs to set up with the database (influx_retention.py);
        ``clock`` (epoch ms) tells which readings came too late for the CQs."""
        cfg = parse_url(url)
        self.url = redact(url)  # shown in logs and health checks: never the password
        self.database: str = cfg["database"]
        self.rp: str | None = cfg["rp"]
        self.retention = retention
        self._clock = clock
        self._raw_rp: str | None = None  # set when the downsampling CQs are in place
        self._late = LateReadings()
        headers = {"User-Agent": "citywatch"}
        auth = None
        if cfg["token"]:
            headers["Authorization"] = f"Token {cfg['password']}"
        elif cfg["user"] or cfg["password"]:
            auth = (cfg["user"] or "", cfg["password"] or "")
        self._http = httpx.Client(base_url=cfg["base"], auth=auth, timeout=cfg["timeout"], headers=headers)
        self._kinds: dict[str, str] = {}  # device_id -> kind, learnt from writes
        self._newest = _Newest()  # newest stored ts per (device, metric), for the kinds loaded
        self._loaded_kinds: set[str] = set()
        self._series_keys: dict[tuple[str, str, str, str], str] = {}  # line protocol prefixes
        self._lock = threading.Lock()
        self._db_ready = False
        try:
            self._ensure_database()
        except StoreUnavailable as e:
            log.warning("InfluxDB store %s not reachable yet (%s); will retry before writing", self.url, e)

    @classmethod
    def from_url(cls, url: str, *, retention: Retention | None = None) -> InfluxDBStore:
        return cls(url, retention=retention)

    # -- writing -----------------------------------------------------------------------------

    def write(self, batch: Readings) -> int:
        """Make ``batch`` durable in InfluxDB; returns how many readings were new.

        Points older than the retention policy are dropped by InfluxDB (logged, not an error);
        they are subtracted from the count as points (a point may carry several readings).
        """
        if len(batch) == 0:
            return Written(0)
        with self._lock:
            if not self._db_ready:
                self._ensure_database()
            starts = np.flatnonzero(run_breaks(batch.device_id, batch.metric, batch.kind,
                                               batch.district, batch.asset_id))
            lengths = np.diff(np.append(starts, len(batch)))
            kinds = set(batch.kind[starts].tolist())
            self._learn_kinds(kinds - self._loaded_kinds)
            key_of_row = np.repeat(self._newest.ids(list(zip(
                batch.device_id[starts].tolist(), batch.metric[starts].tolist(), strict=False))), lengths)
            ts = np.ascontiguousarray(batch.ts, dtype=np.int64)
            keep = _first_occurrences(key_of_row, ts)
            uncertain = keep & (ts <= self._newest.ts[key_of_row])
            if uncertain.any():
                keep &= ~self._stored(batch, uncertain, key_of_row)
            new = batch.take(keep)
            expired = 0
            if len(new):
                lines = encode_lines(new, self._series_keys)
                if self._raw_rp is not None:  # first: a batch retried after a failure writes both
                    self._post_lines([ln for ln in lines if ln.startswith(_SLOW_PREFIXES)], AGG_1M)
                expired = self._post_lines(lines, self.rp)
                if expired:
                    log.warning("InfluxDB %s dropped %d readings older than its retention policy",
                                self._where(), expired)
                self._newest.raise_to(key_of_row[keep], ts[keep])
                if self._raw_rp is not None:
                    self._aggregate_late(new)
                for d, k in zip(batch.device_id[starts].tolist(), batch.kind[starts].tolist(), strict=False):
                    self._kinds[d] = k
            dups = count_kinds(batch.kind[~keep]) if len(new) < len(batch) else {}
            return Written(len(new) - expired, dups)

    def write_lines(self, lines: list[str]) -> None:
        """Write line-protocol lines (ms timestamps) as they are, for measurements other than the
        readings (alerts/history_store.py: the ``alerts`` measurement). Raises like :meth:`write`."""
        if not lines:
            return
        with self._lock:
            if not self._db_ready:
                self._ensure_database()
            if self._raw_rp is not None:  # kept as long as the aggregates, like the slow kinds
                self._post_lines(lines, AGG_1M)
            self._post_lines(lines, self.rp)

    def _post_lines(self, lines: list[str], rp: str | None) -> int:
        """Write ``lines`` into ``rp`` (None: the database's default) in gzip bodies; returns
        how many points InfluxDB dropped as older than the RP (see :meth:`_write_body`)."""
        params = {"db": self.database, "precision": "ms"}
        if rp:
            params["rp"] = rp
        expired = 0
        for i in range(0, len(lines), LINES_PER_BODY):
            expired += self._write_body(gzip.compress(("\n".join(lines[i:i + LINES_PER_BODY]) + "\n").encode(), 1),
                                        params)
        return expired

    def _write_body(self, body: bytes, params: dict) -> int:
        """POST one gzip body; returns how many points InfluxDB dropped as older than the
        retention policy (not an error: they are not to be kept), raises on any other refusal."""
        try:
            self._request("POST", "/write", params=params, content=body,
                          headers={"Content-Encoding": "gzip"}, expect=204)
        except StoreError as e:
            m = _BEYOND_RETENTION.search(str(e))
            if isinstance(e, StoreUnavailable) or not m or "unable to parse" in str(e) or "conflict" in str(e):
                raise
            return int(m[1])
        return 0

    def _learn_kinds(self, kinds: set[str]) -> None:
        """Load the newest stored ts of every (device, metric) of ``kinds`` (once per kind)."""
        if not kinds:
            return
        kinds_sorted = sorted(kinds)
        fields: dict[int, list[str]] = {}
        for i, series in self._select([f"SHOW FIELD KEYS FROM {self._rp_prefix()}{quote_ident(k)}"
                                       for k in kinds_sorted]):
            fields.setdefault(i, []).extend(row[0] for row in series.get("values", []))
        statements, targets = [], []
        for i, kind in enumerate(kinds_sorted):
            for f in fields.get(i, []):
                statements.append(f"SELECT last({quote_ident(f)}) FROM {self._rp_prefix()}{quote_ident(kind)} "
                                  "GROUP BY \"device_id\"")
                targets.append((kind, f))
        for i, series in self._select(statements):
            kind, field = targets[i]
            device = series.get("tags", {}).get("device_id", "")
            for t, _ in series.get("values", []):
                self._newest.raise_key((device, field), int(t))
                self._kinds[device] = kind
        self._loaded_kinds |= kinds

    def _stored(self, batch: Readings, rows: np.ndarray, key_of_row: np.ndarray) -> np.ndarray:
        """Mask of the ``rows`` (a mask) whose (device, metric, ts) InfluxDB already holds."""
        idx = np.flatnonzero(rows)
        statements = []
        for kind in sorted(set(batch.kind[idx].tolist())):
            sel = idx[batch.kind[idx] == kind]
            fields = ", ".join(quote_ident(m) for m in sorted(set(batch.metric[sel].tolist())))
            devices = sorted(set(batch.device_id[sel].tolist()))
            only = (" AND (" + " OR ".join(f"\"device_id\" = {quote_str(d)}" for d in devices) + ")"
                    if len(devices) <= 100 else "")
            for lo, hi in _clusters(np.unique(batch.ts[sel])):
                statements.append(f"SELECT {fields} FROM {self._rp_prefix()}{quote_ident(kind)} "
                                  f"WHERE time >= {lo}ms AND time <= {hi}ms{only} GROUP BY \"device_id\"")
        found_key, found_ts = [], []
        for _, series in self._select(statements):
            device = series.get("tags", {}).get("device_id", "")
            cols = series["columns"]
            for row in series.get("values", []):
                for j in range(1, len(cols)):
                    k = self._newest.id_of((device, cols[j]))
                    if row[j] is not None and k is not None:
                        found_key.append(k)
                        found_ts.append(int(row[0]))
        if not found_key:
            return np.zeros(len(rows), dtype=bool)
        return rows & _isin_pairs(key_of_row, batch.ts.astype(np.int64),
                                  np.array(found_key, np.int64), np.array(found_ts, np.int64))

    def _rp_prefix(self) -> str:
        return f"{quote_ident(self.rp)}." if self.rp else ""

    def _ensure_database(self) -> None:
        """``CREATE DATABASE`` (idempotent); refused by 2.x/3.x, which use a mapping instead."""
        try:
            list(self._select([f"CREATE DATABASE {quote_ident(self.database)}"], post=True))
        except StoreUnavailable:
            raise
        except StoreError as e:
            log.info("InfluxDB refused CREATE DATABASE %s (%s); assuming it exists", self.database, e)
        if self.retention is not None and self.retention.managed:
            self._ensure_retention()
        self._db_ready = True

    def _ensure_retention(self) -> None:
        """RPs and CQs as ``self.retention`` says; a refusal is a warning (the writes go on)."""
        try:
            done = apply(self._select, self.database, self.rp, self.retention)
        except StoreUnavailable:
            raise
        except StoreError as e:
            log.warning("InfluxDB %s refused to set up retention and downsampling ([store] raw_retention, "
                        "downsample): %s. Readings are written, kept as the database's own retention policy "
                        "says and not downsampled; on clustered or managed InfluxDB, 2.x or 3.x set them up "
                        "there (docs/CONFIGURATION.md, \"InfluxDB retention and downsampling\")", self._where(), e)
            return
        for statement in done:
            log.info("InfluxDB %s: %s", self._where(), statement)
        if self.retention.downsample:
            self._raw_rp = self.rp or default_rp(self._select, self.database)

    def _aggregate_late(self, new: Readings | None = None, *, everything: bool = False) -> None:
        """Aggregate what came too late for the CQs' next runs (influx_retention.LateReadings),
        the intervals of ``new`` among them once due. The readings are stored either way: a
        failure is a warning (then :meth:`backfill_aggregates` over the late readings' span)."""
        now = self._clock()
        if new is not None:
            self._late.add(new.kind, new.device_id, new.ts, now)
        if not self._late:
            return
        statements = self._late.due(self.database, self._raw_rp, now, everything=everything)
        try:
            for _ in self._select(statements, post=True):
                pass
        except StoreError as e:
            log.warning("InfluxDB %s: late readings not aggregated (%d queries: %s); run "
                        "InfluxDBStore.backfill_aggregates over their span", self._where(), len(statements), e)

    def backfill_aggregates(self, start_ms: int, end_ms: int) -> None:
        """Run the downsampling CQs' queries over ``[start_ms, end_ms)``: for what influxd stored
        while its CQs did not run (influxd down longer than a CQ looks back), a failed catch-up
        of late readings, and tests."""
        with self._lock:
            backfill(self._select, self.database, self.rp or default_rp(self._select, self.database),
                     start_ms, end_ms)

    # -- reading -----------------------------------------------------------------------------

    def query(self, q: Query) -> list[tuple[int, float]]:
        """Points of one device and metric in ``[q.start, q.end)`` by time, at most ``q.limit``.

        With ``q.step_ms``: the mean per step (``GROUP BY time(step) fill(none)``), steps aligned
        to the epoch, each point at its step's start.
        """
        if q.limit <= 0 or q.end <= q.start:
            return []
        kind = self._kinds.get(q.device_id)
        source = f"{self._rp_prefix()}{quote_ident(kind)}" if kind else "/.*/"
        where = (f"WHERE \"device_id\" = {quote_str(q.device_id)} "
                 f"AND time >= {int(q.start)}ms AND time < {int(q.end)}ms")
        order = "DESC" if q.newest_first else "ASC"
        if q.step_ms is None:
            sql = f"SELECT {quote_ident(q.metric)} FROM {source} {where} ORDER BY time {order} LIMIT {int(q.limit)}"
        else:
            if q.step_ms <= 0:
                raise ValueError(f"step_ms must be positive, got {q.step_ms}")
            sql = (f"SELECT mean({quote_ident(q.metric)}) FROM {source} {where} "
                   f"GROUP BY time({int(q.step_ms)}ms) fill(none) ORDER BY time {order} LIMIT {int(q.limit)}")
        points = []
        for _, series in self._select([sql]):
            points.extend((int(t), float(v)) for t, v in series.get("values", []) if v is not None)
        points.sort(reverse=q.newest_first)
        return points[: q.limit]

    def latest_values(self, metric: str) -> dict[str, tuple[int, float]]:
        """``device_id -> (ts_ms, value)`` of the newest reading of ``metric`` of every device:
        ``last()`` per ``device_id`` over every measurement that has the field (the readings'
        kinds; the ``alerts`` and ``rollout`` measurements are not readings and are skipped)."""
        out: dict[str, tuple[int, float]] = {}
        sql = f'SELECT last({quote_ident(metric)}) FROM {self._rp_prefix()}/.*/ GROUP BY "device_id"'
        for _, series in self._select([sql]):
            device_id = (series.get("tags") or {}).get("device_id")
            if series.get("name") in _NOT_READINGS or not device_id:
                continue
            for t, v in series.get("values", []):
                if isinstance(v, (int, float)) and (device_id not in out or t > out[device_id][0]):
                    out[device_id] = (int(t), float(v))
        return out

    def count(self) -> int:
        """Readings stored: the sum of ``count(*)`` over every field of every measurement but
        ``alerts`` and ``rollout`` (alert changes, alerts/history_store.py; rollout snapshots,
        devices/rollout_history.py: not readings)."""
        total = 0
        for _, series in self._select([f"SELECT count(*) FROM {self._rp_prefix()}/.*/"]):
            if series.get("name") in _NOT_READINGS:
                continue
            for row in series.get("values", []):
                total += sum(int(v) for v in row[1:] if v is not None)
        return total

    def ping(self) -> bool:
        try:
            return self._http.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        if self._raw_rp is not None:
            with self._lock:
                self._aggregate_late(everything=True)  # a failure is a warning
        self._http.close()

    def __enter__(self) -> InfluxDBStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------

    def _select(self, statements: list[str], *, post: bool = False) -> Iterator[tuple[int, dict]]:
        """Run InfluxQL statements; yields (statement index, series) from chunked responses."""
        if not statements:
            return
        params = {"db": self.database, "epoch": "ms", "chunked": "true", "chunk_size": "10000",
                  "q": ";".join(statements)}
        if self.rp:
            params["rp"] = self.rp
        if post:
            resp = self._request("POST", "/query", data=params, expect=200)
        else:
            resp = self._request("GET", "/query", params=params, expect=200)
        for line in resp.text.splitlines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise StoreError(f"InfluxDB {self._where()} refused a query: {doc['error']}")
            for result in doc.get("results", []):
                if "error" in result:
                    raise StoreError(f"InfluxDB {self._where()} refused a query: {result['error']}")
                for series in result.get("series", []):
                    yield result.get("statement_id", 0), series

    def _request(self, method: str, path: str, *, expect: int, **kw) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TimeoutException as e:
            raise StoreUnavailable(f"InfluxDB {self._where()} timed out ({type(e).__name__})") from None
        except httpx.HTTPError as e:
            raise StoreUnavailable(f"InfluxDB {self._where()} unreachable: {e}") from None
        if resp.status_code == expect:
            return resp
        reason = _error_text(resp)
        if resp.status_code >= 500 or resp.status_code == 429:
            raise StoreUnavailable(f"InfluxDB {self._where()} answered {resp.status_code}: {reason}")
        if resp.status_code == 401:
            raise StoreError(f"InfluxDB {self._where()} refused the credentials ({resp.status_code}: "
                             f"{reason}); check user and password (2.x/3.x: the token) in [store] url")
        if resp.status_code == 403:
            raise StoreError(f"InfluxDB {self._where()} refused {method} {path} (403: {reason}); the user "
                             "(2.x/3.x: the token) of [store] url lacks the privilege")
        if resp.status_code in (400, 422) and path == "/write":
            raise StoreRejected(f"InfluxDB {self._where()} rejected the data ({resp.status_code}): {reason}")
        raise StoreError(f"InfluxDB {self._where()} refused {method} {path} ({resp.status_code}): {reason}")

    def _where(self) -> str:
        return f"{self._http.base_url}/{self.database}"


def encode_lines(batch: Readings, series_keys: dict | None = None) -> list[str]:
    """The batch as line protocol, one line per (kind, tags, ts) run of consecutive rows.

    Consecutive rows of one device and timestamp (the metrics of one message) share a line; a
    waveform gives one line per sample. Fields are floats (``repr`` round-trips exactly).
    ``series_keys`` caches the escaped ``measurement,tags`` prefixes between calls.
    """
    n = len(batch)
    if n == 0:
        return []
    values = np.asarray(batch.value, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise StoreRejected(f"reading {batch.row(bad)} is not a finite number; InfluxDB cannot store it")
    cache = {} if series_keys is None else series_keys
    tag_break = run_breaks(batch.kind, batch.device_id, batch.district, batch.asset_id)
    starts = np.flatnonzero(tag_break)
    prefixes = []
    tag_cols = (batch.kind, batch.device_id, batch.district, batch.asset_id)
    for key in zip(*(c[starts].tolist() for c in tag_cols), strict=False):
        p = cache.get(key)
        if p is None:
            p = cache[key] = _series_key(*key)
        prefixes.append(p)
    prefix_of_row = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n))).tolist()
    metric_starts = np.flatnonzero(run_breaks(batch.metric))
    field_keys: dict[str, str] = {}
    fkey_of_run = [field_keys.get(m) or field_keys.setdefault(m, _escape(m, _KEY_ESC))
                   for m in batch.metric[metric_starts].tolist()]
    fkeys = np.repeat(np.array(fkey_of_run, dtype=object), np.diff(np.append(metric_starts, n))).tolist()
    ts = batch.ts.astype(np.int64)
    line_start = tag_break.copy()
    line_start[1:] |= ts[1:] != ts[:-1]
    bounds = np.append(np.flatnonzero(line_start), n).tolist()
    pairs = [f"{k}={v!r}" for k, v in zip(fkeys, values.tolist(), strict=False)]
    tss = ts.tolist()
    if len(bounds) == n + 1:  # one reading per line (waveforms)
        return [f"{prefixes[p]} {f} {t}" for p, f, t in zip(prefix_of_row, pairs, tss, strict=False)]
    return [f"{prefixes[prefix_of_row[a]]} {','.join(pairs[a:b])} {tss[a]}"
            for a, b in zip(bounds, bounds[1:], strict=False)]


def _series_key(kind: str, device_id: str, district: str, asset_id: str) -> str:
    """``measurement,tag=value,...`` with tags sorted by key and empty values left out."""
    key = _escape(kind, _MEASUREMENT_ESC)
    for tag, value in (("asset_id", asset_id), ("device_id", device_id), ("district", district)):
        if value:
            key += f",{tag}={_escape(value, _KEY_ESC)}"
    return key


_NONE = np.iinfo(np.int64).min


class _Newest:
    """The newest ts stored per (device_id, metric), as far as this store knows, in a numpy
    array indexed by a small id per key (``_NONE``: nothing stored)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self.ts = np.full(1024, _NONE, dtype=np.int64)

    def id_of(self, key: tuple[str, str]) -> int | None:
        return self._ids.get(key)

    def ids(self, keys: list[tuple[str, str]]) -> np.ndarray:
        """Ids of ``keys``, new keys getting new ids (nothing stored)."""
        ids = list(map(self._ids.get, keys))
        if None in ids:
            for i, v in enumerate(ids):
                if v is None:
                    ids[i] = self._add(keys[i])
        return np.array(ids, dtype=np.int64)

    def raise_key(self, key: tuple[str, str], ts: int) -> None:
        i = self._ids.get(key)
        if i is None:
            i = self._add(key)
        self.ts[i] = max(self.ts[i], ts)

    def raise_to(self, ids: np.ndarray, ts: np.ndarray) -> None:
        np.maximum.at(self.ts, ids, ts)

    def _add(self, key: tuple[str, str]) -> int:
        i = self._ids.setdefault(key, len(self._ids))
        if i >= len(self.ts):
            self.ts = np.concatenate([self.ts, np.full(len(self.ts), _NONE, dtype=np.int64)])
        return i


def _first_occurrences(key: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Mask of the rows whose (key, ts) did not occur in an earlier row."""
    order = np.lexsort((ts, key))  # stable: of equal pairs, the earliest row comes first
    first = np.ones(len(ts), dtype=bool)
    first[1:] = (np.diff(key[order]) != 0) | (np.diff(ts[order]) != 0)
    keep = np.zeros(len(ts), dtype=bool)
    keep[order[first]] = True
    return keep


def _clusters(sorted_ts: np.ndarray) -> Iterable[tuple[int, int]]:
    """[lo, hi] spans covering the timestamps, split where they are far apart."""
    if len(sorted_ts) == 0:
        return []
    cut = np.flatnonzero(np.diff(sorted_ts) > _CLUSTER_GAP_MS)
    los = np.concatenate(([sorted_ts[0]], sorted_ts[cut + 1]))
    his = np.concatenate((sorted_ts[cut], [sorted_ts[-1]]))
    return list(zip(los.tolist(), his.tolist(), strict=False))


def _isin_pairs(a_key: np.ndarray, a_ts: np.ndarray, b_key: np.ndarray, b_ts: np.ndarray) -> np.ndarray:
    """Mask over a: (a_key, a_ts) occurs among the (b_key, b_ts) pairs."""
    a = np.empty(len(a_key), dtype=[("k", np.int64), ("t", np.int64)])
    a["k"], a["t"] = a_key, a_ts
    b = np.empty(len(b_key), dtype=a.dtype)
    b["k"], b["t"] = b_key, b_ts
    return np.isin(a, b)


def _error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error") or resp.text).strip()[:500]
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase


STORE = InfluxDBStore  # what ingest.stores.base.open_store opens for influxdb:// URLs
