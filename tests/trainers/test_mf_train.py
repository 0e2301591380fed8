"""Mean-field training end to end on a small battle: run folder, checkpoints, resume, transitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters
from unimarl.trainers.algos.meanfield.worker import MFPlan, MFPolicySetup, MFRolloutWorker
from unimarl.trainers.core.config import EnvSettings, config_from_dict
from unimarl.trainers.core.errors import ConfigError, ResumeError
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.train import train

SIM_ARGS = ["--team-size", "6", "--grid", "12", "--view", "5"]
SMALL = {"encoder": "mlp", "visual_hidden": 32, "head_hidden": [32], "batch_size": 32, "learning_starts": 32}


def _config(tmp_path: Path, trainer: str = "mfq", **hp: Any) -> dict[str, Any]:
    return {
        "env": {"sim": "battle", "num_envs": 1, "args": SIM_ARGS},
        "run": {"run_id": "b", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 96},
        "behaviors": {
            "Battle?team=0": {
                "trainer_type": trainer,
                "hyperparameters": {**SMALL, "push_every": 8, **hp},
                "self_play": {"opponent": "Battle?team=1"},
                "summary_freq": 48,
                "checkpoint_interval": 64,
            }
        },
        "environment_parameters": {"max_steps": 20},
    }


@pytest.mark.parametrize("trainer", ["mfq", "mfac"])
def test_run_folder_checkpoint_and_resume(tmp_path: Path, trainer: str) -> None:
    data = _config(tmp_path, trainer)
    result = train(config_from_dict(data))
    run = result.run_dir
    assert result.env_steps >= 96
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("battle/kills/Battle?team=0" in line for line in lines)
    assert any(k.startswith("Losses/") for k in lines[-1])
    assert (run / "config.yaml").exists() and (run / "tensorboard").is_dir()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run / "tensorboard" / "Battle_team_0")).Reload().Tags()["scalars"]
    for tag in ("Environment/Cumulative Reward", "Environment/Episode Length", "Policy/Learning Rate"):
        assert tag in tags, (tag, tags)  # the tags ML-Agents' tooling reads
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    state = torch.load(ckpt, weights_only=True)
    assert set(state["policies"]) == {"Battle?team=0"}
    assert set(state["self_play"]) == {"Battle?team=0"}
    assert state["setups"]["Battle?team=0"]["trainer_type"] == trainer
    data["run"].update(resume=True, max_steps=160)
    resumed = train(config_from_dict(data))
    assert resumed.env_steps >= 160 and resumed.iterations > result.iterations


def test_resuming_with_another_mean_action_input_is_refused(tmp_path: Path) -> None:
    """The centring changes what the weights mean, not their shapes: a resume across it is an error."""
    train(config_from_dict(_config(tmp_path, mean_action_input="centred")))
    data = _config(tmp_path)
    data["run"].update(resume=True, max_steps=160)
    with pytest.raises(ResumeError, match=r"mean_action_input is 'probabilities'.*trained with 'centred'"):
        train(config_from_dict(data))


def test_mean_field_sections_are_checked_strictly(tmp_path: Path) -> None:
    data = _config(tmp_path)
    data["behaviors"]["Battle?team=0"]["hyperparameters"]["epochs"] = 3  # a MAPPO key
    with pytest.raises(ConfigError, match="unknown key 'epochs'"):
        config_from_dict(data)
    data = _config(tmp_path, neighbourhood="radius")
    with pytest.raises(ConfigError, match="radius must be >= 0"):
        config_from_dict(data)
    data = _config(tmp_path, mean_action_input="scaled")
    with pytest.raises(ConfigError, match="mean_action_input 'scaled': use probabilities or centred"):
        config_from_dict(data)
    data = _config(tmp_path)
    data["behaviors"]["Battle?team=0"]["self_play"]["sample"] = "best"
    with pytest.raises(ConfigError, match="use latest, uniform or win_rate"):
        config_from_dict(data)


def test_unknown_self_play_opponent_is_rejected(tmp_path: Path) -> None:
    data = _config(tmp_path)
    data["behaviors"]["Battle?team=0"]["self_play"]["opponent"] = "Battle?team=7"
    with pytest.raises(ConfigError, match="not a behaviour of the game"):
        train(config_from_dict(data))


def _worker(tmp_path: Path, battle_steps: int, num_envs: int) -> MFRolloutWorker:
    settings = EnvSettings(sim="battle", args=SIM_ARGS)
    build = make_sim_build(settings, tmp_path)
    params = {"max_steps": battle_steps}
    factory = EnvFactory(
        settings, environment_parameters=params, run_dir=str(tmp_path), build_path=str(build)
    )
    return MFRolloutWorker(factory, num_envs)


def test_worker_transitions_chain_and_end(tmp_path: Path) -> None:
    """An agent's next transition starts where its previous one led; ended agents give terminal rows."""
    worker = _worker(tmp_path, 6, 1)
    try:
        specs = worker.specs()
        hp = MeanFieldHyperparameters(**SMALL)  # type: ignore[arg-type]
        setup = MFPolicySetup(specs["Battle?team=0"], "mfq", hp)
        plan = MFPlan(
            {"p": setup}, {"Battle?team=0": "p", "Battle?team=1": "baseline:random"}, frozenset({"p"})
        )
        worker.configure(plan)
        chunk = worker.collect({}, 0.0, 14)
    finally:
        worker.close()
    ts = chunk.transitions["p"]
    assert len(chunk.outcomes) == 2  # battles of 6 steps
    last_next: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    chained = ended = 0
    for t in ts:
        assert t.mean_action is not None and t.next_mean_action is not None
        np.testing.assert_allclose(t.mean_action.sum(axis=1)[t.mean_action.sum(axis=1) > 0], 1.0, rtol=1e-5)
        for k, key in enumerate(t.agent_keys or []):
            if key in last_next:
                np.testing.assert_array_equal(t.obs[0][k], last_next[key][0])
                np.testing.assert_array_equal(t.mean_action[k], last_next[key][1])
                chained += 1
            if t.terminated[k] or (t.truncated is not None and t.truncated[k]):
                ended += 1
                last_next.pop(key, None)
            else:
                last_next[key] = (t.next_obs[0][k], t.next_mean_action[k])
    assert chained > 0 and ended >= 6  # every agent of team 0 ends at least once per battle


def test_self_play_learner_plays_both_sides(tmp_path: Path) -> None:
    """With swap_sides the learner and its opponent trade teams after every battle, per environment."""
    worker = _worker(tmp_path, 5, 2)
    try:
        specs = worker.specs()
        setup = MFPolicySetup(specs["Battle?team=0"], "mfq", MeanFieldHyperparameters(**SMALL))  # type: ignore[arg-type]
        plan = MFPlan(
            {"p": setup, "opponent:p": setup},
            {"Battle?team=0": "p", "Battle?team=1": "opponent:p"},
            frozenset({"p"}),
            swap_sides=(("Battle?team=0", "Battle?team=1"),),
        )
        worker.configure(plan)
        chunk = worker.collect({}, 0.0, 12)
    finally:
        worker.close()
    learner_side = [o.actors["Battle?team=0"] == "p" for o in chunk.outcomes]
    assert len(learner_side) == 4 and sum(learner_side) == 2  # two battles per env, alternating sides
    teams = {key[2].split("?agent_id=")[0] for t in chunk.transitions["p"] for key in t.agent_keys or []}
    assert teams == {"Battle?team=0", "Battle?team=1"}
    assert "opponent:p" not in chunk.transitions


def test_temperature_follows_the_time_budget_that_ends_the_run(tmp_path: Path) -> None:
    """A run ended by max_seconds long before max_steps reaches the end of its temperature schedule (the
    workers act, and the export samples, near T_end), not the temperature of its small step share."""
    data = {
        "env": {"pettingzoo": f"{Path(__file__).with_name('nav_env.py')}:make", "num_envs": 1},
        "run": {
            "run_id": "t",
            "results_dir": str(tmp_path),
            "device": "cpu",
            "max_steps": 10**7,
            "max_seconds": 3,
        },
        "behaviors": {"agent": {"trainer_type": "mfq", "hyperparameters": {**SMALL, "push_every": 4}}},
    }
    result = train(config_from_dict(data))
    assert result.stopped_by == "max_seconds" and result.env_steps < 10**5
    state = torch.load(sorted((result.run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    progress = state["policies"]["agent"]["counters"]["progress"]
    assert progress > 0.9  # T <= 0.15 on the default schedule 1 -> 0.2 (80%) -> 0.1 (steps alone: < 0.01)
