"""Decoding and validating device messages (device-protocol.md).

:class:`Decoder` turns one MQTT message into readings (appended to a
:class:`~ingest.model.ReadingsBuilder`), events and rejections. It never raises on bad input:
every rejection class of the contract's "Bad input" section becomes a
:class:`~ingest.model.Rejection` whose ``reason`` starts with a short code
(``out_of_range: ...``) and then says what is wrong in words an integrator can act on.

Granularity: a message whose topic, device or envelope is bad is rejected whole. In a
``readings`` batch each reading is judged on its own: the readings that pass are kept, each
bad one is quarantined with its reason. A reading (or a ``series`` message) with any bad
metric is rejected whole, so a stored reading is never a silently trimmed version of what the
device sent; for the same reason a message that mixes shapes (``readings`` with ``series`` or with
top-level ``metrics``) is rejected whole (``bad_shape``), not stored in part.

Nothing a device sends can make the decoder raise, or let through a value that a store, the state
DB or a reason string cannot hold (issue 14): every value that leaves it is range-checked first.

- Times: every stored time is inside the ``ts`` window (``MAX_PAST_MS`` back, ``MAX_FUTURE_MS``
  ahead of the received time), every sample of a ``series`` included: its last sample,
  ``ts + (n - 1) * interval_ms``, is judged (``ts_future``) before any float is turned into an
  int. ``interval_ms`` is a positive number of at most ``MAX_INTERVAL_MS``, the window's width,
  beyond which no second sample could be inside it (``bad_shape``).
- Numbers: a metric value is a float64 inside its catalogue range (``out_of_range``, also for an
  integer too long for a float64); a number JSON cannot give as a float64 (``1e999``, an integer
  of thousands of digits) is ``not_finite``; ``seq``, when sent, is an integer in 0..2^63-1
  (``bad_shape``). Reason strings show an integer of more than 20 digits by its length, not in
  full, and are cut at ``MAX_REASON`` characters.
- Depth and size: the payload is at most ``MAX_PAYLOAD`` bytes (``too_large``, checked before
  parsing); JSON nested deeper than the parser's recursion limit (msgspec raises RecursionError
  at about 1,000 levels, less what the caller's stack already uses) is ``too_deep``, at no cost to
  other messages; an event's ``detail`` nests at most ``MAX_DETAIL_DEPTH`` levels (the detail
  object itself is level 1), is at most ``MAX_DETAIL_BYTES`` bytes as JSON and holds no integer
  outside int64 (``bad_event``): it is stored in the state DB and rendered by the API.
- Text: invalid UTF-8 anywhere in a JSON payload, and escaped lone surrogates, are ``bad_json``
  (msgspec refuses both while parsing), so every string that leaves is storable UTF-8.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

import msgspec
import numpy as np

from devices.catalogue import CATALOGUE, Kind
from devices.model import DEVICE_ID_RE
from ingest.model import Event, ReadingsBuilder, Rejection
from ingest.topic import Topic, TopicError

MAX_PAYLOAD = 256 * 1024
MAX_FUTURE_MS = 5 * 60 * 1000
MAX_PAST_MS = 30 * 86400 * 1000
# a series' interval_ms: at most the width of the ts window (no second sample could fall inside it)
MAX_INTERVAL_MS = MAX_PAST_MS + MAX_FUTURE_MS
MAX_DETAIL_DEPTH = 8  # an event's detail: nesting levels, the detail object itself being level 1
MAX_DETAIL_BYTES = 4096  # an event's detail: its size as compact JSON
MAX_REASON = 1000  # characters of a rejection reason (the rest is cut, marked with "...")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Rejection codes, one per class of the contract's "Bad input" section (and the counters' labels).
REJECTION_CODES = (
    "too_large", "bad_topic", "unknown_kind", "bad_device_id", "unregistered", "kind_mismatch",
    "bad_json", "bad_shape", "unknown_metric", "not_a_number", "not_finite", "out_of_range",
    "missing_ts", "bad_ts", "ts_future", "ts_past", "series_length", "bad_status", "bad_event",
    "too_deep",
)

_json = msgspec.json.Decoder()
_encode = msgspec.json.encode
# ``seq``, when sent: a per-device counter, an integer in 0..2^63-1 (the typed paths check it while
# parsing; a message they refuse goes through the generic path, which names the problem)
_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _SeriesMessage(msgspec.Struct):
    """The ``series`` shape, typed: msgspec checks every sample is a number (not a bool or a
    string) while it parses, in one pass. Anything it refuses goes through the generic path,
    which names the problem."""

    ts: Any = msgspec.UNSET
    interval_ms: Any = msgspec.UNSET
    series: dict[str, list[float]] = msgspec.UNSET
    metrics: Any = msgspec.UNSET
    seq: _Seq = 0
    readings: Any = msgspec.UNSET  # (sent with series: the generic path rejects the message)


_series_json = msgspec.json.Decoder(_SeriesMessage)


class _FlatMessage(msgspec.Struct, forbid_unknown_fields=True):
    """The common telemetry message, ``{"ts": <epoch ms>, "metrics": {name: number}}``, typed:
    msgspec checks the shape and that every value is a number (not a bool, a string or null)
    while it parses. Anything else (other keys, an RFC 3339 ts, a bad value) goes through the
    generic path, which names the problem."""

    ts: int
    metrics: dict[str, float]
    seq: _Seq = 0  # device-protocol.md: optional, not used by the platform; checked by msgspec


_flat_json = msgspec.json.Decoder(_FlatMessage)

_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _EventMessage(msgspec.Struct):
    """An event, typed, with the common flat ``detail`` (name -> string, int64, float, bool or
    null): msgspec checks it is flat and its integers fit while it parses. Anything it refuses
    (a nested detail among others) goes through the generic path, which walks it."""

    ts: Any = msgspec.UNSET
    type: Any = None
    detail: dict[str, str | _Int64 | float | bool | None] = msgspec.UNSET


_event_json = msgspec.json.Decoder(_EventMessage)
_EVENT_TYPE_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

# device_id -> (kind, district, asset_id)
Lookup = Callable[[str], "tuple[str, str, str] | None"]


class Sink(Protocol):
    """Where :meth:`Decoder.decode_into` puts what a message carried (e.g. :class:`Decoded`)."""

    readings: int
    events: list[Event]
    rejections: list[Rejection]
    seen: dict[str, int]


class _Bad(Exception):
    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message


@dataclass(slots=True)
class Decoded:
    """What one message carried; ``seen`` is device_id -> newest accepted event time."""

    readings: int = 0
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)


def _show(value: Any) -> str:
    """A number for a reason string, never raising: an integer past 20 digits is shown by its
    digit count (``:g`` of an integer past float64's range raises, and so does ``str`` of one
    past Python's digit limit)."""
    if type(value) is int:
        if -10**20 < value < 10**20:
            return str(value)
        if value.bit_length() > 14_000:
            return f"{'-' if value < 0 else ''}(an integer of over 4,000 digits)"
        text = str(abs(value))
        return f"{'-' if value < 0 else ''}{text[:6]}... ({len(text)} digits)"
    if type(value) is float:
        return f"{value:g}"
    return repr(value)[:64]


def parse_ts(value: Any) -> int:
    """Milliseconds since the epoch from an integer or an RFC 3339 string with an offset."""
    if isinstance(value, bool):
        raise _Bad("bad_ts", f"ts must be epoch milliseconds or RFC 3339, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _Bad("bad_ts", f"ts must be whole epoch milliseconds, got {value!r}")
        return int(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is None:
                raise _Bad("bad_ts", f"ts {value[:64]!r} has no UTC offset")
            return int(round(dt.timestamp() * 1000))
        except (ValueError, OverflowError):  # OverflowError: an offset taking it past year 1..9999
            raise _Bad("bad_ts", f"ts {value[:64]!r} is not RFC 3339") from None
    raise _Bad("bad_ts", f"ts must be epoch milliseconds or RFC 3339, got {type(value).__name__}")


def _check_seq(seq: Any) -> None:
    """``seq``, when sent, is a per-device counter: an integer that fits int64, not negative."""
    if seq is not msgspec.UNSET and (type(seq) is not int or not 0 <= seq <= _INT64_MAX):
        raise _Bad("bad_shape", f"seq must be an integer 0..2^63-1 (a per-device counter), got {_show(seq)}")


def _check_detail(detail: dict, payload_size: int, flat: bool) -> None:
    """An event's detail is stored in the state DB and rendered by the API: bounded in size and
    depth, and every integer fits int64 (``flat``: known to be flat with int64 integers)."""
    # Re-encoded, JSON grows at most 4.5 times (a float: "1e15" -> "1000000000000000.0"): the
    # detail of a payload of at most an eighth of the limit needs no encoding to be judged.
    if payload_size > MAX_DETAIL_BYTES // 8:
        try:
            size = len(_encode(detail))
        except RecursionError:
            raise _Bad("bad_event", f"event detail nests deeper than {MAX_DETAIL_DEPTH} levels") from None
        if size > MAX_DETAIL_BYTES:
            raise _Bad("bad_event", f"event detail is {size} bytes as JSON, over the {MAX_DETAIL_BYTES} byte limit")
    if flat:
        return
    nested = False
    for v in detail.values():  # the common detail is flat: one pass, no stack
        tv = type(v)
        if tv is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise _Bad("bad_event", f"event detail holds {_show(v)}, which does not fit a 64-bit integer")
        elif tv is dict or tv is list:
            nested = True
    if not nested:
        return
    stack: list[tuple[Any, int]] = [(detail, 1)]
    while stack:  # at most MAX_DETAIL_BYTES of JSON to walk
        value, depth = stack.pop()
        if depth > MAX_DETAIL_DEPTH:
            raise _Bad("bad_event", f"event detail nests deeper than {MAX_DETAIL_DEPTH} levels")
        for v in value.values() if type(value) is dict else value:
            tv = type(v)
            if tv is dict or tv is list:
                stack.append((v, depth + 1))
            elif tv is int and not _INT64_MIN <= v <= _INT64_MAX:
                raise _Bad("bad_event", f"event detail holds {_show(v)}, which does not fit a 64-bit integer")


def _named_by(topic: str) -> tuple[str, str]:
    """``(device_id, kind)`` a rejected message's topic names (``city/{kind}/{device_id}/...``),
    each "" where the topic does not name a valid one: so the quarantine can be filtered by device
    and kind for whole-message rejections too (an unregistered device, a malformed payload)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "city":
        return "", ""
    device_id = parts[2] if DEVICE_ID_RE.match(parts[2]) else ""
    return device_id, parts[1] if parts[1] in CATALOGUE else ""


class Decoder:
    """Validates messages against the catalogue and the registry.

    ``lookup(device_id)`` answers ``(kind, district, asset_id)`` for a registered device, or
    None. ``now_ms`` is passed per call (the received time): the ``ts`` window is judged
    against it, never against a clock read here.
    """

    def __init__(self, lookup: Lookup, topic_cache_size: int = 1_000_000):
        self._lookup = lookup
        self._topics: dict[str, Topic] = {}  # valid topics seen, parsed once
        self._topic_cache_size = topic_cache_size
        # kind -> metric -> (lo, hi): the catalogue's ranges, looked up once per metric
        self._ranges = {k.name: {m.name: (m.lo, m.hi) for m in k.metrics.values()} for k in CATALOGUE.values()}

    def decode(self, topic: str, payload: bytes, received_ms: int, out: ReadingsBuilder) -> Decoded:
        result = Decoded()
        self.decode_into(topic, payload, received_ms, out, result)
        return result

    def decode_into(self, topic: str, payload: bytes, received_ms: int, out: ReadingsBuilder,
                    into: Sink) -> None:
        """:meth:`decode`, adding to ``into`` (``readings`` counted up, ``events`` and
        ``rejections`` appended, ``seen`` raised to the newest time per device): the ingest
        pipeline passes its pending batch, so no per-message result is made and merged."""
        try:
            self._decode(topic, payload, received_ms, out, into)
        except _Bad as bad:
            into.rejections.append(self._reject(topic, payload, received_ms, bad, *_named_by(topic)))
        except RecursionError:  # msgspec refuses JSON nested past the recursion limit with this
            bad = _Bad("too_deep", "payload nests JSON arrays or objects deeper than the parser's limit "
                       f"(about {sys.getrecursionlimit()} levels)")
            into.rejections.append(self._reject(topic, payload, received_ms, bad, *_named_by(topic)))

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _reject(topic: str, payload: bytes, received_ms: int, bad: _Bad,
                device_id: str = "", kind: str = "") -> Rejection:
        reason = f"{bad.code}: {bad.message}"
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON - 3] + "..."
        return Rejection(topic, payload, received_ms, reason, device_id, kind)

    def _decode(self, topic: str, payload: bytes, now: int, out: ReadingsBuilder, result: Sink) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise _Bad("too_large", f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit")
        t = self._topics.get(topic)
        if t is None:
            try:
                t = Topic.parse(topic)
            except TopicError as e:
                raise _Bad(e.code, str(e)) from None
            if len(self._topics) >= self._topic_cache_size:
                self._topics.clear()
            self._topics[topic] = t
        entry = self._lookup(t.device_id)
        if entry is None:
            raise _Bad("unregistered", f"device {t.device_id!r} is not registered")
        if entry[0] != t.kind:
            raise _Bad("kind_mismatch",
                       f"device {t.device_id!r} is registered as {entry[0]!r}, not {t.kind!r}")
        _, district, asset_id = entry
        kind = CATALOGUE[t.kind]

        if t.channel == "status":
            text = payload.decode("utf-8", "replace").strip().strip('"')
            if text not in ("online", "offline"):
                raise _Bad("bad_status", f"status payload must be 'online' or 'offline', got {text[:40]!r}")
            result.events.append(Event(t.device_id, t.kind, now, text, {}, district, asset_id))
            return

        if t.channel == "event":
            try:
                ev = _event_json.decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError):
                ev = None  # not this shape, or bad: the generic path takes it and says what is wrong
            if ev is not None:
                detail = ev.detail if ev.detail is not msgspec.UNSET else {}
                e = self._event(ev.ts, ev.type, detail, True, len(payload), t, now, district, asset_id)
                result.events.append(e)
                if e.ts > result.seen.get(t.device_id, 0):
                    result.seen[t.device_id] = e.ts
                return

        if t.channel == "telemetry" and b'"metrics"' in payload:
            try:
                flat = _flat_json.decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError):
                flat = None  # not this shape, or bad: the paths below take it and say what is wrong
            if flat is not None and flat.metrics:
                ts = self._check_ts(flat.ts, now)
                metrics = flat.metrics
                ranges = self._ranges[kind.name]
                for name, value in metrics.items():
                    r = ranges.get(name)
                    if r is None or not r[0] <= value <= r[1]:
                        self._metrics(metrics, kind)  # raises, naming the metric and the problem
                out.add_message(t.device_id, t.kind, ts, tuple(metrics), tuple(metrics.values()),
                                district, asset_id)
                result.readings += len(metrics)
                if ts > result.seen.get(t.device_id, 0):
                    result.seen[t.device_id] = ts
                return

        if t.channel == "telemetry" and b'"series"' in payload and b'"readings"' not in payload:
            try:
                msg = _series_json.decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError):
                msg = None  # the generic path below says what is wrong
            if msg is not None and msg.series is not msgspec.UNSET and msg.readings is msgspec.UNSET:
                if msg.ts is msgspec.UNSET:
                    raise _Bad("missing_ts", "ts is missing")
                ts = self._check_ts(parse_ts(msg.ts), now)
                metrics = msg.metrics if msg.metrics is not msgspec.UNSET else None
                interval = msg.interval_ms if msg.interval_ms is not msgspec.UNSET else None
                self._series(msg.series, interval, metrics, True, kind, t, ts, now, out, result, district,
                             asset_id)
                return

        try:
            obj = _json.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:
            # JSON has no NaN/Infinity: a device that sends them (or 1e999, or an integer of
            # thousands of digits: "Number/Integer value out of range") sent a non-finite number
            if "out of range" in str(e):
                raise _Bad("not_finite", f"payload holds a number beyond float64's range ({e})") from None
            if b"NaN" in payload or b"Infinity" in payload:
                raise _Bad("not_finite", f"payload holds a number that is not finite ({e})") from None
            raise _Bad("bad_json", f"payload is not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise _Bad("bad_json", f"payload is a JSON {type(obj).__name__}, not an object")

        if t.channel == "event":
            result.events.append(self._event(obj.get("ts", msgspec.UNSET), obj.get("type"), obj.get("detail", {}),
                                             False, len(payload), t, now, district, asset_id))
            result.seen[t.device_id] = max(result.seen.get(t.device_id, 0), result.events[-1].ts)
            return

        if "readings" in obj and ("series" in obj or "metrics" in obj):
            # storing either part alone would be a silently trimmed version of what was sent
            raise _Bad("bad_shape", "payload has readings and also "
                       f"{'series' if 'series' in obj else 'metrics'}: send one shape per message")
        _check_seq(obj.get("seq", msgspec.UNSET))

        if "readings" in obj:
            items = obj["readings"]
            if not isinstance(items, list) or not items:
                raise _Bad("bad_shape", "readings must be a non-empty array of {ts, metrics}")
            for i, item in enumerate(items):
                try:
                    if not isinstance(item, dict):
                        raise _Bad("bad_shape", f"readings[{i}] is not an object")
                    ts = self._ts(item, now)
                    rows = self._metrics(item.get("metrics"), kind)
                except _Bad as bad:
                    bad.message = f"readings[{i}]: {bad.message}"
                    result.rejections.append(self._reject(topic, payload, now, bad, t.device_id, t.kind))
                    continue
                self._add_rows(out, result, t, ts, rows, district, asset_id)
            return

        ts = self._ts(obj, now)
        if "series" in obj:
            self._series(obj["series"], obj.get("interval_ms"), obj.get("metrics"), False, kind, t, ts, now, out,
                         result, district, asset_id)
            return
        if "metrics" not in obj:
            raise _Bad("bad_shape", "payload has none of metrics, readings, series")
        rows = self._metrics(obj["metrics"], kind)
        self._add_rows(out, result, t, ts, rows, district, asset_id)

    @staticmethod
    def _add_rows(out: ReadingsBuilder, result: Sink, t: Topic, ts: int,
                  rows: list[tuple[str, float]], district: str, asset_id: str) -> None:
        if not rows:
            return
        names, values = zip(*rows, strict=True)
        out.add_message(t.device_id, t.kind, ts, names, values, district, asset_id)
        result.readings += len(rows)
        if ts > result.seen.get(t.device_id, 0):
            result.seen[t.device_id] = ts

    @classmethod
    def _ts(cls, obj: Mapping[str, Any], now: int) -> int:
        if "ts" not in obj:
            raise _Bad("missing_ts", "ts is missing")
        return cls._check_ts(parse_ts(obj["ts"]), now)

    @staticmethod
    def _check_ts(ts: int, now: int) -> int:
        if ts > now + MAX_FUTURE_MS:
            raise _Bad("ts_future", f"ts {_show(ts)} is {_show((ts - now) // 1000)} s in the future (limit 300 s)")
        if ts < now - MAX_PAST_MS:
            days = (now - ts) // 86_400_000
            raise _Bad("ts_past", f"ts {_show(ts)} is {_show(days) if days > 10**9 else f'{(now - ts) / 86400000:.1f}'}"
                       " days in the past (limit 30 days)")
        return ts

    def _metrics(self, metrics: Any, kind: Kind) -> list[tuple[str, float]]:
        if not isinstance(metrics, dict) or not metrics:
            raise _Bad("bad_shape", "metrics must be a non-empty object of name -> number")
        ranges = self._ranges[kind.name]
        rows = []
        for name, value in metrics.items():
            r = ranges.get(name)
            if r is None:
                raise _Bad("unknown_metric", f"unknown metric {name!r} for kind {kind.name!r}")
            tv = type(value)
            if tv is not float and tv is not int:  # bool is a subclass of int: excluded here
                raise _Bad("not_a_number", f"metric {name!r} is {tv.__name__}, not a number")
            if not r[0] <= value <= r[1]:
                m = kind.metrics[name]
                # (as a float, like the typed path shows it; an integer past float64's range by its length)
                shown = f"{value:g}" if tv is float or -1e308 < value < 1e308 else _show(value)
                raise _Bad("out_of_range", f"metric {name!r} = {shown} is outside its physical range "
                           f"{m.lo:g}..{m.hi:g} {m.unit}")
            rows.append((name, float(value)))
        return rows

    def _series(self, series: Any, interval: Any, metrics: Any, typed: bool, kind: Kind, t: Topic, ts: int,
                now: int, out: ReadingsBuilder, result: Sink, district: str, asset_id: str) -> None:
        """A ``series`` message; ``typed``: the sample lists are floats already (_SeriesMessage)."""
        ti = type(interval)
        if not ((ti is int or ti is float) and interval > 0):  # (not NaN: JSON has none; not a bool)
            raise _Bad("bad_shape", "a series needs interval_ms, a positive number")
        if not isinstance(series, dict) or not series:
            raise _Bad("bad_shape", "series must be a non-empty object of name -> array of numbers")
        arrays: list[tuple[str, np.ndarray]] = []
        length = None
        for name, values in series.items():
            m = kind.metrics.get(name)
            if m is None:
                raise _Bad("unknown_metric", f"unknown metric {name!r} for kind {kind.name!r}")
            if not isinstance(values, list) or not values:
                raise _Bad("bad_shape", f"series {name!r} must be a non-empty array of numbers")
            if length is not None and len(values) != length:
                raise _Bad("series_length", f"series lengths differ ({length} and {len(values)} for {name!r})")
            length = len(values)
            if not typed:
                try:  # strict: ints and floats only (no bools, no numeric strings)
                    values = msgspec.convert(values, list[float])
                except msgspec.ValidationError as e:
                    if "out of range" in str(e):  # an integer past float64's range
                        raise _Bad("out_of_range", f"series {name!r} has a value outside its physical range "
                                   f"{m.lo:g}..{m.hi:g} {m.unit} ({e})") from None
                    raise _Bad("not_a_number", f"series {name!r}: {e}") from None
            # (JSON cannot carry NaN or infinities: msgspec refused those before we got here)
            a = np.array(values, dtype=np.float64)
            if a.min() < m.lo or a.max() > m.hi:
                raise _Bad("out_of_range",
                           f"series {name!r} has values outside its physical range {m.lo:g}..{m.hi:g} {m.unit}")
            arrays.append((name, a))
        # Every sample inside the ts window: ts is, and the last sample is the latest. Judged on the
        # exact product (an int, or a float that may be inf) before anything is turned into an int.
        span = (length - 1) * interval
        if span > now + MAX_FUTURE_MS - ts:
            raise _Bad("ts_future", f"series sample {length - 1} is at ts + {_show(span)} ms (interval_ms "
                       f"{_show(interval)}), more than 300 s in the future")
        if interval > MAX_INTERVAL_MS:  # (only a one-sample series gets here with such an interval)
            raise _Bad("bad_shape", f"interval_ms {_show(interval)} is over {MAX_INTERVAL_MS} ms, the width of "
                       "the ts window (30 days + 5 minutes)")
        rows = self._metrics(metrics, kind) if metrics is not None else []
        interval = float(interval)
        for name, a in arrays:
            out.add_window(t.device_id, t.kind, name, ts, interval, a, district, asset_id)
            result.readings += len(a)
        # the last sample's time, as ReadingsBuilder.window_times computes it (Python's round()
        # rounds half to even like numpy's, on the same float64 product)
        last = ts + int(round((length - 1) * interval))
        if rows:
            self._add_rows(out, result, t, ts, rows, district, asset_id)
        if last > result.seen.get(t.device_id, 0):
            result.seen[t.device_id] = last

    def _event(self, ts: Any, etype: Any, detail: Any, flat: bool, size: int, t: Topic, now: int, district: str,
               asset_id: str) -> Event:
        """An event; ``flat``: its detail is known to be flat with int64 integers (_EventMessage)."""
        if ts is msgspec.UNSET:
            raise _Bad("missing_ts", "ts is missing")
        ts = self._check_ts(parse_ts(ts), now)
        if not isinstance(etype, str) or not etype or len(etype) > 64 or not set(etype) <= _EVENT_TYPE_OK:
            raise _Bad("bad_event", f"event type must be a short snake_case word, got {_show(etype)}")
        if not isinstance(detail, dict):
            raise _Bad("bad_event", "event detail must be an object")
        if detail:
            _check_detail(detail, size, flat)
        return Event(t.device_id, t.kind, ts, etype, detail, district, asset_id)
