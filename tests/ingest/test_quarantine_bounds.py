"""The quarantine is bounded: per-source rate limits (counted, never silent), retention by age and
by size. On both engines of the state DB (real SQLite, real PostgreSQL)."""

from __future__ import annotations

from devices.db import connect, parse_url
from ingest.model import Rejection
from ingest.quarantine import OVERFLOW_SOURCE, WINDOW_MS, Quarantine, Retention

T0 = 1_764_403_200_000  # a minute boundary


def rej(device: str, t: int, code: str = "bad_json", payload: bytes = b"{") -> Rejection:
    return Rejection(f"city/noise/{device}/telemetry", payload, t, f"{code}: payload is not valid JSON", device,
                     "noise")


def test_one_device_keeps_its_limit_a_minute_and_the_rest_is_counted(state_url) -> None:
    q = Quarantine(connect(parse_url(state_url)), Retention(per_source_per_minute=10))
    q.add([rej("flood", T0 + i, "bad_json" if i % 3 else "too_large") for i in range(1000)]
          + [rej("quiet", T0 + 5)])
    assert q.count() == 11  # ten of the flood, the quiet device's one
    assert q.suppressed_total == 990
    # the next minute: the flood's count is written, and it gets ten more
    q.add([rej("flood", T0 + WINDOW_MS + i) for i in range(20)])
    summary = [e for e in q.recent(100) if e["code"] == "rate_limited"]
    assert len(summary) == 1
    s = summary[0]
    assert s["device_id"] == "flood" and s["topic"] == "city/noise/flood/telemetry"
    assert "990 more rejected messages from 'flood'" in s["reason"]
    assert "bad_json 660" in s["reason"] and "too_large 330" in s["reason"]
    assert q.count() == 11 + 1 + 10
    # at stop, the current minute's count is written too
    q.flush_limits()
    assert "10 more rejected" in q.recent(1)[0]["reason"]


def test_maintain_writes_the_counts_of_minutes_that_are_over(state_url) -> None:
    q = Quarantine(connect(parse_url(state_url)), Retention(per_source_per_minute=1))
    q.add([rej("a", T0 + i) for i in range(5)])
    q.maintain(T0 + 30_000, every_s=0)
    assert q.count("rate_limited") == 0  # its minute is not over
    q.maintain(T0 + WINDOW_MS, every_s=0)
    assert q.count("rate_limited") == 1 and "4 more" in q.recent(1)[0]["reason"]


def test_sources_past_the_tracked_limit_share_one_budget(state_url) -> None:
    q = Quarantine(connect(parse_url(state_url)), Retention(per_source_per_minute=3, max_sources=100))
    q.add([rej(f"d{i}", T0 + i) for i in range(5000)])  # 5,000 ids, e.g. made up by one attacker
    assert q.count() == 100 + 3
    q.flush_limits()
    assert f"4897 more rejected messages from {OVERFLOW_SOURCE!r}" in q.recent(1)[0]["reason"]


def test_retention_by_age_and_by_size(state_url) -> None:
    q = Quarantine(connect(parse_url(state_url)),
                   Retention(max_age_ms=3_600_000, max_bytes=100 * 1024, per_source_per_minute=10**6))
    q.add([rej("old", T0 - 2 * 3_600_000 + i) for i in range(10)])
    q.add([rej("new", T0 + i, payload=b"x" * 1000) for i in range(300)])
    deleted = q.prune(T0 + 1000)
    left = q.recent(1000)
    assert all(e["device_id"] == "new" for e in left)  # the old ones first, by age
    size = sum(e["size"] + len(e["reason"]) for e in left)
    assert size <= 100 * 1024 and len(left) >= 90  # then the oldest, by size, not much more
    assert deleted == 310 - len(left)
    assert left[-1]["received_at"] > T0 and left[0]["received_at"] == T0 + 299  # the newest kept


def test_text_the_engines_cannot_store_is_escaped_not_refused(state_url) -> None:
    q = Quarantine(connect(parse_url(state_url)))
    r = Rejection("city/noise/\udcff/telemetry", b"\xff", T0, "bad_topic: \udcff is not UTF-8", "", "")
    assert q.add([r]) == 1
    assert q.recent(1)[0]["topic"] == "city/noise/\\udcff/telemetry"
    # NUL: SQLite would keep it, PostgreSQL's text cannot; escaped on both so both keep the same
    nul = Rejection("city/noise/n1/telemetry", b"\x00{", T0 + 1, "bad_json: \x00 at 0", "n1", "noise")
    assert q.add([nul]) == 1
    got = q.recent(1)[0]
    assert (got["reason"], got["payload"], got["size"]) == ("bad_json: \\x00 at 0", "\x00{", 2)
