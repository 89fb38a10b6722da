"""DuckDB-specific behaviour: URLs, persistence, the run/segment dedupe in its corner cases."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ingest.model import Readings, ReadingsBuilder
from ingest.stores.base import Query, open_store
from ingest.stores.duckdb import DuckDBStore, parse_url

REPO = Path(__file__).resolve().parents[2]


def series(device: str, metric: str, ts: np.ndarray, value: np.ndarray | None = None) -> Readings:
    b = ReadingsBuilder()
    b.add_series(device, "bridge", metric, ts, np.arange(len(ts), dtype=float) if value is None else value,
                 "江汉区", "QL-1")
    return b.build()


def all_points(store: DuckDBStore, device: str, metric: str) -> list[tuple[int, float]]:
    return store.query(Query(device, metric, 0, 2**62))


@pytest.mark.parametrize("url, path, options", [
    ("duckdb:////var/lib/citywatch/r.duckdb", "/var/lib/citywatch/r.duckdb", {}),
    ("duckdb:///data/r.duckdb?memory_limit=1GB&threads=2", "data/r.duckdb", {"memory_limit": "1GB", "threads": "2"}),
    ("duckdb://:memory:", ":memory:", {}),
])
def test_parse_url(url: str, path: str, options: dict) -> None:
    assert parse_url(url) == (path, options)


@pytest.mark.parametrize("url, why", [
    ("duckdb:/x.duckdb", "duckdb:///"), ("duckdb:///", "duckdb:///"), ("duck:///x", "duckdb:///"),
    ("duckdb:///x.duckdb?cache=1", "unknown option"),
])
def test_parse_url_rejects(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_url(url)


def test_settings_from_the_url(tmp_path) -> None:
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb?memory_limit=64MB&threads=2")
    assert store._con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone() \
        == ("61.0 MiB", 2)
    store.close()
    store = open_store(f"duckdb:///{tmp_path}/r.duckdb")  # the defaults: 128 MB, one thread
    assert store._con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone() \
        == ("122.0 MiB", 1)
    store.close()
    with pytest.raises(ValueError, match="memory_limit"):
        open_store(f"duckdb:///{tmp_path}/r.duckdb?memory_limit=lots")


def test_open_store_dispatches_and_persists(tmp_path) -> None:
    url = f"duckdb:///{tmp_path}/sub/r.duckdb"  # four slashes: absolute
    store = open_store(url)
    assert isinstance(store, DuckDBStore) and store.url == url and store.ping()
    assert store.write(series("b1", "strain_ue", np.arange(1000, 2000, 10))) == 100
    store.close()
    assert not store.ping()
    again = open_store(url)
    assert again.count() == 100
    # the series ids survive a restart: a redelivery is still recognised, new data still stored
    assert again.write(series("b1", "strain_ue", np.arange(1000, 2000, 10))) == 0
    assert again.write(series("b1", "strain_ue", np.arange(2000, 3000, 10))) == 100
    assert again.write(series("b2", "strain_ue", np.arange(2000, 3000, 10))) == 100
    assert again.count() == 300
    again.close()


def test_partial_overlap_stores_only_the_new_part() -> None:
    store = DuckDBStore()
    store.write(series("b1", "accel_ms2", np.arange(0, 1000, 10)))
    # a window that half overlaps the stored one (a re-sent window shifted by 50 samples)
    assert store.write(series("b1", "accel_ms2", np.arange(500, 1500, 10))) == 50
    pts = all_points(store, "b1", "accel_ms2")
    assert [t for t, _ in pts] == list(range(0, 1500, 10))
    assert pts[50] == (500, 50.0)  # the first stored value is kept


def test_duplicates_inside_one_batch() -> None:
    store = DuckDBStore()
    w = series("b1", "accel_ms2", np.arange(0, 1000, 10))
    # the same window twice in one batch (a redelivery landing in the same batch)
    assert store.write(Readings.concat([w, series("b2", "accel_ms2", np.arange(0, 50, 10)), w])) == 105
    # a run whose timestamps repeat
    assert store.write(series("b3", "tilt_deg", np.array([5, 5, 6, 6, 7]))) == 3
    assert all_points(store, "b3", "tilt_deg") == [(5, 0.0), (6, 2.0), (7, 4.0)]
    assert store.count() == 108


def test_same_device_new_tags_is_still_one_series() -> None:
    """A device moved to another district: its readings are deduplicated across the move."""
    store = DuckDBStore()
    r = ("g1", "gas_meter", "flow_m3h", 1000, 2.5)
    assert store.write(Readings.from_rows([(*r, "江汉区", "")])) == 1
    assert store.write(Readings.from_rows([(*r, "武昌区", "")])) == 0
    assert store.write(Readings.from_rows([("g1", "gas_meter", "flow_m3h", 2000, 2.0, "武昌区", "")])) == 1
    assert store.latest(["g1"]) == {("g1", "flow_m3h"): (2000, 2.0)}
    rows = store._reader().execute("SELECT district FROM readings ORDER BY ts").fetchall()
    assert rows == [("江汉区",), ("武昌区",)]


def test_latest() -> None:
    store = DuckDBStore()
    store.write(Readings.from_rows([
        ("n1", "noise", "laeq_db", 1000, 50.0, "江汉区", ""),
        ("n1", "noise", "laeq_db", 3000, 53.0, "江汉区", ""),
        ("n1", "noise", "lmax_db", 2000, 70.0, "江汉区", ""),
        ("n2", "noise", "laeq_db", 500, 40.0, "江岸区", ""),
    ]))
    assert store.latest() == {("n1", "laeq_db"): (3000, 53.0), ("n1", "lmax_db"): (2000, 70.0),
                              ("n2", "laeq_db"): (500, 40.0)}
    assert store.latest(["n2"]) == {("n2", "laeq_db"): (500, 40.0)}
    assert store.latest([]) == {}


def test_readers_in_threads_while_writing(tmp_path) -> None:
    store = DuckDBStore(tmp_path / "r.duckdb")
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                pts = all_points(store, "b1", "accel_ms2")
                assert [t for t, _ in pts] == list(range(0, 10 * len(pts), 10))  # whole batches only
                store.count()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for k in range(20):
        store.write(series("b1", "accel_ms2", np.arange(k * 1000, (k + 1) * 1000, 10)))
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    assert store.count() == 2000
    store.close()


_WRITER = """
import sys, numpy as np
from ingest.model import ReadingsBuilder
from ingest.stores.base import open_store
store = open_store(sys.argv[1])
for k in range(10_000):
    b = ReadingsBuilder()
    b.add_series("b1", "bridge", "accel_ms2", np.arange(k * 1000, (k + 1) * 1000, 10), np.ones(100))
    store.write(b.build())
    print(k, flush=True)
"""


def test_a_write_that_returned_survives_sigkill(tmp_path) -> None:
    """Durable on return: the writer is killed right after its 5th write returned; whatever it
    stored is whole batches, the five acknowledged ones among them, and a redelivery of every
    batch afterwards stores exactly the missing ones."""
    url = f"duckdb:///{tmp_path}/r.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, text=True, cwd=REPO)
    for _ in range(5):
        assert proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = open_store(url)
    stored = store.count()
    assert stored >= 500 and stored % 100 == 0
    n = stored // 100 + 3
    assert store.write(series("b1", "accel_ms2", np.arange(0, n * 1000, 10), np.ones(n * 100))) == 300
    assert store.count() == n * 100
    store.close()


def test_a_second_process_is_told_the_file_is_in_use(tmp_path) -> None:
    url = f"duckdb:///{tmp_path}/r.duckdb"
    store = open_store(url)
    code = ("import sys\nfrom ingest.stores.base import open_store, StoreUnavailable\n"
            "try:\n    open_store(sys.argv[1])\nexcept StoreUnavailable as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60, cwd=REPO)
    store.close()
    assert "cannot open DuckDB store" in out.stdout and "r.duckdb" in out.stdout, out.stderr
