"""Inputs the decoder fuzzer (tests/bridge/test_fuzz.py) found escaping as untyped errors, written out.

Each builds the smallest message that showed the escape; the expected outcome is worked out by hand from the
ML-Agents wire format (a correct decode, or the bridge's typed error naming the bad value).
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from unimarl.bridge.decode import decode_output
from unimarl.bridge.errors import ObservationError, ProtocolError
from unimarl.protos import (
    ActionSpecProto,
    AgentInfoProto,
    BrainParametersProto,
    CompressionTypeProto,
    ObservationProto,
    UnityRLOutputProto,
)

B = "B"


def _output(*records: bytes) -> UnityRLOutputProto:
    """An output whose behaviour ``B`` holds the given serialized AgentInfoProto records."""
    body = b"".join(b"\x0a" + _varint(len(r)) + r for r in records)  # ListAgentInfoProto.value = field 1
    entry = b"\x0a" + _varint(len(B)) + B.encode() + b"\x12" + _varint(len(body)) + body
    return UnityRLOutputProto.FromString(b"\x12" + _varint(len(entry)) + entry)  # agentInfos = field 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _decode(out: UnityRLOutputProto, brain: BrainParametersProto | None = None, layout: str = "HWC"):
    return decode_output(out, [brain or BrainParametersProto(brain_name=B)], {}, visual_layout=layout)


def _agent(*observations: ObservationProto, **fields) -> bytes:
    return AgentInfoProto(observations=observations, **fields).SerializeToString()


def test_reward_sent_length_delimited_is_unknown_field_not_decode_error() -> None:
    """Field 7 (reward, a float) arriving with wire type 2: AgentInfoProto keeps it as an unknown field, so
    the message parses; the column view read it as a packed float list of 1 byte and raised DecodeError."""
    obs = ObservationProto(shape=[2], float_data=ObservationProto.FloatData(data=[1.0, 2.0]))
    record = _agent(obs, id=1) + b"\x3a\x01\x00"  # tag (7 << 3) | 2, length 1, one byte
    steps = _decode(_output(record)).steps[B]
    assert steps.decision.agent_id.tolist() == [1]
    assert steps.decision.reward.tolist() == [0.0]  # the only reward field was unknown: proto3 default
    np.testing.assert_array_equal(steps.decision.obs[0], [[1.0, 2.0]])


@pytest.mark.parametrize(
    ("shape", "floats", "bad"),
    [
        ([-1, 2], 2, "-1"),  # was ValueError: negative dimensions are not allowed
        ([-2, -3], 6, "-2"),  # prod is +6, matching the floats: was a reshape ValueError in the fast path
        ([2147483647], 1, "2147483647"),  # was MemoryError (8 GiB np.empty)
        ([2147483647] * 3, 1, "2147483647"),  # was ValueError: array is too big
        ([0] + [2147483647] * 3, 0, "2147483647"),  # size 0, yet also "array is too big"
    ],
)
def test_observation_shape_claiming_bad_size_is_refused(shape, floats, bad) -> None:
    obs = ObservationProto(shape=shape, float_data=ObservationProto.FloatData(data=[0.5] * floats))
    with pytest.raises(ObservationError, match=rf"observation 0.*{bad}"):
        _decode(_output(_agent(obs, id=1)))


def test_variable_length_shape_claiming_huge_size_is_refused() -> None:
    obs = ObservationProto(shape=[65536, 65536], dimension_properties=[4, 1])  # VARIABLE_SIZE, no floats
    with pytest.raises(ObservationError, match=r"65536"):
        _decode(_output(_agent(obs, id=1)))


@pytest.mark.parametrize(
    ("action_spec", "bad"),
    [
        (ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[-3]), "-3"),
        (ActionSpecProto(num_continuous_actions=-1), "-1"),
    ],
)
def test_action_spec_with_negative_size_is_refused(action_spec, bad) -> None:
    obs = ObservationProto(shape=[1], float_data=ObservationProto.FloatData(data=[0.5]))
    brain = BrainParametersProto(brain_name=B, action_spec=action_spec)
    with pytest.raises(ProtocolError, match=rf"{B!r}.*{bad}"):
        _decode(_output(_agent(obs, id=1, action_mask=[True])), brain)


def test_mask_length_is_checked_before_allocating_for_a_huge_branch() -> None:
    """Branch size 2**31 - 1 and one agent sending a 1-entry mask: was a 2 GiB np.zeros then MemoryError."""
    obs = ObservationProto(shape=[1], float_data=ObservationProto.FloatData(data=[0.5]))
    spec = ActionSpecProto(num_discrete_actions=1, discrete_branch_sizes=[2147483647])
    brain = BrainParametersProto(brain_name=B, action_spec=spec)
    records = [_agent(obs, id=1, action_mask=[True]), _agent(obs, id=2)]
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        with pytest.raises(ProtocolError, match=r"agent 1: action mask of length 1, expected 2147483647"):
            _decode(_output(*records), brain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak} bytes allocated to refuse a 2-agent message"


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_obs(data: bytes, shape: list[int], mapping: list[int] = ()) -> ObservationProto:
    return ObservationProto(
        shape=shape,
        compression_type=CompressionTypeProto.PNG,
        compressed_data=data,
        compressed_channel_mapping=mapping,
    )


def test_png_channel_mapping_with_huge_entry_is_refused() -> None:
    """Mapping [0, 1, 2**31 - 1] on a 3-channel PNG: the gap check built set(range(2**31)): MemoryError."""
    pixels = zlib.compress(b"\x00" + bytes(3))  # one RGB pixel, filter byte 0
    obs = _png_obs(_png(1, 1, pixels), [1, 1, 3], [0, 1, 2147483647])
    with pytest.raises(ObservationError, match=r"compressed_channel_mapping \[0, 1, 2147483647\]"):
        _decode(_output(_agent(obs, id=1)))


def test_png_header_claiming_a_huge_image_is_refused() -> None:
    """A PNG whose IHDR claims 100000 x 100000 pixels in a [2, 2, 3] observation: Pillow's
    DecompressionBombError (not an OSError) escaped."""
    obs = _png_obs(_png(100000, 100000, zlib.compress(bytes(16))), [2, 2, 3])
    with pytest.raises(ObservationError, match=r"100000"):
        _decode(_output(_agent(obs, id=1)))


def test_valid_png_still_decodes() -> None:
    """The size checks leave a real PNG alone: a 2 x 1 RGB image decodes to its pixels / 255."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.array([[[255, 0, 51], [0, 102, 255]]], np.uint8)).save(buffer, format="PNG")
    obs = _png_obs(buffer.getvalue(), [1, 2, 3])
    batch = _decode(_output(_agent(obs, id=1))).steps[B].decision.obs[0]
    np.testing.assert_allclose(batch, [[[[1.0, 0.0, 0.2], [0.0, 0.4, 1.0]]]], rtol=1e-6)


def test_many_agents_with_bogus_observations_allocate_nothing_for_them() -> None:
    """A known 64 x 64 x 3 PNG observation, then 20000 agents whose PNG bytes are 1 junk byte each (a
    ~250 KB message): the per-agent path reserved 20000 * 12288 float32 (983 MB) before looking at them."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buffer, format="PNG")
    first = _output(_agent(_png_obs(buffer.getvalue(), [64, 64, 3]), id=0))
    specs = _decode(first).new_specs
    bad = _output(*[_agent(_png_obs(b"x", [64, 64, 3]), id=1)] * 20000)
    tracemalloc.start()
    try:
        with pytest.raises(
            ObservationError, match=r"agent 1 observation 0: compressed observation is not a PNG"
        ):
            decode_output(bad, [], specs, visual_layout="HWC")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"{peak} bytes allocated to refuse a {bad.ByteSize()}-byte message"


def test_variable_length_padding_is_bounded_per_message() -> None:
    """A variable-length [256, 256] observation (65536 values, within the per-agent limit) sent empty by 300
    agents: padding them would need 300 * 65536 float32 (79 MB) from a few kilobytes."""
    obs = ObservationProto(shape=[256, 256], dimension_properties=[4, 1])  # VARIABLE_SIZE
    with pytest.raises(ObservationError, match=r"300 agents.*\(256, 256\)"):
        _decode(_output(*[_agent(obs, id=i) for i in range(300)]))
