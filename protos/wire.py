"""Protobuf wire-format helpers for the hand-laid fast encoders of the trainer and the stand-in games.

Both ends write a behaviour's repeated messages (``AgentActionProto`` in :mod:`unimarl.bridge.encode`,
``AgentInfoProto`` in :mod:`unimarl.sim.encode`) as numpy byte rows instead of one protobuf object per agent:
every agent's record has the same length, so a record is a sequence of *segments*, each either constant bytes
(tags, lengths) or a ``uint8 [n, k]`` block of per-agent bytes, and :func:`rows` lays them out side by side.
"""

from __future__ import annotations

import numpy as np

#: A piece of every agent's record: the same bytes for all agents, or one ``uint8`` row per agent.
Segment = bytes | np.ndarray


def varint(value: int) -> bytes:
    """Minimal protobuf varint of a non-negative integer."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def varint_len(value: int) -> int:
    """Length in bytes of :func:`varint` of ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def le_float_bytes(values: np.ndarray) -> np.ndarray:
    """``[n, k]`` values as little-endian float32 bytes, ``uint8 [n, 4k]``."""
    return np.ascontiguousarray(values, dtype="<f4").view(np.uint8)


def width(segment: Segment) -> int:
    """Bytes a segment adds to each agent's record."""
    return len(segment) if isinstance(segment, bytes) else segment.shape[1]


def rows(n: int, segments: list[Segment]) -> bytes:
    """The ``n`` records made of ``segments`` (in order), concatenated: ``n * sum(widths)`` bytes."""
    out = np.empty((n, sum(width(s) for s in segments)), np.uint8)
    col = 0
    for segment in segments:
        step = width(segment)
        out[:, col : col + step] = np.frombuffer(segment, np.uint8) if isinstance(segment, bytes) else segment
        col += step
    return out.tobytes()
