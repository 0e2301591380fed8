"""The default tier's learning check: rollout -> GAE -> update -> a better return, end to end through train().

A game random play cannot do well in: each step every agent sees a cue (one of 3, one-hot, plus the step
counter) and should answer with the matching action; the reward for the whole episode (the number of right
answers) comes only at its last step, so the signal reaches earlier actions only through the returns and
advantages. Random answers score 8 / 3 = 2.67 per 8-step episode (binomial, sd 1.33 per episode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.run.train import train

STEPS, CUES = 8, 3
RANDOM_RETURN = STEPS / CUES


class CueEnv(ParallelEnv):
    """Two agents; obs = [one-hot cue (3), step / 8]; the reward (right answers) comes at the episode end."""

    metadata = {"name": "cue_v0"}  # noqa: RUF012 - PettingZoo's class attribute convention

    def __init__(self) -> None:
        self.possible_agents = ["cue_0", "cue_1"]
        self.agents: list[str] = []
        self._rng = np.random.default_rng(0)
        self._t = 0
        self._cue: dict[str, int] = {}
        self._right: dict[str, int] = {}

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(0, 1, (CUES + 1,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(CUES)

    def _obs(self, agents: list[str]) -> dict[str, np.ndarray]:
        self._cue = {a: int(self._rng.integers(CUES)) for a in agents}
        return {a: np.append(np.eye(CUES)[self._cue[a]], self._t / STEPS).astype(np.float32) for a in agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self.agents = list(self.possible_agents)
        self._right = {a: 0 for a in self.agents}
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        agents = list(self.agents)
        for a in agents:
            self._right[a] += int(int(actions[a]) == self._cue[a])
        self._t += 1
        done = self._t >= STEPS
        rewards = {a: float(self._right[a]) if done else 0.0 for a in agents}
        if done:
            self.agents = []
        return (
            self._obs(agents),
            rewards,
            {a: done for a in agents},
            {a: False for a in agents},
            {a: {} for a in agents},
        )


def make() -> CueEnv:
    return CueEnv()


def _train(tmp_path: Path, max_steps: int, **hyperparameters: Any) -> list[dict[str, Any]]:
    config = config_from_dict(
        {
            "env": {"pettingzoo": f"{Path(__file__)}:make", "num_envs": 8},
            "run": {"run_id": "cue", "results_dir": str(tmp_path), "device": "cpu", "seed": 1},
            "behaviors": {
                "cue": {
                    "hyperparameters": {"lr": 3e-3, "critic_lr": 3e-3, "epochs": 4, **hyperparameters},
                    "network_settings": {"hidden_units": 32},
                    "time_horizon": 16,
                    "max_steps": max_steps,
                    "summary_freq": 8 * 16 * 5,
                }
            },
        }
    )
    result = train(config)
    return [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_beats_random_play_by_a_margin_chance_cannot_give(tmp_path: Path) -> None:
    lines = _train(tmp_path, max_steps=8 * 16 * 30)  # 30 iterations, 7,680 agent steps
    first, last = lines[0]["return/cue"], lines[-1]["return/cue"]
    # the last line averages 2 agents x 8 envs x 10 episodes = 160 episodes: under random play its mean has
    # sd 1.33 / sqrt(160) = 0.11, so 2.67 + 2.5 is more than 20 sd away
    assert last > RANDOM_RETURN + 2.5, (first, last)
    assert last > first + 2.0, (first, last)


def test_first_minibatch_of_every_iteration_sees_the_collected_policy(tmp_path: Path) -> None:
    # one epoch of one minibatch: the ratio is measured before the only gradient step, so it is exactly 1
    # when the learner's inputs (normalisers included) are those the workers acted with
    lines = _train(tmp_path, max_steps=8 * 16 * 5, epochs=1)
    assert lines and all(line["Policy/Clip Fraction/cue"] == 0.0 for line in lines), lines
    assert all(abs(line["Policy/Approx KL/cue"]) < 1e-7 for line in lines), lines
