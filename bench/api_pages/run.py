"""A page of 10,000 devices as ``GET /api/v1/devices`` answers it: the earlier path (``asdict``,
FastAPI's ``jsonable_encoder``, ``json``) against the current one (a flat dict, msgspec),
interleaved, 7 rounds each; prints the median and fastest ms of each. The two answers are checked
equal first.

    PYTHONPATH=$PWD python bench/api_pages/run.py
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict

from fastapi.encoders import jsonable_encoder

from citywatch.api.deps import json_answer
from citywatch.api.routers.devices import _public
from devices.model import Device

DEVICES = [Device(f"noise-bulk-{i:07d}", "noise", "江汉区", 30.5, 114.3, attrs={"sensor": "laeq"})
           for i in range(10_000)]


def earlier() -> bytes:
    items = []
    for d in DEVICES:
        out = asdict(d)
        out["attrs"] = dict(d.attrs)
        out["online"] = False
        items.append(out)
    body = jsonable_encoder({"items": items, "total": 1, "next": None})
    return json.dumps(body, ensure_ascii=False).encode()


def current() -> bytes:
    return json_answer({"items": [_public(d, 0) for d in DEVICES], "total": 1, "next": None}).body


def main(rounds: int = 7) -> None:
    assert json.loads(earlier()) == json.loads(current())
    took: dict[str, list[float]] = {"earlier": [], "current": []}
    for _ in range(rounds):
        for name, answer in (("earlier", earlier), ("current", current)):
            t0 = time.perf_counter()
            answer()
            took[name].append((time.perf_counter() - t0) * 1000)
    for name, ms in took.items():
        print(f"{name}: median {statistics.median(ms):.0f} ms, fastest {min(ms):.0f} ms")


if __name__ == "__main__":
    main()
