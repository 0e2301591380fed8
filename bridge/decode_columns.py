"""The decoder's fast paths at the byte level (see :mod:`unimarl.bridge.decode` for the semantics).

- Columns: a behaviour's serialized ``ListAgentInfoProto`` is split into its records, and their concatenation
  parsed (in C) by a view message whose fields are all ``repeated``: each ``AgentInfoProto`` field arrives as
  one column of n values (:func:`split_columns`).
- Float observations: when all agents' ``ObservationProto`` bytes agree except for the float payload, the
  payloads are viewed as one float32 matrix (:func:`float_rows`); None tells the caller to take the
  per-agent path, which validates every observation and names the faulty agent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from unimarl.protos import ObservationProto
from unimarl.protos.wire import varint_len


def _column_views() -> Any:
    """View messages: ``Records`` (a list's records as bytes), ``Columns`` (AgentInfoProto, all repeated)."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="unimarl_bridge_columns.proto", package="unimarl_columns", syntax="proto3"
    )
    records = file.message_type.add(name="Records")
    records.field.add(name="value", number=1, type=field.TYPE_BYTES, label=field.LABEL_REPEATED)
    columns = file.message_type.add(name="Columns")  # field numbers and types as in AgentInfoProto
    for name, number, kind in (
        ("reward", 7, field.TYPE_FLOAT),
        ("done", 8, field.TYPE_BOOL),
        ("max_step_reached", 9, field.TYPE_BOOL),
        ("id", 10, field.TYPE_INT32),
        ("action_mask", 11, field.TYPE_BOOL),
        ("observations", 13, field.TYPE_BYTES),
        ("group_id", 14, field.TYPE_INT32),
        ("group_reward", 15, field.TYPE_FLOAT),
    ):
        columns.field.add(name=name, number=number, type=kind, label=field.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"unimarl_columns.{name}"))
        for name in ("Records", "Columns")
    )


_RECORDS, _COLUMNS = _column_views()


def split_columns(records: Any) -> tuple[list[bytes], Any] | None:
    """``(records as bytes, Columns view)`` of one behaviour's ``ListAgentInfoProto``, or None.

    None (take the per-agent path) when the view cannot parse what ``AgentInfoProto`` did: a field sent
    with another wire type is an unknown field to ``AgentInfoProto`` but a (malformed) packed list to the
    all-repeated view.
    """
    bodies = list(_RECORDS.FromString(records.SerializeToString()).value)
    try:
        return bodies, _COLUMNS.FromString(b"".join(bodies))
    except DecodeError:
        return None


def float_fast_path(protos: list[ObservationProto], shape: tuple[int, ...]) -> np.ndarray | None:
    """One float32 batch from identically-structured float observations, or None if they are not."""
    return float_rows([p.SerializeToString() for p in protos], protos[0], shape)


def float_rows(chunks: list[bytes], first: ObservationProto, shape: tuple[int, ...]) -> np.ndarray | None:
    """:func:`float_fast_path` on serialized observations; ``first`` is ``chunks[0]`` parsed."""
    size = math.prod(shape)
    if tuple(first.shape) != shape or len(first.float_data.data) != size:
        return None
    width = len(chunks[0])
    joined = b"".join(chunks)
    if len(set(map(len, chunks))) != 1:
        return None
    # Field order on the wire: shape (1), compression_type (2), float_data (4) = {data (1)}, then the rest.
    head = ObservationProto(shape=first.shape, compression_type=first.compression_type).ByteSize()
    n_bytes = 4 * size
    inner = 1 + varint_len(n_bytes) + n_bytes
    start = head + 1 + varint_len(inner) + 1 + varint_len(n_bytes)
    end = start + n_bytes
    rows = np.frombuffer(joined, np.uint8).reshape(len(chunks), width)
    if len(chunks) > 1 and not (
        (rows[1:, :start] == rows[0, :start]).all() and (rows[1:, end:] == rows[0, end:]).all()
    ):
        return None
    batch = rows[:, start:end].copy().view("<f4").astype(np.float32, copy=False)
    if not np.array_equal(batch[0], np.asarray(first.float_data.data, np.float32), equal_nan=True):
        return None  # the wire layout was not the one assumed: take the general path
    return batch.reshape(len(chunks), *shape)
