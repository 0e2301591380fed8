"""Fuzzing the bridge's decoders with hypothesis: random bytes and mutations of real messages.

Targets: ``UnityRLOutputProto`` decoding as a connection handles one message (side channels routed first,
then ``decode_output``, column fast path included), side-channel framing with every built-in channel's
parser, and the policy (hot-swap) chunk assembler and acknowledgement parser. The only outcomes allowed are
a result or a typed error: the bridge's :class:`BridgeError` subclasses, or the wire layer's own
:class:`WireFormatError` / :class:`PolicyRejectedError`. Anything else (ValueError, IndexError,
struct.error, protobuf DecodeError, MemoryError) fails the test. Inputs found escaping before are written
out in tests/bridge/test_fuzz_regressions.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unimarl.bridge.decode import decode_output
from unimarl.bridge.errors import BridgeError
from unimarl.bridge.policy_channel import PolicyChannel
from unimarl.bridge.side_channels import (
    EngineConfigurationChannel,
    EnvironmentParametersChannel,
    RawBytesChannel,
    SideChannelManager,
    StatsSideChannel,
)
from unimarl.protos import UnityMessageProto
from unimarl.protos.policy_wire import (
    POLICY_CHANNEL_ID,
    PolicyAssembler,
    PolicyRejectedError,
    RejectReason,
    decode_ack,
    encode_ack,
    encode_policy,
)
from unimarl.protos.sidechannel import (
    ENGINE_CONFIGURATION,
    STATS,
    EngineSetting,
    IncomingMessage,
    WireFormatError,
    engine_setting_message,
    frame,
    read_engine_setting,
    read_stat,
    stat_message,
)
from unimarl.sim import encode
from unimarl.sim.coop_nav import CoopNav
from unimarl.sim.game import EnvParams, Game
from unimarl.sim.visual import Visual

#: Examples per target in the default tier; raise it for a longer search (UNIMARL_FUZZ_EXAMPLES=20000).
EXAMPLES = int(os.environ.get("UNIMARL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,
    derandomize=True,  # the default tier stays reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
INTERESTING_INTS = st.sampled_from([-(2**31), -(2**31) + 1, -2, -1, 0, 1, 2, 3, 5, 255, 2**16, 2**31 - 1])


@contextlib.contextmanager
def typed(*allowed: type[Exception]) -> Iterator[None]:
    """An allowed (typed) error is an outcome, if its message says something; any other exception fails."""
    try:
        yield
    except allowed as e:
        assert str(e).strip(), f"{type(e).__name__} raised without a message"


def _wire_samples() -> ModuleType:
    path = Path(__file__).parents[1] / "protos" / "wire_samples.py"
    spec = importlib.util.spec_from_file_location("unimarl_tests_wire_samples_fuzz", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SAMPLES = _wire_samples().build_samples(_wire_samples().loader("unimarl"))
_STATS_FRAME = frame([(STATS, stat_message("Environment/Cumulative Reward", 1.5, 0).buffer)])
_ACK_FRAME = frame([(POLICY_CHANNEL_ID, encode_ack("Walker?team=0", 3, bytes(32), RejectReason.ACCEPTED))])
#: The real UnityRLOutput message (three behaviours: vector, stacked, PNG observations, masks, new brains)
#: with stats and a policy acknowledgement in its side channel.
_RL_MESSAGE = UnityMessageProto.FromString(_SAMPLES["msg_rl_output"].SerializeToString())
_RL_MESSAGE.unity_output.rl_output.side_channel = _STATS_FRAME + _ACK_FRAME
RL_BYTES = _RL_MESSAGE.SerializeToString()


def _handle(message: UnityMessageProto, known: dict, layout: str) -> dict:
    """What ``UnityConnection._exchange`` does with one parsed message: side channels, then decode."""
    manager = SideChannelManager(
        [EngineConfigurationChannel(), EnvironmentParametersChannel(), StatsSideChannel(), PolicyChannel()]
    )
    rl_output = message.unity_output.rl_output
    manager.process_incoming(bytes(rl_output.side_channel))
    brains = list(message.unity_output.rl_initialization_output.brain_parameters)
    output = decode_output(
        rl_output, brains, known, visual_layout=layout, nan_policy="warn", hwc_floats=layout == "CHW"
    )
    return {**known, **output.new_specs}


KNOWN_SPECS = _handle(_RL_MESSAGE, {}, "HWC")


def test_real_message_decodes() -> None:
    """The seed of the mutations is a valid message: all three behaviours decode, 2 decision agents each."""
    message = UnityMessageProto.FromString(RL_BYTES)
    output = decode_output(
        message.unity_output.rl_output,
        list(message.unity_output.rl_initialization_output.brain_parameters),
        {},
        visual_layout="HWC",
        nan_policy="warn",
    )
    assert {name: len(s.decision) for name, s in output.steps.items()} == {
        "Walker?team=0": 2,
        "Striker?team=1": 2,
        "Hybrid": 2,
    }


def _mutate(data: bytes, edits: list[tuple[int, int, int, bytes]]) -> bytes:
    """Apply (kind, position, value, insert) edits: overwrite a byte, flip a bit, delete, insert, truncate."""
    out = bytearray(data)
    for kind, position, value, insert in edits:
        if not out:
            break
        i = position % len(out)
        if kind == 0:
            out[i] = value
        elif kind == 1:
            out[i] ^= 1 << (value % 8)
        elif kind == 2:
            del out[i : i + 1 + value % 8]
        elif kind == 3:
            out[i:i] = insert
        else:
            del out[i:]
    return bytes(out)


EDITS = st.lists(
    st.tuples(
        st.integers(0, 4), st.integers(0, 2**20), st.integers(0, 255), st.binary(min_size=1, max_size=10)
    ),
    min_size=1,
    max_size=6,
)


def _decode_bytes(data: bytes) -> None:
    try:
        message = UnityMessageProto.FromString(data)
    except DecodeError:
        return  # the connection reports these as ProtocolError (test_connection covers it)
    for known in ({}, KNOWN_SPECS):
        for layout in ("HWC", "CHW"):
            with typed(BridgeError):
                _handle(message, known, layout)


@FUZZ
@given(EDITS)
def test_mutated_rl_output_bytes(edits) -> None:
    _decode_bytes(_mutate(RL_BYTES, edits))


@FUZZ
@given(st.binary(max_size=400))
def test_random_message_bytes(data: bytes) -> None:
    _decode_bytes(data)


def _sim_message(game: type[Game], argv: list[str]) -> bytes:
    """The first output of a stand-in game, encoded as its player sends it (3.x layout, CHW)."""
    parser = argparse.ArgumentParser()
    game.add_arguments(parser)
    sim = game(parser.parse_args(argv), 0, 1)
    sim.reset(EnvParams())
    batches = sim.collect()
    infos = [
        (b.name, encode.encode_batch(b, batches[b.name], True)) for b in sim.behaviors if b.name in batches
    ]
    return encode.output_message(infos, _STATS_FRAME, sim.behaviors)


#: Real outputs of the sims: vector observations with group rewards (coop_nav), PNG cameras (visual).
SIM_BYTES = {
    "coop_nav": _sim_message(CoopNav, []),
    "visual": _sim_message(Visual, ["--size", "8", "--agents", "2"]),
}
SIM_SPECS = {name: _handle(UnityMessageProto.FromString(data), {}, "CHW") for name, data in SIM_BYTES.items()}


@pytest.mark.parametrize("name", sorted(SIM_BYTES))
@FUZZ
@given(edits=EDITS)
def test_mutated_sim_output_bytes(name: str, edits) -> None:
    try:
        message = UnityMessageProto.FromString(_mutate(SIM_BYTES[name], edits))
    except DecodeError:
        return
    for known in ({}, SIM_SPECS[name]):
        with typed(BridgeError):
            _handle(message, known, "CHW")


FIELD_EDITS = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 2**10), st.integers(0, 2**10), INTERESTING_INTS),
    min_size=1,
    max_size=4,
)


def _edit_fields(edits: list[tuple[int, int, int, int]]) -> UnityMessageProto:
    """The real message with size fields set to hostile values: shapes, branch sizes, masks, mappings."""
    message = UnityMessageProto.FromString(RL_BYTES)
    out = message.unity_output
    brains = out.rl_initialization_output.brain_parameters
    lists = [out.rl_output.agentInfos[name].value for name in sorted(out.rl_output.agentInfos)]
    for kind, a, b, value in edits:
        agents = lists[a % len(lists)]
        agent = agents[b % len(agents)]
        obs = agent.observations[a % len(agent.observations)]
        brain = brains[b % len(brains)]
        if kind == 0:
            obs.shape[b % len(obs.shape)] = value
        elif kind == 1:
            obs.shape.append(value)
        elif kind == 2:
            brain.action_spec.discrete_branch_sizes.append(value)
        elif kind == 3:
            brain.action_spec.num_continuous_actions = value
        elif kind == 4:
            brain.action_spec.Clear()
            brain.vector_action_size_deprecated.append(value)
            brain.vector_action_space_type_deprecated = b % 2
        elif kind == 5:
            obs.compressed_channel_mapping.append(value)
        elif kind == 6:
            obs.compression_type = value
        else:
            agent.action_mask.extend([True] * (b % 7))
    return message


@FUZZ
@given(FIELD_EDITS)
def test_hostile_size_fields(edits) -> None:
    """Shape dimensions, branch sizes, mappings claiming 2**31 - 1 or negative values: refused before
    allocating (the test would hit MemoryError or numpy's ValueError otherwise)."""
    message = _edit_fields(edits)
    for known in ({}, KNOWN_SPECS):
        for layout in ("HWC", "CHW"):
            with typed(BridgeError):
                _handle(message, known, layout)


# Side channels --------------------------------------------------------------------------------------------

_GUIDS = st.sampled_from([ENGINE_CONFIGURATION, STATS, POLICY_CHANNEL_ID, uuid.UUID(int=7)])
_REAL_FRAMES = (
    _STATS_FRAME
    + _ACK_FRAME
    + frame([(ENGINE_CONFIGURATION, engine_setting_message(EngineSetting.SCREEN_RESOLUTION, 84, 84).buffer)])
)


def _route(data: bytes) -> None:
    raw = RawBytesChannel(uuid.UUID(int=7))
    manager = SideChannelManager(
        [
            EngineConfigurationChannel(),
            EnvironmentParametersChannel(),
            StatsSideChannel(),
            PolicyChannel(),
            raw,
        ]
    )
    with typed(BridgeError):
        manager.process_incoming(data)


@FUZZ
@given(EDITS)
def test_mutated_side_channel_frames(edits) -> None:
    _route(_mutate(_REAL_FRAMES, edits))


@FUZZ
@given(st.lists(st.tuples(_GUIDS, st.binary(max_size=64)), max_size=5), st.binary(max_size=24))
def test_random_side_channel_payloads(frames, tail: bytes) -> None:
    """Well-framed random payloads on every channel, then random trailing bytes (a bad frame header)."""
    _route(frame(frames) + tail)


@FUZZ
@given(st.binary(max_size=64))
def test_channel_parsers(payload: bytes) -> None:
    """The payload readers both ends share: engine settings, stats, strings and float lists."""
    for read in (
        read_engine_setting,
        read_stat,
        IncomingMessage.read_string,
        IncomingMessage.read_float32_list,
    ):
        with typed(WireFormatError):
            read(IncomingMessage(payload))


# Policy hot-swap -----------------------------------------------------------------------------------------

_MODEL = bytes(range(256)) * 3
_CHUNKS = encode_policy("Walker?team=0", 4, _MODEL, chunk_size=200)  # 4 chunks


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(_CHUNKS) - 1), st.one_of(st.just([]), EDITS)), min_size=1, max_size=8
    )
)
def test_policy_assembler_on_mutated_chunks(feeds) -> None:
    """Chunks of a real transfer, mutated, reordered and repeated: a model only when it is the real one."""
    assembler = PolicyAssembler(max_model_size=4096)
    for index, edits in feeds:
        try:
            received = assembler.feed(_mutate(_CHUNKS[index], edits))
        except PolicyRejectedError as e:
            assert isinstance(e.reason, RejectReason) and e.reason != RejectReason.ACCEPTED
            continue
        if received is not None:
            assert hashlib.sha256(received.model).digest() == received.sha256


@FUZZ
@given(st.binary(max_size=200))
def test_policy_ack_and_chunk_on_random_bytes(payload: bytes) -> None:
    with typed(PolicyRejectedError):
        decode_ack(payload)
    with typed(PolicyRejectedError):
        PolicyAssembler().feed(payload)


@pytest.mark.parametrize("model", [_MODEL, b""])
def test_unmutated_chunks_assemble(model: bytes) -> None:
    """The fuzzer's seed transfer is valid: fed in order, the chunks give back the model."""
    assembler = PolicyAssembler()
    results = [assembler.feed(chunk) for chunk in encode_policy("Walker?team=0", 4, model, chunk_size=200)]
    assert results[-1] is not None and results[-1].model == model
