"""Checkpoints are read with ``torch.load(weights_only=True)``: a checkpoint that carries a pickled object
(here one whose unpickling would create a file) is refused with a typed error naming the file, and the
object's code never runs, whether the file is resumed, exported or evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unimarl.trainers.core.checkpoints import CHECKPOINT_FORMAT
from unimarl.trainers.core.errors import ResumeError
from unimarl.trainers.export.policies import RunExportError, load_latest_checkpoint
from unimarl.trainers.run.evaluate import EvaluationError, load_side
from unimarl.trainers.run.run_dir import RunDir


class _Planted:
    """Unpickling this calls ``open(marker, "w")``: proof that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _planted_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(results folder, checkpoint, marker) of a run whose newest checkpoint carries a pickled object."""
    results, marker = tmp_path / "results", tmp_path / "code_ran"
    run = RunDir(results, "r")
    run.save_checkpoint({"policies": {}, "env_steps": 8, "extra": _Planted(marker)}, env_steps=8)
    run.close()
    checkpoint = results / "r" / "checkpoints" / "checkpoint-8.pt"
    assert checkpoint.exists() and not marker.exists()
    return results, checkpoint, marker


def test_resume_refuses_a_pickled_object(tmp_path: Path) -> None:
    results, checkpoint, marker = _planted_run(tmp_path)
    with pytest.raises(ResumeError) as info:
        RunDir(results, "r", resume=True).load_latest()
    assert str(checkpoint) in str(info.value) and "weights_only" in str(info.value)
    assert not marker.exists()


def test_export_refuses_a_pickled_object(tmp_path: Path) -> None:
    results, checkpoint, marker = _planted_run(tmp_path)
    with pytest.raises(RunExportError) as info:
        load_latest_checkpoint(results / "r")
    assert str(checkpoint) in str(info.value)
    assert not marker.exists()


def test_evaluation_refuses_a_pickled_object(tmp_path: Path) -> None:
    _, checkpoint, marker = _planted_run(tmp_path)
    for side in (checkpoint, checkpoint.parent.parent):  # the checkpoint, or its run folder
        with pytest.raises(EvaluationError, match="not a readable checkpoint"):
            load_side(str(side))
    assert not marker.exists()


def test_plain_checkpoint_still_loads(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "r")
    run.save_checkpoint({"policies": {"p": {"w": torch.ones(2)}}, "env_steps": 4}, env_steps=4)
    state = RunDir(tmp_path, "r", resume=True).load_latest()
    assert state["format"] == CHECKPOINT_FORMAT and torch.equal(state["policies"]["p"]["w"], torch.ones(2))
    path, exported = load_latest_checkpoint(tmp_path / "r")
    assert path.name == "checkpoint-4.pt" and exported["env_steps"] == 4
