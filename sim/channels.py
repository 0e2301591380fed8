"""Side channels as the game (Unity's C# side) handles them.

Incoming (trainer -> game): EngineConfiguration (screen size, quality, time scale, frame rates: logged and
kept), EnvironmentParameters (floats and seeded samplers, read by games through :class:`EnvParams`),
TrainingAnalytics (accepted; nothing to do headless). Any other channel id is logged once and ignored, as
Unity caches messages for channels nobody registered. Outgoing (game -> trainer): Stats (key, value,
aggregation).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from unimarl.protos.sidechannel import (
    ENGINE_CONFIGURATION,
    ENVIRONMENT_PARAMETERS,
    STATS,
    TRAINING_ANALYTICS,
    IncomingMessage,
    ParameterKind,
    SamplerType,
    UnknownEngineSettingError,
    WireFormatError,
    frame,
    read_engine_setting,
    stat_message,
    unframe,
)
from unimarl.sim.game import EnvParams

logger = logging.getLogger(__name__)


class SideChannels:
    """State the game keeps from incoming side channels."""

    def __init__(self) -> None:
        self.engine: dict[str, Any] = {}
        self.params = EnvParams()
        self._unknown_seen: set[uuid.UUID] = set()
        #: Extra channels the game registered: id -> handler of one payload (e.g. the policy channel).
        self.handlers: dict[uuid.UUID, Callable[[bytes], None]] = {}

    def process(self, data: bytes) -> None:
        """Apply the side-channel bytes of one input; a malformed message is logged and skipped.

        A message whose payload does not parse leaves the frames after it to be applied; broken framing
        (a truncated frame) ends the data, as nothing after it can be located.
        """
        if not data:
            return
        try:
            for channel_id, payload in unframe(data):
                try:
                    self._dispatch(channel_id, payload)
                except WireFormatError as e:
                    logger.warning("ignoring a malformed message on side channel %s: %s", channel_id, e)
        except WireFormatError as e:
            logger.warning("ignoring malformed side-channel data: %s", e)

    def _dispatch(self, channel_id: uuid.UUID, payload: bytes) -> None:
        if channel_id in self.handlers:
            self.handlers[channel_id](payload)
        elif channel_id == ENGINE_CONFIGURATION:
            self._engine(IncomingMessage(payload))
        elif channel_id == ENVIRONMENT_PARAMETERS:
            self._environment_parameter(IncomingMessage(payload))
        elif channel_id == TRAINING_ANALYTICS:
            logger.debug("training analytics message received (%d bytes)", len(payload))
        elif channel_id not in self._unknown_seen:
            self._unknown_seen.add(channel_id)
            logger.info(
                "side channel %s is not registered in this game; its messages are ignored", channel_id
            )

    def _engine(self, msg: IncomingMessage) -> None:
        try:
            setting, value = read_engine_setting(msg)
        except UnknownEngineSettingError as e:
            logger.warning("%s ignored", e)
            return
        name = setting.name.lower()
        self.engine[name] = value
        logger.info("engine configuration: %s = %s", name, value)

    def _environment_parameter(self, msg: IncomingMessage) -> None:
        key = msg.read_string()
        kind = msg.read_int32()
        if kind == ParameterKind.FLOAT:
            self.params.floats[key] = msg.read_float32()
            self.params.samplers.pop(key, None)
            logger.info("environment parameter %s = %s", key, self.params.floats[key])
            return
        if kind != ParameterKind.SAMPLER:
            logger.warning("environment parameter %r has unknown type %d; ignored", key, kind)
            return
        seed = msg.read_int32()
        sampler_type = msg.read_int32()
        sampler = _make_sampler(seed, sampler_type, msg)
        if sampler is None:
            logger.warning("environment parameter %r: unknown sampler type %d; ignored", key, sampler_type)
            return
        self.params.samplers[key] = sampler
        logger.info("environment parameter %s = sampler type %d (seed %d)", key, sampler_type, seed)


def _make_sampler(seed: int, sampler_type: int, msg: IncomingMessage) -> Callable[[], float] | None:
    rng = np.random.default_rng(seed & 0xFFFFFFFF)
    if sampler_type == SamplerType.UNIFORM:
        low, high = msg.read_float32(), msg.read_float32()
        return lambda: rng.uniform(low, high)
    if sampler_type == SamplerType.GAUSSIAN:
        mean, std = msg.read_float32(), msg.read_float32()
        return lambda: rng.normal(mean, std)
    if sampler_type == SamplerType.MULTIRANGE_UNIFORM:
        bounds = np.asarray(msg.read_float32_list(), np.float64).reshape(-1, 2)
        widths = bounds[:, 1] - bounds[:, 0]
        total = widths.sum()
        weights = widths / total if total > 0 else np.full(len(widths), 1.0 / len(widths))

        def draw() -> float:
            low, high = bounds[rng.choice(len(bounds), p=weights)]
            return float(rng.uniform(low, high))

        return draw
    return None


def stats_bytes(stats: Iterable[tuple[str, float, int]]) -> bytes:
    """Side-channel bytes carrying Stats messages (key, value, aggregation)."""
    return frame((STATS, stat_message(key, value, aggregation).buffer) for key, value, aggregation in stats)
