"""Self-play opponents run by the game: snapshot export (MF-Q with its mean-action input), config checks,
acknowledgement tracking, battle crediting, and training end to end against a sim game that hides the
opponent team (``--inference-behavior``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from unimarl.bridge.policy_channel import PolicyStatus, RejectReason
from unimarl.bridge.spec import ActionSpec
from unimarl.protos.policy_wire import PolicyAck
from unimarl.trainers.algos.meanfield.algorithm import plan_mean_field
from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, SelfPlaySettings, make_learner
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.algos.meanfield.worker import MFPolicySetup, Outcome
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.export.meanfield import policy_model
from unimarl.trainers.run.train import train
from unimarl.trainers.selfplay.game import GameOpponents, SelfPlayError
from unimarl.trainers.selfplay.manager import refresh_after_win
from unimarl.trainers.selfplay.pool import SnapshotPool

SPEC = PolicySpec(obs_shapes=((5, 5, 2), (3,)), action_spec=ActionSpec(discrete_branches=(4,)))
MLP = NetworkConfig(encoder="mlp", visual_hidden=16, head_hidden=(16,))
SIM_ARGS = ["--team-size", "6", "--grid", "12", "--view", "5"]
SMALL = {"encoder": "mlp", "visual_hidden": 32, "head_hidden": [32], "batch_size": 32, "learning_starts": 32}
LEARNER, OPPONENT = "Battle?team=0", "Battle?team=1"


def _config(tmp_path: Path, trainer: str = "mfq", sim_args: list[str] | None = None, **sp: Any) -> dict:
    return {
        "env": {"sim": "battle", "num_envs": 1, "args": sim_args or SIM_ARGS},
        "run": {"run_id": "g", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 120},
        "behaviors": {
            LEARNER: {
                "trainer_type": trainer,
                "hyperparameters": {**SMALL, "push_every": 8},
                "self_play": {
                    "opponent": OPPONENT,
                    "sides": "own",
                    "opponent_runs": "game",
                    "update": "copy",
                    **sp,
                },
                "summary_freq": 40,
                "checkpoint_interval": 10**6,
            }
        },
        "environment_parameters": {"max_steps": 12},
    }


def test_mfq_snapshot_takes_the_mean_action_and_acts_like_the_learner(tmp_path: Path) -> None:
    learner = MFQLearner(SPEC, MFQConfig(network=MLP), seed=0)
    data = policy_model(learner, tmp_path / "p.onnx", temperature=0.5).path.read_bytes()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["obs_0", "obs_1", "action_masks", "mean_action"]
    rng = np.random.default_rng(1)
    obs = [rng.normal(size=(7, 5, 5, 2)).astype(np.float32), rng.normal(size=(7, 3)).astype(np.float32)]
    mean = rng.dirichlet(np.ones(4), size=7).astype(np.float32)
    mask = rng.random((7, 4)) < 0.6
    mask[:, 2] = True
    expected = learner.act(obs, mean, mask, deterministic=True).discrete_actions[:, 0]
    feed = {
        "obs_0": obs[0].transpose(0, 3, 1, 2),
        "obs_1": obs[1],
        "action_masks": mask.astype(np.float32),
        "mean_action": mean,
    }
    greedy = session.run(["deterministic_discrete_actions"], feed)[0][:, 0]
    np.testing.assert_array_equal(greedy, expected)
    other = rng.dirichlet(np.ones(4), size=7).astype(np.float32)  # the input is used, not ignored
    q_other = learner.act(obs, other, mask, deterministic=True).discrete_actions[:, 0]
    greedy_other = session.run(["deterministic_discrete_actions"], dict(feed, mean_action=other))[0][:, 0]
    np.testing.assert_array_equal(greedy_other, q_other)


@pytest.mark.parametrize(
    ("sp", "trainer", "hp", "match"),
    [
        ({"opponent_runs": "engine"}, "mfq", {}, "use trainer or game"),
        ({"sides": "both"}, "mfq", {}, "needs sides: own"),
        ({}, "mfq", {"neighbourhood": "group"}, "neighbourhood 'group'"),
    ],
)
def test_bad_in_game_settings_are_config_errors(
    tmp_path: Path, sp: dict, trainer: str, hp: dict, match: str
) -> None:
    data = _config(tmp_path, trainer, **sp)
    data["behaviors"][LEARNER]["hyperparameters"].update(hp)
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_mfac_actor_needs_no_team_neighbourhood(tmp_path: Path) -> None:
    data = _config(tmp_path, "mfac")
    data["behaviors"][LEARNER]["hyperparameters"]["neighbourhood"] = "group"
    config_from_dict(data)  # the actor takes no mean action: any neighbourhood is fine


def test_plan_refuses_an_opponent_the_game_reports(tmp_path: Path) -> None:
    config = config_from_dict(_config(tmp_path))
    with pytest.raises(ConfigError, match="reports 'Battle\\?team=1' to the trainer"):
        plan_mean_field(config, {LEARNER: SPEC, OPPONENT: SPEC})
    setup = plan_mean_field(config, {LEARNER: SPEC})
    assert setup.plan.game_driven == (OPPONENT,) and setup.in_game == {LEARNER}
    assert setup.plan.behavior_actor == {LEARNER: LEARNER} and setup.self_play == {
        LEARNER: (LEARNER, OPPONENT)
    }


def _opponents(tmp_path: Path, workers: int = 1, timeout: float = 60.0) -> tuple[GameOpponents, SnapshotPool]:
    hp = MeanFieldHyperparameters(encoder="mlp", visual_hidden=16, head_hidden=[16])
    setup = MFPolicySetup(SPEC, "mfq", hp)
    learner = MFQLearner(SPEC, MFQConfig(network=MLP), seed=0)
    pool = SnapshotPool(learner.get_weights(), window=10)
    game = GameOpponents(tmp_path, {"p": ("me", OPPONENT)}, {"p": setup}, {"p": pool}, workers, timeout)
    return game, pool


def _status(running: int | None, ack: PolicyAck | None = None) -> PolicyStatus:
    return PolicyStatus(running, b"", ack, running, None)


def test_versions_follow_the_pool_and_acknowledgements(tmp_path: Path) -> None:
    game, pool = _opponents(tmp_path, workers=2)
    assert game.refresh(0.0) and not game.refresh(0.5)  # no new snapshot, no new model
    version, data = game.models()[OPPONENT]
    assert version == 1 and data[:2] and (tmp_path / "onnx" / "selfplay").is_dir()
    game.observe(0, {OPPONENT: [_status(1), _status(1)]})
    game.check()
    assert OPPONENT not in game.accepted  # worker 1 has not reported yet
    game.observe(1, {OPPONENT: [_status(1)]})
    game.check()
    assert game.accepted[OPPONENT] == 1
    refresh_after_win(pool, SelfPlaySettings(opponent=OPPONENT, update="copy"), 1.0, pool.current())
    assert game.refresh(0.5) and game.models()[OPPONENT][0] == 2
    won = Outcome({"me": 3.0, OPPONENT: 1.0}, {}, 10, versions={OPPONENT: 2})
    stale = Outcome({"me": 3.0, OPPONENT: 1.0}, {}, 10, versions={OPPONENT: None})
    assert game.credited("p", won) and not game.credited("p", stale)
    assert game.metrics()["selfplay/uncredited/p"] == 1.0
    assert game.metrics()["selfplay/opponent_pushed/p"] == 2.0


def test_a_rejected_or_unacknowledged_model_stops_training(tmp_path: Path) -> None:
    game, _ = _opponents(tmp_path)
    game.refresh(0.0)
    ack = PolicyAck(OPPONENT, 1, b"", False, RejectReason.LOAD_FAILED, "model inputs do not match")
    with pytest.raises(SelfPlayError, match=r"LOAD_FAILED.*model inputs do not match"):
        game.observe(0, {OPPONENT: [_status(None, ack)]})
    late, _ = _opponents(tmp_path, timeout=0.0)
    late.refresh(0.0)
    late.observe(0, {OPPONENT: [_status(None)]})
    with pytest.raises(SelfPlayError, match=r"runs in 0 of 1 games.*--inference-behavior"):
        late.check()


def test_conv_snapshot_exports_for_the_game(tmp_path: Path) -> None:
    hp = MeanFieldHyperparameters(encoder="conv", conv_channels=[4], visual_hidden=8, head_hidden=[8])
    learner = make_learner("mfq", SPEC, hp)
    pool = SnapshotPool(learner.get_weights(), window=10)
    setup = MFPolicySetup(SPEC, "mfq", hp)
    game = GameOpponents(tmp_path, {"p": ("me", OPPONENT)}, {"p": setup}, {"p": pool}, 1)
    assert game.refresh(0.0)
    version, data = game.models()[OPPONENT]
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert version == 1 and [i.name for i in session.get_inputs()][-1] == "mean_action"
    feed = {
        "obs_0": np.random.default_rng(0).normal(size=(3, 2, 5, 5)).astype(np.float32),
        "obs_1": np.zeros((3, 3), np.float32),
        "action_masks": np.ones((3, 4), np.float32),
        "mean_action": np.full((3, 4), 0.25, np.float32),
    }
    (actions,) = session.run(["deterministic_discrete_actions"], feed)
    assert actions.shape == (3, 1) and ((actions >= 0) & (actions < 4)).all()


@pytest.mark.parametrize("trainer", ["mfq", "mfac"])
def test_training_against_an_opponent_the_game_runs(tmp_path: Path, trainer: str) -> None:
    args = [*SIM_ARGS, "--inference-behavior", OPPONENT]
    result = train(config_from_dict(_config(tmp_path, trainer, sim_args=args)))
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert last["selfplay/opponent_pushed/Battle?team=0"] >= 1
    assert last["selfplay/opponent_running/Battle?team=0"] >= 1  # every game acknowledged a snapshot
    assert any("selfplay/win/Battle?team=0" in line for line in lines)  # credited battles
    assert (result.run_dir / "onnx" / "selfplay").is_dir()
