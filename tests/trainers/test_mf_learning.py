"""Slow: MF-Q trained by self-play on a reduced budget clearly beats a random opponent on either team."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimarl.trainers.core.config import EnvSettings, config_from_dict
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build
from unimarl.trainers.run.evaluate import load_side, play_both_sides
from unimarl.trainers.run.train import train

SIM_ARGS = ["--team-size", "64", "--grid", "24", "--view", "13"]


@pytest.mark.slow
def test_mfq_beats_random_after_short_self_play(tmp_path: Path) -> None:
    data = {
        "env": {"sim": "battle", "num_envs": 1, "args": SIM_ARGS},
        "run": {"run_id": "mfq", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 1500},
        "behaviors": {
            "Battle?team=0": {
                "trainer_type": "mfq",
                "hyperparameters": {"gradient_steps": 4},
                "self_play": {"opponent": "Battle?team=1"},
                "summary_freq": 500,
            }
        },
        "environment_parameters": {"max_steps": 100},
    }
    result = train(config_from_dict(data))
    settings = EnvSettings(sim="battle", args=SIM_ARGS)
    build = make_sim_build(settings, tmp_path / "eval")
    factory = EnvFactory(
        settings, environment_parameters={"max_steps": 100}, run_dir=str(tmp_path), build_path=str(build)
    )
    side = load_side(str(result.run_dir))
    both = play_both_sides(factory, side, load_side("random"), battles=20, num_envs=2)
    assert both["win_rate"] >= 0.8 and min(both["per_orientation"]) >= 0.7, both["per_orientation"]
