"""Side-channel wire format, shared by the trainer (``unimarl.bridge``) and the stand-in games
(``unimarl.sim``).

The ``side_channel`` bytes of a message are a sequence of frames ``[16-byte channel GUID][int32 LE length]
[payload]``. The GUID bytes are in .NET ``Guid.ToByteArray()`` order, which is Python's ``UUID.bytes_le``.
Payloads are built from little-endian primitives: bool (1 byte), int32, float32, string (int32 byte length +
ASCII), float list (int32 count + float32s), or raw bytes.

The message layouts that both ends of a built-in channel must agree on are written once here: engine
settings (:func:`engine_setting_message` / :func:`read_engine_setting`), the kinds of environment parameters
and samplers, and stats (:func:`stat_message` / :func:`read_stat`).
"""

from __future__ import annotations

import enum
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence

ENGINE_CONFIGURATION = uuid.UUID("e951342c-4f7e-11ea-b238-784f4387d1f7")
ENVIRONMENT_PARAMETERS = uuid.UUID("534c891e-810f-11ea-a9d0-822485860400")
STATS = uuid.UUID("a1d8f7b7-cec8-50f9-b78b-d3e165a78520")
TRAINING_ANALYTICS = uuid.UUID("b664a4a9-d86f-5a5f-95cb-e8353a7e8356")
FLOAT_PROPERTIES = uuid.UUID("60ccf7d0-4f7e-11ea-b238-784f4387d1f7")

_HEADER = struct.Struct("<16si")


class WireFormatError(ValueError):
    """Side-channel bytes that cannot be parsed (truncated frame, string not ASCII, read past the end)."""


class UnknownEngineSettingError(WireFormatError):
    """An EngineConfiguration message of a type this package does not know (a newer game or trainer)."""


class EngineSetting(enum.IntEnum):
    """First int32 of an EngineConfiguration message; its value follows (:func:`engine_setting_message`)."""

    SCREEN_RESOLUTION = 0
    QUALITY_LEVEL = 1
    TIME_SCALE = 2
    TARGET_FRAME_RATE = 3
    CAPTURE_FRAME_RATE = 4


class ParameterKind(enum.IntEnum):
    """Int32 after the key of an EnvironmentParameters message: a float value, or a seeded sampler."""

    FLOAT = 0
    SAMPLER = 1


class SamplerType(enum.IntEnum):
    """Int32 after a sampler's seed: uniform min/max, gaussian mean/std, or a float list of intervals."""

    UNIFORM = 0
    GAUSSIAN = 1
    MULTIRANGE_UNIFORM = 2


def frame(messages: Iterable[tuple[uuid.UUID, bytes]]) -> bytes:
    """Concatenate ``(channel_id, payload)`` pairs into side-channel bytes."""
    return b"".join(_HEADER.pack(cid.bytes_le, len(payload)) + payload for cid, payload in messages)


def unframe(data: bytes) -> Iterator[tuple[uuid.UUID, bytes]]:
    """Split side-channel bytes into ``(channel_id, payload)`` pairs; raises :class:`WireFormatError`."""
    offset = 0
    view = memoryview(data)
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise WireFormatError(f"side-channel frame header truncated at byte {offset} of {len(data)}")
        guid, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        if length < 0 or offset + length > len(data):
            raise WireFormatError(
                f"side-channel frame at byte {offset} claims {length} bytes but {len(data) - offset} remain"
            )
        yield uuid.UUID(bytes_le=guid), bytes(view[offset : offset + length])
        offset += length


class OutgoingMessage:
    """Builds one side-channel payload from primitives (C# ``OutgoingMessage``)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffer(self) -> bytes:
        return bytes(self._buffer)

    def write_bool(self, value: bool) -> None:
        self._buffer += struct.pack("<?", value)

    def write_int32(self, value: int) -> None:
        self._buffer += struct.pack("<i", value)

    def write_float32(self, value: float) -> None:
        self._buffer += struct.pack("<f", value)

    def write_float32_list(self, values: Sequence[float]) -> None:
        self.write_int32(len(values))
        self._buffer += struct.pack(f"<{len(values)}f", *values)

    def write_string(self, value: str) -> None:
        encoded = value.encode("ascii")
        self.write_int32(len(encoded))
        self._buffer += encoded

    def set_raw_bytes(self, data: bytes) -> None:
        self._buffer = bytearray(data)


class IncomingMessage:
    """Reads primitives from one side-channel payload (C# ``IncomingMessage``).

    Raises :class:`WireFormatError` on a read past the end.
    """

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._offset = 0

    def _unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self._offset + size > len(self._data):
            raise WireFormatError(
                f"read of {size} bytes at offset {self._offset} runs past the {len(self._data)}-byte message"
            )
        values = struct.unpack_from(fmt, self._data, self._offset)
        self._offset += size
        return values

    def read_bool(self) -> bool:
        return bool(self._unpack("<?")[0])

    def read_int32(self) -> int:
        return int(self._unpack("<i")[0])

    def read_float32(self) -> float:
        return float(self._unpack("<f")[0])

    def read_float32_list(self) -> list[float]:
        count = self.read_int32()
        if count < 0:
            raise WireFormatError(f"negative float-list length {count}")
        return list(self._unpack(f"<{count}f"))

    def read_string(self) -> str:
        length = self.read_int32()
        if length < 0:
            raise WireFormatError(f"negative string length {length}")
        raw = self._unpack(f"<{length}s")[0]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as e:
            raise WireFormatError(f"side-channel string is not ASCII: {raw[:40]!r}") from e

    def get_raw_bytes(self) -> bytes:
        return self._data

    @property
    def at_end(self) -> bool:
        return self._offset >= len(self._data)


EngineValue = int | float | tuple[int, int]


def engine_setting_message(setting: EngineSetting, *values: float) -> OutgoingMessage:
    """One EngineConfiguration message: the setting, then its values (resolution: width and height).

    The time scale is a float32, every other value an int32.
    """
    msg = OutgoingMessage()
    msg.write_int32(setting)
    for value in values:
        if setting == EngineSetting.TIME_SCALE:
            msg.write_float32(float(value))
        else:
            msg.write_int32(int(value))
    return msg


def read_engine_setting(msg: IncomingMessage) -> tuple[EngineSetting, EngineValue]:
    """Parse :func:`engine_setting_message`; an unknown type raises :class:`UnknownEngineSettingError`."""
    kind = msg.read_int32()
    try:
        setting = EngineSetting(kind)
    except ValueError as e:
        raise UnknownEngineSettingError(f"unknown engine configuration type {kind}") from e
    value: EngineValue
    if setting == EngineSetting.SCREEN_RESOLUTION:
        value = (msg.read_int32(), msg.read_int32())
    elif setting == EngineSetting.TIME_SCALE:
        value = msg.read_float32()
    else:
        value = msg.read_int32()
    return setting, value


def stat_message(key: str, value: float, aggregation: int) -> OutgoingMessage:
    """One Stats message (game -> trainer): string key, float32 value, int32 aggregation method."""
    msg = OutgoingMessage()
    msg.write_string(key)
    msg.write_float32(value)
    msg.write_int32(aggregation)
    return msg


def read_stat(msg: IncomingMessage) -> tuple[str, float, int]:
    """Parse :func:`stat_message`: ``(key, value, aggregation)``."""
    return msg.read_string(), msg.read_float32(), msg.read_int32()
