"""A training run whose ONNX exports all fail: it still writes its checkpoints, logs and records each failure
(manifest and metrics) and ends normally; hot-swap pushes nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.export import policies as policy_export
from unimarl.trainers.export.onnx import ExportError
from unimarl.trainers.export.policies import read_manifest
from unimarl.trainers.run.train import train

BEHAVIOR = "CoopNav?team=0"


def test_training_survives_failed_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ExportError("operator 'Erf' is not supported")

    monkeypatch.setattr(policy_export, "export_actor", broken)
    config = config_from_dict(
        {
            "env": {"sim": "coop_nav", "num_envs": 1},
            "run": {"run_id": "broken", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 64},
            "behaviors": {
                "default": {
                    "hyperparameters": {"epochs": 1},
                    "network_settings": {"hidden_units": 16},
                    "time_horizon": 16,
                    "summary_freq": 32,
                    "checkpoint_interval": 32,
                }
            },
            "hotswap": {"every": 1},
        }
    )
    with caplog.at_level(logging.WARNING):
        result = train(config)
    run = tmp_path / "broken"
    assert result.stopped_by == "max_steps" and result.env_steps == 64
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "checkpoint-32.pt",
        "checkpoint-64.pt",
    ]
    entry = read_manifest(run)[BEHAVIOR]
    assert entry["file"] is None and entry["export_error"]["env_steps"] == 64
    assert entry["export_error"]["reason"] == "ExportError: operator 'Erf' is not supported"
    # one export per push (4 iterations) and per checkpoint (2)
    assert entry["export_failures"] == 6
    assert str(run / "onnx" / "CoopNav_team_0.onnx") in caplog.text
    assert "not pushing CoopNav?team=0" in caplog.text
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1][f"counters/export_failures/{BEHAVIOR}"] >= 3.0
    assert not any(key.startswith("counters/hotswap_") for line in lines for key in line)
