"""``unimarl play`` drives a game's Default agents with an ONNX model run in Python (works with any build).

Sides compared: the actions the game received (its ``--record`` file, written by the game process) against
hand-computed model outputs, and play's episode returns against the rewards and group rewards the game sent
(its record).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from unimarl import sim
from unimarl.bridge.parallel_env import parse_agent_name
from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import Actor, ActorOutput
from unimarl.trainers.cli.main import main
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import config_from_dict, config_to_dict
from unimarl.trainers.export.onnx import export_actor
from unimarl.trainers.run.play import PlayError, play, play_game

COOP_NAV = "CoopNav?team=0"
VISUAL = "Visual?team=0"


def constant_model(path: Path, spec: PolicySpec, mean: list[float], best: int = 0) -> Path:
    """An exported actor whose mean is ``mean`` and whose discrete argmax is ``best`` for every observation
    (heads with zero weights and the given biases)."""
    actor = Actor(spec, (8,), "tanh", False).eval()
    with torch.no_grad():
        if actor.mean_head is not None:
            actor.mean_head.weight.zero_()
            actor.mean_head.bias.copy_(torch.tensor(mean))
        if actor.logits_head is not None:
            actor.logits_head.weight.zero_()
            actor.logits_head.bias.zero_()
            actor.logits_head.bias[best] = 5.0
    export_actor(actor, spec, path)
    return path


def _received(record: Path, behavior: str) -> tuple[np.ndarray, np.ndarray]:
    """Every action the game received for ``behavior`` (continuous rows, discrete rows)."""
    continuous, discrete = [], []
    for line in (json.loads(x) for x in record.read_text().splitlines()):
        actions = line["actions"].get(behavior)
        if actions:
            continuous += actions["continuous"]
            discrete += actions["discrete"]
    return np.asarray(continuous, np.float32), np.asarray(discrete, np.int64)


def test_play_sends_the_models_deterministic_output_unchanged(tmp_path: Path) -> None:
    spec = PolicySpec(((14,),), ActionSpec(2, ()))
    model = constant_model(tmp_path / "m.onnx", spec, [1.5, -4.0])
    record = tmp_path / "record.jsonl"
    args = ["--continuous", "--episode-length", "5", "--record", str(record)]
    result = play(model, "sim:coop_nav", episodes=6, env_args=args, timeout=30, work_dir=tmp_path / "w")
    assert len(result.returns[COOP_NAV]) >= 6 and result.models == {COOP_NAV: model}
    continuous, _ = _received(record, COOP_NAV)
    assert len(continuous) >= 5 * 3
    # the model's clip(mean, -3, 3) / 3, by hand: [1.5 / 3, -1]; no second mapping on the way to the game
    np.testing.assert_allclose(continuous, np.tile([0.5, -1.0], (len(continuous), 1)), rtol=0, atol=1e-6)


def test_play_hybrid_visual_deterministic_and_stochastic(tmp_path: Path) -> None:
    spec = PolicySpec(((20, 20, 3), (4,)), ActionSpec(2, (3,)))
    model = constant_model(tmp_path / "v.onnx", spec, [0.6, -0.9], best=2)
    for stochastic in (False, True):
        record = tmp_path / f"record-{stochastic}.jsonl"
        args = ["--size", "20", "--agents", "2", "--episode-length", "4", "--record", str(record)]
        play(model, "sim:visual", episodes=2, env_args=args, timeout=30, stochastic=stochastic)
        continuous, discrete = _received(record, VISUAL)
        assert len(continuous) >= 4 * 2
        if not stochastic:
            np.testing.assert_allclose(continuous, np.tile([0.2, -0.3], (len(continuous), 1)), atol=1e-6)
            assert (discrete == 2).all()
        else:  # continuous_actions: clip(mean + N(0, 1), -3, 3) / 3, sampled inside the model
            assert np.unique(continuous[:, 0]).size > len(continuous) // 2
            assert np.abs(continuous).max() <= 1.0


def _recorded_returns(record: Path, behavior: str, group_weight: float) -> tuple[list[float], float]:
    """Per finished agent episode, in order: the sum of ``reward + group_weight * group_reward`` the game
    sent (its record); and the sum of the absolute group rewards (to show the group part is there)."""
    sums: dict[int, float] = defaultdict(float)
    ended: list[float] = []
    group_total = 0.0
    for line in (json.loads(x) for x in record.read_text().splitlines()):
        sent = line["sent"].get(behavior)
        if not sent or line["command"] != "STEP":
            continue
        rows = zip(sent["ids"], sent["rewards"], sent["group_rewards"], sent["done"], strict=True)
        for agent, reward, group, done in rows:
            sums[agent] += reward + group_weight * group
            group_total += abs(group)
            if done:
                ended.append(sums.pop(agent))
    return ended, group_total


@pytest.mark.parametrize("override", [None, 0.5])
def test_play_returns_are_the_games_rewards(tmp_path: Path, override: float | None) -> None:
    """coop_nav's team reward comes only as the Unity group reward (own reward 0): play's returns are the own
    plus the weighted group rewards the game sent; a single model's weight is 1.0 unless overridden."""
    spec = PolicySpec(((14,),), ActionSpec(2, ()))
    model = constant_model(tmp_path / "m.onnx", spec, [0.9, 0.3])
    record = tmp_path / "record.jsonl"
    args = ["--continuous", "--episode-length", "4", "--record", str(record)]
    overrides = {} if override is None else {"group_reward_weight": override}
    result = play(model, "sim:coop_nav", episodes=6, env_args=args, timeout=30, **overrides)
    weight = 1.0 if override is None else override
    ended, group_total = _recorded_returns(record, COOP_NAV, weight)
    assert group_total > 0.1  # the returns below are made of group rewards
    # the game's last output (the final episode ends) is answered by no recorded input: compare the rest
    assert len(ended) >= 3 and len(result.returns[COOP_NAV]) >= 6
    np.testing.assert_allclose(result.returns[COOP_NAV][: len(ended)], ended, rtol=1e-5)
    assert result.group_reward_weights == {COOP_NAV: weight}


def test_play_weights_group_rewards_as_the_run_did(tmp_path: Path) -> None:
    """A run folder: each behaviour's ``group_reward_weight`` comes from the run's resolved config.yaml."""
    spec = PolicySpec(((14,),), ActionSpec(2, ()))
    run = tmp_path / "run"
    (run / "onnx").mkdir(parents=True)
    constant_model(run / "onnx" / "coop.onnx", spec, [-0.4, 0.8])
    (run / "onnx" / "policies.json").write_text(json.dumps({"CoopNav": {"file": "coop.onnx"}}))
    config = config_from_dict(
        {"env": {"sim": "coop_nav"}, "behaviors": {"CoopNav": {"group_reward_weight": 0.25}}}
    )
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    record = tmp_path / "record.jsonl"
    args = ["--continuous", "--episode-length", "4", "--record", str(record)]
    result = play(run, "sim:coop_nav", episodes=6, env_args=args, timeout=30)
    ended, group_total = _recorded_returns(record, COOP_NAV, 0.25)
    assert group_total > 0.1 and len(ended) >= 3
    np.testing.assert_allclose(result.returns[COOP_NAV][: len(ended)], ended, rtol=1e-5)
    assert result.group_reward_weights == {COOP_NAV: 0.25}


def test_cli_play_group_reward_weight_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--group-reward-weight 0`` drops the group part: coop_nav's own rewards are 0 (its team reward is only
    the group reward), so the returns are exactly 0; with the default weight 1.0 they are not."""
    model = constant_model(tmp_path / "m.onnx", PolicySpec(((14,),), ActionSpec(2, ())), [0.9, 0.3])
    rows = []
    for flags in (["--group-reward-weight", "0"], []):
        argv = ["play", str(model), "--env", "sim:coop_nav", "--episodes", "3", "--env-arg=--continuous"]
        assert main([*argv, "--env-arg=--episode-length=4", *flags]) == 0
        out = capsys.readouterr().out
        rows.append(next(line for line in out.splitlines() if line.startswith(COOP_NAV)).split())
    (_, n0, mean0, std0, w0, _), (_, n1, mean1, _, w1, _) = rows
    assert (n0, float(mean0), float(std0), float(w0)) == ("3", 0.0, 0.0, 0.0)
    assert n1 == "3" and float(mean1) < -0.1 and float(w1) == 1.0


def test_play_refuses_a_model_for_another_game(tmp_path: Path) -> None:
    model = constant_model(tmp_path / "m.onnx", PolicySpec(((9,),), ActionSpec(2, ())), [0.0, 0.0])
    with pytest.raises(PlayError, match=r"obs_0 is \[9\], the game sends \[14\]"):
        play(model, "sim:coop_nav", episodes=1, env_args=["--continuous"], timeout=30)


class MeanActionAverse(torch.nn.Module):
    """An MF-Q-like actor: logits ``[0.2, 0.5, 0, 0, 0] - 10 * mean_action``, whatever the observation. With
    no teammate action yet (mean 0) it picks 1; after a team that picked 1 it picks 0, then 1 again."""

    def forward(self, obs: list[torch.Tensor], mask: torch.Tensor, mean_action: torch.Tensor) -> ActorOutput:
        bias = torch.tensor([[0.2, 0.5, 0.0, 0.0, 0.0]])
        return ActorOutput(None, None, [bias - 10.0 * mean_action + 0.0 * obs[0][:, :5]])


def test_play_feeds_mean_field_models_the_teams_previous_mean_action(tmp_path: Path) -> None:
    spec = PolicySpec(((14,),), ActionSpec(0, (5,)))
    model = tmp_path / "mfq.onnx"
    export_actor(MeanActionAverse(), spec, model, mean_action_size=5)
    record = tmp_path / "record.jsonl"
    args = ["--episode-length", "5", "--record", str(record)]
    play(model, "sim:coop_nav", episodes=9, env_args=args, timeout=30)
    decisions: dict[int, int] = defaultdict(int)  # per agent id: decisions in its current episode
    checked = 0
    for line in (json.loads(x) for x in record.read_text().splitlines()):
        sent, actions = line["sent"].get(COOP_NAV), line["actions"].get(COOP_NAV)
        if line["command"] != "STEP" or not sent or not actions:
            continue
        for agent in {a for a, done in zip(sent["ids"], sent["done"], strict=True) if done}:
            decisions[agent] = 0  # ended: its next decision starts an episode with no previous action
        deciding = [a for a, done in zip(sent["ids"], sent["done"], strict=True) if not done]
        for agent, action in zip(deciding, actions["discrete"], strict=True):
            assert action == [1 if decisions[agent] % 2 == 0 else 0], (agent, decisions[agent])
            decisions[agent] += 1
            checked += 1
    assert checked >= 3 * 8


class MeanPlusPosition(torch.nn.Module):
    """A continuous mean-field actor whose mean is ``mean_action + 0.5 * own position`` (coop_nav's obs[2:4]):
    the model's deterministic output ``(mean_action + 0.5 * position) / 3`` shows what it was fed."""

    def forward(self, obs: list[torch.Tensor], mask: None, mean_action: torch.Tensor) -> ActorOutput:
        return ActorOutput(mean_action + 0.5 * obs[0][:, 2:4], torch.zeros(2), [])


def _deciding_obs(history: dict[str, Any]) -> dict[int, np.ndarray]:
    """Unity id -> the observation of its latest episode (a restarted agent is also sent done, renamed)."""
    latest: dict[int, tuple[int, np.ndarray]] = {}
    for name, obs in history.items():
        _, agent, episode = parse_agent_name(name)
        if agent not in latest or episode > latest[agent][0]:
            latest[agent] = (episode, np.asarray(obs, np.float32).ravel())
    return {agent: obs for agent, (_, obs) in latest.items()}


def test_play_mean_action_is_per_area_group(tmp_path: Path, hs: ModuleType) -> None:
    """Two areas (Unity groups ``area + 1``): each agent is fed the mean of the previous actions of the other
    agents of its own area only, computed here by hand from what the game received."""
    spec = PolicySpec(((14,),), ActionSpec(2, ()))
    model = tmp_path / "mf.onnx"
    export_actor(MeanPlusPosition(), spec, model, mean_action_size=2)
    record = tmp_path / "record.jsonl"
    args = ("--continuous", "--episode-length", "4", "--record", str(record))
    build = sim.make_build("coop_nav", tmp_path / "build", extra_args=args)
    game = hs.RecordingEnv(build, seed=0, timeout=30, log_dir=tmp_path / "logs", num_areas=2)
    try:
        play_game(game, model, episodes=24)
    finally:
        game.close()
    previous: dict[int, np.ndarray] = {}
    checked = with_neighbours = 0
    for k, line in enumerate(json.loads(x) for x in record.read_text().splitlines()):
        sent, actions = line["sent"].get(COOP_NAV), line["actions"].get(COOP_NAV)
        if line["command"] != "STEP" or not sent or not actions:
            continue
        restarted = {a for a, done in zip(sent["ids"], sent["done"], strict=True) if done}
        deciding = [a for a, done in zip(sent["ids"], sent["done"], strict=True) if not done]
        applied = np.asarray(actions["continuous"], np.float32)
        obs = _deciding_obs(game.history[k - 1])
        for agent, action in zip(deciding, applied, strict=True):
            others = [
                previous[i]
                for i in deciding
                if i != agent and i // 3 == agent // 3 and i not in restarted and i in previous
            ]
            mean = np.mean(others, axis=0) if others else np.zeros(2, np.float32)
            np.testing.assert_allclose(action, (mean + 0.5 * obs[agent][2:4]) / 3, atol=1e-5, err_msg=str(k))
            checked += 1
            with_neighbours += bool(others)
        previous = dict(zip(deciding, applied, strict=True))
    assert checked >= 6 * 8 and with_neighbours >= 6 * 5


def test_play_one_behaviour_of_a_masked_game_others_act_at_random(tmp_path: Path) -> None:
    """Battle: team 0 plays the model (masks fed as ``action_masks``), team 1 acts at random in its masks."""
    record = tmp_path / "record.jsonl"
    args = ["--team-size", "3", "--grid", "12", "--view", "3", "--max-steps", "6", "--record", str(record)]
    spec = PolicySpec(((5, 3, 3), (2,), (4,)), ActionSpec(0, (21,)))  # sensors in ML-Agents' order
    model = constant_model(tmp_path / "b.onnx", spec, [], best=0)
    result = play(model, "sim:battle", episodes=3, env_args=args, behavior="Battle?team=0", timeout=30)
    assert set(result.models) == {"Battle?team=0"} and len(result.returns["Battle?team=0"]) >= 3
    _, team0 = _received(record, "Battle?team=0")
    _, team1 = _received(record, "Battle?team=1")
    assert (team0 == 0).all() and len(team0) >= 5 * 3  # action 0 (stay) is never masked
    assert len(np.unique(team1)) > 1
