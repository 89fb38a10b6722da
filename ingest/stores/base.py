"""The store contract: where readings go and are read back.

Two implementations, found by URL scheme (:func:`open_store`): ``duckdb://`` (embedded,
the default) and ``influxdb://`` (production, the v1-compatible HTTP API).

Guarantees every store gives:
- ``write(batch)`` returns only when the batch is durable (committed / acknowledged by the
  server); it raises :class:`StoreUnavailable` when the store cannot be reached or answers
  an error, and then nothing of the batch may be assumed written (the caller spools it).
- Idempotent: a reading with the same (device_id, metric, ts) as one already stored is not
  stored again (at-least-once delivery redelivers messages).
- ``query`` returns points ordered by time; with ``step_ms`` the mean per step, each point
  at the start of its step.
- Safe to call from one writer thread and any number of reader threads.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ingest.model import Readings


class StoreError(Exception):
    """Base of the store errors."""


class StoreUnavailable(StoreError):
    """The store cannot take writes now (down, refusing, answering errors)."""


class StoreRejected(StoreError):
    """The store refused the data of this batch and would refuse it again (a value it cannot
    represent, a type conflict): retrying the same batch is pointless; set it aside."""


class Written(int):
    """What ``write`` returns: the number of new readings (an ``int``), with the kinds of the
    readings it dropped as duplicates (``duplicates_by_kind``), for per-kind counters."""

    duplicates_by_kind: dict[str, int]

    def __new__(cls, new: int, duplicates_by_kind: dict[str, int] | None = None) -> Written:
        obj = super().__new__(cls, new)
        obj.duplicates_by_kind = dict(duplicates_by_kind or {})
        return obj


def count_kinds(kinds) -> dict[str, int]:
    """``{kind: rows}`` of a column of kinds (small columns: the duplicates of a batch)."""
    out: dict[str, int] = {}
    for k in kinds:
        out[str(k)] = out.get(str(k), 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class Query:
    device_id: str
    metric: str
    start: int  # ms, inclusive
    end: int  # ms, exclusive
    step_ms: int | None = None
    limit: int = 100_000
    newest_first: bool = False  # the newest ``limit`` points, newest first; else the oldest, by time


@runtime_checkable
class Store(Protocol):
    url: str

    def write(self, batch: Readings) -> int:
        """Make ``batch`` durable; returns how many readings were new (duplicates dropped), as a
        :class:`Written` that also says the kinds of the dropped duplicates."""
        ...

    def query(self, q: Query) -> list[tuple[int, float]]:
        """Points ``[(ts_ms, value), ...]`` of one device and metric, by time (newest first with
        ``q.newest_first``: then ``q.limit`` keeps the newest)."""
        ...

    def latest_values(self, metric: str) -> dict[str, tuple[int, float]]:
        """``device_id -> (ts_ms, value)``: the newest reading of ``metric`` of every device that
        has one (the rollout report's weak-signal and low-battery lists)."""
        ...

    def count(self) -> int:
        """Number of readings stored (tests, benchmarks)."""
        ...

    def ping(self) -> bool:
        """True when the store answers."""
        ...

    def close(self) -> None: ...


# The stores, by URL scheme: the module that implements each. A module defines ``parse_url(url)``
# (ValueError naming the problem) and ``STORE``, its class with ``from_url(url)``. Imported only
# when its scheme is used, so an InfluxDB node never loads DuckDB and no store imports another.
SCHEMES = {"duckdb": "ingest.stores.duckdb", "influxdb": "ingest.stores.influxdb"}


def _implementation(url: str):
    scheme = url.split(":", 1)[0]
    name = SCHEMES.get(scheme)
    if name is None:
        raise ValueError(f"expected duckdb:///path or influxdb://host:port/db, got {url!r}")
    return importlib.import_module(name)


def check_url(url: str) -> None:
    """Validate a store URL without opening anything; ValueError naming the problem."""
    _implementation(url).parse_url(url)


def open_store(url: str, **options) -> Store:
    """The store for ``url``; ValueError naming the problem for a bad URL. ``options`` go to the
    implementation's ``from_url`` (InfluxDB: ``retention``, from ``[store]``)."""
    return _implementation(url).STORE.from_url(url, **options)
