"""citywatch.runner._Serialized: the API's calls into a shared state, one at a time, and the
dispatcher woken only after the calls that may queue or change a notice, not after reads."""

from __future__ import annotations

import threading
import time

from citywatch.runner import _Serialized


class Alerts:
    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.kind = "state"

    def _enter(self) -> None:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.01)
        self.inside -= 1

    def ack(self, alert_id: str) -> str:
        self._enter()
        return f"acked {alert_id}"

    def list_alerts(self) -> list:
        self._enter()
        return []


def test_wakes_after_writes_only_and_serializes_calls():
    woken: list[int] = []
    alerts = Alerts()
    api = _Serialized(alerts, after=lambda: woken.append(1), after_calls=("ack", "add_silence"))
    assert api.list_alerts() == [] and woken == []
    assert api.ack("a-1") == "acked a-1" and woken == [1]
    assert api.kind == "state"  # attributes pass through
    threads = [threading.Thread(target=api.list_alerts) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert alerts.most_inside == 1 and woken == [1]
