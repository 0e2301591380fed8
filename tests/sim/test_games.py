"""Battle deaths and masks, visual PNG observations, bench, the record file and make_build, over gRPC."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from unimarl.protos import CommandProto
from unimarl.protos.sidechannel import STATS, IncomingMessage, unframe
from unimarl.sim import GAMES, main, make_build
from unimarl.sim.battle import ATTACKS, FIRST_ATTACK, MOVES
from unimarl.sim.game import EnvParams

TEAMS = ("Battle?team=0", "Battle?team=1")


def _check_masks(info, wire) -> None:
    """Masks agree with the local view: moves into blocked/occupied cells and attacks on non-enemies off."""
    view = wire.floats(info)  # (13, 13, 5) HWC
    mask = np.asarray(info.action_mask, bool)
    centre = view.shape[0] // 2
    for k, (dr, dc) in enumerate(MOVES):
        cell = view[centre + dr, centre + dc]
        assert mask[1 + k] == bool(cell[0] > 0 or cell[1] > 0 or cell[2] > 0)
    for k, (dr, dc) in enumerate(ATTACKS):
        assert mask[FIRST_ATTACK + k] == (view[centre + dr, centre + dc, 2] == 0)
    assert not mask[0]


def test_battle_deaths_masks_and_stats(trainer, launch, wire):
    launch("battle", trainer.port, "--team-size", "4", "--grid", "8", "--max-steps", "60")
    trainer.handshake(seed=1)
    out = trainer.reset()
    rng = np.random.default_rng(0)
    dead: set[int] = set()
    deaths = stats = 0
    for _ in range(120):
        actions = {}
        for team in TEAMS:
            infos = wire.agents(out, team)
            team_ids = {i.id for i in infos if not i.done}
            for info in infos:
                if info.done and not info.max_step_reached and len(team_ids) < 4:
                    deaths += 1
                    dead.add(info.id)
                elif not info.done and info.id in dead:
                    assert len(team_ids) == 4, "a dead agent came back before the episode restarted"
            if len(team_ids) == 4:
                dead -= team_ids
            rows = []
            for info in infos:
                if info.done:
                    continue
                _check_masks(info, wire)
                allowed = np.nonzero(~np.asarray(info.action_mask, bool))[0]
                attacks = allowed[allowed >= FIRST_ATTACK]
                rows.append([int(attacks[0] if len(attacks) else rng.choice(allowed))])
            actions[team] = wire.discrete_actions(rows)
        out = trainer.step(actions)
        channel = out.unity_output.rl_output.side_channel
        stats += sum(
            IncomingMessage(p).read_string() == "Battle/team0_win" for c, p in unframe(channel) if c == STATS
        )
    assert deaths > 0 and stats > 0


def _decode(payload: bytes) -> list[np.ndarray]:
    starts = [i for i in range(len(payload)) if payload.startswith(b"\x89PNG", i)]
    ends = [*starts[1:], len(payload)]
    return [
        np.asarray(Image.open(io.BytesIO(payload[s:e])).convert("RGB"))
        for s, e in zip(starts, ends, strict=True)
    ]


def _visual(channels: int) -> np.ndarray:
    cls = GAMES["visual"]
    parser = argparse.ArgumentParser()
    cls.add_arguments(parser)
    game = cls(parser.parse_args(["--channels", str(channels)]), 5, 1)
    game.reset(EnvParams())
    return game.render(np.arange(game.n))


def test_visual_png_decodes_to_rendering(trainer, launch, wire):
    launch("visual", trainer.port)
    trainer.handshake(seed=5)
    out = trainer.reset()
    brain = out.unity_output.rl_initialization_output.brain_parameters[0]
    assert (brain.action_spec.num_continuous_actions, list(brain.action_spec.discrete_branch_sizes)) == (
        2,
        [3],
    )
    expected = _visual(3)
    for k, info in enumerate(wire.agents(out, "Visual?team=0")):
        obs = info.observations[0]
        assert obs.compression_type == 1 and list(obs.shape) == [32, 32, 3]
        (image,) = _decode(obs.compressed_data)
        np.testing.assert_allclose(image / 255.0, expected[k], atol=1e-6)
        assert len(set(map(tuple, image.reshape(-1, 3)))) == 3


def test_visual_four_channels_use_two_pngs_and_mapping(trainer, launch, wire):
    launch("visual", trainer.port, "--channels", "4", "--package-version", "3.0.0")
    trainer.handshake(seed=5)
    info = wire.agents(trainer.reset(), "Visual?team=0")[0]
    obs = info.observations[0]
    assert list(obs.shape) == [4, 32, 32] and list(obs.compressed_channel_mapping) == [0, 1, 2, 3, -1, -1]
    pngs = _decode(obs.compressed_data)
    assert len(pngs) == 2
    decoded = np.concatenate(pngs, axis=-1)[..., :4] / 255.0
    np.testing.assert_allclose(decoded, _visual(4)[0], atol=1e-6)


def test_record_file_lists_exchanges(trainer, launch, wire, tmp_path):
    record = tmp_path / "record.jsonl"
    proc = launch("bench", trainer.port, "--agents", "2", "--episode-length", "2", "--record", str(record))
    trainer.handshake()
    trainer.reset()
    sent = [wire.agents(trainer.step({"Bench?team=0": wire.discrete_actions([[1], [2]])}), "Bench?team=0")]
    sent.append(
        wire.agents(trainer.step({"Bench?team=0": wire.discrete_actions([[2], [0]])}), "Bench?team=0")
    )
    trainer.command(CommandProto.QUIT)
    assert proc.wait(timeout=20) == 0
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["command"] for line in lines] == ["RESET", "STEP", "STEP", "QUIT"]
    assert lines[1]["sent"]["Bench?team=0"]["ids"] == [0, 1]
    assert lines[1]["actions"]["Bench?team=0"]["discrete"] == [[1], [2]]
    assert lines[3]["sent"]["Bench?team=0"]["ids"] == [i.id for i in sent[1]] == [0, 1, 0, 1]
    assert lines[3]["sent"]["Bench?team=0"]["done"] == [True, True, False, False]
    assert lines[3]["sent"]["Bench?team=0"]["rewards"] == [i.reward for i in sent[1]]


def test_make_build_launches_like_a_player(trainer, launch, tmp_path):
    build = make_build("coop_nav", tmp_path / "build", extra_args=["--agents", "2"])
    assert build.name == "CoopNav.x86_64" and build.stat().st_mode & 0o111
    proc = launch("coop_nav", trainer.port, "-screen-width", "84", command=[str(build)])
    trainer.handshake()
    assert len(trainer.reset().unity_output.rl_output.agentInfos["CoopNav?team=0"].value) == 2
    trainer.close()
    assert proc.wait(timeout=20) == 0
    assert "connected" in proc.log_path.read_text()


def test_missing_port_exits_with_usage_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "unimarl.sim", "bench", "-batchmode"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--mlagents-port" in proc.stderr
    assert main(["no_such_game"]) == 2


def test_fast_encoder_equals_protobuf_encoder():
    from unimarl.protos import UnityRLOutputProto
    from unimarl.sim.encode import encode_batch_fast, encode_batch_proto

    cases = [
        ("coop_nav", ["--global-state"]),
        ("battle", ["--team-size", "3", "--grid", "10"]),
        ("bench", []),
    ]
    for name, flags in cases:
        parser = argparse.ArgumentParser()
        GAMES[name].add_arguments(parser)
        game = GAMES[name](parser.parse_args(flags), 2, 2)
        game.reset(EnvParams())
        for _ in range(3):
            batches = game.collect()
            for behavior in game.behaviors:
                for chw in (False, True):
                    fast, slow = (UnityRLOutputProto.ListAgentInfoProto() for _ in range(2))
                    fast.ParseFromString(encode_batch_fast(behavior, batches[behavior.name], chw))
                    slow.ParseFromString(encode_batch_proto(behavior, batches[behavior.name], chw))
                    assert fast == slow and len(fast.value) == len(batches[behavior.name])
            game.step(EnvParams())
