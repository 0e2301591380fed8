"""Behaviour and policy names become file and folder names that are valid on Windows, macOS and Linux."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unimarl.trainers.core.errors import TrainerError
from unimarl.trainers.core.names import path_name
from unimarl.trainers.export.policies import model_file_name
from unimarl.trainers.run.run_dir import RunDir

# characters Windows forbids in file names (plus the path separators) and a control character
HOSTILE = 'Team<1>:"blue"/red\\x|y?team=0*\x01'
WINDOWS_ILLEGAL = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def test_hostile_names_become_one_plain_component() -> None:
    name = path_name(HOSTILE)
    assert not WINDOWS_ILLEGAL.search(name)
    assert name == "Team_1___blue__red_x_y_team_0__"
    assert path_name("CoopNav?team=0") == "CoopNav_team_0"
    assert model_file_name("CoopNav?team=0") == "CoopNav_team_0.onnx"
    # Windows also refuses device names and names ending in a dot
    assert path_name("CON").upper() != "CON" and path_name("nul.") not in ("nul", "nul.")


@pytest.mark.parametrize("name", ["..", ".", "", "..."])
def test_names_that_would_leave_the_folder_are_refused(name: str) -> None:
    with pytest.raises(TrainerError, match="policy_mapping"):
        path_name(name)


def test_tensorboard_folders_use_safe_names(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "r")
    run.scalars(HOSTILE, {"Environment/Cumulative Reward": 1.0}, 1)
    run.scalars("CoopNav?team=0", {"Environment/Cumulative Reward": 1.0}, 1)
    run.scalars("CoopNav_team_0", {"Environment/Cumulative Reward": 1.0}, 1)  # same safe name: kept apart
    run.close()
    folders = sorted(p.name for p in (tmp_path / "r" / "tensorboard").iterdir())
    assert all(not WINDOWS_ILLEGAL.search(f) for f in folders)
    assert len(folders) == 3 and path_name(HOSTILE) in folders and "CoopNav_team_0" in folders
