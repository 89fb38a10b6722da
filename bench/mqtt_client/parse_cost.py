"""Per-message CPU cost of ``WireConsumer``'s receive path without a socket or a broker.

    python bench/mqtt_client/parse_cost.py [cb|batch] [4|5]

100,000 QoS 1 PUBLISH packets of ~100 bytes, parsed by ``_parse`` in 256 KiB chunks as the I/O
thread would, every message acknowledged (``cb``: ``ack()`` inside ``on_message``; ``batch``:
``on_batch`` collects them, acked after each chunk, as the pipeline does later), PUBACKs
flushed to a null socket after each chunk. Prints the best of 7 runs in CPU µs per message:
less sensitive to a loaded machine than run.py's wall-clock figures, for before/after
comparisons of the per-message loop (run both versions alternately)."""

from __future__ import annotations

import struct
import sys
import threading
import time

from ingest.mqtt import ConsumerOptions
from ingest.wire import WireConsumer, _utf8

N = 100_000


class _NullSocket:
    def sendall(self, data: bytes) -> None:
        pass


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "batch"
    proto = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    payload = b'{"ts": 1764403200000, "metrics": {"laeq_db": 51.5, "pm10_ugm3": 12}}'

    def publish(i: int) -> bytes:
        body = (_utf8(f"city/noise/n-{i % 1000}/telemetry") + struct.pack(">H", i % 65535 + 1)
                + (b"\x00" if proto == 5 else b"") + payload)
        return bytes((0x32, len(body))) + body

    data = b"".join(publish(i) for i in range(N))
    chunks = [data[i:i + 256 * 1024] for i in range(0, len(data), 256 * 1024)]
    pending: list = []
    c = WireConsumer("mqtt://127.0.0.1:1", lambda t, p, a: a(), ConsumerOptions(client_id="bench", protocol=proto),
                     on_batch=(lambda items: pending.extend(it[2] for it in items)) if mode == "batch" else None)
    c._connacked = True
    c._io_ident = threading.get_ident()
    c._sock = _NullSocket()
    best = float("inf")
    for _ in range(7):
        c._new_generation()
        t0 = time.process_time()
        rest = b""
        for chunk in chunks:
            buf = rest + chunk
            pos, _need = c._parse(buf)
            rest = buf[pos:]
            for ack in pending:
                ack()
            pending.clear()
            c._flush_acks()
        best = min(best, time.process_time() - t0)
    print(f"{mode} MQTT {'5' if proto == 5 else '3.1.1'}: {best / N * 1e6:.2f} CPU µs/msg (best of 7)")


if __name__ == "__main__":
    main()
