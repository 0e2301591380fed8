"""Side channels: exact payload bytes of the built-in channels, routing, registration and framing errors."""

from __future__ import annotations

import logging
import struct
import uuid

import pytest

from unimarl.bridge import (
    EngineConfigurationChannel,
    EnvironmentParametersChannel,
    IncomingMessage,
    OutgoingMessage,
    RawBytesChannel,
    SideChannel,
    SideChannelError,
    SideChannelManager,
    StatsAggregationMethod,
    StatsSideChannel,
)
from unimarl.protos.sidechannel import ENGINE_CONFIGURATION, ENVIRONMENT_PARAMETERS, STATS, frame, unframe

CUSTOM_ID = uuid.UUID("621f0a70-4f87-11ea-a6bf-784f4387d1f7")


def _string(text: str) -> bytes:
    return struct.pack("<i", len(text)) + text.encode("ascii")


def test_engine_configuration_bytes() -> None:
    channel = EngineConfigurationChannel()
    manager = SideChannelManager([channel])
    channel.set_configuration_parameters(width=84, height=64, time_scale=20.0, capture_frame_rate=60)
    frames = list(unframe(manager.encode_outgoing()))
    assert [cid for cid, _ in frames] == [ENGINE_CONFIGURATION] * 3
    assert [payload for _, payload in frames] == [
        struct.pack("<iii", 0, 84, 64),
        struct.pack("<if", 2, 20.0),
        struct.pack("<ii", 4, 60),
    ]
    assert manager.encode_outgoing() == b"", "queued messages are sent once"


def test_engine_configuration_quality_and_frame_rate() -> None:
    channel = EngineConfigurationChannel()
    channel.set_configuration_parameters(quality_level=5, target_frame_rate=-1)
    assert channel.pop_outgoing() == [struct.pack("<ii", 1, 5), struct.pack("<ii", 3, -1)]


def test_engine_configuration_needs_width_and_height() -> None:
    with pytest.raises(SideChannelError, match="width=84 and height=None"):
        EngineConfigurationChannel().set_configuration_parameters(width=84)


def test_environment_parameters_bytes() -> None:
    channel = EnvironmentParametersChannel()
    channel.set_float_parameter("gravity", 9.5)
    channel.set_uniform_sampler_parameters("mass", 1.0, 2.0, seed=7)
    channel.set_gaussian_sampler_parameters("size", 0.5, 0.25, seed=8)
    channel.set_multirangeuniform_sampler_parameters("speed", [(1.0, 2.0), (4.0, 5.0)], seed=9)
    payloads = channel.pop_outgoing()
    assert payloads == [
        _string("gravity") + struct.pack("<if", 0, 9.5),
        _string("mass") + struct.pack("<iiiff", 1, 7, 0, 1.0, 2.0),
        _string("size") + struct.pack("<iiiff", 1, 8, 1, 0.5, 0.25),
        _string("speed") + struct.pack("<iiii4f", 1, 9, 2, 4, 1.0, 2.0, 4.0, 5.0),
    ]
    assert channel.channel_id == ENVIRONMENT_PARAMETERS


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.set_uniform_sampler_parameters("k", 2.0, 1.0, 0), "min_value=2.0 > max_value=1.0"),
        (lambda c: c.set_gaussian_sampler_parameters("k", 0.0, -1.0, 0), "st_dev=-1.0"),
        (lambda c: c.set_multirangeuniform_sampler_parameters("k", [(3.0, 1.0)], 0), r"\(3.0, 1.0\)"),
        (lambda c: c.set_multirangeuniform_sampler_parameters("k", [], 0), "at least one"),
        (lambda c: c.set_float_parameter("größe", 1.0), "must be ASCII"),
    ],
)
def test_environment_parameters_reject_bad_values(call, match: str) -> None:
    with pytest.raises(SideChannelError, match=match):
        call(EnvironmentParametersChannel())


def _stat(key: str, value: float, method: int) -> bytes:
    return _string(key) + struct.pack("<fi", value, method)


def test_stats_routing_and_reset() -> None:
    stats = StatsSideChannel()
    manager = SideChannelManager([stats])
    data = frame(
        [(STATS, _stat("Env/score", 1.5, 0)), (STATS, _stat("Env/score", 2.5, 2)), (STATS, _stat("x", 3, 1))]
    )
    manager.process_incoming(data)
    assert stats.get_and_reset_stats() == {
        "Env/score": [(1.5, StatsAggregationMethod.AVERAGE), (2.5, StatsAggregationMethod.SUM)],
        "x": [(3.0, StatsAggregationMethod.MOST_RECENT)],
    }
    assert stats.get_and_reset_stats() == {}


def test_stats_unknown_aggregation_is_an_error() -> None:
    manager = SideChannelManager([StatsSideChannel()])
    with pytest.raises(SideChannelError, match="aggregation method 9"):
        manager.process_incoming(frame([(STATS, _stat("k", 1.0, 9))]))


def test_raw_bytes_both_ways() -> None:
    channel = RawBytesChannel(CUSTOM_ID)
    manager = SideChannelManager([channel])
    channel.send_raw_data(b"\x00\x01hello")
    assert list(unframe(manager.encode_outgoing())) == [(CUSTOM_ID, b"\x00\x01hello")]
    manager.process_incoming(frame([(CUSTOM_ID, b"abc"), (CUSTOM_ID, b"")]))
    assert channel.get_and_clear_received_messages() == [b"abc", b""]
    assert channel.get_and_clear_received_messages() == []


class _EchoChannel(SideChannel):
    def __init__(self) -> None:
        super().__init__(CUSTOM_ID)
        self.received: list[tuple[int, str, list[float], bool]] = []

    def on_message_received(self, msg: IncomingMessage) -> None:
        self.received.append((msg.read_int32(), msg.read_string(), msg.read_float32_list(), msg.read_bool()))


def test_custom_channel_round_trip_and_guid_byte_order() -> None:
    channel = _EchoChannel()
    manager = SideChannelManager()
    manager.register(channel)
    out = OutgoingMessage()
    out.write_int32(-3)
    out.write_string("hi")
    out.write_float32_list([0.5, 1.5])
    out.write_bool(True)
    channel.queue_message_to_send(out)
    data = manager.encode_outgoing()
    # .NET Guid.ToByteArray() order: the first three groups little-endian.
    assert data[:16] == bytes.fromhex("700a1f62874fea11a6bf784f4387d1f7")
    assert struct.unpack_from("<i", data, 16)[0] == len(out.buffer)
    manager.process_incoming(data)
    assert channel.received == [(-3, "hi", [0.5, 1.5], True)]


def test_duplicate_channel_id_is_an_error() -> None:
    manager = SideChannelManager([RawBytesChannel(CUSTOM_ID)])
    with pytest.raises(SideChannelError, match=f"{CUSTOM_ID} is already registered by RawBytesChannel"):
        manager.register(_EchoChannel())


def test_unregister() -> None:
    channel = RawBytesChannel(CUSTOM_ID)
    manager = SideChannelManager([channel])
    manager.unregister(channel)
    assert manager.channels == {}
    with pytest.raises(SideChannelError, match="is not registered"):
        manager.unregister(channel)


def test_unknown_channel_warns_once_per_id(caplog: pytest.LogCaptureFixture) -> None:
    stats = StatsSideChannel()
    manager = SideChannelManager([stats])
    other = uuid.UUID("11111111-2222-3333-4444-555555555555")
    data = frame([(CUSTOM_ID, b"a"), (other, b"b"), (STATS, _stat("k", 1.0, 0)), (CUSTOM_ID, b"c")])
    with caplog.at_level(logging.WARNING, logger="unimarl.bridge.side_channels"):
        manager.process_incoming(data)
        manager.process_incoming(data)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert str(CUSTOM_ID) in warned[0] and str(other) in warned[1]
    assert stats.get_and_reset_stats() == {"k": [(1.0, StatsAggregationMethod.AVERAGE)] * 2}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x02\x03", "header truncated"),
        (STATS.bytes_le + struct.pack("<i", 50) + b"short", "claims 50 bytes"),
    ],
)
def test_unparsable_bytes_are_an_error(data: bytes, match: str) -> None:
    with pytest.raises(SideChannelError, match=match):
        SideChannelManager([StatsSideChannel()]).process_incoming(data)


def test_truncated_payload_names_the_channel() -> None:
    manager = SideChannelManager([StatsSideChannel()])
    with pytest.raises(SideChannelError, match=r"StatsSideChannel .* could not parse a 6-byte message"):
        manager.process_incoming(frame([(STATS, _string("ab"))]))


def test_channel_id_must_be_a_uuid() -> None:
    with pytest.raises(SideChannelError, match=r"must be a uuid\.UUID"):
        RawBytesChannel("621f0a70-4f87-11ea-a6bf-784f4387d1f7")  # type: ignore[arg-type]
