"""Hot-swap with training: a short coop_nav run exports at each checkpoint, pushes every iteration and
reports what the games run; the exported model then drives a game exactly (`unimarl export` / `play`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

from unimarl.trainers.cli.main import main
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.export.contract import assert_contract
from unimarl.trainers.export.policies import RunExportError, read_manifest
from unimarl.trainers.run.play import play_game
from unimarl.trainers.run.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    config = config_from_dict(
        {
            "env": {"sim": "coop_nav", "num_envs": 2},
            "run": {"run_id": "hs", "results_dir": str(results), "device": "cpu", "max_steps": 96},
            "behaviors": {
                "default": {
                    "hyperparameters": {"epochs": 1},
                    "network_settings": {"hidden_units": 32},
                    "time_horizon": 16,
                    "summary_freq": 32,
                    "checkpoint_interval": 64,
                }
            },
            "hotswap": {"every": 1},
        }
    )
    train(config)
    return results / "hs"


def test_training_exports_pushes_and_reports_running_versions(run_dir: Path, hs: ModuleType) -> None:
    manifest = read_manifest(run_dir)
    assert list(manifest) == [hs.BEHAVIOR]
    entry = manifest[hs.BEHAVIOR]
    model = run_dir / "onnx" / entry["file"]
    assert entry["file"] == "CoopNav_team_0.onnx" and entry["env_steps"] == 96
    assert entry["size_bytes"] == model.stat().st_size
    onnx.checker.check_model(onnx.load(str(model)), full_check=True)
    assert_contract(model.read_bytes(), hs.COOP_NAV_SPEC)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # 3 iterations of 32 env steps, a push after each; acks arrive with the next iteration's steps
    assert [line["counters/hotswap_pushed/" + hs.BEHAVIOR] for line in lines] == [1.0, 2.0, 3.0]
    assert [line["counters/hotswap_running/" + hs.BEHAVIOR] for line in lines] == [-1.0, 1.0, 2.0]
    assert all(line["counters/hotswap_rejected/" + hs.BEHAVIOR] == 0.0 for line in lines)


def test_exported_policy_drives_the_game(run_dir: Path, tmp_path: Path, hs: ModuleType) -> None:
    """``unimarl play``'s driver on the run folder: every action the game's Default agents received (the
    game's record) is the exported model's deterministic action for the observation the game sent."""
    model = (run_dir / "onnx" / "CoopNav_team_0.onnx").read_bytes()
    record = tmp_path / "record.jsonl"
    env = hs.open_recording_game(tmp_path, "coop_nav", "--record", str(record))
    try:  # past an episode end (25 steps): restarted agents act from the model too
        result = play_game(env, run_dir, episodes=6)
    finally:
        env.close()
    assert len(result.returns[hs.BEHAVIOR]) == 6 and result.models[hs.BEHAVIOR].read_bytes() == model
    applied, expected = hs.received_vs_model(record, env.history, model)
    assert len(applied) >= 48 * 3  # every decision of two episodes (the last answer is not recorded)
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(applied, expected)


def test_cli_export_refreshes_models_from_the_checkpoint(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = run_dir / "onnx" / "CoopNav_team_0.onnx"
    before = model.read_bytes()
    model.unlink()
    assert main(["export", str(run_dir)]) == 0
    assert "CoopNav?team=0" in capsys.readouterr().out
    assert model.exists() and read_manifest(run_dir)["CoopNav?team=0"]["env_steps"] == 96
    import onnxruntime as ort

    obs = np.random.default_rng(0).normal(size=(7, 14)).astype(np.float32)
    feed = {"obs_0": obs, "action_masks": np.ones((7, 5), np.float32)}
    outputs = [
        ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(
            ["deterministic_discrete_actions"], feed
        )
        for m in (before, model.read_bytes())
    ]
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])


def test_cli_export_without_run_folder_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path)]) == 2
    assert "policies.json does not exist" in capsys.readouterr().err
    with pytest.raises(RunExportError, match="not a run folder"):
        read_manifest(tmp_path)


def test_cli_play_reports_returns(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["play", str(run_dir), "--env", "sim:coop_nav", "--episodes", "6", "--env-arg=--episode-length=10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("CoopNav?team=0"))
    assert row.split()[1] == "6" and "CoopNav_team_0.onnx" in row
    float(row.split()[2])  # a number, not "-"
