"""bench as a throughput probe: pooled outputs encoded once, actions not parsed, faults on copies."""

from __future__ import annotations

import numpy as np
import pytest

import unimarl.sim.client as client_module
from unimarl.protos import CommandProto, UnityMessageProto
from unimarl.sim.bench import BEHAVIOR, POOL_SIZE, STEP_REWARD, Bench
from unimarl.sim.client import Client, SimExit, build_parser
from unimarl.sim.coop_nav import CoopNav
from unimarl.sim.encode import CachedBatch, encode_batch, encode_batch_fast
from unimarl.sim.game import EnvParams


def _client(game_cls, *flags: str) -> Client:
    args = build_parser(game_cls).parse_args(["--mlagents-port", "1", *flags])
    client = Client(game_cls, args)
    client.game = game_cls(args, 0, 1)
    return client


def _input(command: int, actions: dict[str, int] | None = None) -> UnityMessageProto:
    message = UnityMessageProto()
    message.header.status = 200
    message.unity_input.rl_input.command = command
    for name, count in (actions or {}).items():
        for _ in range(count):
            message.unity_input.rl_input.agent_actions[name].value.add(discrete_actions=[1])
    return message


def _outputs(client: Client) -> list:
    message = UnityMessageProto.FromString(client.output())
    return list(message.unity_output.rl_output.agentInfos[BEHAVIOR].value)


def test_episodes_cycle_through_pooled_batches() -> None:
    game = Bench(build_parser(Bench).parse_args(["--agents", "3", "--episode-length", "2"]), 0, 1)
    game.reset(EnvParams())
    seen = [game.collect()[BEHAVIOR]]
    for _ in range(2 * POOL_SIZE):
        game.step(EnvParams())
        seen.append(game.collect()[BEHAVIOR])
    assert seen[0].rewards.tolist() == [0.0] * 3
    assert seen[1].rewards.tolist() == pytest.approx([STEP_REWARD] * 3) and not seen[1].done.any()
    end = seen[2]  # episode_length 2: terminal part, then the restart
    assert end.done.tolist() == [True] * 3 + [False] * 3 and end.max_step.tolist() == end.done.tolist()
    assert end.rewards.tolist() == pytest.approx([STEP_REWARD] * 3 + [0.0] * 3)
    assert all(isinstance(b, CachedBatch) and not b.obs[0].flags.writeable for b in seen)
    middles = {id(b) for b in seen[1::2]}
    assert 1 < len(middles) <= POOL_SIZE  # observations change from step to step, from a bounded pool


def test_cached_batch_is_encoded_once_per_layout() -> None:
    game = Bench(build_parser(Bench).parse_args(["--agents", "4", "--obs-size", "5"]), 0, 1)
    game.reset(EnvParams())
    batch = game.collect()[BEHAVIOR]
    behavior = game.behaviors[0]
    first = encode_batch(behavior, batch, chw=False)
    assert encode_batch(behavior, batch, chw=False) is first
    assert first == encode_batch_fast(behavior, batch, chw=False)
    assert encode_batch(behavior, batch, chw=True) == encode_batch_fast(behavior, batch, chw=True)


def test_bench_does_not_parse_actions_but_other_games_do(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = []
    real = client_module.parse_actions
    monkeypatch.setattr(client_module, "parse_actions", lambda *a: parsed.append(a[0].name) or real(*a))
    bench = _client(Bench, "--agents", "2")
    bench.apply(_input(CommandProto.RESET))
    assert len(_outputs(bench)) == 2
    bench.apply(_input(CommandProto.STEP, {BEHAVIOR: 2}))
    assert parsed == [] and len(_outputs(bench)) == 2
    nav = _client(CoopNav, "--agents", "2")
    nav.apply(_input(CommandProto.RESET))
    nav.output()
    nav.apply(_input(CommandProto.STEP, {"CoopNav?team=0": 2}))
    assert parsed == ["CoopNav?team=0"]


def test_wrong_action_count_is_checked_for_bench(caplog: pytest.LogCaptureFixture) -> None:
    """As RpcCommunicator.SendBatchedMessageHelper (3.0.0/4.0.1 RpcCommunicator.cs:425-440): more actions than
    agents are ignored, fewer (but some) throw ArgumentOutOfRangeException; bench checks the count too."""
    bench = _client(Bench, "--agents", "3")
    bench.apply(_input(CommandProto.RESET))
    bench.output()
    bench.apply(_input(CommandProto.STEP, {BEHAVIOR: 4}))
    assert "4 actions for 3 deciding agents; extra ignored" in caplog.text
    bench.output()
    with pytest.raises(SimExit, match=r"ArgumentOutOfRangeException: .*'Bench\?team=0' received 1 actions"):
        bench.apply(_input(CommandProto.STEP, {BEHAVIOR: 1}))


def test_nan_fault_changes_the_output_not_the_pool() -> None:
    bench = _client(Bench, "--agents", "2", "--misbehave", "nan:0")
    bench.apply(_input(CommandProto.RESET))
    infos = _outputs(bench)
    assert np.isnan(infos[0].observations[0].float_data.data[0])
    pools = (bench.game._starts, bench.game._middles, bench.game._ends)  # type: ignore[union-attr]
    assert all(np.isfinite(b.obs[0]).all() for pool in pools for b in pool)
