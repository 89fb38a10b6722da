"""The disk spool: durable order, restarts, corruption, limits, and draining into real stores."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ingest.model import Reading, Readings, ReadingsBuilder
from ingest.spool import CorruptSegment, Spool, SpoolFull, decode, encode
from ingest.stores.base import Query, StoreError, StoreRejected, StoreUnavailable, open_store
from ingest.stores.duckdb import DuckDBStore

T0 = 1_779_999_960_000


def batch(k: int, n: int = 3) -> Readings:
    """Batch number ``k``: ``n`` noise readings at T0 + k seconds (+ i ms)."""
    return Readings.from_rows([Reading(f"n-{i}", "noise", "laeq_db", T0 + k * 1000 + i, float(k), "江汉区", "")
                               for i in range(n)])


class Clock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class FlakyStore(DuckDBStore):
    """A real DuckDB store that records the batches it is given and, once ``fail_after``
    writes have succeeded, raises StoreUnavailable (the outage the spool exists for)."""

    def __init__(self, fail_after: int | None = None, error: StoreError | None = None) -> None:
        super().__init__(":memory:")
        self.fail_after = fail_after
        self.error = error or StoreUnavailable("store down for the test")
        self.seen: list[int] = []  # first ts of each batch written

    def write(self, b: Readings) -> int:
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise self.error
        n = super().write(b)
        self.seen.append(int(b.ts[0]))
        return n


def test_encode_decode_round_trip() -> None:
    b = ReadingsBuilder()
    b.add("l-1", "lighting", "power_w", T0, 120.5, "江岸区", "灯杆-7")
    b.add("l-1", "lighting", "lamp_on", T0, 1.0, "江岸区", "灯杆-7")
    b.add_series("b-1", "bridge", "accel_ms2", T0 + np.arange(1000) * 10, np.random.default_rng(1).normal(size=1000),
                 "汉阳区", "长江大桥")
    src = b.build()
    seq, got = decode(encode(src, 42, T0))
    assert seq == 42
    assert list(got) == list(src)
    assert got.ts.dtype == np.int64 and got.value.dtype == np.float64


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_decode_refuses_damage(damage: str) -> None:
    data = bytearray(encode(batch(1), 1, T0))
    if damage == "flip":
        data[-5] ^= 0x40
    elif damage == "truncate":
        data = data[:-3]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not a spool segment at all, just some text")
    with pytest.raises(CorruptSegment):
        decode(bytes(data))


def test_append_then_drain_in_order(tmp_path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    for k in range(5):
        spool.append(batch(k))
    spool.append(Readings.empty())  # nothing to keep
    assert spool.depth()[0] == 5 and spool.depth()[1] > 0
    store = FlakyStore()
    assert spool.drain(store) == 5
    assert (spool.drained_batches, spool.drained_readings) == (5, 15)
    assert store.seen == [T0 + k * 1000 for k in range(5)]
    assert store.count() == 15
    assert spool.depth() == (0, 0)
    assert not list(tmp_path.glob("*.seg"))


def test_max_batches(tmp_path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    for k in range(4):
        spool.append(batch(k))
    store = FlakyStore()
    assert spool.drain(store, max_batches=3) == 3
    assert spool.depth()[0] == 1
    assert spool.drain(store) == 1


def test_survives_restart_and_keeps_order(tmp_path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    for k in range(3):
        spool.append(batch(k))
    (tmp_path / "0000000000000099-1.seg.tmp").write_bytes(b"half a segment")  # a crash mid-append
    del spool
    again = Spool(tmp_path, 10_000_000)
    assert again.depth()[0] == 3
    assert not list(tmp_path.glob("*.tmp"))
    again.append(batch(3))  # numbered after the ones already there
    store = FlakyStore()
    assert again.drain(store) == 4
    assert store.seen == [T0 + k * 1000 for k in range(4)]


def test_corrupt_segment_is_moved_aside_not_blocking(tmp_path, caplog) -> None:
    spool = Spool(tmp_path, 10_000_000)
    for k in range(4):
        spool.append(batch(k))
    files = sorted(tmp_path.glob("*.seg"))
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[1].write_bytes(bytes(data))
    files[2].write_bytes(files[2].read_bytes()[:-10])  # torn
    store = FlakyStore()
    with caplog.at_level(logging.ERROR, logger="ingest.spool"):
        assert spool.drain(store) == 2
    assert store.seen == [T0, T0 + 3000]
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == [files[1].name, files[2].name]
    assert spool.corrupt == 2 and spool.depth() == (0, 0)
    assert "CRC32 mismatch" in caplog.text and "truncated" in caplog.text
    # a new spool on the directory never reuses the numbers of the set-aside segments
    spool2 = Spool(tmp_path, 10_000_000)
    spool2.append(batch(9))
    assert spool2.depth()[0] == 1 and not (tmp_path / files[1].name).exists()


def test_full_and_limit(tmp_path) -> None:
    size = len(encode(batch(0), 10, T0))  # the largest of the ten (two-digit sequence number)
    spool = Spool(tmp_path, max_bytes=10 * size)
    for k in range(8):
        spool.append(batch(k))
    assert not spool.full()
    spool.append(batch(8))
    spool.append(batch(9))
    assert spool.full()  # from 90% of the limit: stop acknowledging
    with pytest.raises(SpoolFull, match="full"):
        spool.append(batch(10))
    assert spool.depth()[0] == 10
    # a caller that checks full() first is never refused, even for a batch larger than what is left
    spool.drain(FlakyStore(), max_batches=2)
    assert not spool.full()
    spool.append(batch(11, n=500))
    assert spool.full() and spool.depth()[1] > spool.max_bytes


def test_oldest_age(tmp_path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, 10_000_000, clock_ms=clock)
    assert spool.oldest_age_ms(T0 + 5000) == 0
    spool.append(batch(0))
    clock.ms += 7000
    spool.append(batch(1))
    assert spool.oldest_age_ms(T0 + 10_000) == 10_000
    spool.drain(FlakyStore(), max_batches=1)
    assert spool.oldest_age_ms(T0 + 10_000) == 3000
    assert Spool(tmp_path, 10_000_000).oldest_age_ms(T0 + 10_000) == 3000  # kept in the file name


def test_drain_stops_when_store_unavailable_and_resumes(tmp_path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    for k in range(6):
        spool.append(batch(k))
    store = FlakyStore(fail_after=2)
    assert spool.drain(store) == 2
    assert spool.depth()[0] == 4
    assert spool.drain(store) == 0  # still down: nothing lost, nothing reordered
    store.fail_after = None
    assert spool.drain(store) == 4
    assert store.seen == [T0 + k * 1000 for k in range(6)]
    assert store.count() == 18


def test_rejected_batch_is_set_aside_misconfiguration_stops(tmp_path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    for k in range(3):
        spool.append(batch(k))
    misconfigured = FlakyStore(fail_after=0, error=StoreError("bad credentials"))
    assert spool.drain(misconfigured) == 0
    assert spool.depth()[0] == 3 and spool.corrupt == 0  # kept: the data is fine
    rejecting = FlakyStore(fail_after=0, error=StoreRejected("type conflict"))
    assert spool.drain(rejecting, max_batches=1) == 0
    assert spool.depth()[0] == 2 and spool.corrupt == 1
    assert len(list((tmp_path / "corrupt").iterdir())) == 1
    store = FlakyStore()
    assert spool.drain(store) == 2
    assert store.seen == [T0 + 1000, T0 + 2000]


@pytest.mark.integration
def test_drain_into_influxdb_across_an_outage(tmp_path, influxd) -> None:
    """Real outage: influxd stopped mid-drain, restarted on the same port and data."""
    spool = Spool(tmp_path / "spool", 10_000_000)
    for k in range(6):
        spool.append(batch(k))
    store = open_store(f"influxdb://127.0.0.1:{influxd.port}/spooltest")
    try:
        assert spool.drain(store, max_batches=2) == 2
        influxd.stop()
        assert spool.drain(store) == 0
        assert spool.depth()[0] == 4
        influxd.start()
        assert spool.drain(store) == 4
        assert store.count() == 18
        assert store.query(Query("n-0", "laeq_db", T0, T0 + 10_000)) == [
            (T0 + k * 1000, float(k)) for k in range(6)]
    finally:
        store.close()
        if influxd.proc is None:
            influxd.start()
