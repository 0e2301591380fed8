"""Handshake, message order, determinism, layout and side channels of the sim client over real gRPC."""

from __future__ import annotations

import numpy as np

from unimarl.protos import AgentActionProto, CommandProto
from unimarl.protos.sidechannel import STATS, IncomingMessage, unframe

COOP = "CoopNav?team=0"


def test_handshake_fields_and_brain_parameters(trainer, launch, wire):
    launch("coop_nav", trainer.port)
    first, second = trainer.handshake(seed=3, num_areas=2)
    init = first.unity_output.rl_initialization_output
    assert first.header.status == 200
    assert (init.name, init.communication_version) == ("AcademySingleton", "1.5.0")
    assert init.package_version == "2.2.1-exp.1"
    caps = init.capabilities
    assert all(getattr(caps, f.name) for f in caps.DESCRIPTOR.fields)
    assert len(init.brain_parameters) == 0
    assert second.header.status == 200 and not second.HasField("unity_output")
    out = trainer.reset()
    brains = out.unity_output.rl_initialization_output.brain_parameters
    assert [b.brain_name for b in brains] == [COOP] and brains[0].is_training
    assert list(brains[0].action_spec.discrete_branch_sizes) == [5]
    infos = wire.agents(out, COOP)
    assert [i.id for i in infos] == list(range(6))
    assert [i.group_id for i in infos] == [1, 1, 1, 2, 2, 2]
    assert list(infos[0].observations[0].shape) == [4 + 6 + 4]
    step = trainer.step({COOP: wire.discrete_actions([[1]] * 6)})
    assert len(step.unity_output.rl_initialization_output.brain_parameters) == 0
    after = wire.agents(step, COOP)
    # the team reward is the group's only (AddGroupReward, as ML-Agents' cooperative examples); own rewards 0
    assert after[0].group_reward < 0 and after[0].group_reward == after[1].group_reward
    assert after[0].reward == after[1].reward == 0


def _run(trainer, launch, seed: int, steps: int) -> list[bytes]:
    launch("coop_nav", trainer.port, "--global-state")
    trainer.handshake(seed=seed)
    trainer.command(CommandProto.RESET)
    outputs = [trainer.receive_raw()]
    for t in range(steps):
        actions = [AgentActionProto(discrete_actions=[(t + k) % 5]) for k in range(3)]
        trainer.command(CommandProto.STEP, {COOP: actions})
        outputs.append(trainer.receive_raw())
    return outputs


def test_same_seed_same_actions_give_identical_bytes(make_trainer, launch):
    first = _run(make_trainer(), launch, seed=11, steps=30)
    second = _run(make_trainer(), launch, seed=11, steps=30)
    other = _run(make_trainer(), launch, seed=12, steps=2)
    assert first == second
    assert first[0] != other[0]


def test_actions_are_matched_by_position(trainer, launch, wire):
    launch("coop_nav", trainer.port)
    trainer.handshake()
    ids = [i.id for i in wire.agents(trainer.reset(), COOP)]
    out = trainer.step({COOP: wire.discrete_actions([[1], [2], [3]])})
    infos = wire.agents(out, COOP)
    assert [i.id for i in infos] == ids
    velocities = [np.sign(wire.floats(i)[:2]).tolist() for i in infos]
    assert velocities == [[1, 0], [-1, 0], [0, 1]]


def test_terminal_and_restart_in_one_message_with_environment_parameter(trainer, launch, wire):
    launch("coop_nav", trainer.port)
    trainer.handshake(num_areas=2)
    trainer.reset(side_channel=wire.float_parameter("episode_length", 3))
    for _ in range(2):
        assert not any(i.done for i in wire.agents(trainer.step(), COOP))
    out = trainer.step()
    infos = wire.agents(out, COOP)
    assert [i.id for i in infos] == list(range(6)) * 2
    assert [i.done for i in infos] == [True] * 6 + [False] * 6
    assert all(i.max_step_reached for i in infos[:6]) and infos[0].group_reward < 0
    assert all(i.reward == 0 for i in infos) and all(i.group_reward == 0 for i in infos[6:])
    assert not np.allclose(wire.floats(infos[0]), wire.floats(infos[6]))
    stats = [
        IncomingMessage(p) for cid, p in unframe(out.unity_output.rl_output.side_channel) if cid == STATS
    ]
    assert [(m.read_string(), m.read_float32(), m.read_int32())[0::2] for m in stats] == [
        ("CoopNav/episode_team_reward", 0)
    ] * 2


def test_decision_period_reports_subsets_and_accumulates_rewards(trainer, launch, wire):
    launch("coop_nav", trainer.port, "--decision-period", "3")
    trainer.handshake()
    assert len(wire.agents(trainer.reset(), COOP)) == 3
    seen = []
    for _ in range(3):
        deciding = len(seen[-1]) if seen else 3
        infos = wire.agents(trainer.step({COOP: wire.discrete_actions([[0]] * deciding)}), COOP)
        seen.append([i.id for i in infos])
    assert seen == [[2], [1], [0]]


def test_visual_layout_follows_package_version(make_trainer, launch, wire):
    """2.x: [H, W, C]; 3.0.0: declared [C, H, W] but floats written H, W, C (ObservationWriter.cs:151 with
    3.0.0 TensorExtensions.cs:56-63 Index = h*W*C + w*C + c); 4.0.1: [C, H, W] floats in C, H, W order
    (4.0.1 TensorExtensions.cs:60-62, CHANGELOG.md:13 "#6239")."""
    shapes = {}
    for version in ("2.2.1-exp.1", "3.0.0", "4.0.1"):
        trainer = make_trainer()
        launch("battle", trainer.port, "--team-size", "3", "--grid", "10", "--package-version", version)
        first, _ = trainer.handshake(seed=4)
        assert first.unity_output.rl_initialization_output.package_version == version
        info = wire.agents(trainer.reset(), "Battle?team=0")[0]
        shapes[version] = (
            tuple(info.observations[0].shape),
            tuple(info.observations[0].dimension_properties),
        )
        shapes[version + "data"] = wire.floats(info)
    assert shapes["2.2.1-exp.1"] == ((13, 13, 5), (2, 2, 1))
    assert shapes["3.0.0"] == shapes["4.0.1"] == ((5, 13, 13), (1, 2, 2))
    hwc = shapes["2.2.1-exp.1data"]
    np.testing.assert_array_equal(shapes["4.0.1data"], hwc.transpose(2, 0, 1))
    np.testing.assert_array_equal(shapes["3.0.0data"].ravel(), hwc.ravel())  # HWC floats under a CHW shape


def test_side_channels_logged_and_unknown_ignored(trainer, launch, wire):
    import struct
    import uuid

    from unimarl.protos.sidechannel import ENGINE_CONFIGURATION, frame

    proc = launch("coop_nav", trainer.port)
    trainer.handshake()
    engine = frame([(ENGINE_CONFIGURATION, struct.pack("<if", 2, 20.0)), (uuid.uuid4(), b"\x01\x02")])
    trainer.reset(side_channel=engine)
    trainer.command(CommandProto.QUIT)
    assert proc.wait(timeout=20) == 0
    log = proc.log_path.read_text()
    assert "time_scale = 20.0" in log and "not registered in this game" in log
