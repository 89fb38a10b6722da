"""A seeded generator of hostile device messages, interleaved with valid ones.

Every hostile message is built so that it must be rejected whole, with exactly one quarantine
entry and no reading stored: the stress test can then count. The classes are those a hostile
tester tried against ``citywatch serve`` (issue: "one bad device must not stop the city") and
more; ``CLASSES`` names them, and each message carries its class for the test's accounting.

Valid messages are single-reading noise telemetry with distinct (device, ts): the test checks
each is stored exactly once.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

NOISE = "noise"
BRIDGE = "bridge"
GAS = "gas_meter"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    cls: str  # "valid" or a hostile class


def _deep(depth: int, opener: str, closer: str, inner: str = "1") -> str:
    return opener * depth + inner + closer * depth


def _hostile_builders(rng: random.Random, now_ms: int, noise: list[str], bridges: list[str],
                      gas: list[str]):
    """(class, builder) pairs; a builder answers (topic, payload)."""
    def n_topic(channel: str = "telemetry") -> str:
        return f"city/{NOISE}/{rng.choice(noise)}/{channel}"

    def b_topic() -> str:
        return f"city/{BRIDGE}/{rng.choice(bridges)}/telemetry"

    ts = now_ms - rng.randrange(0, 60_000)

    def flat(metrics: str, t: str | int = ts) -> bytes:
        return ('{"ts": ' + str(t) + ', "metrics": ' + metrics + "}").encode()

    def laeq(value: str, t: str | int = ts) -> bytes:
        return flat('{"laeq_db": ' + value + "}", t)

    big = "1" + "0" * 29  # a 30-digit integer
    return [
        # the wedge: a series whose sample times overflow what the state DB can hold
        ("series_time_overflow", lambda: (b_topic(), json.dumps(
            {"ts": ts, "interval_ms": rng.choice([1e300, 1e308, 1.7e308]), "series": {"accel_ms2": [0.1, 0.2]}}
        ).encode())),
        ("series_time_future", lambda: (b_topic(), json.dumps(
            {"ts": ts, "interval_ms": rng.choice([1e10, 1e12, 3.6e6 * 24]), "series": {"accel_ms2": [0.1, 0.2, 0.3]}}
        ).encode())),
        ("series_bad_interval", lambda: (b_topic(), json.dumps(
            {"ts": ts, "interval_ms": rng.choice([0, -5, "10", None, True]), "series": {"accel_ms2": [0.1, 0.2]}}
        ).encode())),
        ("series_length", lambda: (b_topic(), json.dumps(
            {"ts": ts, "interval_ms": 10, "series": {"accel_ms2": [0.1, 0.2], "strain_ue": [1.0]}}).encode())),
        ("readings_and_series", lambda: (b_topic(), json.dumps(
            {"readings": [{"ts": ts, "metrics": {"strain_ue": 10.0}}], "ts": ts, "interval_ms": 10,
             "series": {"accel_ms2": [0.1, 0.2]}}).encode())),
        ("deep_json", lambda: (n_topic(), _deep(rng.choice([200, 2_000, 50_000]), "[", "]").encode())),
        ("deep_object", lambda: (n_topic(), (
            flat(_deep(rng.choice([100, 5_000]), '{"a":', "}"))))),
        ("huge_int_value", lambda: (n_topic(), laeq(big))),
        ("huge_int_ts", lambda: (n_topic(), laeq("55.5", big))),
        ("huge_int_seq", lambda: (n_topic(), laeq("1e999").replace(b'"metrics"',
                                                                   b'"seq": ' + big.encode() + b', "metrics"'))),
        ("huge_float", lambda: (n_topic(), laeq("1e400"))),
        ("nan_infinity", lambda: (n_topic(), laeq(rng.choice(["NaN", "Infinity", "-Infinity"])))),
        ("invalid_utf8", lambda: (n_topic(), b'{"ts": %d, "metrics": {"laeq_db": 5\xff\xfe}}' % ts)),
        ("invalid_utf8_key", lambda: (n_topic(), b'{"ts": %d, "metrics": {"laeq\xc3\x28db": 55}}' % ts)),
        ("bad_json", lambda: (n_topic(), rng.choice([b"", b"{", b'{"ts": 1,', b"null", b"[]", b"42", b'"x"']))),
        ("unknown_metric", lambda: (n_topic(), flat('{"volume_m3": 5}'))),
        ("out_of_range", lambda: (n_topic(), laeq(rng.choice(["-1", "141", "1e300", "19.99"])))),
        ("not_a_number", lambda: (n_topic(), laeq(rng.choice(['"55"', "true", "null", "[55]", "{}"])))),
        ("empty_metrics", lambda: (n_topic(), flat("{}"))),
        ("ts_future", lambda: (n_topic(), laeq("55", now_ms + 3_600_000))),
        ("ts_past", lambda: (n_topic(), laeq("55", now_ms - 40 * 86_400_000))),
        ("ts_bad", lambda: (n_topic(), laeq("55", rng.choice(['"yesterday"', '"2026-12-06T10:00:00"',
                                                                          "1.5", "-1e999", "true"])))),
        ("missing_ts", lambda: (n_topic(), b'{"metrics": {"laeq_db": 55}}')),
        ("unregistered", lambda: (f"city/{NOISE}/ghost-{rng.randrange(10**9)}/telemetry", laeq("55"))),
        ("kind_mismatch", lambda: (f"city/{NOISE}/{rng.choice(gas)}/telemetry", laeq("55"))),
        ("metachar_id", lambda: (f"city/{NOISE}/{rng.choice(_METACHAR_IDS)}/telemetry", laeq("55"))),
        ("bad_topic", lambda: (rng.choice(_BAD_TOPICS).replace("{id}", rng.choice(noise)), laeq("55"))),
        ("oversized", lambda: (n_topic(), b'{"ts": %d, "metrics": {"laeq_db": 55}, "pad": "%s"}'
                               % (ts, b"x" * rng.randrange(256 * 1024, 290 * 1024)))),
        ("event_deep_detail", lambda: (n_topic("event"), (
            '{"ts": ' + str(ts) + ', "type": "door_open", "detail": ' + _deep(300, '{"a":', "}") + "}").encode())),
        ("event_bad", lambda: (n_topic("event"), json.dumps(
            {"ts": ts, "type": rng.choice(["Door Open", "", "x" * 100, "门", 5])}).encode())),
        ("status_junk", lambda: (n_topic("status"), rng.choice([b"maybe", b"\xff\xfe", b"online" * 1000]))),
    ]


_METACHAR_IDS = [
    "a,b=c", "x y", "x';DROP TABLE devices;--", 'q"uote', "back\\slash", "semi;colon", "设备一",
    "-leading-dash", "." * 3, "x" * 65, "brace{x}", "colon:x", "a=b", "percent%s",
]  # (no control characters: Mosquitto refuses such a topic as a malformed packet, and disconnects)
_BAD_TOPICS = [
    "city/{id}/telemetry", "city/noise/{id}/telemetry/extra", "city/noise/{id}/metrics", "city//{id}/telemetry",
    "city/NOISE/{id}/telemetry", "city/volcano/{id}/telemetry", "city/noise/{id}", "city/noise/../telemetry",
    "city/noise/{id}/telemetry/", "city/noise/ /telemetry",
]


def generate(seed: int, n_hostile: int, n_valid: int, now_ms: int, noise: list[str], bridges: list[str],
             gas: list[str], oversized_max: int = 20) -> list[Message]:
    """``n_hostile`` hostile messages of every class (round-robin, so each class is present;
    at most ``oversized_max`` oversized ones, which are 256-290 KiB each) and ``n_valid`` valid
    ones, shuffled together with ``seed``. Valid message ``i``: noise device ``i % len(noise)``
    at a distinct ts within the last 20 days before ``now_ms``."""
    rng = random.Random(seed)
    builders = _hostile_builders(rng, now_ms, noise, bridges, gas)
    out: list[Message] = []
    oversized = 0
    i = 0
    while len(out) < n_hostile:
        cls, build = builders[i % len(builders)]
        i += 1
        if cls == "oversized":
            if oversized >= oversized_max:
                continue
            oversized += 1
        topic, payload = build()
        out.append(Message(topic, payload, cls))
    per_device = -(-n_valid // len(noise))
    step = (20 * 86_400_000) // max(per_device, 1)
    for k in range(n_valid):
        dev = noise[k % len(noise)]
        ts = now_ms - 20 * 86_400_000 + (k // len(noise)) * step
        payload = json.dumps({"ts": ts, "seq": k, "metrics": {"laeq_db": round(30.0 + (k % 900) / 10, 1)}})
        out.append(Message(f"city/{NOISE}/{dev}/telemetry", payload.encode(), "valid"))
    rng.shuffle(out)
    return out
