"""Decoder-only ingest rate: ``Decoder.decode_into`` over the payloads of ``bench/ingest/run.py``.

    PYTHONPATH=<tree> python bench/ingest/decode.py [--against OTHER/decode.py] [--messages 200000]
        [--windows 20000] [--rounds 7] [--cases single,multi,waveform,readings,event]

Measures the decoder of whichever tree ``PYTHONPATH`` names (its path is printed). With
``--against``, a second ``decode.py`` (e.g. ``git show e0a8f24:ingest/decode.py > /tmp/old.py``;
it is loaded beside the first and shares its ``ingest.model`` and ``ingest.topic``) is measured in
the same process, chunk by chunk in alternating order (A B B A ...), so that load from other
processes on the machine falls on both alike: on a shared 2-core VM wall-clock rates of separate
runs vary by 2x, the paired ratio by a few percent.

Each case decodes its messages as the pipeline does (``decode_into`` into a batch, a fresh batch
every 2,000 messages), ``--rounds`` times. Reported per decoder: the best rate (the sum over
chunks of each chunk's fastest time: the estimate least disturbed by other load) and the median
of the rounds; and this tree's rate over the other's, of the best rates and of the rounds
(median of the per-round ratios). No broker, store or rules: this is
the part of the ingest path the decoder's checks cost.

Cases: ``single`` (``{"ts", "seq", "metrics": {"laeq_db"}}``, run.py's duckdb case), ``multi``
(four noise metrics), ``waveform`` (100 samples at 10 ms, run.py's waveform case), ``readings``
(a gas meter's day: 24 hourly readings; ``--messages`` / 10 of them) and ``event`` (with a small
``detail``).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np

import ingest.decode
from ingest.model import ReadingsBuilder

DEVICES = 50
CHUNK = 2_000  # messages per batch: small, so that the two decoders' chunks interleave finely


def payloads(case: str, n: int, t0: int, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        d = i % DEVICES
        ts = t0 + i
        if case == "single":  # as bench/ingest/run.py
            topic = f"city/noise/noise-bench-{d:03d}/telemetry"
            body = {"ts": ts, "seq": i, "metrics": {"laeq_db": round(float(rng.uniform(45, 68)), 1)}}
        elif case == "multi":
            topic = f"city/noise/noise-bench-{d:03d}/telemetry"
            body = {"ts": ts, "seq": i, "metrics": {"laeq_db": 61.2, "lmax_db": 70.1, "pm10_ugm3": 41.0,
                                                    "pm25_ugm3": 22.5}}
        elif case == "waveform":  # as bench/ingest/run.py
            topic = f"city/bridge/bridge-bench-{d:03d}/telemetry"
            body = {"ts": ts, "seq": i, "interval_ms": 10,
                    "series": {"accel_ms2": np.round(rng.normal(0, 0.02, 100), 4).tolist()}}
        elif case == "readings":
            topic = f"city/gas_meter/gas-bench-{d:03d}/telemetry"
            body = {"seq": i, "readings": [{"ts": ts - h * 3_600_000, "metrics": {"volume_m3": 1532.1 + h}}
                                           for h in range(24)]}
        elif case == "event":
            topic = f"city/gas_meter/gas-bench-{d:03d}/event"
            body = {"ts": ts, "type": "valve_closed", "detail": {"reason": "leak_suspected", "n": i}}
        else:
            raise SystemExit(f"unknown case {case!r}")
        out.append((topic, json.dumps(body, separators=(",", ":")).encode()))
    return out


def lookup(device_id: str) -> tuple[str, str, str] | None:
    kind = {"noise": "noise", "bridge": "bridge", "gas": "gas_meter"}.get(device_id.split("-", 1)[0])
    return (kind, "江汉区", "asset") if kind else None


def chunks(messages: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    return [messages[i:i + CHUNK] for i in range(0, len(messages), CHUNK)]


def decode_chunk(decoder, sink_type, chunk: list[tuple[str, bytes]], now: int) -> tuple[float, int, int]:
    """Seconds to decode one batch's messages, readings, rejections."""
    builder, sink = ReadingsBuilder(), sink_type()
    decode_into = decoder.decode_into
    gc.collect()  # the garbage of the chunk before is not collected on this one's time
    t = time.perf_counter()
    for topic, payload in chunk:
        decode_into(topic, payload, now, builder, sink)
    elapsed = time.perf_counter() - t
    return elapsed, sink.readings, len(sink.rejections)


def load(path: str):
    spec = importlib.util.spec_from_file_location("decode_against", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (msgspec resolves the Structs' annotations through it)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=200_000, help="messages per case (readings: a tenth)")
    ap.add_argument("--windows", type=int, default=20_000, help="waveform windows of 100 samples")
    ap.add_argument("--cases", default="single,multi,waveform,readings,event")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--against", help="another decode.py, measured beside this tree's, interleaved")
    args = ap.parse_args()
    now = int(time.time() * 1000)
    t0 = now - 86_400_000
    decoders = [("this", ingest.decode)] + ([("against", load(args.against))] if args.against else [])
    print(f"this: {ingest.decode.__file__}" + (f"; against: {args.against}" if args.against else "")
          + f"; load average {os.getloadavg()[0]:.1f}")
    head = "| case | messages | readings | this best msg/s | this median msg/s |"
    if args.against:
        head += " against best msg/s | against median msg/s | this/against, best | this/against, rounds |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for case in args.cases.split(","):
        n = args.windows if case == "waveform" else args.messages // 10 if case == "readings" else args.messages
        parts = chunks(payloads(case, n, t0, np.random.default_rng(7)))
        made = [(m.Decoder(lookup), m.Decoded) for _, m in decoders]
        times = [[[0.0] * args.rounds for _ in parts] for _ in decoders]  # [decoder][chunk][round]
        readings = 0  # (per round)
        for r in range(args.rounds):
            for c, chunk in enumerate(parts):
                order = range(len(decoders)) if (r + c) % 2 == 0 else reversed(range(len(decoders)))
                for k in order:
                    s, got, rejected = decode_chunk(*made[k], chunk, now)
                    if rejected:
                        raise SystemExit(f"{case}: {rejected} messages rejected by {decoders[k][0]}")
                    times[k][c][r] = s
                    readings += got if r == 0 and k == 0 else 0
        cells, bests, per_round = [], [], []
        for k in range(len(decoders)):
            bests.append(n / sum(min(t) for t in times[k]))
            per_round.append([sum(times[k][c][r] for c in range(len(parts))) for r in range(args.rounds)])
            cells += [f"{bests[k]:,.0f}", f"{n / statistics.median(per_round[k]):,.0f}"]
        if args.against:
            ratio = statistics.median(b / a for a, b in zip(per_round[0], per_round[1], strict=True))
            cells += [f"{bests[0] / bests[1]:.3f}", f"{ratio:.3f}"]
        print(f"| {case} | {n:,} | {readings:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
