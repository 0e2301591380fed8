"""Group rewards (Unity's AddGroupReward, ``infos["group_reward"]``) count by default; ignoring them warns
once."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.run.train import train

EPISODE = 5
OWN, GROUP = 0.25, 1.0


class GroupRewardEnv(ParallelEnv):
    """Two agents of behaviour ``mate``; each step gives each an own reward of 0.25 and a group reward of 1
    (in the infos, as the bridge reports Unity group rewards). Episodes last 5 steps."""

    metadata = {"name": "group_reward_v0"}  # noqa: RUF012 - PettingZoo's class attribute convention

    def __init__(self) -> None:
        self.possible_agents = ["mate_0", "mate_1"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-1, 1, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = list(self.possible_agents)
        return {a: np.zeros(2, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        agents, done = list(self.agents), self._t >= EPISODE
        if done:
            self.agents = []
        return (
            {a: np.full(2, self._t / EPISODE, np.float32) for a in agents},
            {a: OWN for a in agents},
            {a: False for a in agents},
            {a: done for a in agents},
            {a: {"group_reward": GROUP} for a in agents},
        )


def make() -> GroupRewardEnv:
    return GroupRewardEnv()


def _run(tmp_path: Path, **behavior: Any) -> dict[str, Any]:
    config = config_from_dict(
        {
            "env": {"pettingzoo": f"{Path(__file__)}:make", "num_envs": 1},
            "run": {"run_id": "g", "results_dir": str(tmp_path), "device": "cpu"},
            "behaviors": {
                "mate": {
                    "hyperparameters": {"epochs": 1},
                    "time_horizon": EPISODE,
                    "max_steps": 2 * EPISODE,
                    "summary_freq": 2 * EPISODE,
                    **behavior,
                }
            },
        }
    )
    result = train(config)
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    return dict(json.loads(lines[-1]))


def test_group_rewards_are_added_by_default(tmp_path: Path) -> None:
    line = _run(tmp_path)
    assert line["return/mate"] == pytest.approx(EPISODE * (OWN + GROUP))


def test_weighted_group_reward(tmp_path: Path) -> None:
    line = _run(tmp_path, group_reward_weight=0.5)
    assert line["return/mate"] == pytest.approx(EPISODE * (OWN + 0.5 * GROUP))


def test_ignored_group_reward_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        line = _run(tmp_path, group_reward_weight=0.0)
    assert line["return/mate"] == pytest.approx(EPISODE * OWN)
    warnings = [r for r in caplog.records if "group_reward_weight" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "'mate'" in warnings[0].getMessage()
