"""A device's telemetry as it arrives, for the board's device page.

Each open page holds one aiomqtt client of its own on the configured broker (``[mqtt]`` url,
username, password, TLS options), subscribed with QoS 0 to ``city/{kind}/{id}/#`` and cleaned up
when the page goes away (the response is cancelled when the client disconnects; leaving the
``async with`` disconnects from the broker). Nothing here is stored or acknowledged: the ingest
consumer's subscription is untouched.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomqtt

from ingest.mqtt import BrokerAddress, TlsOptions

MAX_PAYLOAD = 64 * 1024  # bytes of one message passed on to the page; longer ones are cut


@dataclass(frozen=True, slots=True)
class Broker:
    """Where and how to connect, from ``[mqtt]`` (``Broker.from_settings``)."""

    address: BrokerAddress
    username: str = ""
    password: str = ""
    protocol: int = 5
    tls: TlsOptions | None = None

    @classmethod
    def from_settings(cls, mqtt: Any, url: str | None = None) -> Broker:
        address = BrokerAddress.parse(url or mqtt.url)
        return cls(address, mqtt.username or address.username, mqtt.password or address.password,
                   mqtt.protocol, mqtt.tls_options() if address.tls else None)

    def client(self) -> aiomqtt.Client:
        proto = aiomqtt.ProtocolVersion.V5 if self.protocol == 5 else aiomqtt.ProtocolVersion.V311
        return aiomqtt.Client(
            self.address.host, self.address.port, username=self.username or None,
            password=self.password or None, identifier=f"citywatch-board-{secrets.token_hex(6)}",
            protocol=proto, tls_context=self.tls.context() if self.tls is not None else None, keepalive=30)


def message_event(topic: str, payload: bytes) -> dict[str, Any]:
    """``{"channel", "payload"}``: the topic's last level (telemetry, event, status) and the
    payload, as JSON when it is, else as text (cut at MAX_PAYLOAD bytes)."""
    channel = topic.rsplit("/", 1)[-1]
    body = payload[:MAX_PAYLOAD]
    try:
        value: Any = json.loads(body) if len(payload) <= MAX_PAYLOAD else None
    except ValueError:
        value = None
    if value is None:
        value = body.decode("utf-8", "replace")
    return {"channel": channel, "payload": value}


async def device_messages(broker: Broker, kind: str, device_id: str) -> AsyncIterator[dict[str, Any]]:
    """The device's messages, as :func:`message_event`; the first item is ``None`` once subscribed."""
    async with broker.client() as client:
        await client.subscribe(f"city/{kind}/{device_id}/#", qos=0)
        yield None
        async for m in client.messages:
            yield message_event(str(m.topic), bytes(m.payload) if m.payload is not None else b"")
