"""Unsigned LEB128 varints: the compact integers inside signed tokens and references
(subscribers.tokens, digest.delivery.reference). Small ids take one or two bytes."""

from __future__ import annotations


def encode(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def decode(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); ValueError when the data ends first or it runs long."""
    value = shift = 0
    while pos < len(data) and shift <= 63:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")
