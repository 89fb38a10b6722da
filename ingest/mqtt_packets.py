"""MQTT 3.1.1/5 packets for the wire consumer (ingest/wire.py): packet types, reason codes,
variable byte integers, UTF-8 strings, property blocks and coalesced PUBACKs. Every reader
checks its bounds and raises :class:`ProtocolError` on a malformed packet."""

from __future__ import annotations

import struct

import numpy as np

from ingest.mqtt import MqttError

# packet types (high nibble of the fixed header)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"  # v5: remaining length 0 = reason 0x00, normal (session kept)
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

_V4_REFUSALS = {1: "unacceptable protocol version", 2: "client identifier rejected",
                3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}
_V5_REASONS = {
    0x04: "disconnect with will message", 0x80: "unspecified error", 0x81: "malformed packet",
    0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down", 0x8C: "bad authentication method",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
    0x90: "topic name invalid", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
    0x95: "packet too large", 0x97: "quota exceeded", 0x98: "administrative action",
    0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
    0x9C: "use another server", 0x9D: "server moved", 0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported", 0xA2: "wildcard subscriptions not supported",
}

# MQTT 5 property identifier -> value type, to walk a property block
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO, 0x22: _TWO,
    0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE,
    0x2A: _BYTE,
}
_SERVER_KEEP_ALIVE, _REASON_STRING, _MAXIMUM_QOS = 0x13, 0x1F, 0x24


class ProtocolError(MqttError):
    """The broker sent something this client cannot accept; the connection is closed."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 65535:
        raise ValueError(f"string too long for MQTT ({len(b)} bytes): {s[:40]!r}...")
    return _U16.pack(len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _read_varint(data: bytes, i: int, end: int) -> tuple[int, int]:
    """(value, next index) of the variable byte integer at ``i``; ProtocolError if malformed."""
    value, shift = 0, 0
    while True:
        if i >= end or shift > 21:
            raise ProtocolError("malformed variable byte integer")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _properties(data: bytes, i: int, end: int) -> tuple[dict[int, object], int]:
    """Parse an MQTT 5 property block at ``i``: ({id: last value}, index after the block)."""
    length, i = _read_varint(data, i, end)
    stop = i + length
    if stop > end:
        raise ProtocolError("property block longer than its packet")
    props: dict[int, object] = {}
    while i < stop:
        pid, i = _read_varint(data, i, stop)
        kind = _PROPERTY_TYPES.get(pid)
        if kind is None:
            raise ProtocolError(f"unknown MQTT 5 property 0x{pid:02x}")
        if kind == _BYTE:
            need = 1
        elif kind == _TWO:
            need = 2
        elif kind == _FOUR:
            need = 4
        elif kind == _VARINT:
            props[pid], i = _read_varint(data, i, stop)
            continue
        else:
            if i + 2 > stop:
                raise ProtocolError("truncated property")
            need = 2 + _U16.unpack_from(data, i)[0]
            if kind == _PAIR and i + need + 2 <= stop:
                need += 2 + _U16.unpack_from(data, i + need)[0]
        if i + need > stop:
            raise ProtocolError("truncated property")
        raw = data[i:i + need]
        props[pid] = int.from_bytes(raw, "big") if kind in (_BYTE, _TWO, _FOUR) else raw
        i += need
    return props, stop


def _reason(code: int, protocol: int, props: dict[int, object] | None = None) -> str:
    name = (_V5_REASONS if protocol == 5 else _V4_REFUSALS).get(code, "unknown reason")
    text = f"{name} (0x{code:02x})"
    extra = (props or {}).get(_REASON_STRING)
    if isinstance(extra, bytes) and len(extra) > 2:
        text += f": {extra[2:].decode('utf-8', 'replace')}"
    return text


def _pubacks(pids: list[int]) -> bytes:
    """PUBACK packets for ``pids`` in order, in one buffer (v5 short form: reason 0, no props)."""
    out = np.empty(2 * len(pids), dtype=">u2")
    out[0::2] = 0x4002
    out[1::2] = pids
    return out.tobytes()
