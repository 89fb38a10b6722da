"""A strict, independent checker of device-protocol.md payloads, for the simulator tests.

``check(topic, payload, registry, now_ms)`` returns the readings of a valid message as
``(device_id, metric, ts, value)`` tuples, or raises :class:`Bad` whose ``cls`` names the
rejection class of the contract's "Bad input" section (the names of
``simulators.scenarios.BAD_PAYLOAD_CLASSES``).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

from devices.catalogue import CATALOGUE
from devices.model import DEVICE_ID_RE

MAX = 256 * 1024
FUTURE_MS = 5 * 60_000
PAST_MS = 30 * 86_400_000
TOP_KEYS = {"ts", "seq", "metrics", "readings", "interval_ms", "series"}
EVENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class Bad(Exception):
    def __init__(self, cls: str, why: str = "") -> None:
        super().__init__(f"{cls}: {why}")
        self.cls = cls


def _no_constants(name):
    raise ValueError(f"non-JSON constant {name}")


def _ts(obj: dict, now_ms: int) -> int:
    if "ts" not in obj:
        raise Bad("missing_ts")
    ts = obj["ts"]
    if isinstance(ts, bool):
        raise Bad("unparseable_ts", repr(ts))
    if isinstance(ts, int):
        v = ts
    elif isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError:
            raise Bad("unparseable_ts", ts) from None
        if dt.tzinfo is None:
            raise Bad("unparseable_ts", f"no offset: {ts}")
        v = int(dt.timestamp() * 1000)
    else:
        raise Bad("unparseable_ts", repr(ts))
    if v > now_ms + FUTURE_MS:
        raise Bad("future_ts", str(v))
    if v < now_ms - PAST_MS:
        raise Bad("past_ts", str(v))
    return v


def _value(kind: str, name: str, v) -> float:
    spec = CATALOGUE[kind].metrics.get(name)
    if spec is None:
        raise Bad("unknown_metric", name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Bad("non_finite", f"{name}={v!r}")
    if not math.isfinite(v):
        raise Bad("non_finite", f"{name}={v!r}")
    if not spec.lo <= v <= spec.hi:
        raise Bad("out_of_range", f"{name}={v} outside {spec.lo}..{spec.hi}")
    if spec.boolean and v not in (0, 1):
        raise Bad("out_of_range", f"{name}={v} is not 0/1")
    return float(v)


def check(topic: str, payload: bytes, registry: dict[str, str], now_ms: int) -> list[tuple[str, str, int, float]]:
    if len(payload) > MAX:
        raise Bad("too_large", str(len(payload)))
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "city" or parts[3] not in ("telemetry", "event", "status") \
            or not DEVICE_ID_RE.match(parts[2]):
        raise Bad("bad_topic", topic)
    _, kind, dev, channel = parts
    if kind not in CATALOGUE:
        raise Bad("unknown_kind", kind)
    if dev not in registry:
        raise Bad("unregistered_device", dev)
    if registry[dev] != kind:
        raise Bad("wrong_kind", f"{dev} is a {registry[dev]}")
    if channel == "status":
        if payload not in (b"online", b"offline"):
            raise Bad("not_json", "status must be online/offline")
        return []
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as e:
        raise Bad("not_json", str(e)) from None
    if not isinstance(obj, dict):
        raise Bad("not_object", type(obj).__name__)
    if channel == "event":
        _ts(obj, now_ms)
        if not isinstance(obj.get("type"), str) or not EVENT_RE.match(obj["type"]):
            raise Bad("not_object", "event type")
        if "detail" in obj and not isinstance(obj["detail"], dict):
            raise Bad("not_object", "event detail")
        if set(obj) - {"ts", "type", "detail"}:
            raise Bad("not_object", f"event keys {set(obj)}")
        return []
    if set(obj) - TOP_KEYS:
        raise Bad("not_object", f"unexpected keys {set(obj) - TOP_KEYS}")
    if "seq" in obj and (isinstance(obj["seq"], bool) or not isinstance(obj["seq"], int) or obj["seq"] < 0):
        raise Bad("not_object", "seq")
    out = []
    if "readings" in obj:
        if not isinstance(obj["readings"], list) or not obj["readings"] or set(obj) - {"seq", "readings"}:
            raise Bad("not_object", "readings")
        for r in obj["readings"]:
            if not isinstance(r, dict) or set(r) - {"ts", "metrics"} or not isinstance(r.get("metrics"), dict) \
                    or not r["metrics"]:
                raise Bad("not_object", "reading")
            ts = _ts(r, now_ms)
            out += [(dev, k, ts, _value(kind, k, v)) for k, v in r["metrics"].items()]
        return out
    ts = _ts(obj, now_ms)
    if "series" in obj:
        series = obj["series"]
        iv = obj.get("interval_ms")
        if not isinstance(series, dict) or not series or isinstance(iv, bool) or not isinstance(iv, int) or iv <= 0:
            raise Bad("not_object", "series")
        lengths = {len(v) if isinstance(v, list) else -1 for v in series.values()}
        if -1 in lengths:
            raise Bad("not_object", "series values")
        if len(lengths) != 1:
            raise Bad("series_lengths_differ", str(lengths))
        for name, values in series.items():
            out += [(dev, name, ts + i * iv, _value(kind, name, v)) for i, v in enumerate(values)]
    if "metrics" in obj:
        if not isinstance(obj["metrics"], dict) or not obj["metrics"]:
            raise Bad("not_object", "metrics")
        out += [(dev, k, ts, _value(kind, k, v)) for k, v in obj["metrics"].items()]
    if not out:
        raise Bad("not_object", "no metrics")
    return out
