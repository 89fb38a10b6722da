"""The tiles' presence pass: counted once, served between passes, redone in the background when
stale (the previous counts served meanwhile), summed per district scope from one pass."""

from __future__ import annotations

from dashboards.board.tiles import Tiles
from devices.model import Device
from devices.registry import Registry
from devices.sqlite import connect
from tests.board.support import wait_until

NOW = 1_764_428_045_000


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_presence_is_redone_in_the_background_when_stale(tmp_path):
    reg = Registry(connect(tmp_path / "state.db"))
    reg.conn.execute("CREATE TABLE alerts (kind TEXT, severity TEXT, state TEXT, district TEXT)")
    reg.upsert([Device("noise-a", "noise", "江汉区"), Device("noise-b", "noise", "武昌区")])
    reg.mark_seen({"noise-a": NOW})
    clock = Clock()
    tiles = Tiles(connect(tmp_path / "state.db", readonly=True), now_ms=lambda: NOW, clock=clock)
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
