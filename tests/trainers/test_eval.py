"""Evaluation: confidence intervals, baselines, the report, and `unimarl eval` on a small battle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unimarl.trainers.cli import main
from unimarl.trainers.evaluate import (
    EvaluationError,
    Side,
    bootstrap_ci,
    evaluate,
    load_side,
    summarise,
    wilson,
)
from unimarl.trainers.mf_worker import FIRST_ATTACK, Outcome, baseline_actions


def test_wilson_matches_hand_values() -> None:
    lo, hi = wilson(5, 10)  # p = 0.5, n = 10, z = 1.96
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)


def test_bootstrap_interval_contains_the_mean() -> None:
    values = np.arange(20, dtype=np.float64)
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi and hi - lo < 10


def test_summary_counts_wins_draws_and_losses() -> None:
    outs = [
        Outcome({"A": 3.0, "B": 1.0}, {"A": 1.0, "B": 0.0}, 10),
        Outcome({"A": 2.0, "B": 2.0}, {"A": 0.5, "B": 0.5}, 10),
        Outcome({"A": 0.0, "B": 4.0}, {"A": -1.0, "B": 2.0}, 10),
    ]
    r = summarise(outs, ("A", "B"), ("a", "b"))
    a = r["sides"]["a"]
    assert (a["wins"], a["draws"], a["losses"]) == (1, 1, 1)
    assert a["win_rate"] == pytest.approx(0.5) and a["kills_mean"] == pytest.approx(5 / 3)
    assert r["sides"]["b"]["return_mean"] == pytest.approx(2.5 / 3)


def test_baselines_respect_masks_and_scripted_attacks() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((200, 21))
    mask[:100, [0, 3]] = 1
    mask[100:, [0, 3, FIRST_ATTACK + 2]] = 1
    rand = baseline_actions("baseline:random", mask, 200, rng)
    assert set(rand[:100]) == {0, 3}
    scripted = baseline_actions("baseline:scripted", mask, 200, rng)
    assert set(scripted[100:]) == {FIRST_ATTACK + 2} and set(scripted[:100]) == {0, 3}


def test_bad_sides_are_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="does not exist"):
        load_side(str(tmp_path / "nope.pt"))
    with pytest.raises(EvaluationError, match="no checkpoint"):
        load_side(str(tmp_path))
    (tmp_path / "checkpoint-best.pt").write_bytes(b"not a checkpoint")  # not a name RunDir writes
    with pytest.raises(EvaluationError, match="no checkpoint"):
        load_side(str(tmp_path))
    with pytest.raises(EvaluationError, match="not a readable checkpoint"):
        load_side(str(tmp_path / "checkpoint-best.pt"))
    rand = Side("random", baseline="baseline:random")
    with pytest.raises(EvaluationError, match="battles=0"):
        evaluate(None, rand, rand, battles=0)  # checked before any game starts


def test_cli_eval_scripted_beats_random(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "battle.yaml"
    cfg.write_text(
        "env: {sim: battle, args: ['--team-size', '8', '--grid', '14', '--view', '5']}\n"
        "environment_parameters: {max_steps: 40}\n"
    )
    out = tmp_path / "report.json"
    code = main(
        [
            "eval",
            "scripted",
            "random",
            "--config",
            str(cfg),
            "--battles",
            "6",
            "--num-envs",
            "2",
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["battles"] == 6
    assert report["sides"]["scripted"]["kills_mean"] > report["sides"]["random"]["kills_mean"]
    assert "win rate" in capsys.readouterr().out


def test_cli_eval_both_sides_combines_orientations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "battle.yaml"
    cfg.write_text(
        "env: {sim: battle, args: ['--team-size', '8', '--grid', '14', '--view', '5']}\n"
        "environment_parameters: {max_steps: 40}\n"
    )
    out = tmp_path / "report.json"
    args = ["eval", "scripted", "random", "--config", str(cfg), "--battles", "4", "--both-sides"]
    code = main([*args, "--json", str(out), "--out-dir", str(tmp_path / "eval")])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["side"] == "scripted" and report["battles"] == 8
    assert report["wins"] + report["draws"] + report["losses"] == 8
    first, second = report["orientations"]
    assert first["labels"] == ["scripted", "random"] and second["labels"] == ["random", "scripted"]
    assert "on the second" in capsys.readouterr().out
