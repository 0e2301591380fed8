"""Rich instances of every ML-Agents message used on the wire, built from either set of generated classes.

Runs unchanged in two interpreters: the official client's venv (protobuf 3.20, ``mlagents_envs.
communicator_objects``) and unimarl's (``unimarl.protos._generated``). ``build_samples(load)`` takes a
function mapping a module stem (``"agent_info"``) to the generated ``*_pb2`` module, so the same field values
go through both code generators. Standard library only (the PNG is assembled by hand), no numpy.

Run as a script (in either venv) to write the samples, or to parse + re-serialize a folder of samples:

    python wire_samples.py build OUT_DIR {official|unimarl}
    python wire_samples.py roundtrip IN_DIR OUT_DIR {official|unimarl}
    python wire_samples.py descriptors OUT_DIR {official|unimarl}
"""

from __future__ import annotations

import importlib
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from google.protobuf import any_pb2

PACKAGES = {"official": "mlagents_envs.communicator_objects", "unimarl": "unimarl.protos._generated"}
MODULES = (
    "agent_action",
    "agent_info",
    "agent_info_action_pair",
    "brain_parameters",
    "capabilities",
    "command",
    "custom_reset_parameters",
    "demonstration_meta",
    "engine_configuration",
    "header",
    "observation",
    "space_type",
    "training_analytics",
    "unity_input",
    "unity_message",
    "unity_output",
    "unity_rl_initialization_input",
    "unity_rl_initialization_output",
    "unity_rl_input",
    "unity_rl_output",
    "unity_to_external",
)


def loader(flavour: str) -> Callable[[str], ModuleType]:
    """``stem -> *_pb2 module`` for ``"official"`` or ``"unimarl"``."""
    package = PACKAGES[flavour]
    return lambda stem: importlib.import_module(f"{package}.{stem}_pb2")


def tiny_png(width: int, height: int, seed: int) -> bytes:
    """A valid 8-bit RGB PNG with deterministic pixels (the compressed-observation payload)."""
    rows = b"".join(
        b"\x00" + bytes((seed * 7 + x * 31 + y * 17 + c * 5) % 256 for x in range(width) for c in range(3))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _capabilities(load: Callable[[str], ModuleType], on: bool = True) -> Any:
    return load("capabilities").UnityRLCapabilitiesProto(
        baseRLCapabilities=True,
        concatenatedPngObservations=on,
        compressedChannelMapping=on,
        hybridActions=on,
        trainingAnalytics=not on,
        variableLengthObservation=on,
        multiAgentGroups=on,
    )


def _brains(load: Callable[[str], ModuleType]) -> list[Any]:
    bp = load("brain_parameters")
    space = load("space_type")
    return [
        bp.BrainParametersProto(
            brain_name="Walker?team=0",
            is_training=True,
            action_spec=bp.ActionSpecProto(num_continuous_actions=3, action_descriptions=["x", "y", "z"]),
        ),
        bp.BrainParametersProto(
            brain_name="Striker?team=1",
            is_training=False,
            vector_action_size_deprecated=[3, 2],
            vector_action_descriptions_deprecated=["move", "kick"],
            vector_action_space_type_deprecated=space.discrete,
            action_spec=bp.ActionSpecProto(num_discrete_actions=2, discrete_branch_sizes=[3, 2]),
        ),
        bp.BrainParametersProto(
            brain_name="Hybrid",
            is_training=True,
            vector_action_space_type_deprecated=space.continuous,
            action_spec=bp.ActionSpecProto(
                num_continuous_actions=2, num_discrete_actions=3, discrete_branch_sizes=[4, 1, 5]
            ),
        ),
    ]


def _observations(load: Callable[[str], ModuleType], seed: int) -> list[Any]:
    obs = load("observation")
    flat = obs.ObservationProto(
        shape=[4],
        compression_type=obs.NONE,
        float_data=obs.ObservationProto.FloatData(data=[seed + 0.5, -1.25, 3.0e-7, -0.0]),
        dimension_properties=[1],
        name="VectorSensor",
    )
    stacked = obs.ObservationProto(
        shape=[3, 2],
        float_data=obs.ObservationProto.FloatData(data=[1.0, 2.0, float("inf"), -3.5, 1e30, 7.0]),
        dimension_properties=[4, 1],
        observation_type=obs.GOAL_SIGNAL,
        name="BufferSensor",
    )
    png = obs.ObservationProto(
        shape=[4, 5, 4],
        compression_type=obs.PNG,
        compressed_data=tiny_png(5, 4, seed) + tiny_png(5, 4, seed + 1),
        compressed_channel_mapping=[0, 1, 2, 3, -1, -1],
        dimension_properties=[2, 2, 1],
        name="CameraSensor",
    )
    return [flat, stacked, png]


def _agent_infos(load: Callable[[str], ModuleType], behaviour: int) -> Any:
    info = load("agent_info")
    agents = [
        info.AgentInfoProto(
            reward=0.25 * k - behaviour,
            done=k == 1,
            max_step_reached=k == 1 and behaviour == 0,
            id=100 * behaviour + k,
            action_mask=[False, True, False, False, True] if behaviour == 1 else [],
            observations=_observations(load, k),
            group_id=behaviour,
            group_reward=-0.5 if k == 1 else 0.0,
        )
        for k in range(3)
    ]
    return load("unity_rl_output").UnityRLOutputProto.ListAgentInfoProto(value=agents)


def _actions(load: Callable[[str], ModuleType]) -> dict[str, list[Any]]:
    act = load("agent_action").AgentActionProto
    return {
        "Walker?team=0": [
            act(continuous_actions=[0.1, -0.2, 1.0], vector_actions_deprecated=[0.1, -0.2, 1.0], value=0.5),
            act(continuous_actions=[-1.0, 0.0, 0.3], vector_actions_deprecated=[-1.0, 0.0, 0.3]),
        ],
        "Striker?team=1": [act(discrete_actions=[2, 0], vector_actions_deprecated=[2.0, 0.0])],
        "Hybrid": [act(continuous_actions=[0.7, -0.7], discrete_actions=[3, 0, 4])],
    }


def _unity_messages(load: Callable[[str], ModuleType], side_channel: bytes) -> dict[str, Any]:
    msg, hdr = load("unity_message").UnityMessageProto, load("header").HeaderProto
    out, inp = load("unity_output").UnityOutputProto, load("unity_input").UnityInputProto
    init_out = load("unity_rl_initialization_output").UnityRLInitializationOutputProto
    init_in = load("unity_rl_initialization_input").UnityRLInitializationInputProto
    rl_out, rl_in = load("unity_rl_output").UnityRLOutputProto, load("unity_rl_input").UnityRLInputProto
    cmd = load("command")
    hello = init_out(
        name="AcademySingleton",
        communication_version="1.5.0",
        package_version="2.2.1-exp.1",
        capabilities=_capabilities(load),
        log_path="/tmp/Player-0.log",
    )
    outputs = rl_out(side_channel=side_channel)
    for b, name in enumerate(("Walker?team=0", "Striker?team=1", "Hybrid")):
        outputs.agentInfos[name].CopyFrom(_agent_infos(load, b))
    inputs = rl_in(command=cmd.STEP, side_channel=side_channel)
    for name, actions in _actions(load).items():
        inputs.agent_actions[name].value.extend(actions)
    return {
        "msg_init_output": msg(header=hdr(status=200), unity_output=out(rl_initialization_output=hello)),
        "msg_init_input": msg(
            header=hdr(status=200),
            unity_input=inp(
                rl_initialization_input=init_in(
                    seed=-7,
                    communication_version="1.5.0",
                    package_version="0.28.0",
                    capabilities=_capabilities(load, on=False),
                    num_areas=4,
                )
            ),
        ),
        "msg_empty_ack": msg(header=hdr(status=200)),
        "msg_rl_output": msg(
            header=hdr(status=200),
            unity_output=out(
                rl_output=outputs, rl_initialization_output=init_out(brain_parameters=_brains(load))
            ),
        ),
        "msg_rl_input": msg(header=hdr(status=200), unity_input=inp(rl_input=inputs)),
        "msg_reset": msg(header=hdr(status=200), unity_input=inp(rl_input=rl_in(command=cmd.RESET))),
        "msg_quit": msg(
            header=hdr(status=400, message="closing"), unity_input=inp(rl_input=rl_in(command=cmd.QUIT))
        ),
    }


def build_samples(load: Callable[[str], ModuleType]) -> dict[str, Any]:
    """Name -> message instance, covering every message type of the protocol (nested ones included)."""
    ta = load("training_analytics")
    env_init = ta.TrainingEnvironmentInitialized(
        mlagents_version="0.28.0",
        mlagents_envs_version="0.28.0",
        python_version="3.11.7",
        torch_version="2.2.0",
        torch_device_type="cpu",
        num_envs=8,
        num_environment_parameters=2,
        run_options='{"behaviors": {}}',
    )
    behaviour_init = ta.TrainingBehaviorInitialized(
        behavior_name="Walker?team=0",
        trainer_type="ppo",
        extrinsic_reward_enabled=True,
        gail_reward_enabled=False,
        curiosity_reward_enabled=True,
        rnd_reward_enabled=False,
        behavioral_cloning_enabled=True,
        recurrent_enabled=False,
        visual_encoder="simple",
        num_network_layers=2,
        num_network_hidden_units=128,
        trainer_threaded=True,
        self_play_enabled=False,
        curriculum_enabled=True,
        config="hyperparameters: {}",
    )
    side_channel = bytes(range(256)) * 2
    agent_info = _agent_infos(load, 1).value[0]
    action = _actions(load)["Hybrid"][0]
    samples: dict[str, Any] = {
        **_unity_messages(load, side_channel),
        "header": load("header").HeaderProto(status=400, message="bye"),
        "capabilities": _capabilities(load),
        "brain_parameters": _brains(load)[2],
        "action_spec": _brains(load)[1].action_spec,
        "agent_info": agent_info,
        "agent_action": action,
        "observation_png": _observations(load, 3)[2],
        "agent_info_action_pair": load("agent_info_action_pair").AgentInfoActionPairProto(
            agent_info=agent_info, action_info=action
        ),
        "demonstration_meta": load("demonstration_meta").DemonstrationMetaProto(
            api_version=1,
            demonstration_name="Expert",
            number_steps=1234,
            number_episodes=12,
            mean_reward=-3.5,
        ),
        "engine_configuration": load("engine_configuration").EngineConfigurationProto(
            width=84, height=84, quality_level=5, time_scale=20.0, target_frame_rate=-1, show_monitor=True
        ),
        "custom_reset_parameters": load("custom_reset_parameters").CustomResetParametersProto(),
        "training_environment_initialized": env_init,
        "training_behavior_initialized": behaviour_init,
    }
    # The training-analytics side channel carries these packed in google.protobuf.Any.
    packed = any_pb2.Any()
    packed.Pack(behaviour_init)
    samples["training_analytics_any"] = packed
    return samples


def message_class(load: Callable[[str], ModuleType], name: str) -> Any:
    """The class of sample ``name`` under the given generated code (for parsing bytes)."""
    return type(build_samples(load)[name])


def _main(argv: list[str]) -> int:
    command, flavour = argv[0], argv[-1]
    load = loader(flavour)
    if command == "build":
        out = Path(argv[1])
        for name, message in build_samples(load).items():
            (out / f"{name}.bin").write_bytes(message.SerializeToString(deterministic=True))
    elif command == "roundtrip":
        source, out = Path(argv[1]), Path(argv[2])
        samples = build_samples(load)
        for path in sorted(source.glob("*.bin")):
            parsed = type(samples[path.stem]).FromString(path.read_bytes())
            parsed.DiscardUnknownFields()  # a field our descriptors lack would vanish here, not pass through
            (out / path.name).write_bytes(parsed.SerializeToString(deterministic=True))
    elif command == "descriptors":
        out = Path(argv[1])
        for stem in MODULES:
            (out / f"{stem}.pb").write_bytes(load(stem).DESCRIPTOR.serialized_pb)
    else:
        raise SystemExit(f"unknown command {command!r}: use build, roundtrip or descriptors")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
