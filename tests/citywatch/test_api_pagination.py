"""``GET /api/v1/devices`` over 500,000 registered devices, through a real uvicorn: the ``next``
cursors walk every device exactly once, in order, each page quickly; a token limited to a
district walks exactly that district's devices."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from citywatch.api.tokens import TokenStore
from devices.catalogue import KINDS
from devices.registry import Registry
from devices.sqlite import connect, write_transaction

from .api_support import DEVICE, Served, make_node

pytestmark = pytest.mark.slow

N = 500_000
DISTRICTS = ("江岸区", "江汉区", "硚口区", "汉阳区", "武昌区", "青山区", "洪山区", "东西湖区", "汉南区", "蔡甸区",
             "江夏区", "黄陂区", "新洲区")
PAGE = 10_000


def register(path, n: int) -> None:
    """``n`` devices straight into the registry's table, district ``i % 13``, kind ``i % 6``; its
    indexes dropped meanwhile and rebuilt by :class:`Registry` (9 s instead of 15 here)."""
    rows = ((f"{KINDS[i % len(KINDS)]}-bulk-{i:07d}", KINDS[i % len(KINDS)], DISTRICTS[i % len(DISTRICTS)],
             30.5 + (i % 1000) / 10_000, 114.3 + (i % 997) / 10_000) for i in range(n))
    conn = connect(path)
    with write_transaction(conn) as c:
        for index in ("devices_kind", "devices_district", "devices_commissioned"):
            c.execute(f"DROP INDEX {index}")
        c.executemany("INSERT INTO devices (device_id, kind, district, lat, lon) VALUES (?, ?, ?, ?, ?)", rows)
    Registry(conn)  # creates what is missing: the indexes
    conn.close()


def walk(http: httpx.Client, token: str, **params) -> tuple[list[str], list[float], int]:
    """Every device id by following ``next``; the seconds each page took; the first ``total``."""
    ids, took, cursor, total = [], [], None, None
    while True:
        t0 = time.perf_counter()
        r = http.get("/api/v1/devices", params={**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})},
                     headers={"Authorization": f"Bearer {token}"})
        took.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        body = r.json()
        total = body["total"] if total is None else total
        ids += [d["device_id"] for d in body["items"]]
        cursor = body["next"]
        if cursor is None:
            return ids, took, total


def test_cursors_walk_500k_devices_once_each(tmp_path):
    node = make_node(tmp_path / "node", tokens=False)  # plus 2 seeded devices (江汉区, 武昌区)
    t0 = time.perf_counter()
    register(node.state_path, N)
    print(f"registered {N:,} devices in {time.perf_counter() - t0:.1f} s")
    store = TokenStore(node.state_path)
    admin, jianghan = store.create("admin", "admin")[1], store.create("jh", "viewer", ["江汉区"])[1]
    served = Served(node.api_app())
    try:
        with httpx.Client(base_url=served.url, timeout=60) as http:
            ids, took, total = walk(http, admin)
            assert total == N + 2 and len(ids) == N + 2 and len(set(ids)) == N + 2
            assert ids == sorted(ids)
            print(f"{len(took)} pages of {PAGE:,}: median {statistics.median(took) * 1000:.0f} ms, "
                  f"max {max(took) * 1000:.0f} ms")
            assert max(took) < 5.0  # generous: a shared 2-core machine; the figure is printed

            ids, took, total = walk(http, jianghan)
            expected = {f"{KINDS[i % len(KINDS)]}-bulk-{i:07d}" for i in range(N)
                        if DISTRICTS[i % len(DISTRICTS)] == "江汉区"} | {DEVICE}
            assert total == len(ids) == len(expected) and set(ids) == expected
            print(f"江汉区 token: {len(ids):,} devices in {len(took)} pages, median "
                  f"{statistics.median(took) * 1000:.0f} ms")
            # a deep page on its own: keyset, so as fast as the first
            t0 = time.perf_counter()
            deep = http.get("/api/v1/devices", params={"cursor": "toilet-bulk-0499990", "limit": 100},
                            headers={"Authorization": f"Bearer {admin}"}).json()
            print(f"a page of 100 after device 499,990: {(time.perf_counter() - t0) * 1000:.0f} ms")
            assert [d["device_id"] for d in deep["items"]] == sorted(ids_after("toilet-bulk-0499990"))[:100]
    finally:
        served.close()
        node.store.close()


def ids_after(cursor: str) -> list[str]:
    """The device ids above ``cursor`` (an independent computation of the next page's first)."""
    made = [f"{KINDS[i % len(KINDS)]}-bulk-{i:07d}" for i in range(N)] + [DEVICE, "bridge-wuchang-0001"]
    return [i for i in made if i > cursor]
