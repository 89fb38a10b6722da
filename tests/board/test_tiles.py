"""The tiles' presence pass: counted once, served between passes, redone in the background when
stale (the previous counts served meanwhile), summed per district scope from one pass; on both
engines of the state DB."""

from __future__ import annotations

from dashboards.board.tiles import Tiles, presence
from devices.catalogue import KINDS
from devices.db import connect, parse_url
from devices.model import Device
from devices.registry import Registry, online
from tests.board.support import wait_until

NOW = 1_764_428_045_000


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_presence_is_redone_in_the_background_when_stale(state_url):
    reg = Registry(connect(parse_url(state_url)))
    reg.conn.execute("CREATE TABLE alerts (kind TEXT, severity TEXT, state TEXT, district TEXT)")
    reg.upsert([Device("noise-a", "noise", "江汉区"), Device("noise-b", "noise", "武昌区")])
    reg.mark_seen({"noise-a": NOW})
    clock = Clock()
    tiles = Tiles(connect(parse_url(state_url), readonly=True), now_ms=lambda: NOW, clock=clock)
    first = tiles.summary()
    assert (first["kinds"]["noise"]["online"], first["kinds"]["noise"]["offline"]) == (1, 1)
    assert first["districts"] == {"武昌区": 1, "江汉区": 1}
    wuchang = tiles.summary(frozenset({"武昌区"}))["kinds"]["noise"]
    assert (wuchang["online"], wuchang["offline"]) == (0, 1)

    reg.mark_seen({"noise-b": NOW})
    clock.t = 29.0
    assert tiles.summary()["kinds"]["noise"]["online"] == 1  # within the 30 s: the last pass
    clock.t = 31.0
    assert tiles.summary()["kinds"]["noise"]["online"] in (1, 2)  # stale: answered at once, a pass started
    wait_until(lambda: tiles.summary()["kinds"]["noise"]["online"] == 2, 10, "the background pass")


def test_presence_counts_what_the_registry_calls_online(state_url):
    """Every kind, its own limit or a device's ``attrs.offline_after_s`` (a number, else ignored),
    never seen and retired devices: the SQL's counts equal devices/registry.py ``online``."""
    reg = Registry(connect(parse_url(state_url)))
    devices, seen = [], {}
    for i in range(240):
        kind = KINDS[i % len(KINDS)]
        attrs = ({"offline_after_s": 60 * (i % 5 + 1)} if i % 3 == 0 else
                 {"offline_after_s": "soon"} if i % 11 == 0 else {"offline_after_s": 0} if i % 23 == 0 else {})
        devices.append(Device(f"{kind}-{i:03d}", kind, ("江汉区", "武昌区")[i % 2], attrs=attrs,
                              status="retired" if i % 13 == 0 else "installed"))
        if i % 4:
            seen[devices[-1].device_id] = NOW - 37_000 * (i % 17) ** 2
    reg.upsert(devices)
    reg.mark_seen(seen)
    want: dict[tuple[str, str], list[int]] = {}
    for d in reg.iter_devices():
        if d.status != "retired":
            counts = want.setdefault((d.kind, d.district), [0, 0])
            counts[0 if online(d, NOW) else 1] += 1
    got = presence(reg.conn, NOW)
    assert got == {k: tuple(v) for k, v in want.items()}
    assert sum(on for on, _ in got.values()) > 20 and sum(off for _, off in got.values()) > 20
