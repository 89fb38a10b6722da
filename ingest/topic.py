"""MQTT topics of the device protocol: ``city/{kind}/{device_id}/{telemetry|event|status}``."""

from __future__ import annotations

from dataclasses import dataclass

from devices.catalogue import CATALOGUE
from devices.model import DEVICE_ID_RE

CHANNELS = ("telemetry", "event", "status")


class TopicError(ValueError):
    """A topic that is not a device-protocol topic; ``code`` classifies it for the quarantine."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Topic:
    kind: str
    device_id: str
    channel: str

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "city" or parts[3] not in CHANNELS:
            raise TopicError(
                "bad_topic",
                f"topic {topic!r} is not city/{{kind}}/{{device_id}}/{{{'|'.join(CHANNELS)}}}",
            )
        kind, device_id, channel = parts[1], parts[2], parts[3]
        if kind not in CATALOGUE:
            raise TopicError("unknown_kind", f"unknown kind {kind!r} (known: {', '.join(CATALOGUE)})")
        if not DEVICE_ID_RE.match(device_id):
            raise TopicError(
                "bad_device_id", f"device id {device_id!r} does not match {DEVICE_ID_RE.pattern}"
            )
        return cls(kind, device_id, channel)

    def __str__(self) -> str:
        return f"city/{self.kind}/{self.device_id}/{self.channel}"
