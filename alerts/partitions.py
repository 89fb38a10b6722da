"""Partitions of the rule evaluation: a stable split of the devices, so that several nodes can
each evaluate some of them (docs/ARCHITECTURE.md, "Several nodes").

A device's partition is a hash of its id (CRC-32, the same in every process, release and
language), modulo the number of partitions: it never depends on the order devices were
registered in or on which nodes are up. Changing the number of partitions moves devices
between partitions; their state moves with them (each partition's engine restores only its
devices' state from the checkpoints).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable


def partition_of(device_id: str, partitions: int) -> int:
    return zlib.crc32(device_id.encode()) % partitions


def owner_of(partition: int, partitions: int) -> Callable[[str], bool]:
    """Whether a device id is in ``partition`` (every device when there is one partition)."""
    if partitions == 1:
        return lambda device_id: True
    return lambda device_id: zlib.crc32(device_id.encode()) % partitions == partition


def topic_filter(owns: Callable[[str], bool]) -> Callable[[str], bool]:
    """Whether a device-protocol topic ``city/{kind}/{device_id}/{channel}`` is of an owned
    device (a topic of another shape is let through: the decoder rejects it)."""

    def accept(topic: str) -> bool:
        parts = topic.split("/", 3)
        return len(parts) < 3 or owns(parts[2])

    return accept
