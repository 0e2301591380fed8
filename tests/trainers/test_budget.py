"""The time budget holds inside one long iteration, and a long iteration logs progress lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.run import progress
from unimarl.trainers.run.train import train

STEP_S = 0.02


class SlowEnv(ParallelEnv):
    """Two agents; every step sleeps ``STEP_S`` (a game with large images); episodes of 10 steps."""

    metadata = {"name": "slow_v0"}  # noqa: RUF012 - PettingZoo's class attribute convention

    def __init__(self) -> None:
        self.possible_agents = ["slow_0", "slow_1"]
        self.agents: list[str] = []
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(-1, 1, (3,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        self.agents = list(self.possible_agents)
        return {a: np.zeros(3, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        time.sleep(STEP_S)
        self._t += 1
        agents, done = list(self.agents), self._t >= 10
        if done:
            self.agents = []
        return (
            {a: np.full(3, self._t / 10, np.float32) for a in agents},
            {a: float(actions[a]) for a in agents},
            {a: False for a in agents},
            {a: done for a in agents},
            {a: {} for a in agents},
        )


def make() -> SlowEnv:
    return SlowEnv()


def _config(tmp_path: Path, max_seconds: float) -> Any:
    return config_from_dict(
        {
            "env": {"pettingzoo": f"{Path(__file__)}:make", "num_envs": 1},
            "run": {
                "run_id": "slow",
                "results_dir": str(tmp_path),
                "device": "cpu",
                "max_seconds": max_seconds,
            },
            # one iteration would take 5000 x 0.02 s = 100 s
            "behaviors": {"slow": {"hyperparameters": {"epochs": 1}, "time_horizon": 5000}},
        }
    )


def test_time_budget_holds_inside_a_long_iteration(tmp_path: Path) -> None:
    budget = 2.0
    start = time.perf_counter()
    result = train(_config(tmp_path, budget))
    elapsed = time.perf_counter() - start
    assert result.stopped_by == "max_seconds"
    assert elapsed < budget + 6.0, elapsed  # set-up, the update, the checkpoint and export (before: 117 s)
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    # collected only as long as the budget allowed: about budget / STEP_S env steps, far fewer than 5000
    assert 0 < lines[0]["env_steps"] <= budget / STEP_S + 1
    assert "return/slow" in lines[0] and "Losses/Value Loss/slow" in lines[0]
    assert list((result.run_dir / "checkpoints").glob("checkpoint-*.pt"))


def test_long_iteration_logs_progress_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVERY_S", 0.5)
    with caplog.at_level(logging.INFO, logger="unimarl.trainers.run.progress"):
        train(_config(tmp_path, 2.5))
    lines = [r for r in caplog.records if r.name == "unimarl.trainers.run.progress"]
    assert len(lines) >= 3, [r.getMessage() for r in lines]
    assert all(r.levelno == logging.INFO for r in lines)
    assert "iteration 1: collecting for" in lines[0].getMessage()
    assert "budget left" in lines[0].getMessage()
    gaps = np.diff([r.created for r in lines])
    assert gaps.max() < 0.5 + 1.0, gaps
