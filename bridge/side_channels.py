"""Side channels: out-of-band messages between the trainer and the game, riding on the step messages.

Semantics (as in ML-Agents): each channel is identified by a GUID shared by both ends. Messages the trainer
queues travel with the *next* reset or step input; messages from the game arrive with the next output, which
the game only sends when some agent requested a decision. The wire framing and the payload primitives live in
:mod:`unimarl.protos.sidechannel`; this module holds the channel objects and the manager that routes frames.

Built-in channels:

* :class:`EngineConfigurationChannel` (trainer -> game): screen size, quality level, time scale, frame rates.
* :class:`EnvironmentParametersChannel` (trainer -> game): float parameters and samplers, read in C# with
  ``Academy.Instance.EnvironmentParameters.GetWithDefault``.
* :class:`StatsSideChannel` (game -> trainer): ``StatsRecorder.Add`` values with their aggregation method.
* :class:`RawBytesChannel` (both ways): opaque bytes on a user-chosen GUID.

Subclass :class:`SideChannel` for a custom channel and register it with the connection.
"""

from __future__ import annotations

import enum
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence

from unimarl.bridge.errors import SideChannelError
from unimarl.protos.sidechannel import (
    ENGINE_CONFIGURATION,
    ENVIRONMENT_PARAMETERS,
    STATS,
    EngineSetting,
    IncomingMessage,
    OutgoingMessage,
    ParameterKind,
    SamplerType,
    WireFormatError,
    engine_setting_message,
    frame,
    read_stat,
    unframe,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EngineConfigurationChannel",
    "EnvironmentParametersChannel",
    "IncomingMessage",
    "OutgoingMessage",
    "RawBytesChannel",
    "SideChannel",
    "SideChannelManager",
    "StatsAggregationMethod",
    "StatsSideChannel",
]


class SideChannel:
    """Base class of every channel: a GUID, a handler for incoming messages and a queue of outgoing ones.

    Subclasses override :meth:`on_message_received`. :meth:`queue_message_to_send` may be called from any
    thread; queued messages leave with the next reset or step.
    """

    def __init__(self, channel_id: uuid.UUID) -> None:
        if not isinstance(channel_id, uuid.UUID):
            raise SideChannelError(
                f"channel_id must be a uuid.UUID, got {channel_id!r}; "
                "use uuid.UUID('...') with the C# Guid string"
            )
        self._channel_id = channel_id
        self._outgoing: list[bytes] = []
        self._lock = threading.Lock()

    @property
    def channel_id(self) -> uuid.UUID:
        return self._channel_id

    def on_message_received(self, msg: IncomingMessage) -> None:
        """Handle one message from the game. The base class ignores it with a debug log."""
        logger.debug("side channel %s ignores a %d-byte message", self._channel_id, len(msg.get_raw_bytes()))

    def queue_message_to_send(self, msg: OutgoingMessage) -> None:
        """Queue one message for the game; it is sent with the next reset or step."""
        with self._lock:
            self._outgoing.append(msg.buffer)

    def pop_outgoing(self) -> list[bytes]:
        """Take every queued payload (used by :class:`SideChannelManager`)."""
        with self._lock:
            messages, self._outgoing = self._outgoing, []
        return messages


class EngineConfigurationChannel(SideChannel):
    """Engine settings for the game (trainer -> game); id ``e951342c-4f7e-11ea-b238-784f4387d1f7``.

    Each setting is one message: an int32 type (0 resolution, 1 quality, 2 time scale, 3 target frame rate,
    4 capture frame rate) followed by its value(s).
    """

    def __init__(self) -> None:
        super().__init__(ENGINE_CONFIGURATION)

    def set_configuration_parameters(
        self,
        width: int | None = None,
        height: int | None = None,
        quality_level: int | None = None,
        time_scale: float | None = None,
        target_frame_rate: int | None = None,
        capture_frame_rate: int | None = None,
    ) -> None:
        """Queue the given settings; ``None`` leaves a setting unchanged. Width and height go together."""
        if (width is None) != (height is None):
            raise SideChannelError(
                f"width={width!r} and height={height!r}: the screen resolution needs both, or neither"
            )
        if width is not None and height is not None:
            self.queue_message_to_send(engine_setting_message(EngineSetting.SCREEN_RESOLUTION, width, height))
        single: tuple[tuple[EngineSetting, float | None], ...] = (
            (EngineSetting.QUALITY_LEVEL, quality_level),
            (EngineSetting.TIME_SCALE, time_scale),
            (EngineSetting.TARGET_FRAME_RATE, target_frame_rate),
            (EngineSetting.CAPTURE_FRAME_RATE, capture_frame_rate),
        )
        for setting, value in single:
            if value is not None:
                self.queue_message_to_send(engine_setting_message(setting, value))

    def on_message_received(self, msg: IncomingMessage) -> None:
        logger.warning("EngineConfigurationChannel got a message from the game; it only sends, ignoring it")


class EnvironmentParametersChannel(SideChannel):
    """Environment parameters for the game (trainer -> game); id ``534c891e-810f-11ea-a9d0-822485860400``.

    Message: string key, int32 type (0 float value; 1 sampler: int32 seed, int32 sampler type, then
    uniform min/max, gaussian mean/std, or a float list of multi-range intervals).
    """

    def __init__(self) -> None:
        super().__init__(ENVIRONMENT_PARAMETERS)

    def set_float_parameter(self, key: str, value: float) -> None:
        msg = self._start(key, ParameterKind.FLOAT)
        msg.write_float32(value)
        self.queue_message_to_send(msg)

    def set_uniform_sampler_parameters(self, key: str, min_value: float, max_value: float, seed: int) -> None:
        if min_value > max_value:
            raise SideChannelError(f"uniform sampler {key!r}: min_value={min_value} > max_value={max_value}")
        msg = self._start_sampler(key, seed, SamplerType.UNIFORM)
        msg.write_float32(min_value)
        msg.write_float32(max_value)
        self.queue_message_to_send(msg)

    def set_gaussian_sampler_parameters(self, key: str, mean: float, st_dev: float, seed: int) -> None:
        if st_dev < 0:
            raise SideChannelError(f"gaussian sampler {key!r}: st_dev={st_dev} must be >= 0")
        msg = self._start_sampler(key, seed, SamplerType.GAUSSIAN)
        msg.write_float32(mean)
        msg.write_float32(st_dev)
        self.queue_message_to_send(msg)

    def set_multirangeuniform_sampler_parameters(
        self, key: str, intervals: Sequence[tuple[float, float]], seed: int
    ) -> None:
        """Sample uniformly from the union of ``intervals`` ([(min, max), ...])."""
        flat: list[float] = []
        for low, high in intervals:
            if low > high:
                raise SideChannelError(f"multi-range sampler {key!r}: interval ({low}, {high}) has min > max")
            flat += [low, high]
        if not flat:
            raise SideChannelError(f"multi-range sampler {key!r}: give at least one (min, max) interval")
        msg = self._start_sampler(key, seed, SamplerType.MULTIRANGE_UNIFORM)
        msg.write_float32_list(flat)
        self.queue_message_to_send(msg)

    def _start(self, key: str, kind: int) -> OutgoingMessage:
        if not key.isascii():
            raise SideChannelError(f"parameter key {key!r} must be ASCII (the wire format carries ASCII)")
        msg = OutgoingMessage()
        msg.write_string(key)
        msg.write_int32(kind)
        return msg

    def _start_sampler(self, key: str, seed: int, sampler: int) -> OutgoingMessage:
        msg = self._start(key, ParameterKind.SAMPLER)
        msg.write_int32(seed)
        msg.write_int32(sampler)
        return msg


class StatsAggregationMethod(enum.IntEnum):
    """How the trainer should aggregate a stat over a summary period (C# ``StatAggregationMethod``)."""

    AVERAGE = 0
    MOST_RECENT = 1
    SUM = 2
    HISTOGRAM = 3


class StatsSideChannel(SideChannel):
    """Stats recorded in the game (game -> trainer); id ``a1d8f7b7-cec8-50f9-b78b-d3e165a78520``.

    Message: string key, float32 value, int32 aggregation method.
    """

    def __init__(self) -> None:
        super().__init__(STATS)
        self._stats: dict[str, list[tuple[float, StatsAggregationMethod]]] = {}

    def on_message_received(self, msg: IncomingMessage) -> None:
        key, value, raw_method = read_stat(msg)
        try:
            method = StatsAggregationMethod(raw_method)
        except ValueError as e:
            raise SideChannelError(
                f"stat {key!r} has aggregation method {raw_method}; known: 0-3 (AVERAGE..HISTOGRAM). "
                "Check that the game's ML-Agents package matches the trainer."
            ) from e
        with self._lock:
            self._stats.setdefault(key, []).append((value, method))

    def get_and_reset_stats(self) -> dict[str, list[tuple[float, StatsAggregationMethod]]]:
        """Every stat received since the last call, per key in arrival order; clears them."""
        with self._lock:
            stats, self._stats = self._stats, {}
        return stats


class RawBytesChannel(SideChannel):
    """Opaque bytes both ways on a user-chosen GUID (C# ``RawBytesChannel``)."""

    def __init__(self, channel_id: uuid.UUID) -> None:
        super().__init__(channel_id)
        self._received: list[bytes] = []

    def on_message_received(self, msg: IncomingMessage) -> None:
        with self._lock:
            self._received.append(msg.get_raw_bytes())

    def send_raw_data(self, data: bytes) -> None:
        msg = OutgoingMessage()
        msg.set_raw_bytes(data)
        self.queue_message_to_send(msg)

    def get_and_clear_received_messages(self) -> list[bytes]:
        with self._lock:
            received, self._received = self._received, []
        return received


class SideChannelManager:
    """Routes side-channel frames: encodes every channel's queued messages, dispatches incoming frames by id.

    A frame for an id no channel is registered under is dropped with one warning per id (the game may carry
    channels the trainer does not use). Bytes that cannot be parsed raise :class:`SideChannelError`.
    """

    def __init__(self, channels: Iterable[SideChannel] = ()) -> None:
        self._channels: dict[uuid.UUID, SideChannel] = {}
        self._warned: set[uuid.UUID] = set()
        for channel in channels:
            self.register(channel)

    @property
    def channels(self) -> dict[uuid.UUID, SideChannel]:
        return dict(self._channels)

    def register(self, channel: SideChannel) -> None:
        if not isinstance(channel, SideChannel):
            raise SideChannelError(f"{channel!r} is not a SideChannel; subclass unimarl.bridge.SideChannel")
        existing = self._channels.get(channel.channel_id)
        if existing is not None:
            raise SideChannelError(
                f"side channel id {channel.channel_id} is already registered by {type(existing).__name__}; "
                "give each channel its own GUID (register a channel only once)"
            )
        self._channels[channel.channel_id] = channel

    def unregister(self, channel: SideChannel) -> None:
        if self._channels.get(channel.channel_id) is not channel:
            name = type(channel).__name__
            raise SideChannelError(f"side channel {name} {channel.channel_id} is not registered")
        del self._channels[channel.channel_id]

    def encode_outgoing(self) -> bytes:
        """Frame and take every queued outgoing message of every registered channel."""
        return frame(
            (channel_id, payload)
            for channel_id, channel in self._channels.items()
            for payload in channel.pop_outgoing()
        )

    def process_incoming(self, data: bytes) -> None:
        """Route the ``side_channel`` bytes of one game output to the registered channels."""
        if not data:
            return
        try:
            messages = list(unframe(data))
        except WireFormatError as e:
            raise SideChannelError(f"side-channel bytes from the game cannot be parsed: {e}") from e
        for channel_id, payload in messages:
            channel = self._channels.get(channel_id)
            if channel is None:
                if channel_id not in self._warned:
                    self._warned.add(channel_id)
                    logger.warning(
                        "dropping side-channel message for unknown channel id %s (register a SideChannel "
                        "with this id to receive it; warned once per id)",
                        channel_id,
                    )
                continue
            try:
                channel.on_message_received(IncomingMessage(payload))
            except WireFormatError as e:
                raise SideChannelError(
                    f"{type(channel).__name__} ({channel_id}) could not parse a "
                    f"{len(payload)}-byte message: {e}"
                ) from e
