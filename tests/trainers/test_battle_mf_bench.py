"""benchmarks/battle_mf.py reuses an earlier run's baselines only when the settings they depend on match."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _module() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "battle_mf.py"
    spec = importlib.util.spec_from_file_location("battle_mf", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _args(module: ModuleType, **changes: object) -> argparse.Namespace:
    settings = dict.fromkeys(module.BASELINE_SETTINGS, 1) | {"sides": "both", "pairs": "mfq"}
    return argparse.Namespace(**{**settings, **changes})


def test_baselines_are_reused_only_from_a_run_with_the_same_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _module()
    run = tmp_path / "iql"
    (run / "checkpoints").mkdir(parents=True)
    iql = {
        "env_steps": 100,
        "agent_steps": 6400,
        "wall_s": 9.0,
        "agent_steps_per_s": 711.0,
        "run_dir": str(run),
    }
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"args": vars(_args(bench)), "mfq": {"train": {"IQL": iql}}}))
    parser = argparse.ArgumentParser()

    reused = bench.baseline_results(_args(bench, baseline_from=str(earlier), mean_input="centred"), parser)
    assert reused["mfq"]["train"]["IQL"] == iql  # what only the mean-field learner reads may differ
    assert f"reusing IQL: {run}" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        bench.baseline_results(_args(bench, baseline_from=str(earlier), tau=0.99), parser)
    assert "tau=1 (now 0.99)" in capsys.readouterr().err

    (run / "checkpoints").rmdir()  # the run folder is gone (a temporary folder cleaned up since)
    with pytest.raises(SystemExit):
        bench.baseline_results(_args(bench, baseline_from=str(earlier)), parser)
    assert "no IQL run folder left" in capsys.readouterr().err
