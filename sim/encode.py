"""Wire encoding of the game side: AgentBatch -> AgentInfoProto bytes, outputs -> UnityMessageProto, PNG.

Two encoders produce the same messages:

* the fast path writes ``AgentInfoProto`` records of float-only behaviours with numpy: every record of a
  behaviour has the same length (fixed32 floats, bools written explicitly, ids and group ids as 5-byte
  varints, a valid non-minimal form every protobuf parser reads), so a batch is one ``uint8 [n, L]`` array;
* the protobuf path builds ``AgentInfoProto`` objects (PNG observations, or a deliberately bad shape).

A game that reports the same batch objects again and again (``bench``) hands out :class:`CachedBatch`
objects: each is encoded once per layout and its bytes are reused.

Layout rule (reference 1.5): rank-3 observations are HWC with dimension properties [TE, TE, None] when the
announced package major version is < 3, CHW with [None, TE, TE] otherwise. PNG images are always encoded
from HWC pixels; only the announced shape changes. ``hwc_data``: packages 3.0.0 to 4.0.0 declare CHW but
write the floats of an uncompressed rank-3 observation in H, W, C order
(:func:`unimarl.sim.wire_rules.visual_layout` cites the C# lines).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unimarl.protos import (
    ActionSpecProto,
    AgentInfoProto,
    BrainParametersProto,
    CompressionTypeProto,
    ObservationProto,
)
from unimarl.protos.wire import Segment, field_bytes, le_float_bytes, rows, varint, width
from unimarl.sim.game import AgentBatch, BehaviorDef, ObsDef

DIM_NONE, DIM_TRANSLATIONAL = 1, 2
STATUS_OK = 200


def _padded_varints(values: np.ndarray) -> np.ndarray:
    """Non-negative int32 values as 5-byte varints, ``uint8 [n, 5]``."""
    v = values.astype(np.uint32)
    out = np.empty((len(v), 5), np.uint8)
    for k in range(4):
        out[:, k] = ((v >> (7 * k)) & 0x7F) | 0x80
    out[:, 4] = (v >> 28) & 0x0F
    return out


def wire_shape(obs: ObsDef, chw: bool) -> tuple[int, ...]:
    if len(obs.shape) == 3 and chw:
        h, w, c = obs.shape
        return (c, h, w)
    return obs.shape


def dimension_properties(obs: ObsDef, chw: bool) -> tuple[int, ...]:
    if len(obs.shape) == 3:
        if chw:
            return (DIM_NONE, DIM_TRANSLATIONAL, DIM_TRANSLATIONAL)
        return (DIM_TRANSLATIONAL, DIM_TRANSLATIONAL, DIM_NONE)
    return (DIM_NONE,) * len(obs.shape)


def wire_floats(data: np.ndarray, chw: bool, hwc_data: bool = False) -> np.ndarray:
    """``[n, *shape]`` observations as little-endian float32 in wire layout, ``[n, size]``."""
    if data.ndim == 4 and chw and not hwc_data:
        data = data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data, dtype="<f4").reshape(len(data), -1)


def _obs_header(obs: ObsDef, chw: bool) -> ObservationProto:
    return ObservationProto(
        shape=wire_shape(obs, chw), dimension_properties=dimension_properties(obs, chw), name=obs.name
    )


def encode_batch_fast(behavior: BehaviorDef, batch: AgentBatch, chw: bool, hwc_data: bool = False) -> bytes:
    """``ListAgentInfoProto`` bytes for a float-only behaviour, vectorised over agents."""
    n = len(batch)
    segments: list[Segment] = [b"\x3d", le_float_bytes(batch.rewards.reshape(n, 1))]
    segments += [b"\x40", batch.done.astype(np.uint8).reshape(n, 1)]
    segments += [b"\x48", batch.max_step.astype(np.uint8).reshape(n, 1)]
    segments += [b"\x50", _padded_varints(batch.ids)]
    if batch.mask is not None:
        segments += [b"\x5a" + varint(batch.mask.shape[1]), batch.mask.astype(np.uint8)]
    for obs_def, data in zip(behavior.observations, batch.obs, strict=True):
        floats = wire_floats(data, chw, hwc_data).view(np.uint8)
        float_data = b"\x0a" + varint(floats.shape[1])
        data_field = b"\x22" + varint(len(float_data) + floats.shape[1]) + float_data
        head = _obs_header(obs_def, chw).SerializeToString() + data_field
        segments += [b"\x6a" + varint(len(head) + floats.shape[1]) + head, floats]
    if batch.group_id is not None and batch.group_reward is not None:
        segments += [b"\x70", _padded_varints(batch.group_id)]
        segments += [b"\x7d", le_float_bytes(batch.group_reward.reshape(n, 1))]
    segments.insert(0, b"\x0a" + varint(sum(width(s) for s in segments)))
    return rows(n, segments)


def encode_batch_proto(
    behavior: BehaviorDef,
    batch: AgentBatch,
    chw: bool,
    corrupt_shape: bool = False,
    hwc_data: bool = False,
) -> bytes:
    """``ListAgentInfoProto`` bytes built from protobuf objects (handles PNG observations)."""
    headers = [_obs_header(o, chw) for o in behavior.observations]
    payloads = [
        _png_all(data, obs_def) if obs_def.png else wire_floats(data, chw, hwc_data).tolist()
        for obs_def, data in zip(behavior.observations, batch.obs, strict=True)
    ]
    parts = []
    for i in range(len(batch)):
        info = AgentInfoProto(
            reward=float(batch.rewards[i]),
            done=bool(batch.done[i]),
            max_step_reached=bool(batch.max_step[i]),
            id=int(batch.ids[i]),
        )
        if batch.mask is not None:
            info.action_mask.extend(batch.mask[i].tolist())
        if batch.group_id is not None and batch.group_reward is not None:
            info.group_id = int(batch.group_id[i])
            info.group_reward = float(batch.group_reward[i])
        for obs_def, header, values in zip(behavior.observations, headers, payloads, strict=True):
            proto = info.observations.add()
            proto.CopyFrom(header)
            if obs_def.png:
                proto.compression_type = CompressionTypeProto.PNG
                proto.compressed_data = values[i]
                proto.compressed_channel_mapping.extend(obs_def.channel_mapping)
            else:
                proto.float_data.data.extend(values[i])
        if corrupt_shape and i == 0:
            del info.observations[0].float_data.data[-1]
        parts.append(field_bytes(1, info.SerializeToString()))
    return b"".join(parts)


@dataclass(eq=False)
class CachedBatch(AgentBatch):
    """An :class:`AgentBatch` that its game never changes: :func:`encode_batch` encodes it once per layout.

    The game must not modify the arrays after handing the batch out (``bench`` makes them read-only).
    """

    wire: dict[tuple[bool, bool], bytes] = field(default_factory=dict, repr=False)


def encode_batch(
    behavior: BehaviorDef,
    batch: AgentBatch,
    chw: bool,
    corrupt_shape: bool = False,
    hwc_data: bool = False,
) -> bytes:
    """``ListAgentInfoProto`` bytes: cached bytes, the fast path where it applies, else the protobuf path."""
    if corrupt_shape or any(o.png for o in behavior.observations):
        return encode_batch_proto(behavior, batch, chw, corrupt_shape, hwc_data)
    if isinstance(batch, CachedBatch):
        key = (chw, hwc_data)
        data = batch.wire.get(key)
        if data is None:
            data = batch.wire[key] = encode_batch_fast(behavior, batch, chw, hwc_data)
        return data
    return encode_batch_fast(behavior, batch, chw, hwc_data)


def brain_parameters(behavior: BehaviorDef) -> BrainParametersProto:
    return BrainParametersProto(
        brain_name=behavior.name,
        is_training=True,
        action_spec=ActionSpecProto(
            num_continuous_actions=behavior.num_continuous,
            num_discrete_actions=len(behavior.discrete_branches),
            discrete_branch_sizes=behavior.discrete_branches,
        ),
    )


def output_message(
    agent_infos: Sequence[tuple[str, bytes]], side_channel: bytes, new_brains: Sequence[BehaviorDef]
) -> bytes:
    """``UnityMessageProto`` bytes: header 200, rl_output (agentInfos, side channel), new brain parameters."""
    rl_output = b"".join(
        field_bytes(2, field_bytes(1, name.encode()) + field_bytes(2, infos)) for name, infos in agent_infos
    )
    if side_channel:
        rl_output += field_bytes(3, side_channel)
    unity_output = field_bytes(1, rl_output)
    if new_brains:
        init = b"".join(field_bytes(5, brain_parameters(b).SerializeToString()) for b in new_brains)
        unity_output += field_bytes(2, init)
    return field_bytes(1, b"\x08" + varint(STATUS_OK)) + field_bytes(2, unity_output)


def png_encode(pixels: np.ndarray) -> bytes:
    """PNG bytes (8-bit RGB, filter 0) of an ``uint8 [H, W, 3]`` image."""
    height, width, channels = pixels.shape
    if channels != 3:
        raise ValueError(f"png_encode takes RGB images [H, W, 3], got shape {pixels.shape}")
    raw = np.zeros((height, width * 3 + 1), np.uint8)
    raw[:, 1:] = pixels.reshape(height, width * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def to_pixels(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8, the way Unity quantises a texture."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _png_all(data: np.ndarray, obs_def: ObsDef) -> list[bytes]:
    """One payload per agent: C channels as ceil(C/3) concatenated RGB PNGs (padding channels zero)."""
    n, h, w, c = data.shape
    n_png = -(-c // 3)
    padded = np.zeros((n, h, w, 3 * n_png), np.uint8)
    padded[..., :c] = to_pixels(data)
    return [b"".join(png_encode(padded[i, :, :, 3 * k : 3 * k + 3]) for k in range(n_png)) for i in range(n)]
