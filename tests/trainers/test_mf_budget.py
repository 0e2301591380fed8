"""Mean-field runs as MAPPO's (tests/trainers/test_budget.py): the time budget holds inside one long chunk of
collection, and a long chunk logs progress lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.trainers import test_budget
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.run import progress
from unimarl.trainers.run.train import train

STEP_S = test_budget.STEP_S


def _config(tmp_path: Path, max_seconds: float) -> Any:
    return config_from_dict(
        {
            "env": {"pettingzoo": f"{test_budget.__file__}:make", "num_envs": 1},
            "run": {
                "run_id": "slow_mf",
                "results_dir": str(tmp_path),
                "device": "cpu",
                "max_seconds": max_seconds,
                "num_workers": 1,
            },
            # one chunk would take 5000 x 0.02 s = 100 s
            "behaviors": {"slow": {"trainer_type": "mfq", "hyperparameters": {"push_every": 5000}}},
        }
    )


def test_time_budget_holds_inside_a_long_chunk(tmp_path: Path) -> None:
    budget = 2.0
    start = time.perf_counter()
    result = train(_config(tmp_path, budget))
    elapsed = time.perf_counter() - start
    assert result.stopped_by == "max_seconds"
    assert elapsed < budget + 6.0, elapsed  # set-up, the updates, the checkpoint and export
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1  # the final metrics line
    # collected only as long as the budget allowed: about budget / STEP_S env steps, far fewer than 5000
    assert 0 < lines[0]["env_steps"] <= budget / STEP_S + 1
    assert "return/slow" in lines[0]
    assert list((result.run_dir / "checkpoints").glob("checkpoint-*.pt"))
    assert list((result.run_dir / "onnx").glob("*.onnx"))


def test_long_chunk_logs_progress_lines(
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
