"""Self-play between teams for MAPPO (ML-Agents' ghost trainer, ``self_play`` of ppo / poca).

The reference is mlagents-learn's ghost trainer (ml-agents/mlagents/trainers/ghost/trainer.py and
controller.py, release 22): ELO with K = 16 against the opponent snapshot's rating, a window of snapshots
filled every ``save_steps`` of learning, an opponent drawn every ``swap_steps`` (the latest policy with
probability ``play_against_latest_model_ratio``) and at every team change, the learning team passed on every
``team_change`` steps, and only the learning team's trajectories trained. The run tests play the battle sim
game scored by its result only (``--win-reward``), symmetric (one behaviour, two teams) and asymmetric
(``--behaviors Striker,Goalie``: two behaviours, one per team).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.core.errors import ConfigError, ResumeError
from unimarl.trainers.core.mappo_settings import GhostSettings
from unimarl.trainers.core.names import team_of
from unimarl.trainers.selfplay.ghost import GhostPlay, game_result
from unimarl.trainers.selfplay.pool import elo_change


def test_elo_follows_the_reference_formula() -> None:
    assert elo_change(1200.0, 1200.0, 1.0) == pytest.approx(8.0)  # K * (1 - 0.5)
    assert elo_change(1200.0, 1200.0, 0.5) == pytest.approx(0.0)
    expected = 1.0 / (1.0 + 10 ** (-200 / 400))  # 1400 against 1200
    assert elo_change(1400.0, 1200.0, 0.0) == pytest.approx(-16.0 * expected)
    assert [game_result(r) for r in (0.3, 0.0, -1.0)] == [1.0, 0.5, 0.0]
    assert [team_of(b) for b in ("Soccer?team=1", "Soccer", "A?x=2&team=3")] == [1, 0, 3]


def _weights(value: float) -> dict[str, np.ndarray]:
    return {"actor.w": np.full(2, value, np.float32)}


def _play(ratio: float = 0.0, **changes: int) -> GhostPlay:
    settings = GhostSettings(
        **{"save_steps": 10, "team_change": 30, "swap_steps": 5, "window": 2, **changes},
        play_against_latest_model_ratio=ratio,
    )
    slots = {"Soccer": {0: "Soccer#team0", 1: "Soccer#team1"}}
    return GhostPlay(slots, {"Soccer": settings}, {"Soccer": _weights(0.0)}, seed=0)


def test_one_team_learns_and_the_others_play_snapshots() -> None:
    play = _play()
    assert play.learning_slot("Soccer") == "Soccer#team0"
    acting = play.weights({"Soccer": _weights(7.0), "Other": _weights(3.0)})
    assert acting["Soccer#team0"]["actor.w"][0] == 7.0  # the learner
    assert acting["Soccer#team1"]["actor.w"][0] == 0.0  # the initial snapshot
    assert acting["Other"]["actor.w"][0] == 3.0  # a policy without self-play
    assert acting["Soccer"]["actor.w"][0] == 7.0  # for a behaviour of it that appears after reset
    other = GhostPlay({"Keeper": {0: "Keeper"}}, {"Keeper": GhostSettings()}, {"Keeper": _weights(0.0)})
    with pytest.raises(ResumeError, match=r"self-play is between policies \['Keeper'\]"):
        play.load_state_dict(other.state_dict())


def test_snapshots_swaps_and_team_changes_follow_their_step_counts() -> None:
    play = _play()
    behaviors = {"Soccer?team=0": "Soccer", "Soccer?team=1": "Soccer"}
    p = play.policies["Soccer"]
    for step in range(1, 8):  # 8 env steps per round
        play.after_round(8, {}, behaviors, {"Soccer": _weights(float(step))}.__getitem__)
        if step == 2:  # 16 > save_steps 10: the window holds the initial weights and round 2's
            assert [s["actor.w"][0] for s in p.snapshots] == [0.0, 2.0]
            assert p.version == 2  # 8 > 5 after round 1, 16 - 8 > 5 after round 2
        if step == 3:
            assert play.learning_team == 0  # 24 steps of learning: not yet past team_change 30
        if step == 4:  # 32 > 30: team 1 learns, and the opponents draw at once
            assert play.learning_team == 1 and play.team_changes == 1
            assert play.learning_slot("Soccer") == "Soccer#team1"
    # the window is a ring of 2: snapshots after rounds 2, 4 (overwrote the initial), 6 (overwrote round 2)
    assert sorted(s["actor.w"][0] for s in p.snapshots) == [4.0, 6.0]
    assert p.version == 7


def test_the_latest_model_plays_with_its_ratio_and_is_frozen_until_the_next_draw() -> None:
    play = _play(ratio=1.0)
    behaviors = {"Soccer?team=0": "Soccer", "Soccer?team=1": "Soccer"}
    play.after_round(8, {}, behaviors, {"Soccer": _weights(5.0)}.__getitem__)
    assert play.policies["Soccer"].opponent == -1
    latest = play.weights({"Soccer": _weights(9.0)})["Soccer#team1"]
    assert latest["actor.w"][0] == 5.0  # the learner's weights at the draw, not its current ones


def test_elo_moves_against_the_opponent_snapshot_and_cancels_against_the_learner_itself() -> None:
    play = _play()
    behaviors = {"Soccer?team=0": "Soccer", "Soccer?team=1": "Soccer"}
    p = play.policies["Soccer"]
    p.elos[0] = 1300.0  # the snapshot playing (index 0) is rated 1300
    play.after_round(
        1, {"Soccer?team=0": [1.0], "Soccer?team=1": [1.0]}, behaviors, {"Soccer": _weights(0)}.__getitem__
    )
    change = elo_change(1200.0, 1300.0, 1.0)  # one win of the learning team; team 1's episode is not rated
    assert p.elo == pytest.approx(1200.0 + change) and p.elos[0] == pytest.approx(1300.0 - change)
    p.opponent = -1  # against the learner's own weights the two changes cancel, as in ML-Agents
    play.after_round(1, {"Soccer?team=0": [-1.0]}, behaviors, {"Soccer": _weights(0)}.__getitem__)
    assert p.elo == pytest.approx(1200.0 + change)


def test_asymmetric_teams_rate_against_the_other_behaviours_snapshot() -> None:
    settings = GhostSettings(save_steps=10, team_change=30, swap_steps=100, window=3)
    slots = {"Striker": {0: "Striker"}, "Goalie": {1: "Goalie"}}
    play = GhostPlay(slots, {"Striker": settings, "Goalie": settings}, {n: _weights(0) for n in slots})
    assert play.learning_slot("Striker") == "Striker" and play.learning_slot("Goalie") is None
    behaviors = {"Striker?team=0": "Striker", "Goalie?team=1": "Goalie"}
    play.after_round(1, {"Striker?team=0": [2.0]}, behaviors, {n: _weights(0) for n in slots}.__getitem__)
    assert play.policies["Striker"].elo == pytest.approx(1208.0)
    assert play.policies["Goalie"].elos[0] == pytest.approx(1192.0)  # the Goalie snapshot that played
    assert play.policies["Goalie"].elo == 1200.0


def test_self_play_on_one_team_or_with_two_rules_is_refused() -> None:
    from unimarl.trainers.algos.ghost import ghost_slots

    config = config_from_dict({"behaviors": {"Walker": {"trainer_type": "mappo", "ghost": {}}}})
    with pytest.raises(ConfigError, match=r"are all on one team; self-play needs behaviour ids with teams"):
        ghost_slots(config, {"Walker": "Walker"})
    assert ghost_slots(config, {"Walker?team=0": "Walker", "Walker?team=1": "Walker"}) == {
        "Walker": {0: "Walker#team0", 1: "Walker#team1"}
    }
    both = {"trainer_type": "mfq", "ghost": {}, "self_play": {"opponent": "B?team=1"}}
    with pytest.raises(ConfigError, match=r"behaviors.B sets both ghost .* and self_play"):
        config_from_dict({"behaviors": {"B": both}})
    assert config_from_dict({"behaviors": {"B": {"trainer_type": "mfq", "ghost": {}}}}).behaviors["B"].ghost


GAME = [
    "--team-size",
    "2",
    "--grid",
    "6",
    "--view",
    "5",
    "--win-reward",
    "1",
    "--max-steps",
    "40",
    "--obstacles",
    "0",
]
SETTINGS = {
    "trainer_type": "poca",
    "hyperparameters": {"batch_size": 64, "buffer_size": 256, "learning_rate_schedule": "constant"},
    "network_settings": {"hidden_units": 16, "num_layers": 1},
    "max_steps": 320,
    "time_horizon": 20,
    "summary_freq": 20,
    "checkpoint_interval": 1000,
    "self_play": {
        "save_steps": 40,
        "team_change": 100,
        "swap_steps": 30,
        "window": 3,
        "play_against_latest_model_ratio": 0.0,
    },
}


def _config(tmp_path: Path, behaviors: list[str], extra_args: list[str]) -> dict:
    return {
        "default_settings": SETTINGS,
        "behaviors": {b: {} for b in behaviors},
        "env_settings": {"env_path": "sim:battle", "env_args": GAME + extra_args, "num_envs": 2, "seed": 1},
        "checkpoint_settings": {"run_id": "ghost", "results_dir": str(tmp_path)},
        "torch_settings": {"device": "cpu"},
    }


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_symmetric_game_trains_one_team_at_a_time_with_elo_and_resumes(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from unimarl.trainers.run.train import train

    result = train(config_from_dict(_config(tmp_path, ["Battle"], [])))
    lines = _lines(result.run_dir)
    teams = [line["selfplay/learning_team"] for line in lines]
    assert 1.0 in teams and teams[0] == 0.0  # team_change 100: team 1 learns from the check past it
    first_change = next(line["env_steps"] for line in lines if line["selfplay/learning_team"] == 1.0)
    assert 100 < first_change <= 120, first_change
    swaps = lines[-1]["selfplay/swaps/Battle"]
    assert swaps >= result.env_steps // 40, swaps  # at least one draw per 30+ opponent steps
    assert lines[-1]["selfplay/snapshots/Battle"] == 3.0  # the window is full
    elos = {line["selfplay/elo/Battle"] for line in lines}
    assert len(elos) > 1, elos  # battles were won and lost
    events = EventAccumulator(str(result.run_dir / "tensorboard" / "Battle")).Reload()
    assert "Self-play/ELO" in events.Tags()["scalars"]
    assert (result.run_dir / "Battle.onnx").exists()
    state = torch.load(sorted((result.run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert state["ghost"]["learning_team"] == teams[-1]
    data = _config(tmp_path, ["Battle"], [])
    data["checkpoint_settings"]["resume"] = True
    data["default_settings"] = {**SETTINGS, "max_steps": 360}
    again = train(config_from_dict(data))
    resumed = _lines(again.run_dir)[len(lines) :]
    assert resumed and resumed[0]["selfplay/swaps/Battle"] > swaps  # the counters went on
    assert abs(resumed[0]["selfplay/elo/Battle"] - lines[-1]["selfplay/elo/Battle"]) < 40


def test_an_asymmetric_game_trains_each_behaviour_on_its_turn(tmp_path: Path) -> None:
    from unimarl.trainers.run.train import train

    data = _config(tmp_path, ["Striker", "Goalie"], ["--behaviors", "Striker,Goalie"])
    result = train(config_from_dict(yaml.safe_load(yaml.safe_dump(data))))
    lines = _lines(result.run_dir)
    for line in lines:
        updated = {k.rsplit("/", 1)[1] for k in line if k.startswith("Losses/Policy Loss/")}
        team = line["selfplay/learning_team"]
        if line["env_steps"] <= 100:  # only the learning team's policy is updated
            assert updated == {"Striker"} and team == 0.0, line["env_steps"]
    assert any(
        {k.rsplit("/", 1)[1] for k in line if k.startswith("Losses/Policy Loss/")} == {"Goalie"}
        for line in lines
    )
    assert {"selfplay/elo/Striker", "selfplay/elo/Goalie"} <= set(lines[-1])
    assert (result.run_dir / "Striker.onnx").exists() and (result.run_dir / "Goalie.onnx").exists()


class StrikersVsGoalie(ParallelEnv):
    """Two strikers (``Striker?team=0``) against one goalie (``Goalie?team=1``): two behaviours, different
    team sizes. Each of 4 steps every agent picks a corner (0-2); at the last step each striker whose corner
    the goalie did not pick scores, and two goals win: +1 to the winners, -1 to the losers (ELO reads it)."""

    metadata = {"name": "strikers_vs_goalie_v0"}  # noqa: RUF012 - PettingZoo's class attribute convention

    def __init__(self) -> None:
        self.possible_agents = ["Striker?team=0_0", "Striker?team=0_1", "Goalie?team=1_0"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(0.0, 1.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(3)

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.array([self._t / 4, a.startswith("G")], np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.agents, self._t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        rewards = dict.fromkeys(self.agents, 0.0)
        done = self._t >= 4
        if done:
            keeper = int(actions["Goalie?team=1_0"])
            goals = sum(int(actions[a]) != keeper for a in self.agents if a.startswith("S"))
            for agent in self.agents:
                rewards[agent] = 1.0 if (goals == 2) == agent.startswith("S") else -1.0
        obs = self._obs()
        flags = dict.fromkeys(self.agents, done)
        if done:
            self.agents = []
        return obs, rewards, flags, dict.fromkeys(obs, False), {a: {} for a in obs}


def make_strikers_vs_goalie() -> StrikersVsGoalie:
    return StrikersVsGoalie()


def test_teams_of_different_sizes_take_turns_and_each_behaviour_has_its_elo(tmp_path: Path) -> None:
    from unimarl.trainers.run.train import train

    data = {
        "default_settings": {
            **SETTINGS,
            "trainer_type": "ppo",
            "max_steps": 400,
            "time_horizon": 8,
            "summary_freq": 40,
            "self_play": {"save_steps": 40, "team_change": 120, "swap_steps": 40, "window": 4},
        },
        "behaviors": {"Striker": {}, "Goalie": {}},
        "env": {"pettingzoo": f"{__file__}:make_strikers_vs_goalie", "num_envs": 8},
        "checkpoint_settings": {"run_id": "sizes", "results_dir": str(tmp_path)},
        "torch_settings": {"device": "cpu"},
    }
    result = train(config_from_dict(data))
    lines = _lines(result.run_dir)
    teams = [line["selfplay/learning_team"] for line in lines]
    assert teams[0] == 0.0 and 1.0 in teams and teams.index(1.0) < len(teams) - 1
    elos = {name: {line[f"selfplay/elo/{name}"] for line in lines} for name in ("Striker", "Goalie")}
    assert all(len(values) > 1 for values in elos.values()), elos  # both learned in turn and were rated
    assert lines[-1]["selfplay/snapshots/Striker"] >= 2 and lines[-1]["selfplay/snapshots/Goalie"] >= 2
    assert (result.run_dir / "Striker.onnx").exists() and (result.run_dir / "Goalie.onnx").exists()


def test_a_checkpoint_from_before_the_shared_pool_resumes() -> None:
    """Ghost checkpoints held pool and clock counters in one list and one generator for all policies."""
    play = _play()
    w = {k: torch.as_tensor(v) for k, v in _weights(4.0).items()}
    old = {
        "learning_team": 1,
        "queue": [0],
        "team_changes": 3,
        "rng": "{}",
        "policies": {
            "Soccer": {
                "snapshots": [w, {k: v + 1 for k, v in w.items()}],
                "opponent_weights": w,
                "elos": [1210.0, 1190.0, 1250.0],
                # counter, opponent, learned, last_save, last_team_change, ghost, last_swap, swaps
                "counters": [0, 1, 90, 80, 60, 70, 65, 9],
            }
        },
    }
    play.load_state_dict(old)
    p, clock = play.policies["Soccer"], play.clocks["Soccer"]
    assert (play.learning_team, p.elo, p.opponent, p.version, p.newest) == (1, 1250.0, 1, 9, 1)
    assert (clock.learned, clock.last_save, clock.last_team_change, clock.ghost, clock.last_swap) == (
        90,
        80,
        60,
        70,
        65,
    )
    assert play.weights({"Soccer": _weights(0.0)})["Soccer#team0"]["actor.w"][0] == 4.0  # team 0 plays it


MF_GHOST = {
    "save_steps": 30,
    "team_change": 60,
    "swap_steps": 20,
    "window": 3,
    "play_against_latest_model_ratio": 0,
}


def _mf_config(tmp_path: Path, trainer: str, max_steps: int) -> dict:
    small = {
        "encoder": "mlp",
        "visual_hidden": 16,
        "head_hidden": [16],
        "batch_size": 32,
        "learning_starts": 32,
    }
    return {
        "env": {"sim": "battle", "num_envs": 2, "args": GAME},
        "run": {"run_id": "mfghost", "results_dir": str(tmp_path), "device": "cpu", "max_steps": max_steps},
        "behaviors": {
            "Battle": {
                "trainer_type": trainer,
                "hyperparameters": {**small, "push_every": 4},
                "ghost": MF_GHOST,
                "summary_freq": 20,
            }
        },
        "policy_mapping": {"Battle": "Battle"},  # one policy for both teams, as ML-Agents' ghost trainer
    }


def test_mean_field_ghost_gives_each_team_a_slot_and_trains_the_learning_one_only() -> None:
    from types import SimpleNamespace

    from unimarl.bridge.spec import ActionSpec
    from unimarl.trainers.algos.meanfield.algorithm import MeanField
    from unimarl.trainers.algos.meanfield.worker import MFChunk
    from unimarl.trainers.core.batch import PolicySpec

    config = config_from_dict(_mf_config(Path("."), "mfq", 100))
    spec = PolicySpec(((5, 5, 5), (2,), (4,)), ActionSpec(0, (21,)))
    algorithm = MeanField(config, {"Battle?team=0": spec, "Battle?team=1": spec}, {}, "cpu")
    plan = algorithm.plan()
    assert plan.behavior_actor == {"Battle?team=0": "Battle#team0", "Battle?team=1": "Battle#team1"}
    assert {"Battle#team0", "Battle#team1"} <= plan.learning and set(algorithm.policies) == {"Battle"}
    assert algorithm.behavior_policy == {"Battle?team=0": "Battle", "Battle?team=1": "Battle"}
    algorithm.opponents = SimpleNamespace(learning_slot=lambda policy: "Battle#team1")  # type: ignore[assignment]
    chunk = MFChunk({"Battle#team0": ["zero"], "Battle#team1": ["one"]}, 0, 0, {}, [], {}, 0)  # type: ignore[list-item]
    assert algorithm._training_data(chunk).transitions == {"Battle": ["one"]}


@pytest.mark.parametrize("trainer", ["mfq", "mfac"])
def test_a_mean_field_run_self_plays_between_teams_with_elo_exports_and_resumes(
    tmp_path: Path, trainer: str
) -> None:
    """``ghost`` works for the mean-field learners as for MAPPO: one team learns at a time against the
    other team's snapshots, ELO from the episodes' final rewards, one model for both teams, resume."""

    from unimarl.trainers.run.train import train

    data = _mf_config(tmp_path, trainer, 200)
    result = train(config_from_dict(data))
    lines = _lines(result.run_dir)
    teams = [line["selfplay/learning_team"] for line in lines]
    assert teams[0] == 0.0 and 1.0 in teams  # team_change 60: both teams learned
    assert lines[-1]["selfplay/swaps/Battle"] >= 3 and lines[-1]["selfplay/snapshots/Battle"] >= 2
    assert len({line["selfplay/elo/Battle"] for line in lines}) > 1  # episodes were won and lost
    assert any(k.startswith("Losses/") and k.endswith("/Battle") for k in lines[-1])
    manifest = json.loads((result.run_dir / "onnx" / "policies.json").read_text())
    assert set(manifest) == {"Battle"}
    state = torch.load(sorted((result.run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert set(state["policies"]) == {"Battle"} and set(state["self_play"]) == {"ghost"}
    data["run"].update(resume=True, max_steps=260)
    resumed = train(config_from_dict(data))
    assert resumed.env_steps >= 260
    after = _lines(resumed.run_dir)[len(lines) :]
    assert after and after[0]["selfplay/snapshots/Battle"] >= lines[-1]["selfplay/snapshots/Battle"]
    del data["behaviors"]["Battle"]["ghost"]
    data["run"].update(max_steps=300)
    with pytest.raises(ResumeError, match="trained with ghost self-play between teams"):
        train(config_from_dict(data))
