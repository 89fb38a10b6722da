"""The simulators' output value: one MQTT message to publish."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message, in simulated time.

    ``sim_ts`` is the simulated time (ms since the Unix epoch) at which a real device would
    publish it; the publisher paces on it. Payloads are UTF-8 JSON per device-protocol.md
    (except those the ``bad-payloads`` scenario breaks on purpose).
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    sim_ts: int

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {self.qos!r}")


def topic(kind: str, device_id: str, channel: str) -> str:
    """``city/{kind}/{device_id}/{channel}``; channel is telemetry, event or status."""
    return f"city/{kind}/{device_id}/{channel}"
