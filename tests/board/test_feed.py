"""The alert feed: notices reach each subscriber's loop from any thread, filtered by district; a
full queue marks the subscriber for a resync instead of blocking; the listener never raises."""

from __future__ import annotations

import asyncio
import threading

from alerts.notice import AlertNotice
from dashboards.board.feed import AlertFeed


def notice(district: str, status: str = "firing", aid: str = "a-1") -> AlertNotice:
    return AlertNotice(status, {"id": aid, "severity": "critical"}, {"id": "d", "district": district})


def test_notices_from_another_thread_reach_the_subscribers_of_their_district():
    feed = AlertFeed()

    async def main():
        with feed.subscribe() as everyone, feed.subscribe(frozenset({"武昌区"})) as wuchang:
            assert feed.subscribers == 2
            t = threading.Thread(target=lambda: [feed.listener(None, notice(d, aid=d)) for d in ("江汉区", "武昌区")])
            t.start()
            t.join()
            got = [await asyncio.wait_for(everyone.queue.get(), 5) for _ in range(2)]
            mine = await asyncio.wait_for(wuchang.queue.get(), 5)
            assert [e["alert"]["id"] for e in got] == ["江汉区", "武昌区"]
            assert mine["alert"]["id"] == "武昌区" and mine["state"] == "firing" and wuchang.queue.empty()
        assert feed.subscribers == 0

    asyncio.run(main())


def test_a_full_queue_asks_for_a_resync_and_never_blocks_the_alert_state():
    feed = AlertFeed(max_queued=2)

    async def main():
        with feed.subscribe() as sub:
            for i in range(5):
                feed.listener(None, notice("江汉区", "escalated", aid=f"a-{i}"))
            await asyncio.sleep(0.05)
            assert sub.overflowed and sub.queue.qsize() == 2
            assert sub.queue.get_nowait()["state"] is None  # an escalation does not change the state

    asyncio.run(main())


def test_the_listener_of_a_closed_loop_does_not_raise():
    feed = AlertFeed()
    loop = asyncio.new_event_loop()

    async def subscribe():
        return feed.subscribe().__enter__()

    loop.run_until_complete(subscribe())
    loop.close()
    feed.listener(None, notice("江汉区"))  # the loop is gone: dropped, not raised
